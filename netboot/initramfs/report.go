package initramfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/goldcast/goldcast/api"
)

// ReportPath is where, under the server's URL, InitMain posts its Report.
const ReportPath = "/api/v1/boot/report"

// Report is the booted report (api.BootReport): the initramfs and the
// server share the one type.
type Report = api.BootReport

// netInterface is a physical Ethernet interface as sysfs shows it.
type netInterface struct {
	Name  string
	Index int
	MAC   string
}

// ethernetInterfaces lists the Ethernet interfaces (type 1) backed by a
// device in sysDir/class/net, sorted by interface index: virtual ones
// (loopback, bridges, veth, bonds) have no device link and are left out.
func ethernetInterfaces(sysDir string) ([]netInterface, error) {
	dir := filepath.Join(sysDir, "class", "net")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []netInterface
	for _, e := range entries {
		base := filepath.Join(dir, e.Name())
		if typ, err := readTrimmed(filepath.Join(base, "type")); err != nil || typ != "1" {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, "device")); err != nil {
			continue
		}
		idx, err := readTrimmed(filepath.Join(base, "ifindex"))
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", e.Name(), err)
		}
		n, err := strconv.Atoi(idx)
		if err != nil {
			return nil, fmt.Errorf("interface %s: ifindex %q: %w", e.Name(), idx, err)
		}
		mac, err := readTrimmed(filepath.Join(base, "address"))
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", e.Name(), err)
		}
		out = append(out, netInterface{Name: e.Name(), Index: n, MAC: strings.ToLower(mac)})
	}
	slices.SortFunc(out, func(a, b netInterface) int { return a.Index - b.Index })
	return out, nil
}

// readTrimmed reads a small sysfs or procfs file without surrounding space.
func readTrimmed(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// parseCPUList counts the CPUs of a kernel CPU list ("0-3,6,8-9" is 7).
func parseCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty CPU list")
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("CPU list %q: %w", s, err)
			}
		}
		if a < 0 || b < a {
			return 0, fmt.Errorf("CPU list %q: bad range %q", s, part)
		}
		n += b - a + 1
	}
	return n, nil
}

// parseMemTotal returns MemTotal, in KiB, from /proc/meminfo's contents.
func parseMemTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("MemTotal line %q is not \"N kB\"", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("MemTotal: %w", err)
		}
		return kb, nil
	}
	return 0, errors.New("no MemTotal line in meminfo")
}

// isDisk reports whether a /sys/block name is a disk worth reporting
// rather than a virtual or optical device.
func isDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd", "fd", "sr"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// disks returns the disks of sysDir/block and their sizes in bytes.
func disks(sysDir string) ([]string, map[string]int64, error) {
	dir := filepath.Join(sysDir, "block")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list disks: %w", err)
	}
	var names []string
	sizes := map[string]int64{}
	for _, e := range entries {
		if !isDisk(e.Name()) {
			continue
		}
		s, err := readTrimmed(filepath.Join(dir, e.Name(), "size"))
		if err != nil {
			return nil, nil, fmt.Errorf("disk %s: %w", e.Name(), err)
		}
		sectors, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("disk %s: size %q: %w", e.Name(), s, err)
		}
		if sectors == 0 {
			continue
		}
		names = append(names, e.Name())
		sizes[e.Name()] = sectors * 512 // sysfs counts 512-byte sectors whatever the block size
	}
	slices.Sort(names)
	return names, sizes, nil
}

// collectFacts fills in a Report's hardware facts from procDir and
// sysDir (normally /proc and /sys): MACs, CPUs, MemoryKB, Disks,
// DiskBytes and BootID.
func collectFacts(procDir, sysDir string) (Report, error) {
	var r Report
	ifaces, err := ethernetInterfaces(sysDir)
	if err != nil {
		return r, fmt.Errorf("collect facts: %w", err)
	}
	r.MACs = []string{}
	for _, i := range ifaces {
		r.MACs = append(r.MACs, i.MAC)
	}
	online, err := os.ReadFile(filepath.Join(sysDir, "devices", "system", "cpu", "online"))
	if err != nil {
		return r, fmt.Errorf("collect facts: count CPUs: %w", err)
	}
	if r.CPUs, err = parseCPUList(string(online)); err != nil {
		return r, fmt.Errorf("collect facts: count CPUs: %w", err)
	}
	meminfo, err := os.ReadFile(filepath.Join(procDir, "meminfo"))
	if err != nil {
		return r, fmt.Errorf("collect facts: memory: %w", err)
	}
	if r.MemoryKB, err = parseMemTotal(meminfo); err != nil {
		return r, fmt.Errorf("collect facts: memory: %w", err)
	}
	if r.Disks, r.DiskBytes, err = disks(sysDir); err != nil {
		return r, fmt.Errorf("collect facts: %w", err)
	}
	if r.Disks == nil {
		r.Disks = []string{}
	}
	if r.BootID, err = readTrimmed(filepath.Join(procDir, "sys", "kernel", "random", "boot_id")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("collect facts: boot id: %w", err)
	}
	return r, nil
}
