package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/internal/testtree"
)

// TestPXEBootQEMUUEFI network-boots a QEMU q35 machine under OVMF through
// goldcast's DHCP and TFTP: the NIC has no option ROM (romfile=), so
// OVMF's own network stack PXE-boots, asks DHCP with option 93 = 7
// (x86-64 UEFI), gets ipxe.efi and fetches it over TFTP from
// /usr/lib/ipxe; iPXE EFI then asks DHCP again with user class "iPXE",
// loads the per-node script, the kernel and the goldcast initramfs over
// HTTP; the initramfs reports "booted" and, for install, powers off.
//
// It uses its own subnet (10.79.0.0/24), MAC and node so it can run in
// parallel with TestPXEBootQEMU.
func TestPXEBootQEMUUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("a PXE boot in QEMU needs root (network namespaces, bridge, tap)")
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("/dev/net/tun is missing: no tap devices")
	}
	const (
		ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
		ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
		ipxeDir  = "/usr/lib/ipxe"
	)
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is missing: install the Debian package ovmf", f)
		}
	}
	if _, err := os.Stat(filepath.Join(ipxeDir, "ipxe.efi")); err != nil {
		t.Skipf("%s/ipxe.efi is missing: install the Debian package ipxe", ipxeDir)
	}
	const mac = "52:54:00:79:00:10"

	k := testtree.BootableKernel(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	boot := filepath.Join(data, "boot")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(k.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(boot, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, "netboot", "initramfs", "--kernel-version", k.Version, "--modules-dir", k.ModulesDir, "-o", filepath.Join(boot, "goldcast-initrd.img"))
	cfg := fmt.Sprintf("nodes:\n  - name: pxeuefi01\n    macs: [\"%s\"]\n    ips: [10.79.0.60]\n    boot: install\n", mac)
	if err := os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// OVMF writes its variable store: each run gets its own copy.
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	varsCopy := filepath.Join(tmp, "OVMF_VARS_4M.fd")
	if err := os.WriteFile(varsCopy, vars, 0o644); err != nil {
		t.Fatal(err)
	}

	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ns, tap := "gcpxu"+id, "tapu"+id
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	ipCmd(t, "-n", ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", ns, "addr", "add", "10.79.0.1/24", "dev", "br0")
	ipCmd(t, "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
	ipCmd(t, "-n", ns, "link", "set", tap, "master", "br0")
	ipCmd(t, "-n", ns, "link", "set", tap, "up")
	ipCmd(t, "-n", ns, "link", "set", "br0", "up")

	var srvLog, serial syncBuffer
	srv := exec.Command("ip", "netns", "exec", ns, goldcast.path, "--data", data, "server",
		"--http", "10.79.0.1:8080", "--rsync", "",
		"--tftp", "10.79.0.1:69", // default boot dir: copies of Debian's /usr/lib/ipxe
		"--dhcp-mode", "full", "--dhcp-interface", "br0", "--dhcp-range", "10.79.0.100-10.79.0.150")
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	t.Cleanup(func() { srv.Process.Kill(); <-srvDone })
	dumpLogs := func() {
		t.Logf("QEMU serial output:\n%s", serial.String())
		t.Logf("server log:\n%s", srvLog.String())
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(srvLog.String(), "DHCP serving"); {
		select {
		case <-srvDone:
			t.Fatalf("server exited before serving DHCP:\n%s", srvLog.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start DHCP within 20 s:\n%s", srvLog.String())
		}
	}

	qemu := exec.Command("ip", "netns", "exec", ns, "qemu-system-x86_64",
		"-machine", "q35", "-accel", "tcg", "-m", "1024",
		"-nographic", "-nodefaults", "-serial", "stdio",
		"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,file="+varsCopy,
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+mac+",romfile=")
	qemu.Stdout, qemu.Stderr = &serial, &serial
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	qemuDone := make(chan error, 1)
	go func() { qemuDone <- qemu.Wait() }()
	qemuExited := false
	t.Cleanup(func() {
		if !qemuExited {
			qemu.Process.Kill()
			<-qemuDone
		}
	})

	// OVMF under TCG is slower than SeaBIOS: allow more time.
	select {
	case err := <-qemuDone:
		qemuExited = true
		if err != nil {
			dumpLogs()
			t.Fatalf("QEMU exited with %v", err)
		}
	case <-time.After(300 * time.Second):
		dumpLogs()
		t.Fatal("the machine did not boot, report and power off within 300 s")
	}

	out, err := exec.Command("ip", "netns", "exec", ns, goldcast.path, "status", "pxeuefi01", "--json",
		"--server", "http://10.79.0.1:8080", "--token-file", filepath.Join(data, "admin.token")).Output()
	if err != nil {
		dumpLogs()
		t.Fatalf("goldcast status pxeuefi01: %v", err)
	}
	var st struct {
		Events []struct {
			Stage  string            `json:"stage"`
			Fields map[string]string `json:"fields"`
		} `json:"events"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	var stages []string
	booted := false
	for _, e := range st.Events {
		stages = append(stages, e.Stage)
		_, hasDisks := e.Fields["disks"]
		if e.Stage == "booted" && e.Fields["cpus"] != "" && e.Fields["cpus"] != "0" && hasDisks {
			booted = true
		}
	}
	if !booted {
		dumpLogs()
		t.Fatalf("status pxeuefi01 shows no booted event with cpus and disks (stages %v):\n%s", stages, out)
	}
	t.Logf("pxeuefi01 events: %v", stages)
	for _, want := range []string{"dhcp-ack", "ipxe"} {
		if !strings.Contains(strings.Join(stages, " "), want) {
			t.Errorf("status pxeuefi01 lacks a %s event (stages %v)", want, stages)
		}
	}
	// The firmware asked as x86-64 UEFI (option 93 = 7).
	if !strings.Contains(string(out), "arch 7") {
		t.Errorf("status pxeuefi01 has no DHCP event with arch 7:\n%s", out)
	}
	// TFTP events carry no node name: the server log shows what the
	// firmware fetched, which must be ipxe.efi, not undionly.kpxe.
	sent := false
	for _, line := range strings.Split(srvLog.String(), "\n") {
		if strings.Contains(line, "tftp sent") && strings.Contains(line, "ipxe.efi") {
			sent = true
		}
	}
	if !sent {
		t.Errorf("the server log shows no TFTP transfer of ipxe.efi:\n%s", srvLog.String())
	}
}
