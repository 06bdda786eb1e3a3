package disks

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/goldcast/goldcast/client/disklayout"
)

// Override is a partition layout an administrator writes for a node,
// used instead of the one captured from the golden client. It travels in
// the node plan as JSON, or YAML with the same keys (gopkg.in/yaml.v3
// tags):
//
//	{"disks": [{"table": "gpt", "partitions": [
//	  {"size": "512M", "flags": ["esp"], "fs": "vfat", "mountpoint": "/boot/efi"},
//	  {"size": "4G", "fs": "swap"},
//	  {"size": "grow", "fs": "ext4", "mountpoint": "/"}
//	]}]}
//
// The first entry of Disks is laid on the first target disk (the one
// Select chose), the second on the second, and so on. An override
// describes partitions and their filesystems only; RAID and LVM come from
// the captured layout alone.
type Override struct {
	// Disks are the target disks' layouts, in target order.
	Disks []DiskOverride `json:"disks" yaml:"disks"`
}

// DiskOverride is one disk's partition table.
type DiskOverride struct {
	// Table is "gpt" (the default) or "dos".
	Table string `json:"table,omitempty" yaml:"table,omitempty"`
	// Partitions are laid out in this order from 1 MiB, each on a MiB
	// boundary. On "dos" at most four are allowed (goldcast makes no
	// logical partitions from an override).
	Partitions []PartitionOverride `json:"partitions" yaml:"partitions"`
}

// PartitionOverride is one partition and the filesystem on it.
type PartitionOverride struct {
	// Size is the partition's size: a number of MiB ("512", or a JSON
	// number 512), a size with a unit as ParseSize reads it ("512M",
	// "2G", "500MB"), a percentage of the disk's usable space ("25%"),
	// or "grow" for the rest of the disk (at most one partition per
	// disk). Sizes are rounded up to whole MiB.
	Size Size `json:"size" yaml:"size"`
	// Type is the partition type: "linux" (the default), "esp",
	// "bios_grub", "raid", "lvm", "swap", or a raw GPT type GUID or
	// "dos" hexadecimal code. When empty it follows Flags, then FS.
	Type string `json:"type,omitempty" yaml:"type,omitempty"`
	// Name is the GPT partition name.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Flags are any of "boot" (the "dos" active flag; on "gpt" the
	// LegacyBIOSBootable attribute), "legacy_boot", "esp", "bios_grub",
	// "raid", "lvm" and "swap"; all but the first two also choose Type
	// when it is empty.
	Flags []string `json:"flags,omitempty" yaml:"flags,omitempty"`
	// FS is the filesystem to make: "ext4", "ext3", "ext2", "xfs",
	// "vfat", "btrfs" or "swap"; empty for none, or for the type of the
	// captured filesystem at Mountpoint.
	FS string `json:"fs,omitempty" yaml:"fs,omitempty"`
	// Mountpoint is where the filesystem is mounted ("/", "/boot"). When
	// the captured layout has a filesystem there, its type, label, UUID
	// and options are the defaults for this one.
	Mountpoint string `json:"mountpoint,omitempty" yaml:"mountpoint,omitempty"`
	// Label is the filesystem label.
	Label string `json:"label,omitempty" yaml:"label,omitempty"`
	// UUID is the filesystem UUID (vfat: "ABCD-1234"); empty for the
	// captured one at Mountpoint, else a random one.
	UUID string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	// Options are the mount options for /etc/fstab.
	Options string `json:"options,omitempty" yaml:"options,omitempty"`
}

// Size is a partition size in an Override: see PartitionOverride.Size.
type Size string

// UnmarshalJSON accepts a string or a number of MiB. (YAML decoders
// read a number into the string as it is written.)
func (s *Size) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = Size(str)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("size %s: want a string or a number of MiB", b)
	}
	*s = Size(n.String())
	return nil
}

// parse returns the size as a leaf's fixed MiB, percent or grow.
func (s Size) parse() (fixed int64, percent float64, grow bool, err error) {
	t := strings.TrimSpace(string(s))
	switch {
	case t == "":
		return 0, 0, false, errors.New("no size (give MiB, a size with a unit, a percentage or \"grow\")")
	case strings.EqualFold(t, "grow"):
		return 0, 0, true, nil
	case strings.HasSuffix(t, "%"):
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, "%")), 64)
		if err != nil || v <= 0 || v > 100 {
			return 0, 0, false, fmt.Errorf("size %q: want a percentage above 0 and at most 100", t)
		}
		return 0, v, false, nil
	}
	b, err := ParseSize(t, MiB)
	if err != nil {
		return 0, 0, false, err
	}
	if b <= 0 {
		return 0, 0, false, fmt.Errorf("size %q: must be positive", t)
	}
	return ceilMiB(b), 0, false, nil
}

// knownFlags are the flags an override may set.
func knownFlag(f string) bool {
	switch f {
	case "boot", "legacy_boot", "esp", "bios_grub", "raid", "lvm", "swap":
		return true
	}
	return false
}

// overrideType chooses a partition's type code on table.
func overrideType(table string, po PartitionOverride) (string, error) {
	name := strings.ToLower(po.Type)
	if name == "" {
		for _, f := range []string{"esp", "bios_grub", "raid", "lvm", "swap"} {
			if slices.Contains(po.Flags, f) {
				name = f
				break
			}
		}
	}
	if name == "" && po.FS == "swap" {
		name = "swap"
	}
	if name == "" {
		name = "linux"
	}
	gpt := map[string]string{"linux": gptLinux, "esp": gptESP, "efi": gptESP, "bios_grub": gptBIOSBoot, "raid": gptRAID, "lvm": gptLVM, "swap": gptSwap}
	dos := map[string]string{"linux": "83", "esp": "ef", "efi": "ef", "raid": "fd", "lvm": "8e", "swap": "82"}
	switch table {
	case "gpt":
		if t, ok := gpt[name]; ok {
			return t, nil
		}
		if len(name) == 36 && strings.Count(name, "-") == 4 {
			return strings.ToUpper(name), nil
		}
	case "dos":
		if t, ok := dos[name]; ok {
			return t, nil
		}
		if name == "bios_grub" {
			return "", errors.New("bios_grub partitions exist on gpt only")
		}
		code := strings.TrimPrefix(name, "0x")
		if v, err := strconv.ParseUint(code, 16, 8); err == nil && v != 0 {
			if isExtendedType(code) {
				return "", errors.New("extended partitions cannot be given in an override")
			}
			return strconv.FormatUint(v, 16), nil
		}
	}
	return "", fmt.Errorf("unknown partition type %q for a %s table", po.Type, table)
}

// typeFlags derives flags from a type code, as disklayout does.
func typeFlags(table, typ string) []string {
	if table == "gpt" {
		switch strings.ToUpper(typ) {
		case gptESP:
			return []string{"esp"}
		case gptBIOSBoot:
			return []string{"bios_grub"}
		case gptRAID:
			return []string{"raid"}
		case gptLVM:
			return []string{"lvm"}
		case gptSwap:
			return []string{"swap"}
		}
		return nil
	}
	switch typ {
	case "ef":
		return []string{"esp"}
	case "fd":
		return []string{"raid"}
	case "8e":
		return []string{"lvm"}
	case "82":
		return []string{"swap"}
	}
	return nil
}

// planOverride plans o.Override on the targets, taking filesystem
// defaults from the captured layout l (which may be nil).
func planOverride(l *disklayout.Layout, targets []Disk, o PlanOptions) (*Plan, error) {
	ov := o.Override
	if len(ov.Disks) == 0 {
		return nil, errors.New("plan: the layout override has no disks")
	}
	if len(ov.Disks) > len(targets) {
		return nil, fmt.Errorf("plan: the layout override describes %d disks, but %d target disks were given", len(ov.Disks), len(targets))
	}
	plan := &Plan{}
	usedCaptured := map[int]bool{}
	for di, d := range ov.Disks {
		t := targets[di]
		table := cmpOr(d.Table, "gpt")
		if table != "gpt" && table != "dos" {
			return nil, fmt.Errorf("plan: override disk %d: table %q, want gpt or dos", di+1, d.Table)
		}
		if table == "dos" && len(d.Partitions) > 4 {
			return nil, fmt.Errorf("plan: override disk %d: %d partitions on a dos table, at most 4", di+1, len(d.Partitions))
		}
		if len(d.Partitions) == 0 {
			return nil, fmt.Errorf("plan: override disk %d has no partitions", di+1)
		}
		dp := DiskPlan{Source: "override", Path: t.Path, SizeBytes: t.SizeBytes, SectorSize: sectorSize(t), Table: table}
		var ls []leaf
		grows := 0
		var percents float64
		var fss []FilesystemPlan
		for pi, po := range d.Partitions {
			where := fmt.Sprintf("override disk %d partition %d", di+1, pi+1)
			fixed, pct, grow, err := po.Size.parse()
			if err != nil {
				return nil, fmt.Errorf("plan: %s: %w", where, err)
			}
			percents += pct
			if percents > 100 {
				return nil, fmt.Errorf("plan: %s: the percentages of override disk %d add up to more than 100%%", where, di+1)
			}
			if grow {
				grows++
				if grows > 1 {
					return nil, fmt.Errorf("plan: %s: only one partition per disk may grow", where)
				}
			}
			for _, f := range po.Flags {
				if !knownFlag(f) {
					return nil, fmt.Errorf("plan: %s: unknown flag %q (known: boot, legacy_boot, esp, bios_grub, raid, lvm, swap)", where, f)
				}
			}
			typ, err := overrideType(table, po)
			if err != nil {
				return nil, fmt.Errorf("plan: %s: %w", where, err)
			}
			n := pi + 1
			pp := PartitionPlan{Number: n, Path: partitionPath(t.Path, n), Type: typ}
			if table == "gpt" {
				pp.Name = po.Name
			}
			flags := typeFlags(table, typ)
			boot := slices.Contains(po.Flags, "boot")
			if table == "dos" && boot {
				pp.Bootable = true
				flags = append([]string{"boot"}, flags...)
			}
			if table == "gpt" && (boot || slices.Contains(po.Flags, "legacy_boot")) {
				pp.Attrs = "LegacyBIOSBootable"
				flags = append(flags, "legacy_boot")
			}
			pp.Flags = flags
			dp.Partitions = append(dp.Partitions, pp)

			fp, err := overrideFilesystem(l, po, pp.Path, usedCaptured, o)
			if err != nil {
				return nil, fmt.Errorf("plan: %s: %w", where, err)
			}
			lf := leaf{label: fmt.Sprintf("partition %d", n), fixed: fixed, percent: pct, grow: grow, min: 1,
				pinned: slices.Contains(pp.Flags, "bios_grub")}
			if lf.pinned {
				lf.label += " (bios_grub)"
			}
			if fp != nil {
				lf.min = max(1, ceilMiB(minFilesystemBytes(fp.Type)))
				what := fp.Type
				if fp.Mountpoint != "" {
					what += " on " + fp.Mountpoint
					lf.min = max(lf.min, ceilMiB(o.MinBytes[fp.Mountpoint]))
				}
				lf.label += " (" + what + ")"
				fp.ESP = slices.Contains(pp.Flags, "esp")
				fss = append(fss, *fp)
			}
			lf.weight = max(fixed, lf.min)
			ls = append(ls, lf)
		}
		// Percentages weigh what they would get.
		avail := usableMiB(table, t.SizeBytes, dp.SectorSize) - 1
		for i := range ls {
			if ls[i].percent > 0 {
				ls[i].weight = max(1, int64(float64(avail)*ls[i].percent/100))
			}
		}
		if err := layOut(&dp, ls, "the override"); err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		for i := range fss {
			for _, pp := range dp.Partitions {
				if pp.Path == fss[i].Device {
					fss[i].SizeBytes = pp.Size * int64(dp.SectorSize)
				}
			}
		}
		plan.Disks = append(plan.Disks, dp)
		plan.Filesystems = append(plan.Filesystems, fss...)
	}
	if !slices.ContainsFunc(plan.Filesystems, func(f FilesystemPlan) bool { return f.Mountpoint == "/" }) {
		return nil, errors.New("plan: the layout override mounts nothing on /")
	}
	seen := map[string]bool{}
	for _, f := range plan.Filesystems {
		if f.Mountpoint != "" && seen[f.Mountpoint] {
			return nil, fmt.Errorf("plan: the layout override mounts two filesystems on %s", f.Mountpoint)
		}
		seen[f.Mountpoint] = true
	}
	if l != nil {
		for i, f := range l.Filesystems {
			if !usedCaptured[i] && f.Device != "" && (f.Mountpoint != "" || f.Type == "swap") {
				plan.Notes = append(plan.Notes, fmt.Sprintf("captured %s %s on %s left out: the layout override has no place for it", f.Type, cmpOr(f.Mountpoint, "(unmounted)"), f.Device))
			}
		}
	}
	return plan, nil
}

// overrideFilesystem returns the filesystem po asks for on device dev, or
// nil for none, with defaults from the captured filesystem at the same
// mount point (or the first unused captured swap, for swap).
func overrideFilesystem(l *disklayout.Layout, po PartitionOverride, dev string, used map[int]bool, o PlanOptions) (*FilesystemPlan, error) {
	if po.Mountpoint != "" && !strings.HasPrefix(po.Mountpoint, "/") {
		return nil, fmt.Errorf("mount point %q is not absolute", po.Mountpoint)
	}
	var captured *disklayout.Filesystem
	if l != nil {
		for i, f := range l.Filesystems {
			if used[i] || f.Device == "" {
				continue
			}
			match := po.Mountpoint != "" && f.Mountpoint == po.Mountpoint
			match = match || po.Mountpoint == "" && po.FS == "swap" && f.Type == "swap"
			if match {
				used[i] = true
				captured = &l.Filesystems[i]
				break
			}
		}
	}
	fp := &FilesystemPlan{Device: dev, Type: po.FS, Mountpoint: po.Mountpoint, Label: po.Label, UUID: po.UUID, Options: po.Options}
	if captured != nil {
		fp.Source = captured.Device
		if fp.Type == "" {
			fp.Type = captured.Type
		}
		if fp.Type == captured.Type {
			if fp.Label == "" {
				fp.Label = captured.Label
			}
			if fp.UUID == "" && !o.NewFilesystemUUIDs {
				fp.UUID = captured.UUID
			}
			if fp.Options == "" {
				fp.Options = captured.Options
			}
		}
	}
	if fp.Type == "" {
		if po.Mountpoint != "" {
			return nil, fmt.Errorf("mount point %s needs a filesystem type (fs), as the captured layout has none there", po.Mountpoint)
		}
		return nil, nil
	}
	if fp.Type == "swap" && fp.Mountpoint != "" {
		return nil, fmt.Errorf("swap with mount point %s", fp.Mountpoint)
	}
	if _, _, err := mkfsCommand(*fp); err != nil {
		return nil, err
	}
	return fp, nil
}
