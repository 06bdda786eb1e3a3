package disklayout

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// requireTools skips the test unless it runs as root and every tool is
// installed.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range tools {
		if toolPath(tool) == tool {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// sh runs a command for the test and fails it on error.
func sh(t *testing.T, ctx context.Context, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, toolPath(name), args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// cleanup runs a command at the end of the test, logging a failure.
func cleanup(t *testing.T, name string, args ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, toolPath(name), args...).CombinedOutput(); err != nil {
			t.Logf("cleanup: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	})
}

// waitForNode waits for a device node that the kernel's devtmpfs creates.
func waitForNode(path string) bool {
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// TestCaptureLoopDevice captures a real GPT disk: a 64 MiB loop device with
// an ESP and an ext4 root mounted under a temporary directory.
func TestCaptureLoopDevice(t *testing.T) {
	requireTools(t, "losetup", "partx", "sfdisk", "mkfs.ext4", "mount", "umount", "lsblk", "blkid")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const (
		mib       = 1 << 20
		diskID    = "1B2C3D4E-0000-4000-8000-0000000000A1"
		espType   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
		espUUID   = "47CE8E69-7470-4242-9C79-22DA7C83118E"
		rootType  = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
		rootPUUID = "7828B7FF-A65C-474C-A49E-8B2266D6B520"
		fsUUID    = "3f1b2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 * mib); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sh(t, ctx, "label: gpt\nlabel-id: "+diskID+"\n"+
		"start=2048, size=32768, type="+espType+", uuid="+espUUID+", name=\"EFI\"\n"+
		"start=34816, type="+rootType+", uuid="+rootPUUID+", name=\"goldroot\"\n",
		"sfdisk", "--quiet", img)

	loop := sh(t, ctx, "", "losetup", "-f", "--show", "-P", img)
	cleanup(t, "losetup", "-d", loop)
	p1, p2 := loop+"p1", loop+"p2"
	if _, err := os.Stat(p2); err != nil {
		// No udev: -P may leave the partitions to partx.
		sh(t, ctx, "", "partx", "-a", loop)
		cleanup(t, "partx", "-d", loop)
	}
	if !waitForNode(p1) || !waitForNode(p2) {
		t.Fatalf("no partition nodes %s, %s", p1, p2)
	}

	vfat := toolPath("mkfs.vfat") != "mkfs.vfat"
	if vfat {
		sh(t, ctx, "", "mkfs.vfat", "-i", "1234ABCD", "-n", "GOLDESP", p1)
	}
	sh(t, ctx, "", "mkfs.ext4", "-q", "-F", "-L", "goldroot", "-U", fsUUID, p2)
	mnt := filepath.Join(dir, "root")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, ctx, "", "mount", p2, mnt)
	cleanup(t, "umount", mnt)
	espMounted := false
	if vfat {
		efi := filepath.Join(mnt, "boot", "efi")
		if err := os.MkdirAll(efi, 0o755); err != nil {
			t.Fatal(err)
		}
		// The kernel may lack vfat; then the ESP is captured unmounted.
		if out, err := exec.CommandContext(ctx, toolPath("mount"), "-t", "vfat", p1, efi).CombinedOutput(); err == nil {
			espMounted = true
			cleanup(t, "umount", efi)
		} else {
			t.Logf("ESP not mounted: %v: %s", err, out)
		}
	}

	start := time.Now().UTC().Truncate(time.Second)
	got, err := Capture(ctx, mnt)
	if err != nil {
		t.Fatalf("Capture(%s): %v", mnt, err)
	}
	if got.CapturedAt.Before(start) || got.CapturedAt.After(time.Now()) {
		t.Errorf("CapturedAt = %v, want about %v", got.CapturedAt, start)
	}
	root, err := filepath.EvalSymlinks(mnt)
	if err != nil {
		t.Fatal(err)
	}
	want := &Layout{
		Version: FormatVersion,
		Root:    root,
		Disks: []Disk{{
			Name: filepath.Base(loop), Path: loop, SizeBytes: 64 * mib, SectorSize: 512,
			Table: "gpt", ID: diskID,
			Partitions: []Partition{
				{Number: 1, Path: p1, StartBytes: 1 * mib, SizeBytes: 16 * mib, Type: espType, Name: "EFI",
					UUID: espUUID, Flags: []string{"esp"}},
				{Number: 2, Path: p2, StartBytes: 17 * mib, SizeBytes: 46 * mib, Type: rootType, Name: "goldroot",
					UUID: rootPUUID, Grow: true},
			},
		}},
		Filesystems: []Filesystem{
			{Device: p2, Type: "ext4", Mountpoint: "/", Label: "goldroot", UUID: fsUUID, SizeBytes: 46 * mib},
		},
	}
	if vfat {
		esp := Filesystem{Device: p1, Type: "vfat", Label: "GOLDESP", UUID: "1234-ABCD", SizeBytes: 16 * mib}
		if espMounted {
			esp.Mountpoint = "/boot/efi"
		}
		want.Filesystems = append(want.Filesystems, esp)
	}
	ignore := cmpopts.IgnoreFields(Layout{}, "CapturedAt")
	mountOpts := cmpopts.IgnoreFields(Filesystem{}, "Options", "SuperOptions")
	if diff := cmp.Diff(want, got, ignore, mountOpts); diff != "" {
		t.Errorf("Capture(%s) (-want +got):\n%s", mnt, diff)
	}
	for _, f := range got.Filesystems {
		if f.Mountpoint != "" && !strings.Contains(","+f.Options+",", ",rw,") {
			t.Errorf("filesystem %s: options %q, want rw", f.Mountpoint, f.Options)
		}
	}
}

// TestCaptureTmpfsRoot captures a root with no block device.
func TestCaptureTmpfsRoot(t *testing.T) {
	requireTools(t, "mount", "umount")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mnt := t.TempDir()
	sh(t, ctx, "", "mount", "-t", "tmpfs", "-o", "size=1m", "goldtmp", mnt)
	cleanup(t, "umount", mnt)

	got, err := Capture(ctx, mnt)
	if err != nil {
		t.Fatalf("Capture(%s): %v", mnt, err)
	}
	root, err := filepath.EvalSymlinks(mnt)
	if err != nil {
		t.Fatal(err)
	}
	want := &Layout{
		Version:     FormatVersion,
		Root:        root,
		Filesystems: []Filesystem{{Source: "goldtmp", Type: "tmpfs", Mountpoint: "/"}},
		Notes:       []string{"root filesystem is tmpfs (goldtmp) with no block device: no disks recorded"},
	}
	ignore := cmpopts.IgnoreFields(Layout{}, "CapturedAt")
	mountOpts := cmpopts.IgnoreFields(Filesystem{}, "Options", "SuperOptions")
	if diff := cmp.Diff(want, got, ignore, mountOpts); diff != "" {
		t.Errorf("Capture(%s) (-want +got):\n%s", mnt, diff)
	}
}
