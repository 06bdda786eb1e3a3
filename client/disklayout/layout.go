// Package disklayout records the disk layout of a golden client so that an
// installer can recreate it on another machine.
//
// Capture looks at a mounted root ("/" on a running golden client, or the
// directory where a golden client's filesystems are mounted) and records
// the disks that hold its filesystems: their partition tables (sizes in
// bytes, so they can be scaled to a new disk, with the last partition
// marked to grow), the filesystems with their labels, UUIDs and mount
// options, swap, md RAID arrays and LVM volume groups. The result, a
// Layout, is stored as JSON in the image's image.json; the doc comments of
// the types below describe that format.
//
// Capture reads /proc/self/mountinfo, /proc/swaps and /proc/mdstat, and
// runs lsblk, sfdisk, blkid, mdadm and the LVM tools (pvs, vgs, lvs). A
// missing tool never fails a capture: what it would have provided is left
// out, and a line in Layout.Notes says so.
package disklayout

import "time"

// FormatVersion is the version of the Layout format that Capture writes.
// It changes only when a field changes meaning or is removed.
const FormatVersion = 1

// Layout is the disk layout of one captured system.
type Layout struct {
	// Version is the format version of this record: FormatVersion when
	// Capture wrote it.
	Version int `json:"version"`
	// Host is the captured system's host name: the running host's name
	// when the root "/" was captured, else the first line of
	// <root>/etc/hostname (empty when that file is missing).
	Host string `json:"host,omitempty"`
	// CapturedAt is when the capture ran, in UTC, to the second.
	CapturedAt time.Time `json:"captured_at"`
	// Root is the directory that was captured, as an absolute path with
	// symbolic links resolved, on the machine that ran the capture.
	// Mount points in Filesystems are relative to it.
	Root string `json:"root"`
	// Disks are the whole disks holding the captured filesystems, plus
	// every disk sharing a RAID array or LVM volume group with them, in
	// the kernel's order. Removable media, loop devices and RAM-backed
	// devices (zram) are left out unless the root filesystem is on them.
	Disks []Disk `json:"disks,omitempty"`
	// Filesystems are, in this order: the root filesystem (mount point
	// "/"), the other local filesystems mounted below the root in mount
	// order (parents before children), active swap, and last the
	// filesystems and swap found on the captured disks that are not
	// mounted (mount point empty).
	Filesystems []Filesystem `json:"filesystems,omitempty"`
	// RAID are the md RAID arrays built on the captured disks.
	RAID []RAIDArray `json:"raid,omitempty"`
	// LVM holds the LVM volume groups with a physical volume on the
	// captured disks or arrays; nil when there are none, or when the LVM
	// tools are missing (then Notes says so).
	LVM *LVM `json:"lvm,omitempty"`
	// Notes explain what was left out of the capture and why: a missing
	// tool, a skipped mount, a root with no block device. They are for
	// people; nothing should parse them.
	Notes []string `json:"notes,omitempty"`
}

// Disk is a whole disk and its partition table.
type Disk struct {
	// Name is the kernel's name for the disk, such as "sda", "nvme0n1" or
	// "vda".
	Name string `json:"name"`
	// Path is the disk's device node on the captured machine, such as
	// "/dev/sda".
	Path string `json:"path"`
	// Model is the model the disk reports, when it reports one.
	Model string `json:"model,omitempty"`
	// Serial is the serial number the disk reports, when it reports one.
	Serial string `json:"serial,omitempty"`
	// SizeBytes is the size of the whole disk in bytes.
	SizeBytes int64 `json:"size_bytes"`
	// SectorSize is the disk's logical sector size in bytes (512 or
	// 4096), the unit its partition table is written in.
	SectorSize int `json:"sector_size,omitempty"`
	// Table is the partition table type as sfdisk names it: "gpt" or
	// "dos" (MBR). It is empty when the disk has no partition table (a
	// filesystem, RAID member or LVM physical volume on the whole disk)
	// or when the table could not be read (then Notes says why).
	Table string `json:"table,omitempty"`
	// ID is the partition table's identifier: the disk GUID for "gpt"
	// (such as "5E1F3C2A-8B4D-4E6F-9A0B-1C2D3E4F5A6B"), the disk signature
	// for "dos" (such as "0x8c3e51a2"), as sfdisk prints it.
	ID string `json:"id,omitempty"`
	// Partitions are the partitions in the order of the table.
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is one entry of a partition table.
type Partition struct {
	// Number is the partition number, as in "/dev/sda2" (2). On "dos"
	// tables 1 to 4 are primary or extended partitions and 5 up are
	// logical partitions inside the extended one.
	Number int `json:"number"`
	// Path is the partition's device node on the captured machine, such as
	// "/dev/sda2" or "/dev/nvme0n1p2"; Filesystems, RAID and LVM refer to
	// partitions by it.
	Path string `json:"path"`
	// StartBytes is the partition's offset from the start of the disk in
	// bytes.
	StartBytes int64 `json:"start_bytes"`
	// SizeBytes is the partition's size in bytes.
	SizeBytes int64 `json:"size_bytes"`
	// Type is the partition type as sfdisk prints and accepts it: an
	// uppercase type GUID on "gpt" (such as
	// "0FC63DAF-8483-4772-8E79-3D69D8477DE4"), a hexadecimal type code
	// without "0x" on "dos" (such as "83", "fd" or "5").
	Type string `json:"type"`
	// Name is the GPT partition name (PARTLABEL); empty on "dos".
	Name string `json:"name,omitempty"`
	// UUID is the partition's PARTUUID: the GPT partition GUID, or on
	// "dos" the disk signature and partition number ("8c3e51a2-02") as
	// the kernel derives it.
	UUID string `json:"uuid,omitempty"`
	// Attrs are the GPT attribute bits as sfdisk prints them, such as
	// "RequiredPartition LegacyBIOSBootable GUID:63".
	Attrs string `json:"attrs,omitempty"`
	// Flags name the partition's roles, derived from its type and
	// attributes: "boot" (dos active flag), "esp" (EFI System),
	// "bios_grub" (BIOS boot), "legacy_boot" (GPT LegacyBIOSBootable),
	// "raid" (Linux RAID), "lvm" (Linux LVM), "swap" (Linux swap).
	Flags []string `json:"flags,omitempty"`
	// Grow is true for the partition that reaches the end of the disk
	// (it ends less than GrowSlack bytes before it), and for an extended
	// partition that does: an installer stretches it over the rest of a
	// larger disk, or shrinks it on a smaller one.
	Grow bool `json:"grow,omitempty"`
}

// GrowSlack is how close to the end of the disk a partition must end to be
// marked Grow: 1 MiB for the backup GPT and the end alignment partitioning
// tools leave, plus 1 MiB of alignment.
const GrowSlack = 2 << 20

// Filesystem is a filesystem or swap area of the captured system.
type Filesystem struct {
	// Device is the block device holding the filesystem, as the device
	// node on the captured machine: a partition ("/dev/sda2"), a RAID
	// array ("/dev/md0"), a logical volume ("/dev/mapper/vg0-home") or a
	// whole disk ("/dev/vdb"). It is empty for a filesystem with no block
	// device (tmpfs, overlay) and for a swap file.
	Device string `json:"device,omitempty"`
	// Source is the mount source as the kernel reports it, when it differs
	// from Device: "/dev/root", "overlay", "tmpfs".
	Source string `json:"source,omitempty"`
	// Type is the filesystem type: "ext4", "xfs", "vfat", "btrfs",
	// "swap", ...
	Type string `json:"type"`
	// Mountpoint is where the filesystem is mounted, relative to the
	// captured root: "/" for the root itself, "/boot" for <root>/boot.
	// It is empty for swap and for filesystems that were not mounted.
	Mountpoint string `json:"mountpoint,omitempty"`
	// FSRoot is the directory of the filesystem mounted at Mountpoint
	// when that is not its top: a btrfs subvolume ("/@home"), or the
	// bound directory of a root that is a bind mount.
	FSRoot string `json:"fs_root,omitempty"`
	// Label is the filesystem label (LABEL=).
	Label string `json:"label,omitempty"`
	// UUID is the filesystem UUID (UUID=).
	UUID string `json:"uuid,omitempty"`
	// Options are the per-mount options ("rw,nosuid,relatime"); for swap,
	// "pri=N" when a priority was set.
	Options string `json:"options,omitempty"`
	// SuperOptions are the filesystem's own options, as the kernel shows
	// them for the superblock ("rw,errors=remount-ro",
	// "rw,space_cache=v2,subvolid=256,subvol=/@").
	SuperOptions string `json:"super_options,omitempty"`
	// File is, for a swap file, its path relative to the captured root.
	File string `json:"file,omitempty"`
	// SizeBytes is the size of Device in bytes; for a swap file, the swap
	// size the kernel reports (the file less its first page).
	SizeBytes int64 `json:"size_bytes,omitempty"`
}

// RAIDArray is a Linux md RAID array.
type RAIDArray struct {
	// Name is the kernel's name for the array, such as "md0" or "md127".
	Name string `json:"name"`
	// Path is the array's device node, such as "/dev/md0".
	Path string `json:"path"`
	// Level is the RAID personality: "raid0", "raid1", "raid5", "raid6",
	// "raid10", "linear".
	Level string `json:"level"`
	// Metadata is the superblock format: "1.2", "1.0", "0.90", or
	// "external:..." for container formats such as Intel IMSM.
	Metadata string `json:"metadata,omitempty"`
	// UUID is the array UUID as mdadm prints it
	// ("3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e"); empty when mdadm is
	// missing.
	UUID string `json:"uuid,omitempty"`
	// MDName is the array's name in its superblock, "homehost:name" (what
	// mdadm --name sets); empty for 0.90 metadata or when mdadm is
	// missing.
	MDName string `json:"md_name,omitempty"`
	// RaidDevices is the number of member slots of the array (mdadm
	// --raid-devices), including missing members of a degraded array.
	RaidDevices int `json:"raid_devices"`
	// Devices are the device nodes of the active members, in role order.
	Devices []string `json:"devices"`
	// Spares are the device nodes of the spare members.
	Spares []string `json:"spares,omitempty"`
	// Failed are the device nodes of members marked faulty.
	Failed []string `json:"failed,omitempty"`
	// ChunkKiB is the chunk size in KiB for striped levels (raid0, raid5,
	// raid6, raid10).
	ChunkKiB int `json:"chunk_kib,omitempty"`
	// SizeBytes is the array's usable size in bytes.
	SizeBytes int64 `json:"size_bytes"`
}

// LVM holds LVM volume groups and their logical volumes.
type LVM struct {
	// VolumeGroups are the volume groups, sorted by name.
	VolumeGroups []VolumeGroup `json:"volume_groups"`
	// LogicalVolumes are the visible logical volumes of those groups, in
	// the order lvs lists them (by group, then name).
	LogicalVolumes []LogicalVolume `json:"logical_volumes,omitempty"`
}

// VolumeGroup is an LVM volume group.
type VolumeGroup struct {
	// Name is the volume group name.
	Name string `json:"name"`
	// UUID is the volume group UUID as LVM prints it.
	UUID string `json:"uuid,omitempty"`
	// ExtentSizeBytes is the physical extent size in bytes (usually 4 MiB).
	ExtentSizeBytes int64 `json:"extent_size_bytes"`
	// SizeBytes is the volume group's total size in bytes.
	SizeBytes int64 `json:"size_bytes"`
	// PVs are the group's physical volumes, in the order pvs lists them.
	PVs []PhysicalVolume `json:"pvs"`
}

// PhysicalVolume is an LVM physical volume.
type PhysicalVolume struct {
	// Device is the physical volume's device node, such as "/dev/md0" or
	// "/dev/sda3".
	Device string `json:"device"`
	// UUID is the physical volume UUID as LVM prints it.
	UUID string `json:"uuid,omitempty"`
	// SizeBytes is the physical volume's size in bytes.
	SizeBytes int64 `json:"size_bytes"`
}

// LogicalVolume is an LVM logical volume.
type LogicalVolume struct {
	// Name is the logical volume name.
	Name string `json:"name"`
	// VG is the name of the volume group holding it.
	VG string `json:"vg"`
	// UUID is the logical volume UUID as LVM prints it.
	UUID string `json:"uuid,omitempty"`
	// SizeBytes is the logical volume's size in bytes.
	SizeBytes int64 `json:"size_bytes"`
	// SegType is the segment type: "linear", "striped", "raid1",
	// "thin-pool", "thin", ...
	SegType string `json:"seg_type,omitempty"`
	// Attr is the lv_attr string as lvs prints it ("-wi-ao----").
	Attr string `json:"attr,omitempty"`
	// Path is the logical volume's device path, such as "/dev/vg0/home".
	Path string `json:"path,omitempty"`
}
