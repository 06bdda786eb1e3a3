package sysconf

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

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/internal/mountinfo"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	major, minor uint32 // st_dev of the filesystem (0:N for btrfs, tmpfs)
	mountpoint   string
	fsType       string
	source       string
}

// parseMountinfo parses /proc/self/mountinfo.
func parseMountinfo(data []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, mountEntry{
			major: uint32(ma), minor: uint32(mi),
			mountpoint: mountinfo.Unescape(fields[4]),
			fsType:     fields[sep+1],
			source:     mountinfo.Unescape(fields[sep+2]),
		})
	}
	return out
}

// mountsUnder returns the mounts at dir and below it, from
// /proc/self/mountinfo, keyed by mount point relative to dir ("/",
// "/boot/efi"); a mount point mounted over keeps its last (visible) mount.
func mountsUnder(dir string) (map[string]mountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	out := map[string]mountEntry{}
	for _, m := range parseMountinfo(data) {
		switch {
		case m.mountpoint == dir:
			out["/"] = m
		case strings.HasPrefix(m.mountpoint, dir+"/"):
			out[strings.TrimPrefix(m.mountpoint, dir)] = m
		}
	}
	return out, nil
}

// blockDev is a block device as the chroot's /dev needs it.
type blockDev struct {
	name         string // kernel name relative to /dev: "loop3p1", "nvme0n1"
	major, minor uint32
	mapper       string // for device-mapper devices, the /dev/mapper name
}

// sysBlock returns the sysfs directory of block device maj:min.
func sysBlock(maj, min uint32) string {
	return fmt.Sprintf("/sys/dev/block/%d:%d", maj, min)
}

// blockDevByNumber describes block device maj:min from sysfs.
func blockDevByNumber(maj, min uint32) (blockDev, error) {
	d := blockDev{major: maj, minor: min}
	uevent, err := os.ReadFile(filepath.Join(sysBlock(maj, min), "uevent"))
	if err != nil {
		return d, fmt.Errorf("block device %d:%d: %w", maj, min, err)
	}
	for line := range strings.Lines(string(uevent)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok {
			d.name = v
		}
	}
	if d.name == "" {
		return d, fmt.Errorf("block device %d:%d: no DEVNAME in %s/uevent", maj, min, sysBlock(maj, min))
	}
	if name, err := os.ReadFile(filepath.Join(sysBlock(maj, min), "dm", "name")); err == nil {
		d.mapper = strings.TrimSpace(string(name))
	}
	return d, nil
}

// blockDevByPath describes the block device node at path.
func blockDevByPath(path string) (blockDev, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return blockDev{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return blockDev{}, fmt.Errorf("%s is not a block device", path)
	}
	return blockDevByNumber(unix.Major(st.Rdev), unix.Minor(st.Rdev))
}

// readDevNumber reads a sysfs "dev" file ("7:3").
func readDevNumber(path string) (uint32, uint32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(data)), ":")
	if !ok {
		return 0, 0, fmt.Errorf("%s: malformed %q", path, data)
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return uint32(ma), uint32(mi), nil
}

// relatives returns the devices related to d that GRUB may look at: its
// partitions, the whole disk of a partition, and the members (slaves) of
// a RAID array or device-mapper device, recursively.
func relatives(d blockDev) ([]blockDev, error) {
	dir, err := filepath.EvalSymlinks(sysBlock(d.major, d.minor))
	if err != nil {
		return nil, fmt.Errorf("block device %s: %w", d.name, err)
	}
	var nums [][2]uint32
	add := func(devFile string) {
		if ma, mi, err := readDevNumber(devFile); err == nil {
			nums = append(nums, [2]uint32{ma, mi})
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		add(filepath.Join(filepath.Dir(dir), "dev")) // the whole disk
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
			add(filepath.Join(dir, e.Name(), "dev"))
		}
	}
	slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
	for _, s := range slaves {
		add(filepath.Join(dir, "slaves", s.Name(), "dev"))
	}
	var out []blockDev
	for _, n := range nums {
		r, err := blockDevByNumber(n[0], n[1])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// deviceSet collects block devices once each, in the order added.
type deviceSet struct {
	devs []blockDev
	seen map[[2]uint32]bool
}

// add adds d and, recursively, its relatives.
func (s *deviceSet) add(d blockDev) error {
	if s.seen == nil {
		s.seen = map[[2]uint32]bool{}
	}
	if s.seen[[2]uint32{d.major, d.minor}] {
		return nil
	}
	s.seen[[2]uint32{d.major, d.minor}] = true
	s.devs = append(s.devs, d)
	rel, err := relatives(d)
	if err != nil {
		return err
	}
	for _, r := range rel {
		if err := s.add(r); err != nil {
			return err
		}
	}
	return nil
}
