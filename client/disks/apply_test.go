package disks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/goldcast/goldcast/client/sysconf"

	"github.com/goldcast/goldcast/internal/mountinfo"
)

// requireRoot skips the test unless it runs as root with every tool.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range append([]string{"losetup", "sfdisk", "partx", "wipefs", "blkid", "mount", "umount"}, tools...) {
		if _, err := lookTool(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// kernelHas reports whether the running kernel can mount fsType now.
func kernelHas(fsType string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fsType {
			return true
		}
	}
	return false
}

// sh runs a tool for the test and fails the test on error.
func sh(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	path, err := lookTool(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDisk attaches a sparse file of size bytes to a loop device, without
// partition scanning (as a disk behaves with no udev), and detaches it
// when the test ends. It returns the device chosen through Select.
func loopDisk(t *testing.T, size int64) Disk {
	t.Helper()
	return attachLoop(t, size)
}

// attachLoop is loopDisk with extra losetup flags.
func attachLoop(t *testing.T, size int64, flags ...string) Disk {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	loop := sh(t, "", "losetup", append(append([]string{"--find", "--show"}, flags...), img)...)
	t.Cleanup(func() {
		// Let the kernel forget the partitions first, so a later
		// user of this loop device does not see them.
		exec.Command("partx", "-d", loop).Run()
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Logf("losetup -d %s: %v: %s", loop, err, out)
		}
	})
	d, err := Select(context.Background(), Rule(loop))
	if err != nil {
		t.Fatalf("Select(%s): %v", loop, err)
	}
	if d.Path != loop || d.SizeBytes != size || !d.Virtual {
		t.Fatalf("Select(%s) = %+v, want path %s, %d bytes, virtual", loop, d, loop, size)
	}
	return d
}

// firstMiB reads the first MiB of a device.
func firstMiB(t *testing.T, dev string) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, MiB)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// blkidTags reads TYPE, UUID, LABEL and PART_ENTRY_NAME (the GPT
// partition name) of a device as blkid -p probes them.
func blkidTags(t *testing.T, dev string) map[string]string {
	t.Helper()
	tags := map[string]string{}
	out := sh(t, "", "blkid", "-p", "-o", "export", dev)
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TYPE", "UUID", "LABEL", "PART_ENTRY_NAME":
			tags[k] = v
		}
	}
	return tags
}

// mountedAt reports whether dir is a mount point.
func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && mountinfo.Unescape(f[4]) == dir {
			return true
		}
	}
	return false
}

// applyT runs Apply and registers the unmount for the end of the test.
func applyT(t *testing.T, plan *Plan, o Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var steps []string
	o.Progress = func(s string) { steps = append(steps, s) }
	res, err := Apply(ctx, plan, o)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Cleanup(func() {
		if err := res.Unmount(context.Background()); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
	if len(steps) == 0 || !strings.HasPrefix(steps[0], "check ") {
		t.Errorf("progress steps %q, want a check first", steps)
	}
	return res
}

// goldenLayout is a captured-like layout of a 10 GiB disk "/dev/sda": an
// ESP, swap and an ext4 root that grows. The ESP has a mount point only
// when the kernel can mount vfat.
func goldenLayout() *disklayout.Layout {
	l := gptLayout()
	if !kernelHas("vfat") {
		l.Filesystems[1].Mountpoint = ""
	}
	return l
}

// TestApplyGPT recreates a GPT layout on a blank 2 GiB loop disk: the
// table, labels and UUIDs are as planned, the root is mounted, and a file
// written there survives unmounting and mounting again.
func TestApplyGPT(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkfs.vfat", "mkswap")
	disk := loopDisk(t, 2<<30)
	l := goldenLayout()
	plan, err := NewPlan(l, []Disk{disk}, PlanOptions{KeepPartitionIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	res := applyT(t, plan, Options{Target: target})

	// The table sfdisk reads back is the plan.
	var dump struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			Partitions []struct {
				Node, Type, UUID, Name string
				Start, Size            int64
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(sh(t, "", "sfdisk", "--json", disk.Path)), &dump); err != nil {
		t.Fatal(err)
	}
	if dump.PartitionTable.Label != "gpt" || dump.PartitionTable.ID != l.Disks[0].ID {
		t.Errorf("table %s id %s, want gpt id %s", dump.PartitionTable.Label, dump.PartitionTable.ID, l.Disks[0].ID)
	}
	type part struct {
		Node, Type, UUID, Name string
		Start, Size            int64
	}
	var got, want []part
	for _, p := range dump.PartitionTable.Partitions {
		got = append(got, part{p.Node, p.Type, p.UUID, p.Name, p.Start, p.Size})
	}
	for i, p := range plan.Disks[0].Partitions {
		want = append(want, part{p.Path, p.Type, l.Disks[0].Partitions[i].UUID, l.Disks[0].Partitions[i].Name, p.Start, p.Size})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sfdisk --json (-want +got):\n%s", diff)
	}
	// The root grows to the end: 2 GiB less the first MiB, the backup
	// GPT's MiB, the ESP and swap.
	if root := plan.Disks[0].Partitions[2]; root.Start+root.Size != s512(2047) {
		t.Errorf("root ends at sector %d, want %d", root.Start+root.Size, s512(2047))
	}

	// blkid finds the captured labels and UUIDs.
	for i, f := range l.Filesystems {
		dev := plan.Disks[0].Partitions[[]int{2, 0, 1}[i]].Path
		tags := blkidTags(t, dev)
		wantTags := map[string]string{"TYPE": f.Type, "UUID": f.UUID, "PART_ENTRY_NAME": l.Disks[0].Partitions[[]int{2, 0, 1}[i]].Name}
		if f.Label != "" {
			wantTags["LABEL"] = f.Label
		}
		if diff := cmp.Diff(wantTags, tags); diff != "" {
			t.Errorf("blkid %s (-want +got):\n%s", dev, diff)
		}
	}

	// Mounted, parents first; fstab by UUID.
	wantMounts := []Mount{{Device: disk.Path + "p3", Type: "ext4", Mountpoint: "/", Dir: target}}
	if kernelHas("vfat") {
		wantMounts = append(wantMounts, Mount{Device: disk.Path + "p1", Type: "vfat", Mountpoint: "/boot/efi", Dir: filepath.Join(target, "boot/efi")})
	}
	if diff := cmp.Diff(wantMounts, res.Mounted); diff != "" {
		t.Errorf("Mounted (-want +got):\n%s", diff)
	}
	wantFstab := []FstabEntry{{Spec: "UUID=" + l.Filesystems[0].UUID, File: "/", Type: "ext4", Options: "rw,relatime", Pass: 1}}
	if kernelHas("vfat") {
		wantFstab = append(wantFstab, FstabEntry{Spec: "UUID=ABCD-1234", File: "/boot/efi", Type: "vfat", Options: "rw,relatime", Pass: 2})
	}
	wantFstab = append(wantFstab, FstabEntry{Spec: "UUID=" + l.Filesystems[2].UUID, File: "none", Type: "swap", Options: "sw"})
	if diff := cmp.Diff(wantFstab, res.Fstab); diff != "" {
		t.Errorf("Fstab (-want +got):\n%s", diff)
	}
	if res.Layout.Filesystems[0].UUID != l.Filesystems[0].UUID || res.Layout.Filesystems[0].Device != disk.Path+"p3" {
		t.Errorf("result layout root = %+v", res.Layout.Filesystems[0])
	}

	// A file written survives unmount and mount.
	if !mountedAt(t, target) {
		t.Fatalf("%s is not mounted", target)
	}
	if err := os.WriteFile(filepath.Join(target, "hello"), []byte("goldcast\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := res.Unmount(context.Background()); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if mountedAt(t, target) {
		t.Fatalf("%s still mounted after Unmount", target)
	}
	if err := res.Unmount(context.Background()); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	sh(t, "", "mount", disk.Path+"p3", target)
	t.Cleanup(func() { exec.Command("umount", target).Run() })
	if b, err := os.ReadFile(filepath.Join(target, "hello")); err != nil || string(b) != "goldcast\n" {
		t.Errorf("after remount: %q, %v", b, err)
	}
}

// TestApplyDOS makes a dos table with a bootable partition and logical
// partitions in an extended one, with random partition IDs and new
// filesystem UUIDs.
func TestApplyDOS(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkfs.ext2", "mkswap")
	disk := loopDisk(t, 3<<30)
	l := dosLayout()
	plan, err := NewPlan(l, []Disk{disk}, PlanOptions{NewFilesystemUUIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	res := applyT(t, plan, Options{Target: target})
	out := sh(t, "", "sfdisk", "--dump", disk.Path)
	for _, want := range []string{
		disk.Path + "p1 : start=        2048, size=     1048576, type=83, bootable",
		disk.Path + "p2 : start=     1050624, size=     5240832, type=5",
		disk.Path + "p5 : start=     1052672, size=     2097152, type=82",
		disk.Path + "p6 : start=     3151872, size=     3139584, type=83",
	} {
		if !strings.Contains(out+"\n", want+"\n") {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "label-id: 0x8c3e51a2") {
		t.Errorf("the captured disk signature was kept:\n%s", out)
	}
	for _, f := range res.Layout.Filesystems {
		tags := blkidTags(t, f.Device)
		if tags["TYPE"] != f.Type || tags["UUID"] != f.UUID || tags["UUID"] == "" {
			t.Errorf("%s: blkid %v, result %+v", f.Device, tags, f)
		}
		for _, c := range l.Filesystems {
			if strings.EqualFold(c.UUID, f.UUID) {
				t.Errorf("%s kept the captured UUID %s", f.Device, c.UUID)
			}
		}
	}
	if got := blkidTags(t, disk.Path+"p1")["LABEL"]; got != "boot" {
		t.Errorf("/boot label %q, want boot", got)
	}
	var mps []string
	for _, m := range res.Mounted {
		mps = append(mps, m.Mountpoint)
	}
	if diff := cmp.Diff([]string{"/", "/boot"}, mps); diff != "" {
		t.Errorf("mounted (-want +got):\n%s", diff)
	}

	// Mounted, the disk is refused; unmounted, it is refused for its
	// data; with Wipe, a GPT layout replaces the extended and logical
	// partitions.
	gpt, err := NewPlan(goldenLayout(), []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), gpt, Options{Wipe: true}); !errors.Is(err, ErrInUse) {
		t.Errorf("Apply on the mounted disk: %v, want ErrInUse", err)
	}
	if err := res.Unmount(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), gpt, Options{}); !errors.Is(err, ErrHasData) {
		t.Errorf("Apply without Wipe: %v, want ErrHasData", err)
	}
	applyT(t, gpt, Options{Wipe: true})
	parts, err := sysPartitions(disk.Name)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{disk.Name + "p1", disk.Name + "p2", disk.Name + "p3"}, parts); diff != "" {
		t.Errorf("kernel partitions after the GPT layout (-want +got):\n%s", diff)
	}
	if got := blkidTags(t, disk.Path+"p3"); got["TYPE"] != "ext4" || got["UUID"] != goldenLayout().Filesystems[0].UUID {
		t.Errorf("new root: blkid %v", got)
	}
}

// TestApplyXFS makes an xfs root with its captured UUID (when xfsprogs is
// installed).
func TestApplyXFS(t *testing.T) {
	requireRoot(t, "mkfs.xfs")
	disk := loopDisk(t, 2<<30)
	l := biosGrubLayout()
	plan, err := NewPlan(l, []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := applyT(t, plan, Options{Target: t.TempDir()})
	tags := blkidTags(t, disk.Path+"p2")
	if tags["TYPE"] != "xfs" || tags["UUID"] != l.Filesystems[0].UUID {
		t.Errorf("blkid %v, want xfs with UUID %s", tags, l.Filesystems[0].UUID)
	}
	if len(res.Mounted) != 1 {
		t.Errorf("mounted %v", res.Mounted)
	}
}

// TestApplyRefuses checks that a disk in use, or holding data without
// Wipe, is refused and left as it was.
func TestApplyRefuses(t *testing.T) {
	requireRoot(t, "mkfs.ext4")
	ctx := context.Background()

	t.Run("existing filesystem", func(t *testing.T) {
		disk := loopDisk(t, 2<<30)
		// A filesystem on the whole disk, no partition table.
		sh(t, "", "mkfs.ext4", "-q", "-F", "-L", "precious", disk.Path)
		before := firstMiB(t, disk.Path)
		plan, err := NewPlan(gptLayout(), []Disk{disk}, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(ctx, plan, Options{})
		if !errors.Is(err, ErrHasData) || !strings.Contains(err.Error(), "ext4 on "+disk.Path) {
			t.Errorf("Apply on a disk with ext4: %v, want ErrHasData naming ext4", err)
		}
		if !bytes.Equal(before, firstMiB(t, disk.Path)) {
			t.Error("the refused disk's first MiB changed")
		}
		if got := blkidTags(t, disk.Path)["LABEL"]; got != "precious" {
			t.Errorf("label after refusal %q", got)
		}
		// With Wipe it goes ahead.
		applyT(t, plan, Options{Wipe: true})
		if tags := blkidTags(t, disk.Path+"p3"); tags["TYPE"] != "ext4" {
			t.Errorf("after wipe: %v", tags)
		}
	})

	t.Run("existing partition table", func(t *testing.T) {
		disk := loopDisk(t, 2<<30)
		sh(t, "label: dos\nstart=2048, size=4096, type=83\n", "sfdisk", "--quiet", disk.Path)
		before := firstMiB(t, disk.Path)
		plan, err := NewPlan(gptLayout(), []Disk{disk}, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(ctx, plan, Options{})
		if !errors.Is(err, ErrHasData) || !strings.Contains(err.Error(), "dos on "+disk.Path) {
			t.Errorf("Apply on a partitioned disk: %v, want ErrHasData naming dos", err)
		}
		if !bytes.Equal(before, firstMiB(t, disk.Path)) {
			t.Error("the refused disk's first MiB changed")
		}
		// With Wipe, the kernel's old partition gives way to the three
		// new ones.
		applyT(t, plan, Options{Wipe: true})
		parts, err := sysPartitions(disk.Name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{disk.Name + "p1", disk.Name + "p2", disk.Name + "p3"}, parts); diff != "" {
			t.Errorf("kernel partitions after wipe (-want +got):\n%s", diff)
		}
		if tags := blkidTags(t, disk.Path+"p2"); tags["TYPE"] != "swap" {
			t.Errorf("p2 after wipe: %v", tags)
		}
	})

	t.Run("mounted partition", func(t *testing.T) {
		disk := loopDisk(t, 2<<30)
		sh(t, "label: gpt\nstart=2048, size=204800, type="+gptLinux+"\n", "sfdisk", "--quiet", disk.Path)
		sh(t, "", "partx", "-u", disk.Path)
		part := disk.Path + "p1"
		if err := ensureNode(ctx, part, filepath.Join("/sys/block", disk.Name, disk.Name+"p1", "dev")); err != nil {
			t.Fatal(err)
		}
		sh(t, "", "mkfs.ext4", "-q", "-F", part)
		mnt := t.TempDir()
		sh(t, "", "mount", part, mnt)
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
		before := firstMiB(t, disk.Path)
		partBefore := firstMiB(t, part)
		plan, err := NewPlan(gptLayout(), []Disk{disk}, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(ctx, plan, Options{Wipe: true})
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), disk.Name+"p1 is mounted on "+mnt) {
			t.Errorf("Apply on a mounted disk: %v, want ErrInUse naming the mount", err)
		}
		if !bytes.Equal(before, firstMiB(t, disk.Path)) || !bytes.Equal(partBefore, firstMiB(t, part)) {
			t.Error("the refused disk changed")
		}
	})

	t.Run("swap", func(t *testing.T) {
		requireRoot(t, "mkswap", "swapon", "swapoff")
		disk := loopDisk(t, 2<<30)
		sh(t, "", "mkswap", disk.Path)
		if out, err := exec.Command("swapon", disk.Path).CombinedOutput(); err != nil {
			t.Skipf("swapon does not work here: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("swapoff", disk.Path).Run() })
		before := firstMiB(t, disk.Path)
		plan, err := NewPlan(gptLayout(), []Disk{disk}, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Apply(ctx, plan, Options{Wipe: true})
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "used for swap") {
			t.Errorf("Apply on a swap disk: %v, want ErrInUse", err)
		}
		if !bytes.Equal(before, firstMiB(t, disk.Path)) {
			t.Error("the refused disk changed")
		}
	})

	t.Run("plan for another size", func(t *testing.T) {
		disk := loopDisk(t, 2<<30)
		other := disk
		other.SizeBytes = 4 << 30
		plan, err := NewPlan(gptLayout(), []Disk{other}, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(ctx, plan, Options{Wipe: true}); err == nil || !strings.Contains(err.Error(), "the plan was made for") {
			t.Errorf("Apply with a plan for a bigger disk: %v", err)
		}
	})
}

// TestCaptureApplyRoundTrip builds a system on one loop disk, captures
// it with disklayout.Capture, applies the capture to a bigger loop disk,
// captures that, and compares the two captures.
func TestCaptureApplyRoundTrip(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkswap", "lsblk")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The golden disk: 1 GiB, bios_grub, /boot ext4, ext4 root to the end.
	golden := loopDisk(t, 1<<30)
	sh(t, "label: gpt\n"+
		"start=2048, size=2048, type="+gptBIOSBoot+", name=\"grub\"\n"+
		"start=4096, size=262144, type="+gptLinux+", name=\"boot\", attrs=\"LegacyBIOSBootable\"\n"+
		"start=266240, size=131072, type="+gptSwap+", name=\"swap\"\n"+
		"start=397312, type="+gptLinux+", name=\"root\"\n",
		"sfdisk", "--quiet", golden.Path)
	sh(t, "", "partx", "-u", golden.Path)
	for n := 1; n <= 4; n++ {
		p := partitionPath(golden.Path, n)
		if err := ensureNode(ctx, p, filepath.Join("/sys/block", golden.Name, filepath.Base(p), "dev")); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, "", "mkfs.ext4", "-q", "-F", "-L", "boot", "-U", "aaaaaaaa-1111-4222-8333-444444444444", golden.Path+"p2")
	sh(t, "", "mkswap", "-L", "swap", "-U", "bbbbbbbb-1111-4222-8333-444444444444", golden.Path+"p3")
	sh(t, "", "mkfs.ext4", "-q", "-F", "-L", "root", "-U", "cccccccc-1111-4222-8333-444444444444", golden.Path+"p4")
	gmnt := t.TempDir()
	sh(t, "", "mount", golden.Path+"p4", gmnt)
	t.Cleanup(func() { exec.Command("umount", "-R", gmnt).Run() })
	if err := os.MkdirAll(filepath.Join(gmnt, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "", "mount", golden.Path+"p2", filepath.Join(gmnt, "boot"))

	before, err := disklayout.Capture(ctx, gmnt)
	if err != nil {
		t.Fatalf("capture golden: %v", err)
	}

	for _, sizeMiB := range []int64{3072, 512} {
		t.Run(strconv.FormatInt(sizeMiB, 10)+"MiB", func(t *testing.T) {
			roundTrip(ctx, t, golden, before, sizeMiB)
		})
	}
}

// roundTrip applies the capture before of disk golden to a new loop disk
// of sizeMiB, captures that and compares.
func roundTrip(ctx context.Context, t *testing.T, golden Disk, before *disklayout.Layout, sizeMiB int64) {
	target := loopDisk(t, sizeMiB*MiB)
	plan, err := NewPlan(before, []Disk{target}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmnt := t.TempDir()
	res := applyT(t, plan, Options{Target: tmnt})
	after, err := disklayout.Capture(ctx, tmnt)
	if err != nil {
		t.Fatalf("capture target: %v", err)
	}

	// Expected: the golden capture moved to the target's names, with the
	// root reaching the end of the target (less the backup GPT's MiB), new
	// partition GUIDs and disk GUID, same filesystem UUIDs and labels.
	want := *before
	want.Root = after.Root
	want.Host = after.Host
	want.CapturedAt = after.CapturedAt
	want.Notes = after.Notes
	d := before.Disks[0]
	d.Name, d.Path, d.SizeBytes, d.ID = target.Name, target.Path, target.SizeBytes, after.Disks[0].ID
	d.Partitions = append([]disklayout.Partition(nil), d.Partitions...)
	for i := range d.Partitions {
		p := &d.Partitions[i]
		p.Path = partitionPath(target.Path, p.Number)
		p.UUID = after.Disks[0].Partitions[i].UUID
	}
	d.Partitions[3].SizeBytes = (sizeMiB-1)*MiB - d.Partitions[3].StartBytes
	want.Disks = []disklayout.Disk{d}
	want.Filesystems = append([]disklayout.Filesystem(nil), before.Filesystems...)
	for i := range want.Filesystems {
		f := &want.Filesystems[i]
		f.Device = strings.Replace(f.Device, golden.Path, target.Path, 1)
		if f.Device == target.Path+"p4" {
			f.SizeBytes = d.Partitions[3].SizeBytes
		}
	}
	ignoreMountOpts := cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return strings.HasSuffix(s, "Filesystems.Options") || strings.HasSuffix(s, "Filesystems.SuperOptions")
	}, cmp.Ignore())
	if diff := cmp.Diff(&want, after, ignoreMountOpts); diff != "" {
		t.Errorf("capture after apply (-want +got):\n%s", diff)
	}
	if after.Disks[0].ID == before.Disks[0].ID {
		t.Errorf("the disk GUID %s was copied; want a new one", after.Disks[0].ID)
	}
	for i, p := range after.Disks[0].Partitions {
		if p.UUID == "" || p.UUID == before.Disks[0].Partitions[i].UUID {
			t.Errorf("partition %d GUID %q, want a new one", p.Number, p.UUID)
		}
	}
	// The result's layout agrees with the capture on what fstab needs.
	for _, f := range res.Layout.Filesystems {
		found := false
		for _, g := range after.Filesystems {
			found = found || g.Device == f.Device && g.UUID == f.UUID && g.Type == f.Type && g.Mountpoint == f.Mountpoint
		}
		if !found {
			t.Errorf("result layout filesystem %+v not in the capture", f)
		}
	}
}

// TestApplyMissingTool checks that a plan needing a tool that is not
// installed fails naming it, before any disk is touched.
func TestApplyMissingTool(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		tool   string
		layout func(disk string) *disklayout.Layout
		want   string
	}{
		{"mdadm", func(string) *disklayout.Layout { return raidLayout() }, "mdadm (for RAID array /dev/md0)"},
		{"pvcreate", func(string) *disklayout.Layout {
			l := raidLayout()
			l.RAID = nil
			l.Disks = l.Disks[:1]
			l.Disks[0].Partitions[0].Type, l.Disks[0].Partitions[0].Flags = gptLVM, []string{"lvm"}
			l.LVM = &disklayout.LVM{
				VolumeGroups:   []disklayout.VolumeGroup{{Name: "vg0", SizeBytes: 4093 * MiB, PVs: []disklayout.PhysicalVolume{{Device: "/dev/sda1"}}}},
				LogicalVolumes: []disklayout.LogicalVolume{{Name: "root", VG: "vg0", SizeBytes: 4093 * MiB, Path: "/dev/vg0/root"}},
			}
			l.Filesystems[0].Device = "/dev/vg0/root"
			return l
		}, "pvcreate (for LVM volume group vg0)"},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			if _, err := lookTool(tt.tool); err == nil {
				t.Skipf("%s is installed", tt.tool)
			}
			disk := loopDisk(t, 2<<30)
			plan, err := NewPlan(tt.layout(disk.Path), []Disk{disk}, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Apply(context.Background(), plan, Options{Target: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), "tools the plan needs are not installed: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Apply: %v, want an error naming %s", err, tt.want)
			}
			if !bytes.Equal(firstMiB(t, disk.Path), make([]byte, MiB)) {
				t.Error("the disk was written to")
			}
		})
	}
}

// TestApplyHeldByDeviceMapper checks that a disk whose partition backs a
// device-mapper device is refused, even with Wipe.
func TestApplyHeldByDeviceMapper(t *testing.T) {
	requireRoot(t, "dmsetup", "mkfs.ext4")
	ctx := context.Background()
	disk := loopDisk(t, 2<<30)
	sh(t, "label: gpt\nstart=2048, size=204800, type="+gptLinux+"\n", "sfdisk", "--quiet", disk.Path)
	sh(t, "", "partx", "-u", disk.Path)
	part := disk.Path + "p1"
	if err := ensureNode(ctx, part, filepath.Join("/sys/block", disk.Name, disk.Name+"p1", "dev")); err != nil {
		t.Fatal(err)
	}
	name := "goldcast-test-" + disk.Name
	cmd := exec.Command("dmsetup", "create", "--noudevsync", name, "--table", "0 204800 linear "+part+" 0")
	cmd.Env = append(os.Environ(), "DM_DISABLE_UDEV=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("device-mapper does not work here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		cmd := exec.Command("dmsetup", "remove", "--noudevsync", name)
		cmd.Env = append(os.Environ(), "DM_DISABLE_UDEV=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("dmsetup remove %s: %v: %s", name, err, out)
		}
	})
	before := firstMiB(t, disk.Path)
	plan, err := NewPlan(gptLayout(), []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Apply(ctx, plan, Options{Wipe: true})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), disk.Name+"p1 is held by dm-") {
		t.Errorf("Apply on a disk under device-mapper: %v, want ErrInUse naming the holder", err)
	}
	if !bytes.Equal(before, firstMiB(t, disk.Path)) {
		t.Error("the refused disk changed")
	}
}

// TestApplyWholeDisk makes a filesystem on a disk with no partition
// table.
func TestApplyWholeDisk(t *testing.T) {
	requireRoot(t, "mkfs.ext4")
	disk := loopDisk(t, 1<<30)
	l := &disklayout.Layout{
		Disks:       []disklayout.Disk{{Name: "vdb", Path: "/dev/vdb", SizeBytes: 4 << 30}},
		Filesystems: []disklayout.Filesystem{{Device: "/dev/vdb", Type: "ext4", Mountpoint: "/", Label: "whole", UUID: "d1d2d3d4-1111-4222-8333-444444444444"}},
	}
	plan, err := NewPlan(l, []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The disk had a partition table the kernel knows.
	sh(t, "label: gpt\nstart=2048, size=4096\n", "sfdisk", "--quiet", disk.Path)
	sh(t, "", "partx", "-a", disk.Path)
	target := t.TempDir()
	res := applyT(t, plan, Options{Target: target, Wipe: true})
	if parts, err := sysPartitions(disk.Name); err != nil || len(parts) != 0 {
		t.Errorf("kernel partitions after a whole-disk filesystem: %q, %v", parts, err)
	}
	want := map[string]string{"TYPE": "ext4", "LABEL": "whole", "UUID": "d1d2d3d4-1111-4222-8333-444444444444"}
	if diff := cmp.Diff(want, blkidTags(t, disk.Path)); diff != "" {
		t.Errorf("blkid (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Mount{{Device: disk.Path, Type: "ext4", Mountpoint: "/", Dir: target}}, res.Mounted); diff != "" {
		t.Errorf("Mounted (-want +got):\n%s", diff)
	}
}

// TestApplyTwoDisks lays a two-disk layout on two loop disks: the disk
// holding "/" goes to the first target although the layout lists it
// second.
func TestApplyTwoDisks(t *testing.T) {
	requireRoot(t, "mkfs.ext4")
	first, second := loopDisk(t, 1<<30), loopDisk(t, 2<<30)
	l := &disklayout.Layout{
		Disks: []disklayout.Disk{
			{Name: "sda", Path: "/dev/sda", SizeBytes: 8 << 30, Table: "gpt", Partitions: []disklayout.Partition{
				{Number: 1, Path: "/dev/sda1", StartBytes: MiB, SizeBytes: 8190 * MiB, Type: gptLinux, Name: "srv", Grow: true}}},
			{Name: "sdb", Path: "/dev/sdb", SizeBytes: 4 << 30, Table: "gpt", Partitions: []disklayout.Partition{
				{Number: 1, Path: "/dev/sdb1", StartBytes: MiB, SizeBytes: 4094 * MiB, Type: gptLinux, Name: "root", Grow: true}}},
		},
		Filesystems: []disklayout.Filesystem{
			{Device: "/dev/sdb1", Type: "ext4", Mountpoint: "/", UUID: "e1e2e3e4-1111-4222-8333-444444444444"},
			{Device: "/dev/sda1", Type: "ext4", Mountpoint: "/srv/data", UUID: "f1f2f3f4-1111-4222-8333-444444444444"},
		},
	}
	plan, err := NewPlan(l, []Disk{first, second}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	res := applyT(t, plan, Options{Target: target})
	wantMounts := []Mount{
		{Device: first.Path + "p1", Type: "ext4", Mountpoint: "/", Dir: target},
		{Device: second.Path + "p1", Type: "ext4", Mountpoint: "/srv/data", Dir: filepath.Join(target, "srv/data")},
	}
	if diff := cmp.Diff(wantMounts, res.Mounted); diff != "" {
		t.Errorf("Mounted (-want +got):\n%s", diff)
	}
	if got := blkidTags(t, second.Path+"p1"); got["UUID"] != "f1f2f3f4-1111-4222-8333-444444444444" || got["PART_ENTRY_NAME"] != "srv" {
		t.Errorf("second disk: blkid %v", got)
	}
	// The mount point was made inside the mounted root.
	if _, err := os.Stat(filepath.Join(target, "srv", "data", "lost+found")); err != nil {
		t.Errorf("/srv/data is not the second disk's filesystem: %v", err)
	}
}

// TestDiskUses feeds diskUses a sysfs tree and mount and swap tables in
// which a disk's partitions are held by md and device-mapper, mounted
// (by device number, and by name for btrfs, whose device number is
// anonymous) and swapped on.
func TestDiskUses(t *testing.T) {
	sys := t.TempDir()
	write := func(rel, v string) {
		p := filepath.Join(sys, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(rel string) {
		if err := os.MkdirAll(filepath.Join(sys, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("block/sdx/dev", "8:96")
	mkdir("block/sdx/holders")
	for i, h := range []string{"", "md127", "dm-3", "", "", ""} {
		p := "block/sdx/sdx" + strconv.Itoa(i+1)
		write(p+"/dev", "8:"+strconv.Itoa(97+i))
		write(p+"/partition", strconv.Itoa(i+1))
		mkdir(p + "/holders")
		if h != "" {
			mkdir(p + "/holders/" + h)
		}
	}
	mkdir("block/sdx/queue") // not a partition
	mountinfo := []byte(`22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:97 / /mnt/with\040space rw - ext4 /dev/sdx1 rw
41 22 0:55 /@ /srv rw - btrfs /dev/sdx4 rw,subvol=/@
`)
	swaps := []byte("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdx5                               partition\t1048572\t\t0\t\t-2\n")
	got, err := diskUses(sys, "sdx", mountinfo, swaps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"sdx2 is held by md127",
		"sdx3 is held by dm-3",
		"sdx1 is mounted on /mnt/with space",
		"sdx4 is mounted on /srv",
		"sdx5 is used for swap",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diskUses (-want +got):\n%s", diff)
	}
	// An idle disk has no uses.
	for _, h := range []string{"block/sdx/sdx2/holders/md127", "block/sdx/sdx3/holders/dm-3"} {
		if err := os.Remove(filepath.Join(sys, h)); err != nil {
			t.Fatal(err)
		}
	}
	got, err = diskUses(sys, "sdx", []byte("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), []byte("Filename Type Size Used Priority\n"))
	if err != nil || len(got) != 0 {
		t.Errorf("diskUses of an idle disk = %q, %v", got, err)
	}
}

// TestSelectDevicePath selects a real disk through a symbolic link (as
// /dev/disk/by-id links are), and refuses a partition.
func TestSelectDevicePath(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	disk := loopDisk(t, 1<<30)
	link := filepath.Join(t.TempDir(), "by-id-link")
	if err := os.Symlink(disk.Path, link); err != nil {
		t.Fatal(err)
	}
	got, err := Select(ctx, Rule(link))
	if err != nil || got.Name != disk.Name {
		t.Errorf("Select(%s) = %s, %v; want %s", link, got.Name, err, disk.Name)
	}
	sh(t, "label: gpt\nstart=2048, size=4096, type="+gptLinux+"\n", "sfdisk", "--quiet", disk.Path)
	sh(t, "", "partx", "-u", disk.Path)
	part := disk.Path + "p1"
	if err := ensureNode(ctx, part, filepath.Join("/sys/block", disk.Name, disk.Name+"p1", "dev")); err != nil {
		t.Fatal(err)
	}
	_, err = Select(ctx, Rule(part))
	want := "select disk \"" + part + "\": " + disk.Name + "p1 is a partition of " + disk.Name + ", not a whole disk"
	if err == nil || err.Error() != want {
		t.Errorf("Select(%s): %v, want %q", part, err, want)
	}
	_, err = Select(ctx, "/dev/disk/by-id/goldcast-no-such-disk")
	if err == nil || !strings.Contains(err.Error(), "no such device, and no disk has that by-id or by-path name") {
		t.Errorf("Select of a missing by-id name: %v", err)
	}
}

// TestCaptureApplyRoundTripDOS captures a dos disk with logical
// partitions, applies the capture to a bigger disk, and captures again.
func TestCaptureApplyRoundTripDOS(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkswap", "lsblk")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// 1 GiB: /boot 128 MiB (bootable), extended from 129 MiB to the end
	// holding swap (64 MiB at 130 MiB) and the root (from 195 MiB).
	golden := loopDisk(t, 1<<30)
	sh(t, "label: dos\nlabel-id: 0x1234abcd\n"+
		"start=2048, size=262144, type=83, bootable\n"+
		"start=264192, type=5\n"+
		"start=266240, size=131072, type=82\n"+
		"start=399360, type=83\n",
		"sfdisk", "--quiet", golden.Path)
	sh(t, "", "partx", "-a", golden.Path)
	for _, n := range []int{1, 2, 5, 6} {
		p := partitionPath(golden.Path, n)
		if err := ensureNode(ctx, p, filepath.Join("/sys/block", golden.Name, filepath.Base(p), "dev")); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, "", "mkfs.ext4", "-q", "-F", "-L", "boot", "-U", "aaaaaaaa-2222-4222-8333-444444444444", golden.Path+"p1")
	sh(t, "", "mkswap", "-U", "bbbbbbbb-2222-4222-8333-444444444444", golden.Path+"p5")
	sh(t, "", "mkfs.ext4", "-q", "-F", "-L", "root", "-U", "cccccccc-2222-4222-8333-444444444444", golden.Path+"p6")
	gmnt := t.TempDir()
	sh(t, "", "mount", golden.Path+"p6", gmnt)
	t.Cleanup(func() { exec.Command("umount", "-R", gmnt).Run() })
	if err := os.MkdirAll(filepath.Join(gmnt, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "", "mount", golden.Path+"p1", filepath.Join(gmnt, "boot"))
	before, err := disklayout.Capture(ctx, gmnt)
	if err != nil {
		t.Fatalf("capture golden: %v", err)
	}

	target := loopDisk(t, 3<<30)
	plan, err := NewPlan(before, []Disk{target}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmnt := t.TempDir()
	applyT(t, plan, Options{Target: tmnt})
	after, err := disklayout.Capture(ctx, tmnt)
	if err != nil {
		t.Fatalf("capture target: %v", err)
	}

	// On 3 GiB the extended partition and the root reach its end; the
	// other sizes and all starts stay.
	want := *before
	want.Root, want.Host, want.CapturedAt, want.Notes = after.Root, after.Host, after.CapturedAt, after.Notes
	d := before.Disks[0]
	d.Name, d.Path, d.SizeBytes, d.ID = target.Name, target.Path, target.SizeBytes, after.Disks[0].ID
	d.Partitions = append([]disklayout.Partition(nil), d.Partitions...)
	for i := range d.Partitions {
		p := &d.Partitions[i]
		p.Path = partitionPath(target.Path, p.Number)
		p.UUID = strings.TrimPrefix(d.ID, "0x") + p.UUID[8:]
	}
	d.Partitions[1].SizeBytes = (3072 - 129) * MiB
	d.Partitions[3].SizeBytes = (3072 - 195) * MiB
	want.Disks = []disklayout.Disk{d}
	want.Filesystems = append([]disklayout.Filesystem(nil), before.Filesystems...)
	for i := range want.Filesystems {
		f := &want.Filesystems[i]
		f.Device = strings.Replace(f.Device, golden.Path, target.Path, 1)
		if f.Device == target.Path+"p6" {
			f.SizeBytes = d.Partitions[3].SizeBytes
		}
	}
	ignoreMountOpts := cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return strings.HasSuffix(s, "Filesystems.Options") || strings.HasSuffix(s, "Filesystems.SuperOptions")
	}, cmp.Ignore())
	if diff := cmp.Diff(&want, after, ignoreMountOpts); diff != "" {
		t.Errorf("capture after apply (-want +got):\n%s", diff)
	}
	if after.Disks[0].ID == "0x1234abcd" {
		t.Error("the disk signature was copied; want a new one")
	}
	// The golden capture looked as the test built it.
	var shape []string
	for _, p := range before.Disks[0].Partitions {
		shape = append(shape, strings.Join([]string{strconv.Itoa(p.Number), p.Type, strconv.FormatInt(p.StartBytes/MiB, 10), strconv.FormatBool(p.Grow), strings.Join(p.Flags, "+")}, ":"))
	}
	if diff := cmp.Diff([]string{"1:83:1:false:boot", "2:5:129:true:", "5:82:130:false:swap", "6:83:195:true:"}, shape); diff != "" {
		t.Errorf("golden capture (-want +got):\n%s", diff)
	}
}

// TestApplyPartscan applies a layout twice to a loop device with partition
// scanning, where sfdisk's own re-read works as on a real disk, the
// second time over the first's partitions.
func TestApplyPartscan(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkfs.vfat", "mkswap")
	disk := attachLoop(t, 2<<30, "--partscan")
	plan, err := NewPlan(goldenLayout(), []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := applyT(t, plan, Options{Target: t.TempDir()})
	if err := res.Unmount(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := biosGrubLayout()
	l.Filesystems[0].Type = "ext4"
	plan2, err := NewPlan(l, []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	applyT(t, plan2, Options{Wipe: true, Target: t.TempDir()})
	parts, err := sysPartitions(disk.Name)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{disk.Name + "p1", disk.Name + "p2"}, parts); diff != "" {
		t.Errorf("kernel partitions (-want +got):\n%s", diff)
	}
	if got := blkidTags(t, disk.Path+"p2"); got["TYPE"] != "ext4" || got["UUID"] != l.Filesystems[0].UUID {
		t.Errorf("root: blkid %v", got)
	}
	if got := blkidTags(t, disk.Path+"p1"); got["TYPE"] != "" {
		t.Errorf("bios_grub partition holds %q, want nothing (the old ESP wiped)", got["TYPE"])
	}
}

// TestApplyWipesStaleSignatures checks that a new partition without a
// filesystem shows none, even when an old filesystem lay at its start in
// a partition the kernel no longer knew (so only the new partition's
// wipe can clear it).
func TestApplyWipesStaleSignatures(t *testing.T) {
	requireRoot(t, "mkfs.ext4")
	ctx := context.Background()
	disk := loopDisk(t, 1<<30)
	sh(t, "label: gpt\nstart=2048, size=2048\nstart=4096, size=204800\n", "sfdisk", "--quiet", disk.Path)
	sh(t, "", "partx", "-a", disk.Path)
	if err := ensureNode(ctx, disk.Path+"p2", filepath.Join("/sys/block", disk.Name, disk.Name+"p2", "dev")); err != nil {
		t.Fatal(err)
	}
	sh(t, "", "mkfs.ext4", "-q", "-F", disk.Path+"p2")
	sh(t, "", "partx", "-d", disk.Path)

	ov := &Override{Disks: []DiskOverride{{Partitions: []PartitionOverride{
		{Size: "1"},
		{Size: "100", Flags: []string{"raid"}},
		{Size: "grow", FS: "ext4", Mountpoint: "/"},
	}}}}
	plan, err := NewPlan(nil, []Disk{disk}, PlanOptions{Override: ov})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Disks[0].Partitions[1].Start; got != 4096 {
		t.Fatalf("partition 2 starts at %d, want 4096 (where the old ext4 is)", got)
	}
	applyT(t, plan, Options{Wipe: true})
	if got := blkidTags(t, disk.Path+"p2"); got["TYPE"] != "" {
		t.Errorf("new partition 2 holds %q, want nothing", got["TYPE"])
	}
}

// TestApplyMountFailure checks that when a filesystem cannot be mounted
// (here vfat, on a kernel without it) Apply fails naming the cause and
// unmounts what it had mounted.
func TestApplyMountFailure(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkfs.vfat", "mkswap")
	if kernelHas("vfat") {
		t.Skip("the kernel mounts vfat; this test needs one that cannot")
	}
	if _, err := os.Stat("/lib/modules"); err == nil {
		t.Skip("the kernel may load a vfat module")
	}
	disk := loopDisk(t, 2<<30)
	plan, err := NewPlan(gptLayout(), []Disk{disk}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	res, err := Apply(context.Background(), plan, Options{Target: target})
	if err == nil {
		res.Unmount(context.Background())
		t.Fatal("Apply mounted vfat on a kernel without it")
	}
	want := "mount " + disk.Path + "p1 (vfat) on " + filepath.Join(target, "boot/efi") + ": no such device (the kernel has no vfat driver)"
	if err.Error() != want {
		t.Errorf("Apply: %v, want %q", err, want)
	}
	if mountedAt(t, target) {
		exec.Command("umount", target).Run()
		t.Error("the root stayed mounted after the failure")
	}
}

// TestResultLayoutForSysconf checks that the layout Apply returns is what
// sysconf needs: its /etc/fstab from Result.Layout has the lines of
// Result.Fstab, and its check that the mounted root has the layout's
// root UUID passes.
func TestResultLayoutForSysconf(t *testing.T) {
	requireRoot(t, "mkfs.ext4", "mkfs.vfat", "mkswap")
	disk := loopDisk(t, 2<<30)
	plan, err := NewPlan(goldenLayout(), []Disk{disk}, PlanOptions{NewFilesystemUUIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	res := applyT(t, plan, Options{Target: target})
	if err := os.MkdirAll(filepath.Join(target, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = sysconf.Configure(context.Background(), sysconf.Options{
		Root: target, Layout: res.Layout,
		NoBootloader: true, NoNetwork: true, NoHostname: true, NoMachineID: true, NoSSHKeys: true,
	})
	if err != nil {
		t.Fatalf("sysconf.Configure: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(target, "etc", "fstab"))
	if err != nil {
		t.Fatal(err)
	}
	var got []FstabEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 || strings.HasPrefix(f[0], "#") {
			continue
		}
		pass, _ := strconv.Atoi(f[5])
		got = append(got, FstabEntry{Spec: f[0], File: f[1], Type: f[2], Options: f[3], Pass: pass})
	}
	if diff := cmp.Diff(res.Fstab, got); diff != "" {
		t.Errorf("sysconf's fstab (-Result.Fstab +fstab):\n%s", diff)
	}
	if len(got) < 2 || !strings.HasPrefix(got[0].Spec, "UUID=") {
		t.Errorf("fstab %v, want the root and swap by UUID", got)
	}
}
