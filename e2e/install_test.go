package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/internal/testtree"
)

// goldenLayout is the disk layout the golden image records, as goldcast
// capture would have found it on a 3 GiB virtio disk: GPT with a BIOS
// boot partition (GRUB for BIOS), an EFI system partition at /boot/efi
// (GRUB for UEFI) and the root filesystem growing to the end of the
// disk. One layout boots under SeaBIOS and under OVMF.
const goldenLayout = `{
  "version": 1, "host": "golden", "root": "/",
  "disks": [{"name": "vda", "path": "/dev/vda", "size_bytes": 3221225472, "sector_size": 512, "table": "gpt",
    "partitions": [
      {"number": 1, "path": "/dev/vda1", "start_bytes": 1048576, "size_bytes": 1048576, "type": "21686148-6449-6E6F-744E-656564454649", "flags": ["bios_grub"]},
      {"number": 2, "path": "/dev/vda2", "start_bytes": 2097152, "size_bytes": 67108864, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "flags": ["esp"]},
      {"number": 3, "path": "/dev/vda3", "start_bytes": 69206016, "size_bytes": 3150970880, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "grow": true}]}],
  "filesystems": [
    {"device": "/dev/vda3", "type": "ext4", "mountpoint": "/", "label": "gcroot", "uuid": "6f1d3c2a-8e4b-4d7a-9c1e-2b3a4c5d6e7f", "options": "rw,relatime", "super_options": "rw,errors=remount-ro"},
    {"device": "/dev/vda2", "type": "vfat", "mountpoint": "/boot/efi", "label": "ESP", "uuid": "1A2B-3C4D", "options": "rw,relatime"}]
}`

// goldenExcludes keep the golden image small: package caches and lists,
// documentation, and the kernel modules of hardware a virtual machine
// does not have.
func goldenExcludes() []string {
	out := []string{"/var/cache/apt/archives/*.deb", "/var/lib/apt/lists/*", "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*"}
	for _, d := range []string{"drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/net/ethernet", "drivers/infiniband",
		"drivers/staging", "drivers/scsi", "drivers/usb", "drivers/iio", "drivers/hid", "drivers/bluetooth", "drivers/isdn",
		"drivers/input", "sound", "net/wireless", "net/mac80211", "net/bluetooth", "fs/ocfs2", "fs/gfs2", "fs/nfs", "fs/ceph"} {
		out = append(out, "/usr/lib/modules/*/kernel/"+d)
	}
	return out
}

// importGolden stores the cached bootable Debian root (kernel, GRUB for
// BIOS and UEFI, systemd) as image "golden" with goldenLayout.
func importGolden(t *testing.T, data string) {
	t.Helper()
	root := testtree.Bootable(t)
	layout := filepath.Join(t.TempDir(), "layout.json")
	if err := os.WriteFile(layout, []byte(goldenLayout), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--data", data, "image", "import", root, "--image", "golden", "--disk-layout", layout}
	for _, e := range goldenExcludes() {
		args = append(args, "--exclude", e)
	}
	start := time.Now()
	ok(t, args...)
	t.Logf("golden image imported in %v", time.Since(start).Round(100*time.Millisecond))
	// An override puts GRUB and the kernel on the serial console (QEMU
	// runs with -nographic), so the installed system's boot is in the
	// test's log; nodes name it in their overrides.
	ov := t.TempDir()
	grub := filepath.Join(ov, "etc", "default")
	if err := os.MkdirAll(grub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(grub, "grub"), []byte(serialGRUB), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, "--data", data, "override", "create", "serial-console", "--from", ov)
}

// serialGRUB is /etc/default/grub for a machine whose console is its
// first serial port. no_timer_check: under TCG on a busy host the
// kernel's IO-APIC timer check can fail and panic the boot.
const serialGRUB = `GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 no_timer_check"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
`

// sparseFile creates a sparse file of size bytes.
func sparseFile(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// installed reports whether the node reached state.
func stateIs(states ...string) func(pxeStatus) bool {
	return func(s pxeStatus) bool { return slices.Contains(states, s.state()) }
}

// checkHealthy checks the healthy event and the node's state record:
// the node reported from its installed system with its host name and
// the image version it was installed with.
func checkHealthy(t *testing.T, p *pxeBoot, st pxeStatus) {
	t.Helper()
	if len(st.Nodes) != 1 || st.Nodes[0].Image != "golden" || st.Nodes[0].Version != 1 {
		t.Errorf("node state after the install:\n%s", st.raw)
	}
	var healthy bool
	for _, e := range st.Events {
		if strings.Contains(e.Message+e.Fields["hostname"], p.node) && (e.Stage == "healthy" || e.Fields["hostname"] == p.node) {
			healthy = true
		}
	}
	if !healthy {
		t.Errorf("no healthy report naming host %s:\n%s", p.node, st.raw)
	}
	r := ok(t, "--data", p.data, "node", "show", p.node, "--json")
	if !strings.Contains(r.stdout, `"local"`) {
		t.Errorf("the node's boot action was not flipped to local:\n%s", r.stdout)
	}
}

// checkInstalledDisk loop-mounts the installed disk's root (the machine
// is off) and compares it with the image, leaving out what the install
// made the node's own and what the installed system's boots wrote.
func checkInstalledDisk(t *testing.T, p *pxeBoot) {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", p.disk).Output()
	if err != nil {
		t.Fatalf("losetup %s: %v", p.disk, err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("partx", "-d", loop).Run(); exec.Command("losetup", "-d", loop).Run() })
	exec.Command("partx", "-a", loop).Run()
	table, _ := exec.Command("sfdisk", "-d", loop).CombinedOutput()
	t.Logf("installed partition table:\n%s", table)
	for _, want := range []string{"type=21686148-6449-6E6F-744E-656564454649", "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"} {
		if !bytes.Contains(table, []byte(want)) {
			t.Errorf("installed table lacks a partition of %s", want)
		}
	}
	blk, _ := exec.Command("blkid", "-p", "-o", "export", loop+"p3").CombinedOutput()
	for _, want := range []string{"UUID=6f1d3c2a-8e4b-4d7a-9c1e-2b3a4c5d6e7f", "LABEL=gcroot", "TYPE=ext4"} {
		if !bytes.Contains(blk, []byte(want)) {
			t.Errorf("installed root %sp3 lacks %s:\n%s", loop, want, blk)
		}
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro", loop+"p3", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount the installed root: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	tree := filepath.Join(p.data, "images", "golden", "versions", "1", "tree")
	if _, err := os.Stat(tree); err != nil {
		t.Fatalf("image tree: %v", err)
	}
	// Paths the install makes the node's (sysconf, boot loader, the
	// first-boot unit) and that the installed system's boots change.
	skip := []string{
		"etc/fstab", "etc/hostname", "etc/hosts", "etc/machine-id", "var/lib/dbus/machine-id", "etc/network", "etc/ssh", "etc/resolv.conf", "boot/grub", "boot/efi", "etc/goldcast", "usr/local/lib/goldcast",
		"etc/systemd/system/goldcast-firstboot.service", "etc/systemd/system/multi-user.target.wants",
		"etc/init.d/goldcast-firstboot", "etc/rc2.d", "etc/default/grub", "etc/systemd/network",
		"var/log", "var/lib/systemd", "var/tmp", "tmp", "run", "var/cache", "var/lib/dhcp", "lost+found", "etc/udev/rules.d",
		"etc/.pwd.lock", "etc/adjtime", "var/lib/private", "var/lib/logrotate", "var/backups", "var/lib/apt",
	}
	diffs, err := testtree.OracleOutput(tree, mnt, skip...)
	if err != nil {
		t.Fatalf("%v\n%s", err, diffs)
	}
	// Directories holding what the install added or removed have a new
	// mtime, nothing else.
	touched := map[string]bool{"etc/": true, "etc/default/": true, "etc/init.d/": true, "etc/systemd/system/": true, "usr/local/lib/": true}
	for _, line := range strings.Split(strings.TrimSpace(diffs), "\n") {
		if line == "" {
			continue
		}
		if f := strings.Fields(line); len(f) == 2 && f[0] == ".d..t......" && touched[f[1]] {
			continue
		}
		t.Errorf("installed disk differs from the image: %s", line)
	}
}

// TestInstallQEMUBIOS installs a bare SeaBIOS machine end to end: PXE
// (iPXE ROM) -> goldcast initramfs -> install onto a blank 4 GiB virtio
// disk. Mid-transfer its plug is pulled; the next power-on reinstalls
// and completes, reboots (the node flipped to local boot, iPXE boots the
// disk), and the installed Debian reports itself healthy. The disk then
// matches the image.
func TestInstallQEMUBIOS(t *testing.T) {
	skipUnlessPXE(t)
	p := &pxeBoot{net: "10.78.0", node: "inst01", mac: "52:54:00:78:00:10",
		nodeYAML: "image: golden\ntransport: http\noverrides: [serial-console]", setup: importGolden,
		qemuArgs: []string{"-m", "1024", "-smp", "2", "-boot", "n"}, disk: sparseFile(t, "disk.img", 4<<30)}
	p.start(t)
	m := p.boot(t)
	st := p.waitFor(t, m, "the transfer under way", 6*time.Minute, false, func(s pxeStatus) bool {
		return len(s.Nodes) == 1 && s.Nodes[0].Stage == "transfer" && s.Nodes[0].Percent >= 10
	})
	p.checkBootSteps(t, st)
	m.kill() // a power cut mid-transfer
	t.Logf("power cut at %.0f%% of the transfer", st.Nodes[0].Percent)

	m = p.boot(t)
	var percents []float64
	st = p.waitFor(t, m, "healthy", 12*time.Minute, false, func(s pxeStatus) bool {
		// The state still shows the cut install's last report until the
		// new one reaches the transfer: count the latest run of
		// transfer reports only.
		if len(s.Nodes) == 1 && s.Nodes[0].Stage == "transfer" && s.state() == "installing" {
			percents = append(percents, s.Nodes[0].Percent)
		} else if len(s.Nodes) == 1 && s.state() == "installing" {
			percents = nil
		}
		return s.state() == "healthy" || s.state() == "failed"
	})
	m.kill()
	t.Logf("%s events: %v", p.node, st.stages())
	if st.state() != "healthy" {
		t.Fatalf("install ended %s:\n%s", st.state(), st.raw)
	}
	t.Logf("transfer percent seen while polling: %v", percents)
	if !slices.IsSorted(percents) {
		t.Errorf("percent went down during the transfer: %v", percents)
	}
	checkHealthy(t, p, st)
	checkInstalledDisk(t, p)
}

// TestInstallQEMUUEFI installs a bare OVMF machine: UEFI PXE fetches
// ipxe.efi over TFTP, then the same install; GRUB lands on the EFI system
// partition's removable path, and after the reboot iPXE hands back to the
// firmware (exit), which boots the disk.
func TestInstallQEMUUEFI(t *testing.T) {
	skipUnlessPXE(t)
	const (
		ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
		ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	)
	for _, f := range []string{ovmfCode, ovmfVars, "/usr/lib/ipxe/ipxe.efi"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is missing: install the Debian packages ovmf and ipxe", f)
		}
	}
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	varsCopy := filepath.Join(t.TempDir(), "OVMF_VARS_4M.fd")
	if err := os.WriteFile(varsCopy, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pxeBoot{net: "10.79.0", node: "instuefi01", mac: "52:54:00:79:00:10",
		nodeYAML: "image: golden\ntransport: http\noverrides: [serial-console]\ninstall: {post_action: reboot}", setup: importGolden,
		serverArgs: []string{"--tftp", "10.79.0.1:69"},
		qemuArgs: []string{"-machine", "q35", "-m", "1024", "-smp", "2",
			"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
			"-drive", "if=pflash,format=raw,file=" + varsCopy},
		nicOptions: ",romfile=", disk: sparseFile(t, "disk.img", 4<<30)}
	p.start(t)
	m := p.boot(t)
	st := p.waitFor(t, m, "healthy", 15*time.Minute, false, stateIs("healthy", "failed"))
	m.kill()
	t.Logf("%s events: %v", p.node, st.stages())
	if st.state() != "healthy" {
		t.Fatalf("install ended %s:\n%s", st.state(), st.raw)
	}
	p.checkBootSteps(t, st)
	tftp := false
	for _, e := range st.Events {
		tftp = tftp || e.Stage == "tftp" && e.Fields["file"] == "ipxe.efi"
	}
	if !tftp {
		t.Errorf("no TFTP event for ipxe.efi (firmware asked as x86-64 UEFI):\n%s", st.raw)
	}
	checkHealthy(t, p, st)
}

// TestInstallFailingScript installs a small image whose post-install
// script fails: the node ends failed with the script's output in its
// events, its boot action stays install, and the machine waits in a
// shell.
func TestInstallFailingScript(t *testing.T) {
	skipUnlessPXE(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed")
	}
	setup := func(t *testing.T, data string) {
		importTiny(t, data, busybox)
		dir := filepath.Join(data, "scripts", "post-install")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "50all.fail"), []byte("#!/bin/sh\necho \"custom post-install trouble on $GOLDCAST_NODE\"\nexit 1\n"), 0o755)
	}
	p := &pxeBoot{net: "10.81.0", node: "instfail01", mac: "52:54:00:81:00:10",
		nodeYAML: "image: golden\ntransport: http", setup: setup,
		qemuArgs: []string{"-m", "768", "-boot", "n"}, disk: sparseFile(t, "disk.img", 512<<20)}
	p.start(t)
	m := p.boot(t)
	st := p.waitFor(t, m, "the failed install", 6*time.Minute, false, stateIs("failed", "installed", "healthy"))
	m.kill()
	if st.state() != "failed" {
		t.Fatalf("install ended %s, want failed:\n%s", st.state(), st.raw)
	}
	if !bytes.Contains(st.raw, []byte("custom post-install trouble on instfail01")) {
		t.Errorf("the failed event lacks the script's output:\n%s", st.raw)
	}
	r := ok(t, "--data", p.data, "node", "show", p.node, "--json")
	if !strings.Contains(r.stdout, `"install"`) {
		t.Errorf("the boot action of a failed node changed:\n%s", r.stdout)
	}
	if !strings.Contains(p.serial.String(), "install failed") {
		t.Errorf("the console does not say the install failed")
	}
}

// importTiny stores a tiny tree (busybox as /bin/sh, a motd) as image
// "golden", with a dos layout of one ext4 root filesystem.
func importTiny(t *testing.T, data, busybox string) {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tiny")
	for _, d := range []string{"bin", "etc", "tmp"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	sh, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tree, "bin", "sh"), sh, 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("tiny\n"), 0o644)
	layout := filepath.Join(t.TempDir(), "layout.json")
	os.WriteFile(layout, []byte(`{"version":1,"root":"/","disks":[{"name":"vda","path":"/dev/vda","size_bytes":268435456,"sector_size":512,"table":"dos",
	  "partitions":[{"number":1,"path":"/dev/vda1","start_bytes":1048576,"size_bytes":267386880,"type":"83","flags":["boot"],"grow":true}]}],
	  "filesystems":[{"device":"/dev/vda1","type":"ext4","mountpoint":"/","uuid":"0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"}]}`), 0o644)
	ok(t, "--data", data, "image", "import", tree, "--image", "golden", "--disk-layout", layout)
}

// TestInstallByHand runs goldcast install as an admin would from a
// rescue shell, onto a loop disk, against a server on loopback: a
// pre-install script sees the node's variables, the disk is partitioned
// and filled, the node is installed and flipped to local boot, a second
// install goes over its own disk, a disk with foreign data is refused
// untouched, and goldcast firstboot then reports the node healthy and
// removes itself.
func TestInstallByHand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mounts)")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed")
	}
	for _, tool := range []string{"losetup", "sfdisk", "partx", "mkfs.ext4", "blkid", "wipefs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	img := sparseFile(t, "disk.img", 512<<20)
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("partx", "-d", loop).Run(); exec.Command("losetup", "-d", loop).Run() })

	data := filepath.Join(t.TempDir(), "data")
	importTiny(t, data, busybox)
	pre := filepath.Join(data, "scripts", "pre-install")
	os.MkdirAll(pre, 0o755)
	os.WriteFile(filepath.Join(pre, "10all.note"), []byte("#!/bin/sh\necho \"pre-install for $GOLDCAST_NODE rack=$GOLDCAST_VAR_RACK disk=$GOLDCAST_DISK\" > \"$GOLDCAST_TARGET.pre.out\"\n"), 0o755)
	// The admin's layout instead of the captured one: sizes in MiB,
	// percent and grow, a second filesystem.
	os.MkdirAll(filepath.Join(data, "layouts"), 0o755)
	os.WriteFile(filepath.Join(data, "layouts", "small.yaml"), []byte("disks:\n  - table: gpt\n    partitions:\n      - {size: 32, fs: swap, label: hswap}\n      - {size: 60%, mountpoint: /, fs: ext4}\n      - {size: grow, mountpoint: /srv, fs: ext4, label: hsrv}\n"), 0o644)
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte("nodes:\n  - name: hand01 # by hand\n    image: golden\n    transport: http\n    boot: install\n    vars: {rack: r7}\n    install: {disk: "+loop+", layout: small}\n"), 0o644)
	s := startServerConfigured(t, data, 0, nil)
	tokFile := filepath.Join(t.TempDir(), "hand01.token")
	ok(t, "--data", data, "node", "token", "hand01", "--out", tokFile)

	target := filepath.Join(t.TempDir(), "target")
	install := func(extra ...string) result {
		cmd := exec.Command(goldcast.path, append([]string{"install", "--server", s.url, "--node", "hand01", "--token-file", tokFile, "--no-post-action", "--target", target}, extra...)...)
		preOut := target + ".pre.out"
		os.Remove(preOut)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		r := result{stdout: o.String(), stderr: e.String()}
		if ee, isExit := err.(*exec.ExitError); isExit {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if r.code == 0 {
			// The target stays mounted (--no-post-action): look, then
			// unmount for the next round.
			if got, _ := os.ReadFile(preOut); !strings.Contains(string(got), "pre-install for hand01 rack=r7 disk=") {
				t.Errorf("pre-install script output %q", got)
			}
			for _, f := range []string{"etc/motd", "bin/sh", "etc/fstab", "etc/goldcast/installed.json", "etc/goldcast/node.token",
				"usr/local/lib/goldcast/goldcast", "etc/systemd/system/goldcast-firstboot.service"} {
				if _, err := os.Stat(filepath.Join(target, f)); err != nil {
					t.Errorf("installed tree lacks %s: %v", f, err)
				}
			}
			if fstab, _ := os.ReadFile(filepath.Join(target, "etc/fstab")); !strings.Contains(string(fstab), "UUID=0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9") || !strings.Contains(string(fstab), "/srv") {
				t.Errorf("fstab:\n%s", fstab)
			}
			// The layout file's partitions: swap, the root with the
			// captured UUID, and /srv.
			for part, want := range map[string]string{"p1": "TYPE=swap", "p2": "UUID=0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "p3": "LABEL=hsrv"} {
				if out, _ := exec.Command("blkid", "-p", "-o", "export", loop+part).CombinedOutput(); !strings.Contains(string(out), want) {
					t.Errorf("%s%s lacks %s:\n%s", loop, part, want, out)
				}
			}
		}
		return r
	}
	unmount := func() { exec.Command("umount", "-R", target).Run() }

	if r := install(); r.code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The installed system's first boot, simulated: goldcast firstboot
	// on the installed root (its token and record are there).
	ok(t, "firstboot", "--root", target, "--timeout", "30s")
	for _, f := range []string{"etc/goldcast/node.token", "usr/local/lib/goldcast/goldcast", "etc/systemd/system/goldcast-firstboot.service",
		"etc/systemd/system/multi-user.target.wants/goldcast-firstboot.service"} {
		if _, err := os.Lstat(filepath.Join(target, f)); err == nil {
			t.Errorf("firstboot left %s behind", f)
		}
	}
	unmount()
	st := ok(t, "status", "hand01", "--server", s.url, "--token-file", s.tokenFile, "--json")
	if !strings.Contains(st.stdout, `"state": "healthy"`) {
		t.Errorf("status after firstboot:\n%s", st.stdout)
	}
	if r := ok(t, "--data", data, "node", "show", "hand01", "--json"); !strings.Contains(r.stdout, `"local"`) {
		t.Errorf("node not flipped to local:\n%s", r.stdout)
	}
	if y, _ := os.ReadFile(filepath.Join(data, "goldcast.yaml")); !strings.Contains(string(y), "# by hand") {
		t.Errorf("the flip lost a comment:\n%s", y)
	}

	// A second install goes over the node's own disk without wipe, this
	// time from the server's BitTorrent seed.
	if r := install("--transport", "torrent"); r.code != 0 {
		t.Fatalf("reinstall over the node's own disk by torrent: exit %d\n%s", r.code, r.stderr)
	} else if !strings.Contains(r.stderr, "by torrent") {
		t.Errorf("the reinstall did not say it used BitTorrent:\n%s", r.stderr)
	}
	// The transfer's last event says where the bytes came from.
	if ev := ok(t, "events", "hand01", "--server", s.url, "--token-file", s.tokenFile); !strings.Contains(ev.stdout, "MB from the server") {
		t.Errorf("no event reports the BitTorrent swarm's share:\n%s", ev.stdout)
	}
	unmount()
	// And by the update engine (transport rsync) into the empty target.
	if r := install("--transport", "rsync"); r.code != 0 {
		t.Fatalf("reinstall by rsync: exit %d\n%s", r.code, r.stderr)
	} else if !strings.Contains(r.stderr, "by rsync") {
		t.Errorf("the reinstall did not say it used rsync:\n%s", r.stderr)
	}
	unmount()

	// A disk with someone else's data is refused, untouched.
	// The kernel may still be letting go of the partitions just
	// unmounted (wipefs opens the disk exclusively): retry briefly.
	for try := 0; ; try++ {
		exec.Command("partx", "-d", loop).Run()
		out, err := exec.Command("wipefs", "-a", loop).CombinedOutput()
		if err == nil {
			break
		}
		if try == 20 || !strings.Contains(string(out), "busy") {
			mounts, _ := os.ReadFile("/proc/self/mountinfo")
			holders, _ := exec.Command("sh", "-c", "ls -l /sys/block/"+filepath.Base(loop)+"/holders /sys/block/"+filepath.Base(loop)+"/; fuser -vm "+loop+"* 2>&1; lsblk "+loop).CombinedOutput()
			t.Fatalf("wipefs: %v\n%s\nmounts:\n%s\n%s", err, out, mounts, holders)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "precious", loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(img)
	r := install()
	if r.code == 0 || !strings.Contains(r.stderr, "disk holds data") {
		t.Errorf("install onto a foreign filesystem: exit %d\n%s", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(before[:1<<20], after[:1<<20]) || !bytes.Equal(before[len(before)-(1<<20):], after[len(after)-(1<<20):]) {
		t.Error("the refused install changed the disk")
	}
	st = ok(t, "status", "hand01", "--server", s.url, "--token-file", s.tokenFile, "--json")
	if !strings.Contains(st.stdout, `"state": "failed"`) || !strings.Contains(st.stdout, "disk holds data") {
		t.Errorf("status after the refusal:\n%s", st.stdout)
	}
}
