package disks

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/goldcast/goldcast/client/disklayout"
)

// Plan is everything Apply creates, in the order it creates it: partition
// tables, then RAID arrays, then LVM, then filesystems. NewPlan computes
// it; it is plain data, so an installer can log or show it first.
type Plan struct {
	// Disks are the target disks and their new partition tables.
	Disks []DiskPlan `json:"disks"`
	// RAID are the md arrays to create on the new partitions.
	RAID []RAIDPlan `json:"raid,omitempty"`
	// VolumeGroups are the LVM volume groups to create.
	VolumeGroups []VolumeGroupPlan `json:"volume_groups,omitempty"`
	// Filesystems are the filesystems and swap areas to make, in the
	// layout's order (the root first). Several entries may share a device
	// (btrfs subvolumes); the device is formatted once.
	Filesystems []FilesystemPlan `json:"filesystems"`
	// Notes say what of the layout was left out and why.
	Notes []string `json:"notes,omitempty"`
}

// DiskPlan is one target disk's new partition table.
type DiskPlan struct {
	// Source is the captured disk this one copies ("/dev/sda"), or
	// "override" when an Override describes it.
	Source string `json:"source"`
	// Path is the target disk's device node ("/dev/vda").
	Path string `json:"path"`
	// SizeBytes is the target disk's size.
	SizeBytes int64 `json:"size_bytes"`
	// SectorSize is the target disk's logical sector size: the unit of
	// PartitionPlan.Start and Size.
	SectorSize int `json:"sector_size"`
	// Table is "gpt", "dos", or empty when the disk gets no partition
	// table (a filesystem, RAID member or PV on the whole disk).
	Table string `json:"table,omitempty"`
	// ID is the table's disk GUID ("gpt") or signature ("dos", "0x8c3e51a2")
	// to write; empty lets sfdisk make a random one.
	ID string `json:"id,omitempty"`
	// Partitions are the new partitions, in table order.
	Partitions []PartitionPlan `json:"partitions,omitempty"`
}

// PartitionPlan is one new partition.
type PartitionPlan struct {
	// Number is the partition number (5 and up are "dos" logical
	// partitions).
	Number int `json:"number"`
	// Path is the partition's device node on the target ("/dev/vda2").
	Path string `json:"path"`
	// Source is the captured partition it copies ("/dev/sda2"); empty for
	// an override.
	Source string `json:"source,omitempty"`
	// Start is the first sector.
	Start int64 `json:"start"`
	// Size is the length in sectors.
	Size int64 `json:"size"`
	// Type is the type GUID ("gpt") or hexadecimal code ("dos").
	Type string `json:"type"`
	// Name is the GPT partition name.
	Name string `json:"name,omitempty"`
	// UUID is the GPT partition GUID to write; empty for a random one.
	UUID string `json:"uuid,omitempty"`
	// Attrs are GPT attribute bits as sfdisk names them
	// ("LegacyBIOSBootable").
	Attrs string `json:"attrs,omitempty"`
	// Bootable is the "dos" active flag.
	Bootable bool `json:"bootable,omitempty"`
	// Extended marks the "dos" extended partition holding the logical
	// ones.
	Extended bool `json:"extended,omitempty"`
	// Flags name the partition's roles, as disklayout.Partition.Flags.
	Flags []string `json:"flags,omitempty"`
}

// RAIDPlan is an md array to create.
type RAIDPlan struct {
	// Path is the array's device node ("/dev/md0").
	Path string `json:"path"`
	// Level is the RAID level ("raid1").
	Level string `json:"level"`
	// Metadata is the superblock format ("1.2"); empty for mdadm's
	// default.
	Metadata string `json:"metadata,omitempty"`
	// Name is the array name (the part of the captured "host:name" after
	// the colon).
	Name string `json:"name,omitempty"`
	// UUID is the captured array UUID, kept so that the image's
	// mdadm.conf still names the array.
	UUID string `json:"uuid,omitempty"`
	// ChunkKiB is the chunk size of striped levels.
	ChunkKiB int `json:"chunk_kib,omitempty"`
	// Devices are the member devices in role order; "missing" for a
	// member whose captured disk has no target (a degraded array).
	Devices []string `json:"devices"`
	// Spares are spare members.
	Spares []string `json:"spares,omitempty"`
}

// VolumeGroupPlan is an LVM volume group to create.
type VolumeGroupPlan struct {
	// Name is the volume group name.
	Name string `json:"name"`
	// ExtentSizeBytes is the physical extent size; 0 for LVM's default.
	ExtentSizeBytes int64 `json:"extent_size_bytes,omitempty"`
	// PVs are the physical volumes' devices on the target.
	PVs []string `json:"pvs"`
	// LVs are the logical volumes, in creation order.
	LVs []LogicalVolumePlan `json:"lvs,omitempty"`
}

// LogicalVolumePlan is an LVM logical volume to create.
type LogicalVolumePlan struct {
	// Name is the logical volume name.
	Name string `json:"name"`
	// SizeBytes is its size; ignored when Rest is set.
	SizeBytes int64 `json:"size_bytes,omitempty"`
	// Rest gives it all the group's free space, because the captured
	// volume filled its group.
	Rest bool `json:"rest,omitempty"`
	// Path is its device node ("/dev/vg0/root").
	Path string `json:"path"`
}

// FilesystemPlan is a filesystem or swap area to make, and where to mount
// it.
type FilesystemPlan struct {
	// Device is the device node on the target to format.
	Device string `json:"device"`
	// Source is the captured device it copies; empty for an override.
	Source string `json:"source,omitempty"`
	// Type is "ext4", "ext3", "ext2", "xfs", "vfat", "btrfs" or "swap".
	Type string `json:"type"`
	// Label is the filesystem label to set.
	Label string `json:"label,omitempty"`
	// UUID is the filesystem UUID to set (for vfat the serial "ABCD-1234");
	// empty for a new random one.
	UUID string `json:"uuid,omitempty"`
	// Mountpoint is where it is mounted, relative to the target root
	// ("/", "/boot"); empty for swap and for unmounted filesystems.
	Mountpoint string `json:"mountpoint,omitempty"`
	// FSRoot is the btrfs subvolume to create and mount ("/@home"), when
	// it is not the top.
	FSRoot string `json:"fs_root,omitempty"`
	// Options are the captured mount options, for /etc/fstab.
	Options string `json:"options,omitempty"`
	// SizeBytes is the device's size when known (partitions), else 0.
	SizeBytes int64 `json:"size_bytes,omitempty"`
	// ESP marks an EFI system partition (made FAT32 when large enough).
	ESP bool `json:"esp,omitempty"`
}

// PlanOptions tune NewPlan.
type PlanOptions struct {
	// Override, when set, replaces the captured partition layout; the
	// captured filesystems still supply labels, UUIDs and options for the
	// mount points it names.
	Override *Override
	// KeepPartitionIDs writes the captured disk GUID or signature and the
	// captured partition GUIDs; by default the new table gets random ones,
	// as two disks with the same GUIDs confuse firmware and tools.
	KeepPartitionIDs bool
	// NewFilesystemUUIDs makes filesystems with random UUIDs instead of
	// the captured ones (Apply's Result says which they got).
	NewFilesystemUUIDs bool
	// MinBytes sets the least size of the filesystem mounted at a mount
	// point ("/": the image's size plus room), checked when a partition is
	// shrunk to fit a smaller disk.
	MinBytes map[string]int64
}

// Partition type GUIDs and codes the planner chooses or recognises.
const (
	gptLinux    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	gptESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
	gptRAID     = "A19D880F-05FC-4D3B-A006-743F0F84911E"
	gptLVM      = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	gptSwap     = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
)

// minFilesystemBytes is the least partition size goldcast lets a
// filesystem type shrink to when a layout is scaled down: what its mkfs
// accepts with room for a journal or metadata.
func minFilesystemBytes(fsType string) int64 {
	switch fsType {
	case "ext2", "ext3", "ext4":
		return 8 * MiB
	case "xfs":
		return 300 * MiB // xfsprogs 5.19 and later refuse smaller
	case "btrfs":
		return 114 * MiB
	case "vfat":
		return 1 * MiB
	}
	return 1 * MiB
}

// NewPlan computes how to recreate layout l on the target disks. The
// captured disk holding the root filesystem goes to targets[0]; the other
// captured disks, in layout order, go to the following targets, and are
// left out (with a note) when there are fewer targets. Partitions keep
// their type, name, flags and size rounded up to whole MiB, start on MiB
// boundaries one after the other, and the partition that reached the end
// of its captured disk (Grow) takes the rest of the target. When the
// fixed partitions do not fit, all are shrunk in proportion if that keeps
// each at least its filesystem's minimum; otherwise NewPlan fails naming
// the sizes.
func NewPlan(l *disklayout.Layout, targets []Disk, o PlanOptions) (*Plan, error) {
	if len(targets) == 0 {
		return nil, errors.New("plan: no target disk")
	}
	for i, t := range targets {
		if t.SizeBytes <= 0 {
			return nil, fmt.Errorf("plan: target disk %s has no size", t.Path)
		}
		if t.Path == "" {
			return nil, fmt.Errorf("plan: target disk %d has no path", i+1)
		}
		for _, u := range targets[:i] {
			if u.Path == t.Path {
				return nil, fmt.Errorf("plan: target disk %s is named twice", t.Path)
			}
		}
	}
	if o.Override != nil {
		return planOverride(l, targets, o)
	}
	if l == nil || len(l.Disks) == 0 {
		return nil, errors.New("plan: the image records no disk layout; give a layout override")
	}
	p := &planner{l: l, o: o, plan: &Plan{}, devMap: map[string]string{}, sizes: map[string]int64{}}
	return p.run(targets)
}

// planner holds the state of one NewPlan call.
type planner struct {
	l    *disklayout.Layout
	o    PlanOptions
	plan *Plan
	// devMap maps captured device paths to target device paths.
	devMap map[string]string
	// sizes are the planned sizes of target partitions, by path.
	sizes map[string]int64
}

// note records why part of the layout was left out.
func (p *planner) note(format string, args ...any) {
	p.plan.Notes = append(p.plan.Notes, fmt.Sprintf(format, args...))
}

// run plans the disks in diskOrder on the targets, then RAID, LVM and
// the filesystems.
func (p *planner) run(targets []Disk) (*Plan, error) {
	order, err := p.diskOrder()
	if err != nil {
		return nil, err
	}
	if len(targets) > len(order) {
		return nil, fmt.Errorf("plan: %d target disks, but the layout has %d", len(targets), len(order))
	}
	for i, di := range order {
		d := p.l.Disks[di]
		if i >= len(targets) {
			p.note("captured disk %s left out: no target disk for it", d.Path)
			continue
		}
		dp, err := p.disk(d, targets[i])
		if err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		p.plan.Disks = append(p.plan.Disks, dp)
	}
	if err := p.raid(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if err := p.lvm(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if err := p.filesystems(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if !slices.ContainsFunc(p.plan.Filesystems, func(f FilesystemPlan) bool { return f.Mountpoint == "/" }) {
		return nil, errors.New("plan: the layout's root filesystem is on no planned device")
	}
	return p.plan, nil
}

// diskOrder returns indexes of l.Disks: those holding "/" first, then the
// others in layout order.
func (p *planner) diskOrder() ([]int, error) {
	var rootDev string
	for _, f := range p.l.Filesystems {
		if f.Mountpoint == "/" {
			rootDev = f.Device
			break
		}
	}
	if rootDev == "" {
		return nil, errors.New("plan: the layout has no root filesystem on a block device; give a layout override")
	}
	var order []int
	for _, name := range p.disksOf(rootDev, 0) {
		for i, d := range p.l.Disks {
			if d.Path == name && !slices.Contains(order, i) {
				order = append(order, i)
			}
		}
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("plan: the root filesystem's device %s is on none of the layout's disks", rootDev)
	}
	for i := range p.l.Disks {
		if !slices.Contains(order, i) {
			order = append(order, i)
		}
	}
	return order, nil
}

// disksOf returns the captured disk paths under device dev, through RAID
// and LVM.
func (p *planner) disksOf(dev string, depth int) []string {
	if depth > 8 {
		return nil
	}
	for _, d := range p.l.Disks {
		if d.Path == dev {
			return []string{d.Path}
		}
		for _, part := range d.Partitions {
			if part.Path == dev {
				return []string{d.Path}
			}
		}
	}
	var out []string
	for _, a := range p.l.RAID {
		if a.Path == dev {
			for _, m := range slices.Concat(a.Devices, a.Spares) {
				out = append(out, p.disksOf(m, depth+1)...)
			}
			return out
		}
	}
	if p.l.LVM != nil {
		for _, lv := range p.l.LVM.LogicalVolumes {
			if lv.Path == dev || mapperPath(lv.VG, lv.Name) == dev {
				for _, vg := range p.l.LVM.VolumeGroups {
					if vg.Name == lv.VG {
						for _, pv := range vg.PVs {
							out = append(out, p.disksOf(pv.Device, depth+1)...)
						}
					}
				}
				return out
			}
		}
	}
	return nil
}

// mapperPath is the device-mapper node of a logical volume: dashes in
// either name are doubled.
func mapperPath(vg, lv string) string {
	return "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// partitionPath is the device node of partition n of disk: "/dev/vda2",
// or with a "p" when the disk's name ends in a digit ("/dev/nvme0n1p2",
// "/dev/loop3p2").
func partitionPath(disk string, n int) string {
	if c := disk[len(disk)-1]; c >= '0' && c <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// isExtendedType reports whether a "dos" type code is an extended
// partition.
func isExtendedType(t string) bool {
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(t), "0x")) {
	case "5", "05", "f", "0f", "85":
		return true
	}
	return false
}

// fsOn returns the captured filesystem on device dev, if any.
func (p *planner) fsOn(dev string) *disklayout.Filesystem {
	for i := range p.l.Filesystems {
		if p.l.Filesystems[i].Device == dev {
			return &p.l.Filesystems[i]
		}
	}
	return nil
}

// disk plans one target disk from captured disk d.
func (p *planner) disk(d disklayout.Disk, t Disk) (DiskPlan, error) {
	dp := DiskPlan{Source: d.Path, Path: t.Path, SizeBytes: t.SizeBytes, SectorSize: sectorSize(t), Table: d.Table}
	if d.Table == "" {
		p.devMap[d.Path] = t.Path
		if len(d.Partitions) > 0 {
			return dp, fmt.Errorf("captured disk %s has partitions but no table type", d.Path)
		}
		p.sizes[t.Path] = t.SizeBytes
		return dp, nil
	}
	if d.Table != "gpt" && d.Table != "dos" {
		return dp, fmt.Errorf("captured disk %s has a %q partition table; goldcast makes gpt and dos only", d.Path, d.Table)
	}
	if p.o.KeepPartitionIDs {
		dp.ID = d.ID
	}
	// Lay partitions out in the order they lie on the disk, which for
	// "dos" puts the logical ones right after their extended one.
	parts := slices.Clone(d.Partitions)
	slices.SortStableFunc(parts, func(a, b disklayout.Partition) int { return cmp.Compare(a.StartBytes, b.StartBytes) })
	var ls []leaf
	for _, part := range parts {
		pp := PartitionPlan{
			Number:   part.Number,
			Path:     partitionPath(t.Path, part.Number),
			Source:   part.Path,
			Type:     part.Type,
			Name:     part.Name,
			Attrs:    part.Attrs,
			Bootable: slices.Contains(part.Flags, "boot"),
			Flags:    part.Flags,
		}
		if d.Table == "gpt" && p.o.KeepPartitionIDs {
			pp.UUID = part.UUID
		}
		if d.Table == "dos" && isExtendedType(part.Type) {
			pp.Extended = true
			dp.Partitions = append(dp.Partitions, pp)
			continue
		}
		dp.Partitions = append(dp.Partitions, pp)
		lf := leaf{label: fmt.Sprintf("partition %d", part.Number), grow: part.Grow,
			fixed: ceilMiB(part.SizeBytes), weight: max(1, ceilMiB(part.SizeBytes)), min: 1}
		if f := p.fsOn(part.Path); f != nil {
			lf.min = max(lf.min, ceilMiB(minFilesystemBytes(f.Type)))
			what := f.Type
			if f.Mountpoint != "" {
				what += " on " + f.Mountpoint
				lf.min = max(lf.min, ceilMiB(p.o.MinBytes[f.Mountpoint]))
			}
			lf.label += " (" + what + ")"
		} else if a, f := p.arrayOn(part.Path); f != nil {
			// A RAID member holds its share of the array's filesystem.
			need := max(minFilesystemBytes(f.Type), p.o.MinBytes[f.Mountpoint])
			lf.min = max(lf.min, ceilMiB(need/int64(dataMembers(a.Level, max(a.RaidDevices, len(a.Devices))))))
			lf.label += fmt.Sprintf(" (%s member of %s, %s", a.Level, a.Path, f.Type)
			if f.Mountpoint != "" {
				lf.label += " on " + f.Mountpoint
			}
			lf.label += ")"
		}
		if slices.Contains(part.Flags, "bios_grub") {
			lf.pinned = true
			lf.label += " (bios_grub)"
		}
		ls = append(ls, lf)
	}
	if err := layOut(&dp, ls, d.Path); err != nil {
		return dp, err
	}
	for _, pp := range dp.Partitions {
		p.devMap[pp.Source] = pp.Path
		p.sizes[pp.Path] = pp.Size * int64(dp.SectorSize)
	}
	return dp, nil
}

// sectorSize is a target's logical sector size, 512 when unknown.
func sectorSize(t Disk) int {
	if t.SectorSize > 0 {
		return t.SectorSize
	}
	return 512
}

// ceilMiB rounds bytes up to whole MiB.
func ceilMiB(b int64) int64 {
	return (b + MiB - 1) / MiB
}

// leaf is a partition that holds data (not an extended container), as
// the sizing sees it; layOut matches leaves to the non-extended
// partitions in order. Sizes are in MiB.
type leaf struct {
	// label names the partition in messages.
	label string
	// fixed is the size to keep, when not grow or percent.
	fixed int64
	// percent is a share of the usable space (overrides only).
	percent float64
	// grow takes the rest of the disk.
	grow bool
	// min is the least size scaling may leave.
	min int64
	// weight is the size scaling shrinks in proportion.
	weight int64
	// pinned leaves keep their size when the others are scaled.
	pinned bool
}

// usableMiB returns the MiB boundary where the last partition must end on
// a disk of size bytes: before the backup GPT, or at the 2 TiB limit of a
// 512-byte-sector "dos" table.
func usableMiB(table string, size int64, ss int) int64 {
	sectors := size / int64(ss)
	switch table {
	case "gpt":
		// Backup header in the last sector, 16 KiB of entries before it.
		sectors -= 1 + (16384+int64(ss)-1)/int64(ss)
	case "dos":
		sectors = min(sectors, 1<<32)
	}
	return sectors * int64(ss) / MiB
}

// layOut sizes the leaves of dp to fit the disk and places every
// partition, one after the other from 1 MiB, logical partitions 1 MiB
// apart inside their extended one.
func layOut(dp *DiskPlan, ls []leaf, source string) error {
	logical := 0
	for _, pp := range dp.Partitions {
		if pp.Number >= 5 && dp.Table == "dos" {
			logical++
		}
	}
	end := usableMiB(dp.Table, dp.SizeBytes, dp.SectorSize)
	avail := end - 1 - int64(logical)
	sizes, err := allocate(ls, avail)
	if err != nil {
		usable := max(0, avail)
		return fmt.Errorf("disk %s (%s, %d MiB usable) is too small for the layout of %s: %w", dp.Path, formatMiB(dp.SizeBytes), usable, source, err)
	}
	perMiB := int64(MiB / dp.SectorSize)
	cursor := int64(1) // MiB
	ext := -1
	li := 0
	for i := range dp.Partitions {
		pp := &dp.Partitions[i]
		if pp.Extended {
			ext = i
			pp.Start = cursor * perMiB
			continue
		}
		if dp.Table == "dos" && pp.Number >= 5 {
			cursor++ // room for the logical partition's EBR
		}
		pp.Start = cursor * perMiB
		pp.Size = sizes[li] * perMiB
		cursor += sizes[li]
		li++
		if ext >= 0 && (pp.Number >= 5) {
			dp.Partitions[ext].Size = cursor*perMiB - dp.Partitions[ext].Start
		}
	}
	if ext >= 0 && dp.Partitions[ext].Size == 0 {
		dp.Partitions[ext].Size = perMiB // an empty extended partition
	}
	return nil
}

// allocate gives each leaf a size in MiB within avail MiB.
func allocate(ls []leaf, avail int64) ([]int64, error) {
	sizes := make([]int64, len(ls))
	var sum int64
	g := -1
	for i, l := range ls {
		switch {
		case l.grow && g < 0:
			g = i
		case l.percent > 0:
			sizes[i] = max(1, int64(float64(avail)*l.percent/100))
		default:
			sizes[i] = max(1, l.fixed)
		}
		sum += sizes[i]
	}
	if g >= 0 {
		if rest := avail - sum; rest >= max(1, ls[g].min) {
			sizes[g] = rest
			return sizes, nil
		}
	} else if sum <= avail {
		return sizes, nil
	}
	// Too small: shrink the unpinned leaves in proportion, when their
	// minimums leave room for that.
	var need []string
	var pinnedSum, weights int64
	for i, l := range ls {
		switch {
		case i == g:
			need = append(need, fmt.Sprintf("%s at least %d MiB (grows)", l.label, max(1, l.min)))
		default:
			need = append(need, fmt.Sprintf("%s %d MiB", l.label, sizes[i]))
		}
		if l.pinned && i != g {
			pinnedSum += sizes[i]
		} else {
			weights += max(1, l.weight)
		}
	}
	room := avail - pinnedSum
	needText := strings.Join(need, ", ")
	var mins int64
	for i, l := range ls {
		if l.pinned && i != g {
			mins += sizes[i]
		} else {
			mins += max(1, l.min)
		}
	}
	if room <= 0 || weights <= room || mins > avail {
		return nil, fmt.Errorf("the partitions need %s", needText)
	}
	var scaled int64
	for i, l := range ls {
		if l.pinned && i != g || i == g {
			continue
		}
		sizes[i] = max(1, max(1, l.weight)*room/weights)
		scaled += sizes[i]
	}
	if g >= 0 {
		sizes[g] = room - scaled
	}
	var under []string
	for i, l := range ls {
		if sizes[i] < l.min {
			under = append(under, fmt.Sprintf("%s would get %d MiB, below its minimum of %d MiB", l.label, sizes[i], l.min))
		}
	}
	if len(under) > 0 {
		return nil, fmt.Errorf("the partitions need %s; shrunk in proportion to fit, %s", needText, strings.Join(under, "; "))
	}
	return sizes, nil
}

// raid plans the md arrays whose members landed on target disks.
func (p *planner) raid() error {
	for _, a := range p.l.RAID {
		rp := RAIDPlan{Path: a.Path, Level: a.Level, Metadata: a.Metadata, UUID: a.UUID, ChunkKiB: a.ChunkKiB}
		if _, name, ok := strings.Cut(a.MDName, ":"); ok {
			rp.Name = name
		} else {
			rp.Name = a.MDName
		}
		if strings.HasPrefix(a.Metadata, "external") {
			return fmt.Errorf("RAID array %s has %s metadata (a firmware RAID container); goldcast creates Linux md arrays only", a.Path, a.Metadata)
		}
		missing := 0
		for _, m := range a.Devices {
			if t, ok := p.devMap[m]; ok {
				rp.Devices = append(rp.Devices, t)
			} else {
				rp.Devices = append(rp.Devices, "missing")
				missing++
			}
		}
		for i := len(a.Devices); i < a.RaidDevices; i++ {
			rp.Devices = append(rp.Devices, "missing")
			missing++
		}
		for _, s := range a.Spares {
			if t, ok := p.devMap[s]; ok {
				rp.Spares = append(rp.Spares, t)
			}
		}
		if missing == len(rp.Devices) {
			p.note("RAID array %s left out: none of its members is on a target disk", a.Path)
			continue
		}
		if missing > 0 {
			if missing > redundancy(a.Level, len(rp.Devices)) {
				return fmt.Errorf("RAID array %s (%s) would miss %d of %d members, which its level cannot run without; name more target disks", a.Path, a.Level, missing, len(rp.Devices))
			}
			p.note("RAID array %s is created degraded: %d of %d members have no target disk", a.Path, missing, len(rp.Devices))
		}
		p.devMap[a.Path] = a.Path
		p.plan.RAID = append(p.plan.RAID, rp)
	}
	return nil
}

// arrayOn returns the captured RAID array that partition dev is a member
// of and the filesystem on that array, if both exist.
func (p *planner) arrayOn(dev string) (*disklayout.RAIDArray, *disklayout.Filesystem) {
	for i, a := range p.l.RAID {
		if slices.Contains(a.Devices, dev) {
			if f := p.fsOn(a.Path); f != nil {
				return &p.l.RAID[i], f
			}
		}
	}
	return nil, nil
}

// dataMembers is how many of an array's n members hold data rather than
// copies or parity: the array's size over a member's.
func dataMembers(level string, n int) int {
	switch level {
	case "raid0", "linear":
		return max(n, 1)
	case "raid4", "raid5":
		return max(n-1, 1)
	case "raid6":
		return max(n-2, 1)
	case "raid10":
		return max(n/2, 1)
	}
	return 1
}

// redundancy is how many members an array of level and n members can
// lack and still run.
func redundancy(level string, n int) int {
	switch level {
	case "raid1":
		return n - 1
	case "raid4", "raid5", "raid10":
		return 1
	case "raid6":
		return 2
	}
	return 0
}

// lvm plans the volume groups whose physical volumes landed on target
// devices.
func (p *planner) lvm() error {
	if p.l.LVM == nil {
		return nil
	}
	for _, vg := range p.l.LVM.VolumeGroups {
		vp := VolumeGroupPlan{Name: vg.Name, ExtentSizeBytes: vg.ExtentSizeBytes}
		var lost []string
		for _, pv := range vg.PVs {
			if t, ok := p.devMap[pv.Device]; ok {
				vp.PVs = append(vp.PVs, t)
			} else {
				lost = append(lost, pv.Device)
			}
		}
		if len(vp.PVs) == 0 {
			p.note("volume group %s left out: none of its physical volumes is on a target disk", vg.Name)
			continue
		}
		if len(lost) > 0 {
			return fmt.Errorf("volume group %s has physical volumes %s with no target disk; name more target disks", vg.Name, strings.Join(lost, ", "))
		}
		var used int64
		var lvs []disklayout.LogicalVolume
		for _, lv := range p.l.LVM.LogicalVolumes {
			if lv.VG == vg.Name {
				lvs = append(lvs, lv)
				used += lv.SizeBytes
			}
		}
		extent := max(vg.ExtentSizeBytes, 1)
		for i, lv := range lvs {
			lp := LogicalVolumePlan{Name: lv.Name, SizeBytes: lv.SizeBytes, Path: "/dev/" + vg.Name + "/" + lv.Name}
			// The last volume of a group the captured volumes filled
			// takes what is free on the new disk.
			if i == len(lvs)-1 && vg.SizeBytes-used < extent {
				lp.Rest = true
				lp.SizeBytes = 0
			}
			vp.LVs = append(vp.LVs, lp)
			p.devMap[lv.Path] = lp.Path
			p.devMap[mapperPath(vg.Name, lv.Name)] = lp.Path
		}
		p.plan.VolumeGroups = append(p.plan.VolumeGroups, vp)
	}
	return nil
}

// filesystems plans the captured filesystems whose devices are planned.
// A filesystem goldcast cannot make is left out with a note when it was
// not mounted (another system's partition), and is an error when it was.
func (p *planner) filesystems() error {
	for _, f := range p.l.Filesystems {
		if f.Device == "" || f.File != "" {
			if f.Mountpoint != "" || f.Type == "swap" {
				what := f.Mountpoint
				if f.File != "" {
					what = "swap file " + f.File
				}
				p.note("%s (%s) left out: it has no block device to make", what, f.Type)
			}
			continue
		}
		dev, ok := p.devMap[f.Device]
		if !ok {
			p.note("%s %s on %s left out: its device is on no target disk", f.Type, cmpOr(f.Mountpoint, "(unmounted)"), f.Device)
			continue
		}
		fp := FilesystemPlan{
			Device:     dev,
			Source:     f.Device,
			Type:       f.Type,
			Label:      f.Label,
			Mountpoint: f.Mountpoint,
			Options:    f.Options,
			SizeBytes:  p.sizes[dev],
			ESP:        p.isESP(f.Device),
		}
		if f.Type == "btrfs" && f.FSRoot != "" && f.FSRoot != "/" {
			fp.FSRoot = f.FSRoot
		}
		if !p.o.NewFilesystemUUIDs {
			fp.UUID = f.UUID
		}
		if _, _, err := mkfsCommand(fp); err != nil {
			if f.Mountpoint != "" {
				return fmt.Errorf("%s on %s: %w", f.Mountpoint, f.Device, err)
			}
			p.note("%s on %s left out: %v", f.Type, f.Device, err)
			continue
		}
		p.plan.Filesystems = append(p.plan.Filesystems, fp)
	}
	return nil
}

// isESP reports whether captured partition dev has the esp flag.
func (p *planner) isESP(dev string) bool {
	for _, d := range p.l.Disks {
		for _, part := range d.Partitions {
			if part.Path == dev {
				return slices.Contains(part.Flags, "esp")
			}
		}
	}
	return false
}

// cmpOr returns the first non-empty string.
func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// String describes the plan for people, a line per disk, partition,
// array, volume group, filesystem and note.
func (p *Plan) String() string {
	var b strings.Builder
	for _, d := range p.Disks {
		table := cmpOr(d.Table, "no partition table")
		fmt.Fprintf(&b, "disk %s: %s, %s, from %s\n", d.Path, table, formatMiB(d.SizeBytes), d.Source)
		for _, pp := range d.Partitions {
			ss := int64(d.SectorSize)
			fmt.Fprintf(&b, "  %s: %s at %s", pp.Path, formatMiB(pp.Size*ss), formatMiB(pp.Start*ss))
			if pp.Extended {
				b.WriteString(", extended")
			}
			if len(pp.Flags) > 0 {
				b.WriteString(", " + strings.Join(pp.Flags, ","))
			}
			if pp.Name != "" {
				fmt.Fprintf(&b, ", name %q", pp.Name)
			}
			b.WriteString("\n")
		}
	}
	for _, r := range p.RAID {
		fmt.Fprintf(&b, "raid %s: %s of %s\n", r.Path, r.Level, strings.Join(r.Devices, " "))
	}
	for _, v := range p.VolumeGroups {
		var lvs []string
		for _, lv := range v.LVs {
			size := formatMiB(lv.SizeBytes)
			if lv.Rest {
				size = "the rest"
			}
			lvs = append(lvs, lv.Name+" "+size)
		}
		fmt.Fprintf(&b, "lvm %s on %s: %s\n", v.Name, strings.Join(v.PVs, " "), strings.Join(lvs, ", "))
	}
	for _, f := range p.Filesystems {
		fmt.Fprintf(&b, "%s %s", f.Type, f.Device)
		if f.Mountpoint != "" {
			fmt.Fprintf(&b, " on %s", f.Mountpoint)
		}
		if f.Label != "" {
			fmt.Fprintf(&b, " label %q", f.Label)
		}
		uuid := f.UUID
		if uuid == "" {
			uuid = "new"
		}
		fmt.Fprintf(&b, " uuid %s\n", uuid)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}
