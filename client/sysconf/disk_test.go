package sysconf

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/goldcast/goldcast/internal/testtree"
	"golang.org/x/sys/unix"
)

// testRootUUID is the UUID TestConfigureDisk gives the root filesystem.
const testRootUUID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"

// runT runs a command for a test and fails the test if it fails.
func runT(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// needTools skips the test unless every tool is on the host.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			t.Skipf("%s not installed on this host: %v", tool, err)
		}
	}
}

// loopDisk makes a 2 GiB sparse disk image with a DOS partition table
// holding one bootable Linux partition, attaches it to a loop device and
// returns the image file, the loop device and its partition's node. It
// skips the test when loop devices do not work here.
func loopDisk(t *testing.T) (img, loop, part string) {
	t.Helper()
	img = filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sfdisk := exec.Command(mustTool(t, "sfdisk"), "--quiet", img)
	sfdisk.Stdin = strings.NewReader("label: dos\n,,L,*\n")
	if out, err := sfdisk.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s", img, err, out)
	}
	out, err := exec.Command(mustTool(t, "losetup"), "-f", "--show", "-P", img).CombinedOutput()
	if err != nil {
		t.Skipf("loop devices do not work here: losetup -f --show -P: %v\n%s", err, out)
	}
	loop = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(mustTool(t, "losetup"), "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	})
	part = loop + "p1"
	// Without udev the partition's node may not appear by itself.
	if _, err := os.Stat(part); err != nil {
		exec.Command(mustTool(t, "partx"), "-a", loop).Run()
	}
	if _, err := os.Stat(part); err != nil {
		maj, min, derr := readDevNumber(filepath.Join("/sys/class/block", filepath.Base(part), "dev"))
		if derr != nil {
			t.Skipf("loop device partitions do not work here: %s missing and not in sysfs: %v", part, derr)
		}
		if err := unix.Mknod(part, unix.S_IFBLK|0o660, int(unix.Mkdev(maj, min))); err != nil {
			t.Fatalf("mknod %s: %v", part, err)
		}
		t.Cleanup(func() { os.Remove(part) })
	}
	return img, loop, part
}

func mustTool(t *testing.T, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Skipf("%v", err)
	}
	return p
}

// mountedUnder lists the mount points at or below dir.
func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	m, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for mp := range m {
		out = append(out, mp)
	}
	return out
}

// TestConfigureDisk configures a real bootable Debian root on a loop
// device, GRUB included, as the installer does after laying an image.
func TestConfigureDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mount, chroot")
	}
	needTools(t, "losetup", "sfdisk", "mkfs.ext4", "partx", "mount", "umount", "unshare", "chroot", "blkid", "cp")
	golden := testtree.Bootable(t)

	img, loop, part := loopDisk(t)
	runT(t, mustTool(t, "mkfs.ext4"), "-q", "-F", "-U", testRootUUID, "-L", "gcroot", part)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	runT(t, mustTool(t, "mount"), part, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command(mustTool(t, "umount"), mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	start := time.Now()
	runT(t, mustTool(t, "cp"), "-a", golden+"/.", mnt+"/")
	t.Logf("copied the bootable root in %v", time.Since(start).Round(time.Millisecond))

	// What a golden client leaves behind.
	if err := os.MkdirAll(filepath.Join(mnt, "etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	oldKey := []byte("golden client's private key\n")
	if err := os.WriteFile(filepath.Join(mnt, "etc/ssh/ssh_host_ed25519_key"), oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "etc/hosts"), []byte("127.0.0.1 localhost\n127.0.1.1 golden.example golden\n10.9.9.9 fileserver\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oldID, err := os.ReadFile(filepath.Join(mnt, "etc/machine-id"))
	if err != nil {
		t.Fatal(err)
	}

	layout := &disklayout.Layout{
		Version: disklayout.FormatVersion,
		Host:    "golden",
		Root:    "/",
		Disks: []disklayout.Disk{{
			Name: "sda", Path: "/dev/sda", SizeBytes: 2 << 30, SectorSize: 512, Table: "dos",
			Partitions: []disklayout.Partition{{
				Number: 1, Path: "/dev/sda1", StartBytes: 1 << 20, SizeBytes: 2<<30 - 1<<20,
				Type: "83", Flags: []string{"boot"}, Grow: true,
			}},
		}},
		Filesystems: []disklayout.Filesystem{{
			Device: "/dev/sda1", Type: "ext4", Mountpoint: "/", Label: "gcroot", UUID: testRootUUID,
			Options: "rw,relatime", SuperOptions: "rw,errors=remount-ro",
		}},
	}
	// With the MAC of one of this host's interfaces, the image's own
	// ifupdown can show that it picks that interface.
	iface, mac := hostEthernet()
	if mac == "" {
		mac = "52:54:00:ab:cd:07"
	}
	node := Node{
		Name: "node07", Domain: "cluster.example",
		IPs: []string{"10.0.0.17/24"}, Gateway: "10.0.0.1", DNS: []string{"10.0.0.2"},
		MACs: []string{strings.ToUpper(mac)},
	}
	var logBuf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start = time.Now()
	changes, err := Configure(ctx, Options{
		Root: mnt, Layout: layout, Node: node, Disk: loop,
		Log: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Logf("Configure took %v", time.Since(start).Round(time.Millisecond))
	for _, c := range changes {
		t.Logf("change: %-10s %-45s %s", c.Step, c.Path, c.What)
	}
	if err != nil {
		t.Fatalf("Configure: %v\nlog:\n%s", err, tail(logBuf.String(), 60))
	}

	read := func(rel string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(mnt, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if !regexp.MustCompile(`(?m)^UUID=` + testRootUUID + `\s+/\s+ext4\s+rw,relatime\s+0\s+1$`).MatchString(read("etc/fstab")) {
		t.Errorf("/etc/fstab has no root line for UUID %s:\n%s", testRootUUID, read("etc/fstab"))
	}
	if got := read("etc/hostname"); got != "node07\n" {
		t.Errorf("/etc/hostname = %q, want %q", got, "node07\n")
	}
	hosts := read("etc/hosts")
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.0.0.17\tnode07.cluster.example node07\n", "10.9.9.9 fileserver\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
		}
	}
	if strings.Contains(hosts, "golden") {
		t.Errorf("/etc/hosts still names the golden client:\n%s", hosts)
	}
	ifaces := read("etc/network/interfaces")
	for _, want := range []string{"auto mac/" + mac + "=goldcast0\n", "iface goldcast0 inet static\n", "\taddress 10.0.0.17/24\n", "\tgateway 10.0.0.1\n", "source /etc/network/interfaces.d/*\n"} {
		if !strings.Contains(ifaces, want) {
			t.Errorf("/etc/network/interfaces lacks %q:\n%s", want, ifaces)
		}
	}
	id := read("etc/machine-id")
	if _, err := hex.DecodeString(strings.TrimSuffix(id, "\n")); err != nil || len(id) != 33 || id == string(oldID) {
		t.Errorf("/etc/machine-id = %q, want 32 fresh hex digits and a newline (was %q)", id, oldID)
	}
	if key, err := os.ReadFile(filepath.Join(mnt, "etc/ssh/ssh_host_ed25519_key")); err != nil {
		if _, lerr := lookTool("ssh-keygen"); lerr == nil {
			t.Errorf("no new ed25519 host key: %v", err)
		}
	} else if bytes.Equal(key, oldKey) {
		t.Errorf("the golden client's host key was kept")
	}

	mbr := make([]byte, 512)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(mbr, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(mbr, []byte("GRUB")) {
		t.Errorf("the disk's boot sector has no GRUB boot code")
	}
	cfg := read("boot/grub/grub.cfg")
	if !strings.Contains(cfg, "root=UUID="+testRootUUID) {
		t.Errorf("grub.cfg does not boot root=UUID=%s", testRootUUID)
	}
	if strings.Contains(cfg, "root=/dev/") {
		t.Errorf("grub.cfg names the root by device path:\n%s", grepLines(cfg, "root="))
	}
	if _, err := os.Stat(filepath.Join(mnt, "boot/grub/i386-pc/core.img")); err != nil {
		t.Errorf("grub-install left no core.img: %v", err)
	}
	if m := mountedUnder(t, mnt); len(m) != 1 {
		t.Errorf("mounts left under the target root: %v", m)
	}
	if entries, err := os.ReadDir(filepath.Join(mnt, "dev", "disk")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the chroot's /dev leaked into the target root: /dev/disk holds %v (%v)", entries, err)
	}

	// A layout that does not describe this disk changes nothing.
	fstabBefore := read("etc/fstab")
	wrong := *layout
	wrong.Filesystems = []disklayout.Filesystem{layout.Filesystems[0]}
	wrong.Filesystems[0].UUID = "00000000-0000-4000-8000-000000000000"
	changes, err = Configure(ctx, Options{Root: mnt, Layout: &wrong, Node: node, Disk: loop})
	if err == nil || !strings.Contains(err.Error(), "has UUID "+testRootUUID) || len(changes) != 0 {
		t.Errorf("Configure with the wrong root UUID = %v, %v; want no change and an error naming UUID %s", changes, err, testRootUUID)
	}
	if read("etc/fstab") != fstabBefore {
		t.Errorf("Configure with the wrong root UUID changed /etc/fstab")
	}

	if iface == "" {
		t.Log("no Ethernet interface on this host: not checking that the image's ifupdown picks the node's interface")
		return
	}
	c := &configurer{o: Options{Disk: loop}, dir: mnt, log: discardLogger()}
	ch, err := c.newChroot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ch.run(ctx, toolEnv(), "sh", "-c", "mkdir -p /run/network && ifquery --list && ifquery "+iface+"=goldcast0")
	if err != nil {
		t.Fatalf("the image's ifquery: %v", err)
	}
	if !strings.Contains(out, "\n"+iface+"\n") || !strings.Contains(out, "address: 10.0.0.17\n") {
		t.Errorf("the image's ifupdown does not configure %s (MAC %s) as goldcast0:\n%s", iface, mac, out)
	}
}

// hostEthernet returns the name and MAC of one of this host's Ethernet
// interfaces, or empty strings.
func hostEthernet() (name, mac string) {
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		typ, _ := os.ReadFile(filepath.Join("/sys/class/net", e.Name(), "type"))
		addr, _ := os.ReadFile(filepath.Join("/sys/class/net", e.Name(), "address"))
		a := strings.TrimSpace(string(addr))
		if strings.TrimSpace(string(typ)) == "1" && a != "" && a != "00:00:00:00:00:00" {
			return e.Name(), a
		}
	}
	return "", ""
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return fmt.Sprint(out)
}
