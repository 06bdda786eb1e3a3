package disks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/client/disklayout"

	"github.com/goldcast/goldcast/internal/mountinfo"
)

// Options tune Apply.
type Options struct {
	// Wipe lets Apply erase target disks that hold a partition table or
	// a filesystem signature. Without it such a disk is refused untouched.
	// A disk that is in use (mounted, swapped on, or held by RAID or
	// device-mapper) is refused either way.
	Wipe bool
	// Target is the directory the new filesystems are mounted under, in
	// mount-point order (parents first); empty mounts nothing.
	Target string
	// Progress, when set, is told of each step as it starts ("wipe
	// /dev/vda", "partition /dev/vda", "mkfs ext4 /dev/vda2", "mount /").
	Progress func(step string)
	// Log receives the commands run and their outcome; nil discards.
	Log *slog.Logger
}

// Mount is a filesystem Apply mounted.
type Mount struct {
	// Device is the mounted device node.
	Device string `json:"device"`
	// Type is the filesystem type.
	Type string `json:"type"`
	// Mountpoint is the mount point relative to the target ("/boot").
	Mountpoint string `json:"mountpoint"`
	// Dir is the absolute directory it is mounted on.
	Dir string `json:"dir"`
}

// FstabEntry is one /etc/fstab line for a filesystem Apply made.
type FstabEntry struct {
	// Spec names the filesystem: "UUID=...", else "LABEL=...", else the
	// device.
	Spec string `json:"spec"`
	// File is the mount point, or "none" for swap.
	File string `json:"file"`
	// Type is the filesystem type.
	Type string `json:"type"`
	// Options are the mount options ("defaults" when none were captured).
	Options string `json:"options"`
	// Dump is the dump(8) frequency, always 0.
	Dump int `json:"dump"`
	// Pass is the fsck order: 1 for "/", 2 for other checked types, 0 for
	// swap and for types without a boot-time fsck (xfs, btrfs).
	Pass int `json:"pass"`
}

// String renders the entry as an fstab line.
func (e FstabEntry) String() string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d", e.Spec, e.File, e.Type, e.Options, e.Dump, e.Pass)
}

// Result is what Apply made.
type Result struct {
	// Mounted are the filesystems mounted under Options.Target, in the
	// order they were mounted.
	Mounted []Mount `json:"mounted,omitempty"`
	// Fstab are the /etc/fstab entries for the new filesystems and swap,
	// by UUID.
	Fstab []FstabEntry `json:"fstab"`
	// Layout describes the new disks the way disklayout.Capture records a
	// golden client (devices, partition GUIDs and filesystem UUIDs as
	// made), with Root set to Options.Target; pass it to the steps that
	// write /etc/fstab and install the bootloader.
	Layout *disklayout.Layout `json:"layout"`
	// Unmount unmounts Mounted in reverse order. It may be called more
	// than once; later calls do nothing.
	Unmount func(ctx context.Context) error `json:"-"`
}

// ErrInUse is wrapped by Apply's error when a target disk is mounted,
// used for swap, or held by RAID or device-mapper.
var ErrInUse = errors.New("disk is in use")

// ErrHasData is wrapped by Apply's error when a target disk holds a
// partition table or filesystem and Options.Wipe is not set.
var ErrHasData = errors.New("disk holds data")

// Apply carries out plan: it checks every target disk, then wipes them,
// writes their partition tables with sfdisk, has the kernel re-read them
// with partx (creating missing device nodes itself, as no udev runs),
// creates RAID arrays and LVM volumes, makes the filesystems and, when
// o.Target is set, mounts them there. Nothing is changed unless every
// check passes and every tool the plan needs is installed. On a failure
// after mounting began, what was mounted is unmounted again.
func Apply(ctx context.Context, plan *Plan, o Options) (*Result, error) {
	a := &applier{plan: plan, o: o, log: o.Log}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if err := a.preflight(ctx); err != nil {
		return nil, err
	}
	for _, d := range plan.Disks {
		if err := a.partition(ctx, d); err != nil {
			return nil, err
		}
	}
	for _, r := range plan.RAID {
		a.step("create RAID " + r.Path)
		if _, err := a.run(ctx, nil, "mdadm", mdadmCreate(r)...); err != nil {
			return nil, fmt.Errorf("create RAID array %s: %w", r.Path, err)
		}
		if err := ensureNode(ctx, r.Path, filepath.Join("/sys/block", filepath.Base(r.Path), "dev")); err != nil {
			return nil, err
		}
	}
	for _, v := range plan.VolumeGroups {
		a.step("create volume group " + v.Name)
		for _, c := range lvmCommands(v) {
			if _, err := a.run(ctx, []string{"DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1"}, c[0], c[1:]...); err != nil {
				return nil, fmt.Errorf("create volume group %s: %w", v.Name, err)
			}
		}
	}
	made, err := a.makeFilesystems(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Fstab: fstabEntries(plan, made)}
	res.Layout, err = a.layout(ctx, made)
	if err != nil {
		return nil, err
	}
	mounted, unmount, err := a.mountAll(ctx)
	if err != nil {
		return nil, err
	}
	res.Mounted, res.Unmount = mounted, unmount
	return res, nil
}

// applier holds one Apply call's state.
type applier struct {
	plan *Plan
	o    Options
	log  *slog.Logger
}

// step logs a step and tells Options.Progress.
func (a *applier) step(s string) {
	a.log.Info("disks: " + s)
	if a.o.Progress != nil {
		a.o.Progress(s)
	}
}

// run runs a tool with no input, logging it.
func (a *applier) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	a.log.Debug("disks: run", "cmd", name, "args", args)
	return run(ctx, env, nil, name, args...)
}

// runBusy is run for commands that open a device exclusively: a device
// just unmounted (or probed by someone else) can stay busy for a moment,
// so "Device or resource busy" is retried for up to two seconds.
func (a *applier) runBusy(ctx context.Context, name string, args ...string) (string, error) {
	for try := 0; ; try++ {
		out, err := a.run(ctx, nil, name, args...)
		if err == nil || try >= 10 || !strings.Contains(err.Error(), "Device or resource busy") {
			return out, err
		}
		a.log.Debug("disks: device busy; retrying", "cmd", name, "args", args)
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// neededTools lists the tools plan and o need, each with what needs it.
func neededTools(plan *Plan, o Options) []toolNeed {
	var tools []toolNeed
	add := func(t, why string) {
		for _, have := range tools {
			if have.tool == t {
				return
			}
		}
		tools = append(tools, toolNeed{t, why})
	}
	add("wipefs", "wiping disks")
	add("blkid", "checking new filesystems")
	for _, d := range plan.Disks {
		if d.Table != "" {
			add("sfdisk", "partitioning "+d.Path)
		}
		add("partx", "re-reading partitions of "+d.Path)
	}
	for _, r := range plan.RAID {
		add("mdadm", "RAID array "+r.Path)
	}
	for _, v := range plan.VolumeGroups {
		for _, t := range []string{"pvcreate", "vgcreate", "lvcreate", "vgmknodes"} {
			add(t, "LVM volume group "+v.Name)
		}
	}
	var subvols string
	for _, f := range plan.Filesystems {
		if name, _, err := mkfsCommand(f); err == nil {
			add(name, f.Type+" on "+f.Device)
		}
		if f.FSRoot != "" && subvols == "" {
			subvols = f.Device
		}
	}
	if subvols != "" {
		add("btrfs", "subvolumes on "+subvols)
	}
	return tools
}

// toolNeed is a tool and what needs it.
type toolNeed struct {
	tool, why string
}

// preflight checks the plan, the tools and every target disk before
// anything is changed.
func (a *applier) preflight(ctx context.Context) error {
	if len(a.plan.Disks) == 0 {
		return errors.New("apply: the plan has no disks")
	}
	for _, f := range a.plan.Filesystems {
		if _, _, err := mkfsCommand(f); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	for _, d := range a.plan.Disks {
		if d.Table != "" {
			if _, err := sfdiskScript(d); err != nil {
				return fmt.Errorf("apply: %w", err)
			}
		}
	}
	var missing []string
	for _, t := range neededTools(a.plan, a.o) {
		if _, err := lookTool(t.tool); err != nil {
			missing = append(missing, t.tool+" (for "+t.why+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("apply: tools the plan needs are not installed: %s", strings.Join(missing, ", "))
	}
	if a.o.Target != "" {
		if abs, err := filepath.Abs(a.o.Target); err == nil && abs == "/" {
			return errors.New("apply: refusing to mount over the running system's root /")
		}
		st, err := os.Stat(a.o.Target)
		if err != nil {
			return fmt.Errorf("apply: target: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("apply: target %s is not a directory", a.o.Target)
		}
	}
	for _, d := range a.plan.Disks {
		a.step("check " + d.Path)
		if err := a.check(ctx, d); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	return nil
}

// diskName returns the kernel name of a plan's disk, checking that its
// path is the plain /dev node Select returns.
func diskName(path string) (string, error) {
	name := filepath.Base(path)
	if filepath.Dir(path) != "/dev" {
		return "", fmt.Errorf("disk %s: give the disk as /dev/NAME (Select's Disk.Path)", path)
	}
	if _, err := os.Stat(filepath.Join("/sys/block", name)); err != nil {
		return "", fmt.Errorf("disk %s: not a whole disk in /sys/block: %w", path, err)
	}
	return name, nil
}

// sysPartitions returns the names of the partitions the kernel knows on
// disk name.
func sysPartitions(name string) ([]string, error) {
	return sysPartitionsIn("/sys", name)
}

// sysPartitionsIn is sysPartitions with sysfs mounted at sys.
func sysPartitionsIn(sys, name string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(sys, "block", name))
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", name, err)
	}
	var parts []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(sys, "block", name, e.Name(), "partition")); err == nil {
			parts = append(parts, e.Name())
		}
	}
	return parts, nil
}

// check refuses a disk that is read-only or in use, and one that holds a
// signature unless Wipe is set.
func (a *applier) check(ctx context.Context, d DiskPlan) error {
	name, err := diskName(d.Path)
	if err != nil {
		return err
	}
	if v, err := readInt(filepath.Join("/sys/block", name, "ro")); err == nil && v != 0 {
		return fmt.Errorf("disk %s is read-only", d.Path)
	}
	if size, err := readInt(filepath.Join("/sys/block", name, "size")); err == nil && size*512 != d.SizeBytes {
		return fmt.Errorf("disk %s has %d bytes, but the plan was made for %d", d.Path, size*512, d.SizeBytes)
	}
	if ss, err := readInt(filepath.Join("/sys/block", name, "queue", "logical_block_size")); err == nil && int(ss) != d.SectorSize {
		return fmt.Errorf("disk %s has %d-byte sectors, but the plan was made for %d", d.Path, ss, d.SectorSize)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	swaps, _ := os.ReadFile("/proc/swaps") // absent without swap support
	uses, err := diskUses("/sys", name, mounts, swaps)
	if err != nil {
		return err
	}
	if len(uses) > 0 {
		return fmt.Errorf("disk %s: %w: %s", d.Path, ErrInUse, strings.Join(uses, "; "))
	}
	sigs, err := a.signatures(ctx, name)
	if err != nil {
		return err
	}
	if len(sigs) > 0 && !a.o.Wipe {
		return fmt.Errorf("disk %s: %w: %s (wipe it to install on it)", d.Path, ErrHasData, strings.Join(sigs, ", "))
	}
	return nil
}

// diskUses lists why disk name or one of its partitions is in use: a
// mount in mounts (/proc/self/mountinfo), swap in swaps (/proc/swaps),
// or a holder in sysfs at sys (md, device-mapper).
func diskUses(sys, name string, mounts, swaps []byte) ([]string, error) {
	parts, err := sysPartitionsIn(sys, name)
	if err != nil {
		return nil, err
	}
	names := append([]string{name}, parts...)
	devnums := map[string]string{}
	for _, n := range names {
		dir := filepath.Join(sys, "block", name)
		if n != name {
			dir = filepath.Join(dir, n)
		}
		if dev := readString(filepath.Join(dir, "dev")); dev != "" {
			devnums[dev] = n
		}
	}
	var uses []string
	for _, n := range names {
		dir := filepath.Join(sys, "block", name)
		if n != name {
			dir = filepath.Join(dir, n)
		}
		holders, _ := os.ReadDir(filepath.Join(dir, "holders"))
		for _, h := range holders {
			uses = append(uses, fmt.Sprintf("%s is held by %s", n, h.Name()))
		}
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		n, ok := devnums[f[2]]
		if !ok {
			if src := baseDevice(f[sep+2]); slices.Contains(names, src) {
				n, ok = src, true
			}
		}
		if ok {
			uses = append(uses, fmt.Sprintf("%s is mounted on %s", n, mountinfo.Unescape(f[4])))
		}
	}
	for i, line := range strings.Split(string(swaps), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue // the header
		}
		if n := baseDevice(mountinfo.Unescape(f[0])); slices.Contains(names, n) {
			uses = append(uses, fmt.Sprintf("%s is used for swap", n))
		}
	}
	return uses, nil
}

// baseDevice returns the kernel name of a /dev path (following links),
// or "".
func baseDevice(p string) string {
	if !strings.HasPrefix(p, "/dev/") {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return filepath.Base(p)
}

// signatures lists the partition table and filesystem signatures wipefs
// finds on disk name and its partitions, as "TYPE on DEV".
func (a *applier) signatures(ctx context.Context, name string) ([]string, error) {
	parts, err := sysPartitions(name)
	if err != nil {
		return nil, err
	}
	devs := []string{"/dev/" + name}
	for _, p := range parts {
		node := "/dev/" + p
		if err := ensureNode(ctx, node, filepath.Join("/sys/block", name, p, "dev")); err != nil {
			return nil, err
		}
		devs = append(devs, node)
	}
	var sigs []string
	for _, dev := range devs {
		out, err := a.run(ctx, nil, "wipefs", "--no-act", "--noheadings", "--output", "TYPE,OFFSET", dev)
		if err != nil {
			return nil, fmt.Errorf("look for signatures on %s: %w", dev, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) >= 1 {
				sigs = append(sigs, fmt.Sprintf("%s on %s", f[0], dev))
			}
		}
	}
	return sigs, nil
}

// partition wipes disk d, writes its table and makes its partitions
// visible.
func (a *applier) partition(ctx context.Context, d DiskPlan) error {
	name, err := diskName(d.Path)
	if err != nil {
		return err
	}
	a.step("wipe " + d.Path)
	old, err := sysPartitions(name)
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, err := a.runBusy(ctx, "wipefs", "--all", "--quiet", "/dev/"+p); err != nil {
			return fmt.Errorf("wipe %s: %w", d.Path, err)
		}
	}
	if _, err := a.runBusy(ctx, "wipefs", "--all", "--quiet", d.Path); err != nil {
		return fmt.Errorf("wipe %s: %w", d.Path, err)
	}
	if d.Table == "" {
		if len(old) > 0 {
			// The filesystem goes on the whole disk: the kernel must
			// forget the partitions of the old table.
			if _, err := a.run(ctx, nil, "partx", "--delete", d.Path); err != nil {
				return fmt.Errorf("forget the old partitions of %s: %w", d.Path, err)
			}
		}
		return nil
	}
	a.step("partition " + d.Path)
	script, err := sfdiskScript(d)
	if err != nil {
		return err
	}
	a.log.Debug("disks: sfdisk script", "disk", d.Path, "script", script)
	// sfdisk asks the kernel to re-read the table; where it cannot (a
	// loop device without partition scanning) it warns, and partx below
	// makes up for it.
	if _, err := run(ctx, nil, strings.NewReader(script), "sfdisk", "--quiet", "--wipe", "always", d.Path); err != nil {
		return fmt.Errorf("partition %s: %w", d.Path, err)
	}
	a.step("re-read partitions of " + d.Path)
	if err := a.reread(ctx, name, d); err != nil {
		return err
	}
	for _, p := range d.Partitions {
		if err := ensureNode(ctx, p.Path, filepath.Join("/sys/block", name, filepath.Base(p.Path), "dev")); err != nil {
			return err
		}
		if p.Extended {
			continue
		}
		if _, err := a.runBusy(ctx, "wipefs", "--all", "--quiet", p.Path); err != nil {
			return fmt.Errorf("wipe new partition %s: %w", p.Path, err)
		}
	}
	return nil
}

// reread makes the kernel's partitions of disk name match d, with partx
// (udev is not there to do it).
func (a *applier) reread(ctx context.Context, name string, d DiskPlan) error {
	if kernelMatches(name, d) == nil {
		return nil
	}
	// partx -u adds, removes and resizes partitions to match the table,
	// but leaves "dos" logical partitions out (util-linux 2.38); -a adds
	// what is missing; -d then -a starts over.
	var errs []error
	for _, args := range [][]string{{"--update"}, {"--add"}, {"--delete"}, {"--add"}} {
		// Each may fail: -a when some partitions exist, -d when none do.
		if _, err := a.run(ctx, nil, "partx", append(args, d.Path)...); err != nil {
			errs = append(errs, err)
		}
		if args[0] != "--delete" && kernelMatches(name, d) == nil {
			return nil
		}
	}
	err := kernelMatches(name, d)
	return fmt.Errorf("re-read partitions of %s: %w (%v)", d.Path, err, errors.Join(errs...))
}

// kernelMatches compares the kernel's partitions of disk name with d.
func kernelMatches(name string, d DiskPlan) error {
	have, err := sysPartitions(name)
	if err != nil {
		return err
	}
	if len(have) != len(d.Partitions) {
		return fmt.Errorf("the kernel has %d partitions, the table %d", len(have), len(d.Partitions))
	}
	unit := int64(d.SectorSize) / 512
	for _, p := range d.Partitions {
		dir := filepath.Join("/sys/block", name, filepath.Base(p.Path))
		start, err := readInt(filepath.Join(dir, "start"))
		if err != nil {
			return fmt.Errorf("partition %s: %w", p.Path, err)
		}
		size, _ := readInt(filepath.Join(dir, "size"))
		if start != p.Start*unit || !p.Extended && size != p.Size*unit {
			return fmt.Errorf("partition %s: the kernel has start %d size %d, the table %d and %d (512-byte units)", p.Path, start, size, p.Start*unit, p.Size*unit)
		}
	}
	return nil
}

// ensureNode makes sure the block device node path exists with the
// device number in the sysfs dev file: it waits up to a second for
// devtmpfs and then creates the node itself (replacing a stale one).
func ensureNode(ctx context.Context, path, devFile string) error {
	var want string
	for range 20 {
		if want = readString(devFile); want != "" {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	maj, min, ok := strings.Cut(want, ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("device %s: no device number in %s (%q)", path, devFile, want)
	}
	dev := unix.Mkdev(uint32(ma), uint32(mi))
	isNode := func() (exists, right bool) {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return false, false
		}
		return true, st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == dev
	}
	for range 20 {
		if _, right := isNode(); right {
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if exists, _ := isNode(); exists {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("device %s: remove stale node: %w", path, err)
		}
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o660, int(dev)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("device %s: mknod %s: %w", path, want, err)
	}
	if _, right := isNode(); !right {
		return fmt.Errorf("device %s: no node for %s", path, want)
	}
	return nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// madeFS is a filesystem as blkid reads it back after mkfs.
type madeFS struct {
	Type, UUID, Label string
}

// makeFilesystems formats every planned device once and reads back what
// was made, by device.
func (a *applier) makeFilesystems(ctx context.Context) (map[string]madeFS, error) {
	made := map[string]madeFS{}
	for _, f := range a.plan.Filesystems {
		if _, done := made[f.Device]; done {
			continue
		}
		a.step(fmt.Sprintf("mkfs %s %s", f.Type, f.Device))
		name, args, err := mkfsCommand(f)
		if err != nil {
			return nil, err
		}
		if _, err := a.run(ctx, nil, name, args...); err != nil {
			return nil, fmt.Errorf("make %s on %s: %w", f.Type, f.Device, err)
		}
		got, err := a.probe(ctx, f.Device)
		if err != nil {
			return nil, err
		}
		if got.Type != f.Type && !(f.Type == "vfat" && got.Type == "vfat") {
			return nil, fmt.Errorf("make %s on %s: blkid finds %q", f.Type, f.Device, got.Type)
		}
		if f.UUID != "" && !strings.EqualFold(got.UUID, f.UUID) {
			return nil, fmt.Errorf("make %s on %s: UUID is %s, want %s", f.Type, f.Device, got.UUID, f.UUID)
		}
		if f.Label != "" && got.Label != f.Label {
			return nil, fmt.Errorf("make %s on %s: label is %q, want %q", f.Type, f.Device, got.Label, f.Label)
		}
		made[f.Device] = got
		if err := a.subvolumes(ctx, f.Device); err != nil {
			return nil, err
		}
	}
	return made, nil
}

// probe reads a device's filesystem type, UUID and label with blkid -p.
func (a *applier) probe(ctx context.Context, dev string) (madeFS, error) {
	out, err := a.run(ctx, nil, "blkid", "-p", "-o", "export", dev)
	if err != nil {
		return madeFS{}, fmt.Errorf("probe %s: %w", dev, err)
	}
	var m madeFS
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "TYPE":
			m.Type = v
		case "UUID":
			m.UUID = v
		case "LABEL":
			m.Label = v
		}
	}
	return m, nil
}

// subvolumes creates the btrfs subvolumes planned on dev.
func (a *applier) subvolumes(ctx context.Context, dev string) (err error) {
	var roots []string
	for _, f := range a.plan.Filesystems {
		if f.Device == dev && f.FSRoot != "" && !slices.Contains(roots, f.FSRoot) {
			roots = append(roots, f.FSRoot)
		}
	}
	if len(roots) == 0 {
		return nil
	}
	a.step("create subvolumes on " + dev)
	tmp, err := os.MkdirTemp("", "goldcast-btrfs-")
	if err != nil {
		return fmt.Errorf("subvolumes on %s: %w", dev, err)
	}
	defer os.Remove(tmp)
	if err := mount(FilesystemPlan{Device: dev, Type: "btrfs"}, tmp); err != nil {
		return fmt.Errorf("subvolumes on %s: %w", dev, err)
	}
	defer func() {
		if uerr := unmount(tmp); uerr != nil && err == nil {
			err = fmt.Errorf("subvolumes on %s: %w", dev, uerr)
		}
	}()
	slices.Sort(roots) // parents before children
	for _, r := range roots {
		if _, err := a.run(ctx, nil, "btrfs", "subvolume", "create", filepath.Join(tmp, r)); err != nil {
			return fmt.Errorf("subvolume %s on %s: %w", r, dev, err)
		}
	}
	return nil
}

// fstabEntries returns the fstab entries for the planned filesystems, with
// the UUIDs they were made with.
func fstabEntries(plan *Plan, made map[string]madeFS) []FstabEntry {
	var out []FstabEntry
	for _, f := range mountOrder(plan.Filesystems) {
		m := made[f.Device]
		spec := f.Device
		switch {
		case m.UUID != "":
			spec = "UUID=" + m.UUID
		case m.Label != "":
			spec = "LABEL=" + m.Label
		}
		opts := cmpOr(f.Options, "defaults")
		if f.FSRoot != "" && !strings.Contains(","+opts+",", ",subvol=") {
			opts += ",subvol=" + f.FSRoot
		}
		e := FstabEntry{Spec: spec, File: f.Mountpoint, Type: f.Type, Options: opts, Pass: 2}
		switch {
		case f.Type == "xfs" || f.Type == "btrfs":
			e.Pass = 0
		case f.Mountpoint == "/":
			e.Pass = 1
		}
		out = append(out, e)
	}
	for _, f := range plan.Filesystems {
		if f.Type == "swap" {
			m := made[f.Device]
			spec := f.Device
			if m.UUID != "" {
				spec = "UUID=" + m.UUID
			}
			opts := "sw"
			if f.Options != "" {
				opts += "," + f.Options
			}
			out = append(out, FstabEntry{Spec: spec, File: "none", Type: "swap", Options: opts})
		}
	}
	return out
}

// mountOrder returns the filesystems with a mount point, parents before
// children: compared component by component, so "/" < "/boot" <
// "/boot/efi" < "/home" (the order sysconf writes /etc/fstab in).
func mountOrder(fss []FilesystemPlan) []FilesystemPlan {
	var out []FilesystemPlan
	for _, f := range fss {
		if f.Mountpoint != "" && f.Type != "swap" {
			out = append(out, f)
		}
	}
	split := func(p string) []string {
		if p = strings.Trim(p, "/"); p == "" {
			return nil
		}
		return strings.Split(p, "/")
	}
	slices.SortStableFunc(out, func(a, b FilesystemPlan) int {
		return slices.Compare(split(a.Mountpoint), split(b.Mountpoint))
	})
	return out
}

// mountAll mounts the planned filesystems under o.Target.
func (a *applier) mountAll(ctx context.Context) ([]Mount, func(context.Context) error, error) {
	var mounted []Mount
	var once sync.Once
	var uerr error
	undo := func(ctx context.Context) error {
		once.Do(func() {
			for i := len(mounted) - 1; i >= 0; i-- {
				if err := unmount(mounted[i].Dir); err != nil {
					uerr = errors.Join(uerr, err)
				}
			}
		})
		return uerr
	}
	if a.o.Target == "" {
		return nil, undo, nil
	}
	target, err := filepath.Abs(a.o.Target)
	if err != nil {
		return nil, nil, fmt.Errorf("mount: %w", err)
	}
	for _, f := range mountOrder(a.plan.Filesystems) {
		a.step("mount " + f.Mountpoint)
		dir := filepath.Join(target, f.Mountpoint)
		if dir != target && !strings.HasPrefix(dir, target+"/") {
			undo(context.WithoutCancel(ctx))
			return nil, nil, fmt.Errorf("mount %s: mount point leaves the target", f.Mountpoint)
		}
		// The parent is mounted by now; a link there must not lead
		// outside the target.
		if err := safeMkdirAll(target, f.Mountpoint); err != nil {
			undo(context.WithoutCancel(ctx))
			return nil, nil, fmt.Errorf("mount %s: %w", f.Mountpoint, err)
		}
		if err := mount(f, dir); err != nil {
			undo(context.WithoutCancel(ctx))
			return nil, nil, err
		}
		mounted = append(mounted, Mount{Device: f.Device, Type: f.Type, Mountpoint: f.Mountpoint, Dir: dir})
	}
	return mounted, undo, nil
}

// mount mounts f on dir with mount(2), so that no mount tool is needed in
// the installer; a btrfs subvolume is mounted with subvol=.
func mount(f FilesystemPlan, dir string) error {
	var data string
	if f.FSRoot != "" {
		data = "subvol=" + f.FSRoot
	}
	if err := unix.Mount(f.Device, dir, f.Type, 0, data); err != nil {
		hint := ""
		if errors.Is(err, unix.ENODEV) {
			hint = fmt.Sprintf(" (the kernel has no %s driver)", f.Type)
		}
		return fmt.Errorf("mount %s (%s) on %s: %w%s", f.Device, f.Type, dir, err, hint)
	}
	return nil
}

// unmount unmounts dir.
func unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// safeMkdirAll creates rel under root without following symbolic links
// out of it.
func safeMkdirAll(root, rel string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return nil
	}
	return r.MkdirAll(rel, 0o755)
}

// sfdiskDump is the part of sfdisk --json output the result needs.
type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Node  string `json:"node"`
			UUID  string `json:"uuid"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// layout describes what was made as a disklayout.Layout.
func (a *applier) layout(ctx context.Context, made map[string]madeFS) (*disklayout.Layout, error) {
	l := &disklayout.Layout{Version: disklayout.FormatVersion, CapturedAt: time.Now().UTC().Truncate(time.Second), Root: a.o.Target, Notes: a.plan.Notes}
	for _, d := range a.plan.Disks {
		ld := disklayout.Disk{Name: filepath.Base(d.Path), Path: d.Path, SizeBytes: d.SizeBytes, SectorSize: d.SectorSize, Table: d.Table}
		uuids := map[string]string{}
		if d.Table != "" {
			out, err := a.run(ctx, nil, "sfdisk", "--json", d.Path)
			if err != nil {
				return nil, fmt.Errorf("read back the table of %s: %w", d.Path, err)
			}
			var dump sfdiskDump
			if err := json.Unmarshal([]byte(out), &dump); err != nil {
				return nil, fmt.Errorf("read back the table of %s: %w", d.Path, err)
			}
			ld.ID = dump.PartitionTable.ID
			for _, p := range dump.PartitionTable.Partitions {
				uuids[p.Node] = p.UUID
			}
		}
		for _, p := range d.Partitions {
			lp := disklayout.Partition{
				Number: p.Number, Path: p.Path, StartBytes: p.Start * int64(d.SectorSize), SizeBytes: p.Size * int64(d.SectorSize),
				Type: p.Type, Name: p.Name, UUID: uuids[p.Path], Attrs: p.Attrs, Flags: p.Flags,
			}
			if d.Table == "dos" && lp.UUID == "" {
				if sig, err := strconv.ParseUint(strings.TrimPrefix(ld.ID, "0x"), 16, 32); err == nil {
					lp.UUID = fmt.Sprintf("%08x-%02x", sig, p.Number)
				}
			}
			gap := d.SizeBytes - lp.StartBytes - lp.SizeBytes
			lp.Grow = gap >= 0 && gap <= disklayout.GrowSlack
			ld.Partitions = append(ld.Partitions, lp)
		}
		l.Disks = append(l.Disks, ld)
	}
	for _, r := range a.plan.RAID {
		l.RAID = append(l.RAID, disklayout.RAIDArray{Name: filepath.Base(r.Path), Path: r.Path, Level: r.Level, Metadata: r.Metadata,
			UUID: r.UUID, MDName: r.Name, RaidDevices: len(r.Devices), Devices: r.Devices, Spares: r.Spares, ChunkKiB: r.ChunkKiB})
	}
	if len(a.plan.VolumeGroups) > 0 {
		l.LVM = &disklayout.LVM{}
		for _, v := range a.plan.VolumeGroups {
			vg := disklayout.VolumeGroup{Name: v.Name, ExtentSizeBytes: v.ExtentSizeBytes}
			for _, pv := range v.PVs {
				vg.PVs = append(vg.PVs, disklayout.PhysicalVolume{Device: pv})
			}
			l.LVM.VolumeGroups = append(l.LVM.VolumeGroups, vg)
			for _, lv := range v.LVs {
				l.LVM.LogicalVolumes = append(l.LVM.LogicalVolumes, disklayout.LogicalVolume{Name: lv.Name, VG: v.Name, SizeBytes: lv.SizeBytes, Path: lv.Path})
			}
		}
	}
	for _, f := range a.plan.Filesystems {
		m := made[f.Device]
		l.Filesystems = append(l.Filesystems, disklayout.Filesystem{
			Device: f.Device, Type: f.Type, Mountpoint: f.Mountpoint, FSRoot: f.FSRoot,
			Label: m.Label, UUID: m.UUID, Options: f.Options, SizeBytes: f.SizeBytes,
		})
	}
	return l, nil
}
