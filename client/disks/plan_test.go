package disks

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/goldcast/goldcast/client/disklayout"
)

// s512 converts MiB to 512-byte sectors.
func s512(mib int64) int64 { return mib * 2048 }

// gib is n GiB in bytes.
func gib(n int64) int64 { return n << 30 }

// gptLayout is a golden client on a 10 GiB GPT disk: a 512 MiB ESP, 2 GiB
// of swap and an ext4 root reaching the end of the disk.
func gptLayout() *disklayout.Layout {
	return &disklayout.Layout{
		Version: 1,
		Disks: []disklayout.Disk{{
			Name: "sda", Path: "/dev/sda", SizeBytes: gib(10), SectorSize: 512, Table: "gpt",
			ID: "11111111-2222-4333-8444-555555555555",
			Partitions: []disklayout.Partition{
				{Number: 1, Path: "/dev/sda1", StartBytes: 1 * MiB, SizeBytes: 512 * MiB, Type: gptESP, Name: "EFI",
					UUID: "AAAAAAAA-0000-4000-8000-000000000001", Flags: []string{"esp"}},
				{Number: 2, Path: "/dev/sda2", StartBytes: 513 * MiB, SizeBytes: 2048 * MiB, Type: gptSwap, Name: "swap",
					UUID: "AAAAAAAA-0000-4000-8000-000000000002", Flags: []string{"swap"}},
				{Number: 3, Path: "/dev/sda3", StartBytes: 2561 * MiB, SizeBytes: (10240 - 2561 - 1) * MiB, Type: gptLinux, Name: "root",
					UUID: "AAAAAAAA-0000-4000-8000-000000000003", Grow: true},
			},
		}},
		Filesystems: []disklayout.Filesystem{
			{Device: "/dev/sda3", Type: "ext4", Mountpoint: "/", Label: "root", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13", Options: "rw,relatime"},
			{Device: "/dev/sda1", Type: "vfat", Mountpoint: "/boot/efi", Label: "EFI", UUID: "ABCD-1234", Options: "rw,relatime"},
			{Device: "/dev/sda2", Type: "swap", UUID: "5d6e7f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f"},
		},
	}
}

// gptPlan is what gptLayout becomes on a target of endMiB usable MiB with
// the root and the other sizes given.
func gptPlan(path string, size int64, esp, swap, root int64) *Plan {
	return &Plan{
		Disks: []DiskPlan{{
			Source: "/dev/sda", Path: path, SizeBytes: size, SectorSize: 512, Table: "gpt",
			Partitions: []PartitionPlan{
				{Number: 1, Path: path + "1", Source: "/dev/sda1", Start: s512(1), Size: s512(esp), Type: gptESP, Name: "EFI", Flags: []string{"esp"}},
				{Number: 2, Path: path + "2", Source: "/dev/sda2", Start: s512(1 + esp), Size: s512(swap), Type: gptSwap, Name: "swap", Flags: []string{"swap"}},
				{Number: 3, Path: path + "3", Source: "/dev/sda3", Start: s512(1 + esp + swap), Size: s512(root), Type: gptLinux, Name: "root"},
			},
		}},
		Filesystems: []FilesystemPlan{
			{Device: path + "3", Source: "/dev/sda3", Type: "ext4", Mountpoint: "/", Label: "root", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13", Options: "rw,relatime", SizeBytes: root * MiB},
			{Device: path + "1", Source: "/dev/sda1", Type: "vfat", Mountpoint: "/boot/efi", Label: "EFI", UUID: "ABCD-1234", Options: "rw,relatime", SizeBytes: esp * MiB, ESP: true},
			{Device: path + "2", Source: "/dev/sda2", Type: "swap", UUID: "5d6e7f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f", SizeBytes: swap * MiB},
		},
	}
}

// dosLayout is a golden client on an 8 GiB MBR disk: a bootable /boot, an
// extended partition holding swap and the root, to the end of the disk.
func dosLayout() *disklayout.Layout {
	return &disklayout.Layout{
		Version: 1,
		Disks: []disklayout.Disk{{
			Name: "sda", Path: "/dev/sda", SizeBytes: gib(8), SectorSize: 512, Table: "dos", ID: "0x8c3e51a2",
			Partitions: []disklayout.Partition{
				{Number: 1, Path: "/dev/sda1", StartBytes: 1 * MiB, SizeBytes: 512 * MiB, Type: "83", UUID: "8c3e51a2-01", Flags: []string{"boot"}},
				{Number: 2, Path: "/dev/sda2", StartBytes: 513 * MiB, SizeBytes: (8192 - 513) * MiB, Type: "5", UUID: "8c3e51a2-02", Grow: true},
				{Number: 5, Path: "/dev/sda5", StartBytes: 514 * MiB, SizeBytes: 1024 * MiB, Type: "82", UUID: "8c3e51a2-05", Flags: []string{"swap"}},
				{Number: 6, Path: "/dev/sda6", StartBytes: 1539 * MiB, SizeBytes: (8192 - 1539) * MiB, Type: "83", UUID: "8c3e51a2-06", Grow: true},
			},
		}},
		Filesystems: []disklayout.Filesystem{
			{Device: "/dev/sda6", Type: "ext4", Mountpoint: "/", UUID: "11111111-1111-4111-8111-111111111111"},
			{Device: "/dev/sda1", Type: "ext2", Mountpoint: "/boot", Label: "boot", UUID: "22222222-2222-4222-8222-222222222222"},
			{Device: "/dev/sda5", Type: "swap", UUID: "33333333-3333-4333-8333-333333333333"},
		},
	}
}

// biosGrubLayout is a GPT disk with a BIOS boot partition and a root.
func biosGrubLayout() *disklayout.Layout {
	return &disklayout.Layout{
		Version: 1,
		Disks: []disklayout.Disk{{
			Name: "vda", Path: "/dev/vda", SizeBytes: gib(20), SectorSize: 512, Table: "gpt",
			Partitions: []disklayout.Partition{
				{Number: 1, Path: "/dev/vda1", StartBytes: 1 * MiB, SizeBytes: 1 * MiB, Type: gptBIOSBoot, Flags: []string{"bios_grub"}},
				{Number: 2, Path: "/dev/vda2", StartBytes: 2 * MiB, SizeBytes: (20480 - 3) * MiB, Type: gptLinux, Attrs: "LegacyBIOSBootable",
					Flags: []string{"legacy_boot"}, Grow: true},
			},
		}},
		Filesystems: []disklayout.Filesystem{
			{Device: "/dev/vda2", Type: "xfs", Mountpoint: "/", UUID: "44444444-4444-4444-8444-444444444444"},
		},
	}
}

func TestNewPlan(t *testing.T) {
	vda := func(size int64) Disk { return Disk{Name: "vda", Path: "/dev/vda", SizeBytes: size, SectorSize: 512} }
	tests := []struct {
		name    string
		layout  *disklayout.Layout
		targets []Disk
		opts    PlanOptions
		want    *Plan
	}{
		{
			// 20 GiB GPT: the backup GPT takes the last MiB.
			name: "gpt bigger disk", layout: gptLayout(), targets: []Disk{vda(gib(20))},
			want: gptPlan("/dev/vda", gib(20), 512, 2048, 20479-2561),
		},
		{
			name: "gpt smaller disk", layout: gptLayout(), targets: []Disk{vda(gib(4))},
			want: gptPlan("/dev/vda", gib(4), 512, 2048, 4095-2561),
		},
		{
			// 2 GiB cannot hold the 2560 MiB of fixed partitions: all
			// three shrink by 2046/10238 (esp 512 -> 102, swap 2048 ->
			// 409) and the root takes the rest.
			name: "gpt scaled down", layout: gptLayout(), targets: []Disk{vda(gib(2))},
			want: gptPlan("/dev/vda", gib(2), 102, 409, 2046-102-409),
		},
		{
			name: "gpt keep ids", layout: gptLayout(), targets: []Disk{vda(gib(20))}, opts: PlanOptions{KeepPartitionIDs: true},
			want: func() *Plan {
				p := gptPlan("/dev/vda", gib(20), 512, 2048, 20479-2561)
				p.Disks[0].ID = "11111111-2222-4333-8444-555555555555"
				for i := range p.Disks[0].Partitions {
					p.Disks[0].Partitions[i].UUID = gptLayout().Disks[0].Partitions[i].UUID
				}
				return p
			}(),
		},
		{
			name: "gpt new filesystem uuids", layout: gptLayout(), targets: []Disk{vda(gib(20))}, opts: PlanOptions{NewFilesystemUUIDs: true},
			want: func() *Plan {
				p := gptPlan("/dev/vda", gib(20), 512, 2048, 20479-2561)
				for i := range p.Filesystems {
					p.Filesystems[i].UUID = ""
				}
				return p
			}(),
		},
		{
			name: "nvme names partitions with p", layout: gptLayout(),
			targets: []Disk{{Name: "nvme0n1", Path: "/dev/nvme0n1", SizeBytes: gib(20), SectorSize: 512}},
			want: func() *Plan {
				p := gptPlan("/dev/nvme0n1p", gib(20), 512, 2048, 20479-2561)
				p.Disks[0].Path = "/dev/nvme0n1"
				return p
			}(),
		},
		{
			// 16 GiB MBR: no backup table; each logical partition sits
			// 1 MiB after the one before (its EBR), the extended
			// partition spans them to the end.
			name: "dos with boot flag and logical partitions", layout: dosLayout(), targets: []Disk{vda(gib(16))},
			want: &Plan{
				Disks: []DiskPlan{{
					Source: "/dev/sda", Path: "/dev/vda", SizeBytes: gib(16), SectorSize: 512, Table: "dos",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/vda1", Source: "/dev/sda1", Start: s512(1), Size: s512(512), Type: "83", Bootable: true, Flags: []string{"boot"}},
						{Number: 2, Path: "/dev/vda2", Source: "/dev/sda2", Start: s512(513), Size: s512(16384 - 513), Type: "5", Extended: true},
						{Number: 5, Path: "/dev/vda5", Source: "/dev/sda5", Start: s512(514), Size: s512(1024), Type: "82", Flags: []string{"swap"}},
						{Number: 6, Path: "/dev/vda6", Source: "/dev/sda6", Start: s512(1539), Size: s512(16384 - 1539), Type: "83"},
					},
				}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/vda6", Source: "/dev/sda6", Type: "ext4", Mountpoint: "/", UUID: "11111111-1111-4111-8111-111111111111", SizeBytes: (16384 - 1539) * MiB},
					{Device: "/dev/vda1", Source: "/dev/sda1", Type: "ext2", Mountpoint: "/boot", Label: "boot", UUID: "22222222-2222-4222-8222-222222222222", SizeBytes: 512 * MiB},
					{Device: "/dev/vda5", Source: "/dev/sda5", Type: "swap", UUID: "33333333-3333-4333-8333-333333333333", SizeBytes: 1024 * MiB},
				},
			},
		},
		{
			name: "bios_grub", layout: biosGrubLayout(), targets: []Disk{vda(gib(4))},
			want: &Plan{
				Disks: []DiskPlan{{
					Source: "/dev/vda", Path: "/dev/vda", SizeBytes: gib(4), SectorSize: 512, Table: "gpt",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/vda1", Source: "/dev/vda1", Start: s512(1), Size: s512(1), Type: gptBIOSBoot, Flags: []string{"bios_grub"}},
						{Number: 2, Path: "/dev/vda2", Source: "/dev/vda2", Start: s512(2), Size: s512(4095 - 2), Type: gptLinux, Attrs: "LegacyBIOSBootable", Flags: []string{"legacy_boot"}},
					},
				}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/vda2", Source: "/dev/vda2", Type: "xfs", Mountpoint: "/", UUID: "44444444-4444-4444-8444-444444444444", SizeBytes: (4095 - 2) * MiB},
				},
			},
		},
		{
			// An unmounted NTFS partition (another system's) is left out
			// with a note; its partition is still made.
			name: "unmounted filesystem goldcast cannot make",
			layout: func() *disklayout.Layout {
				l := gptLayout()
				l.Filesystems[2] = disklayout.Filesystem{Device: "/dev/sda2", Type: "ntfs", UUID: "0123456789ABCDEF"}
				return l
			}(),
			targets: []Disk{vda(gib(20))},
			want: func() *Plan {
				p := gptPlan("/dev/vda", gib(20), 512, 2048, 20479-2561)
				p.Filesystems = p.Filesystems[:2]
				p.Notes = []string{`ntfs on /dev/sda2 left out: filesystem "ntfs" on /dev/vda2: goldcast makes ext2, ext3, ext4, xfs, btrfs, vfat and swap only`}
				return p
			}(),
		},
		{
			name: "filesystem on the whole disk",
			layout: &disklayout.Layout{
				Disks:       []disklayout.Disk{{Name: "vdb", Path: "/dev/vdb", SizeBytes: gib(1)}},
				Filesystems: []disklayout.Filesystem{{Device: "/dev/vdb", Type: "ext4", Mountpoint: "/", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13"}},
			},
			targets: []Disk{vda(gib(3))},
			want: &Plan{
				Disks:       []DiskPlan{{Source: "/dev/vdb", Path: "/dev/vda", SizeBytes: gib(3), SectorSize: 512}},
				Filesystems: []FilesystemPlan{{Device: "/dev/vda", Source: "/dev/vdb", Type: "ext4", Mountpoint: "/", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13", SizeBytes: gib(3)}},
			},
		},
		{
			// 4 KiB sectors: 256 per MiB; the backup GPT takes 5 sectors,
			// so the last MiB is lost.
			name: "4k sectors", layout: biosGrubLayout(),
			targets: []Disk{{Name: "sdb", Path: "/dev/sdb", SizeBytes: gib(8), SectorSize: 4096}},
			want: &Plan{
				Disks: []DiskPlan{{
					Source: "/dev/vda", Path: "/dev/sdb", SizeBytes: gib(8), SectorSize: 4096, Table: "gpt",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/sdb1", Source: "/dev/vda1", Start: 256, Size: 256, Type: gptBIOSBoot, Flags: []string{"bios_grub"}},
						{Number: 2, Path: "/dev/sdb2", Source: "/dev/vda2", Start: 512, Size: (8191 - 2) * 256, Type: gptLinux, Attrs: "LegacyBIOSBootable", Flags: []string{"legacy_boot"}},
					},
				}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/sdb2", Source: "/dev/vda2", Type: "xfs", Mountpoint: "/", UUID: "44444444-4444-4444-8444-444444444444", SizeBytes: (8191 - 2) * MiB},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewPlan(tt.layout, tt.targets, tt.opts)
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NewPlan (-want +got):\n%s", diff)
			}
			checkPlanGeometry(t, got)
		})
	}
}

// checkPlanGeometry checks what every plan must satisfy: partitions are
// MiB-aligned, do not overlap, lie inside the usable area, and logical
// partitions lie inside their extended one with room for an EBR.
func checkPlanGeometry(t *testing.T, p *Plan) {
	t.Helper()
	for _, d := range p.Disks {
		perMiB := int64(MiB / d.SectorSize)
		end := usableMiB(d.Table, d.SizeBytes, d.SectorSize) * perMiB
		var prevEnd int64
		var ext *PartitionPlan
		for i := range d.Partitions {
			pp := &d.Partitions[i]
			if pp.Start%perMiB != 0 || pp.Size%perMiB != 0 {
				t.Errorf("%s: start %d size %d not MiB-aligned", pp.Path, pp.Start, pp.Size)
			}
			if pp.Start+pp.Size > end {
				t.Errorf("%s ends at %d, past the usable end %d", pp.Path, pp.Start+pp.Size, end)
			}
			if pp.Extended {
				ext = pp
				if pp.Start < prevEnd {
					t.Errorf("%s overlaps the partition before", pp.Path)
				}
				prevEnd = pp.Start
				continue
			}
			if pp.Number >= 5 {
				if ext == nil || pp.Start <= ext.Start || pp.Start+pp.Size > ext.Start+ext.Size {
					t.Errorf("logical %s outside its extended partition", pp.Path)
				}
				if pp.Start-prevEnd < 1 {
					t.Errorf("logical %s has no room for its EBR", pp.Path)
				}
			}
			if pp.Start < prevEnd {
				t.Errorf("%s starts at %d, before the previous partition ends (%d)", pp.Path, pp.Start, prevEnd)
			}
			prevEnd = pp.Start + pp.Size
		}
	}
}

func TestNewPlanErrors(t *testing.T) {
	vda := func(size int64) Disk { return Disk{Name: "vda", Path: "/dev/vda", SizeBytes: size, SectorSize: 512} }
	tests := []struct {
		name    string
		layout  *disklayout.Layout
		targets []Disk
		opts    PlanOptions
		want    string
	}{
		{
			// Shrinking the 2 GiB layout proportionally leaves the root
			// 1535 MiB, below the 2000 MiB the image needs.
			name: "too small", layout: gptLayout(), targets: []Disk{vda(gib(2))},
			opts: PlanOptions{MinBytes: map[string]int64{"/": 2000 * MiB}},
			want: "plan: disk /dev/vda (2048 MiB, 2046 MiB usable) is too small for the layout of /dev/sda: the partitions need " +
				"partition 1 (vfat on /boot/efi) 512 MiB, partition 2 (swap) 2048 MiB, partition 3 (ext4 on /) at least 2000 MiB (grows); " +
				"shrunk in proportion to fit, partition 3 (ext4 on /) would get 1535 MiB, below its minimum of 2000 MiB",
		},
		{
			// Fixed partitions fit, but the root's need is more than
			// scaling could ever give.
			name: "root need beyond the disk", layout: gptLayout(), targets: []Disk{vda(gib(4))},
			opts: PlanOptions{MinBytes: map[string]int64{"/": 8000 * MiB}},
			want: "plan: disk /dev/vda (4096 MiB, 4094 MiB usable) is too small for the layout of /dev/sda: the partitions need " +
				"partition 1 (vfat on /boot/efi) 512 MiB, partition 2 (swap) 2048 MiB, partition 3 (ext4 on /) at least 8000 MiB (grows)",
		},
		{
			name: "xfs minimum", layout: biosGrubLayout(), targets: []Disk{vda(200 * MiB)},
			want: "plan: disk /dev/vda (200 MiB, 198 MiB usable) is too small for the layout of /dev/vda: the partitions need " +
				"partition 1 (bios_grub) 1 MiB, partition 2 (xfs on /) at least 300 MiB (grows)",
		},
		{
			name: "mounted filesystem goldcast cannot make",
			layout: func() *disklayout.Layout {
				l := gptLayout()
				l.Filesystems[1].Type = "zfs"
				return l
			}(),
			targets: []Disk{vda(gib(20))},
			want:    `plan: /boot/efi on /dev/sda1: filesystem "zfs" on /dev/vda1: goldcast makes ext2, ext3, ext4, xfs, btrfs, vfat and swap only`,
		},
		{
			name: "no layout", layout: nil, targets: []Disk{vda(gib(2))},
			want: "plan: the image records no disk layout; give a layout override",
		},
		{
			name: "more targets than disks", layout: gptLayout(), targets: []Disk{vda(gib(2)), {Name: "vdb", Path: "/dev/vdb", SizeBytes: gib(2)}},
			want: "plan: 2 target disks, but the layout has 1",
		},
		{
			name: "same target twice", layout: raidLayout(), targets: []Disk{vda(gib(2)), vda(gib(2))},
			want: "plan: target disk /dev/vda is named twice",
		},
		{
			name: "no target", layout: gptLayout(),
			want: "plan: no target disk",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewPlan(tt.layout, tt.targets, tt.opts)
			if err == nil {
				t.Fatalf("NewPlan succeeded with %+v, want error %q", got, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("NewPlan error (-want +got):\n%s", diff)
			}
		})
	}
}

// raidLayout is a golden client with its root on a RAID1 of two disks'
// first partitions.
func raidLayout() *disklayout.Layout {
	disk := func(n string) disklayout.Disk {
		return disklayout.Disk{Name: n, Path: "/dev/" + n, SizeBytes: gib(4), SectorSize: 512, Table: "gpt",
			Partitions: []disklayout.Partition{{Number: 1, Path: "/dev/" + n + "1", StartBytes: MiB, SizeBytes: 4094 * MiB, Type: gptRAID, Flags: []string{"raid"}, Grow: true}}}
	}
	return &disklayout.Layout{
		Version: 1,
		Disks:   []disklayout.Disk{disk("sda"), disk("sdb")},
		RAID: []disklayout.RAIDArray{{Name: "md0", Path: "/dev/md0", Level: "raid1", Metadata: "1.2", UUID: "3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e",
			MDName: "golden:root", RaidDevices: 2, Devices: []string{"/dev/sda1", "/dev/sdb1"}, SizeBytes: 4093 * MiB}},
		Filesystems: []disklayout.Filesystem{{Device: "/dev/md0", Type: "ext4", Mountpoint: "/", UUID: "55555555-5555-4555-8555-555555555555"}},
	}
}

func TestNewPlanRAID(t *testing.T) {
	part := func(disk string) DiskPlan {
		src := map[string]string{"/dev/vda": "/dev/sda", "/dev/vdb": "/dev/sdb"}[disk]
		return DiskPlan{Source: src, Path: disk, SizeBytes: gib(8), SectorSize: 512, Table: "gpt",
			Partitions: []PartitionPlan{{Number: 1, Path: disk + "1", Source: src + "1", Start: s512(1), Size: s512(8190), Type: gptRAID, Flags: []string{"raid"}}}}
	}
	md := func(devs ...string) []RAIDPlan {
		return []RAIDPlan{{Path: "/dev/md0", Level: "raid1", Metadata: "1.2", Name: "root", UUID: "3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e", Devices: devs}}
	}
	fs := []FilesystemPlan{{Device: "/dev/md0", Source: "/dev/md0", Type: "ext4", Mountpoint: "/", UUID: "55555555-5555-4555-8555-555555555555"}}
	tests := []struct {
		name    string
		targets []string
		want    *Plan
	}{
		{"two disks", []string{"/dev/vda", "/dev/vdb"}, &Plan{Disks: []DiskPlan{part("/dev/vda"), part("/dev/vdb")}, RAID: md("/dev/vda1", "/dev/vdb1"), Filesystems: fs}},
		{"one disk: degraded", []string{"/dev/vda"}, &Plan{Disks: []DiskPlan{part("/dev/vda")}, RAID: md("/dev/vda1", "missing"), Filesystems: fs,
			Notes: []string{"captured disk /dev/sdb left out: no target disk for it", "RAID array /dev/md0 is created degraded: 1 of 2 members have no target disk"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var targets []Disk
			for _, p := range tt.targets {
				targets = append(targets, Disk{Path: p, SizeBytes: gib(8), SectorSize: 512})
			}
			got, err := NewPlan(raidLayout(), targets, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NewPlan (-want +got):\n%s", diff)
			}
		})
	}

	// A member partition must hold the array's root: with / needing
	// 5000 MiB, a 4 GiB disk is too small.
	_, err := NewPlan(raidLayout(), []Disk{{Path: "/dev/vda", SizeBytes: gib(4)}}, PlanOptions{MinBytes: map[string]int64{"/": 5000 * MiB}})
	want := "plan: disk /dev/vda (4096 MiB, 4094 MiB usable) is too small for the layout of /dev/sda: the partitions need " +
		"partition 1 (raid1 member of /dev/md0, ext4 on /) at least 5000 MiB (grows)"
	if err == nil || err.Error() != want {
		t.Errorf("raid member too small: error %v, want %q", err, want)
	}

	// RAID0 cannot run without a member.
	l := raidLayout()
	l.RAID[0].Level = "raid0"
	_, err = NewPlan(l, []Disk{{Path: "/dev/vda", SizeBytes: gib(8)}}, PlanOptions{})
	want = "plan: RAID array /dev/md0 (raid0) would miss 1 of 2 members, which its level cannot run without; name more target disks"
	if err == nil || err.Error() != want {
		t.Errorf("raid0 on one disk: error %v, want %q", err, want)
	}
}

func TestNewPlanLVM(t *testing.T) {
	l := &disklayout.Layout{
		Version: 1,
		Disks: []disklayout.Disk{{Name: "sda", Path: "/dev/sda", SizeBytes: gib(10), SectorSize: 512, Table: "gpt",
			Partitions: []disklayout.Partition{
				{Number: 1, Path: "/dev/sda1", StartBytes: MiB, SizeBytes: 1024 * MiB, Type: gptLinux},
				{Number: 2, Path: "/dev/sda2", StartBytes: 1025 * MiB, SizeBytes: (10240 - 1026) * MiB, Type: gptLVM, Flags: []string{"lvm"}, Grow: true},
			}}},
		LVM: &disklayout.LVM{
			VolumeGroups: []disklayout.VolumeGroup{{Name: "vg-0", ExtentSizeBytes: 4 * MiB, SizeBytes: 9212 * MiB,
				PVs: []disklayout.PhysicalVolume{{Device: "/dev/sda2", SizeBytes: (10240 - 1026) * MiB}}}},
			LogicalVolumes: []disklayout.LogicalVolume{
				{Name: "root", VG: "vg-0", SizeBytes: 4096 * MiB, Path: "/dev/vg-0/root"},
				{Name: "home", VG: "vg-0", SizeBytes: 5116 * MiB, Path: "/dev/vg-0/home"},
			},
		},
		Filesystems: []disklayout.Filesystem{
			{Device: "/dev/mapper/vg--0-root", Type: "ext4", Mountpoint: "/", UUID: "66666666-6666-4666-8666-666666666666"},
			{Device: "/dev/sda1", Type: "ext4", Mountpoint: "/boot", UUID: "77777777-7777-4777-8777-777777777777"},
			{Device: "/dev/vg-0/home", Type: "xfs", Mountpoint: "/home", UUID: "88888888-8888-4888-8888-888888888888"},
		},
	}
	got, err := NewPlan(l, []Disk{{Path: "/dev/sdb", SizeBytes: gib(20), SectorSize: 512}}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Plan{
		Disks: []DiskPlan{{Source: "/dev/sda", Path: "/dev/sdb", SizeBytes: gib(20), SectorSize: 512, Table: "gpt",
			Partitions: []PartitionPlan{
				{Number: 1, Path: "/dev/sdb1", Source: "/dev/sda1", Start: s512(1), Size: s512(1024), Type: gptLinux},
				{Number: 2, Path: "/dev/sdb2", Source: "/dev/sda2", Start: s512(1025), Size: s512(20479 - 1025), Type: gptLVM, Flags: []string{"lvm"}},
			}}},
		VolumeGroups: []VolumeGroupPlan{{Name: "vg-0", ExtentSizeBytes: 4 * MiB, PVs: []string{"/dev/sdb2"}, LVs: []LogicalVolumePlan{
			{Name: "root", SizeBytes: 4096 * MiB, Path: "/dev/vg-0/root"},
			{Name: "home", Rest: true, Path: "/dev/vg-0/home"},
		}}},
		Filesystems: []FilesystemPlan{
			{Device: "/dev/vg-0/root", Source: "/dev/mapper/vg--0-root", Type: "ext4", Mountpoint: "/", UUID: "66666666-6666-4666-8666-666666666666"},
			{Device: "/dev/sdb1", Source: "/dev/sda1", Type: "ext4", Mountpoint: "/boot", UUID: "77777777-7777-4777-8777-777777777777", SizeBytes: 1024 * MiB},
			{Device: "/dev/vg-0/home", Source: "/dev/vg-0/home", Type: "xfs", Mountpoint: "/home", UUID: "88888888-8888-4888-8888-888888888888"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NewPlan (-want +got):\n%s", diff)
	}
}

func TestOverride(t *testing.T) {
	vda := Disk{Name: "vda", Path: "/dev/vda", SizeBytes: gib(10), SectorSize: 512}
	tests := []struct {
		name   string
		json   string
		layout *disklayout.Layout
		want   *Plan
	}{
		{
			// 10 GiB GPT: 10238 MiB usable after the first MiB and the
			// backup GPT; 10% of it is 1023 MiB (rounded down).
			name: "gpt with percent and grow, captured labels",
			json: `{"disks":[{"partitions":[
				{"size":"512M","flags":["esp"],"fs":"vfat","mountpoint":"/boot/efi"},
				{"size":"10%","fs":"swap"},
				{"size":"grow","fs":"ext4","mountpoint":"/","name":"root"}]}]}`,
			layout: gptLayout(),
			want: &Plan{
				Disks: []DiskPlan{{Source: "override", Path: "/dev/vda", SizeBytes: gib(10), SectorSize: 512, Table: "gpt",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/vda1", Start: s512(1), Size: s512(512), Type: gptESP, Flags: []string{"esp"}},
						{Number: 2, Path: "/dev/vda2", Start: s512(513), Size: s512(1023), Type: gptSwap, Flags: []string{"swap"}},
						{Number: 3, Path: "/dev/vda3", Start: s512(1536), Size: s512(10239 - 1536), Type: gptLinux, Name: "root"},
					}}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/vda1", Source: "/dev/sda1", Type: "vfat", Mountpoint: "/boot/efi", Label: "EFI", UUID: "ABCD-1234", Options: "rw,relatime", SizeBytes: 512 * MiB, ESP: true},
					{Device: "/dev/vda2", Source: "/dev/sda2", Type: "swap", UUID: "5d6e7f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f", SizeBytes: 1023 * MiB},
					{Device: "/dev/vda3", Source: "/dev/sda3", Type: "ext4", Mountpoint: "/", Label: "root", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13", Options: "rw,relatime", SizeBytes: (10239 - 1536) * MiB},
				},
			},
		},
		{
			// A bare number is MiB; "2GB" is 2e9 bytes, 1907.3 MiB,
			// rounded up to 1908. No captured layout: random UUIDs.
			name: "dos with MB sizes, boot flag, no captured layout",
			json: `{"disks":[{"table":"dos","partitions":[
				{"size":256,"flags":["boot"],"fs":"ext4","mountpoint":"/boot","label":"boot"},
				{"size":"2GB","type":"swap","fs":"swap"},
				{"size":"grow","fs":"xfs","mountpoint":"/","uuid":"99999999-9999-4999-8999-999999999999","options":"noatime"}]}]}`,
			want: &Plan{
				Disks: []DiskPlan{{Source: "override", Path: "/dev/vda", SizeBytes: gib(10), SectorSize: 512, Table: "dos",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/vda1", Start: s512(1), Size: s512(256), Type: "83", Bootable: true, Flags: []string{"boot"}},
						{Number: 2, Path: "/dev/vda2", Start: s512(257), Size: s512(1908), Type: "82", Flags: []string{"swap"}},
						{Number: 3, Path: "/dev/vda3", Start: s512(2165), Size: s512(10240 - 2165), Type: "83"},
					}}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/vda1", Type: "ext4", Mountpoint: "/boot", Label: "boot", SizeBytes: 256 * MiB},
					{Device: "/dev/vda2", Type: "swap", SizeBytes: 1908 * MiB},
					{Device: "/dev/vda3", Type: "xfs", Mountpoint: "/", UUID: "99999999-9999-4999-8999-999999999999", Options: "noatime", SizeBytes: (10240 - 2165) * MiB},
				},
			},
		},
		{
			// grow need not be last: the swap after it keeps its size
			// and ends at the usable end.
			name: "grow in the middle",
			json: `{"disks":[{"partitions":[
				{"size":"1G","fs":"ext4","mountpoint":"/boot"},
				{"size":"grow","fs":"ext4","mountpoint":"/"},
				{"size":"1G","fs":"swap"}]}]}`,
			want: &Plan{
				Disks: []DiskPlan{{Source: "override", Path: "/dev/vda", SizeBytes: gib(10), SectorSize: 512, Table: "gpt",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/vda1", Start: s512(1), Size: s512(1024), Type: gptLinux},
						{Number: 2, Path: "/dev/vda2", Start: s512(1025), Size: s512(10239 - 1024 - 1025), Type: gptLinux},
						{Number: 3, Path: "/dev/vda3", Start: s512(10239 - 1024), Size: s512(1024), Type: gptSwap, Flags: []string{"swap"}},
					}}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/vda1", Type: "ext4", Mountpoint: "/boot", SizeBytes: 1024 * MiB},
					{Device: "/dev/vda2", Type: "ext4", Mountpoint: "/", SizeBytes: (10239 - 1024 - 1025) * MiB},
					{Device: "/dev/vda3", Type: "swap", SizeBytes: 1024 * MiB},
				},
			},
		},
		{
			name: "bios_grub and a raw type GUID",
			json: `{"disks":[{"partitions":[
				{"size":"1M","flags":["bios_grub"]},
				{"size":"grow","type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709","fs":"ext4","mountpoint":"/","flags":["legacy_boot"]}]}]}`,
			want: &Plan{
				Disks: []DiskPlan{{Source: "override", Path: "/dev/vda", SizeBytes: gib(10), SectorSize: 512, Table: "gpt",
					Partitions: []PartitionPlan{
						{Number: 1, Path: "/dev/vda1", Start: s512(1), Size: s512(1), Type: gptBIOSBoot, Flags: []string{"bios_grub"}},
						{Number: 2, Path: "/dev/vda2", Start: s512(2), Size: s512(10239 - 2), Type: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", Attrs: "LegacyBIOSBootable", Flags: []string{"legacy_boot"}},
					}}},
				Filesystems: []FilesystemPlan{
					{Device: "/dev/vda2", Type: "ext4", Mountpoint: "/", SizeBytes: (10239 - 2) * MiB},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ov Override
			dec := json.NewDecoder(strings.NewReader(tt.json))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ov); err != nil {
				t.Fatalf("decode override: %v", err)
			}
			got, err := NewPlan(tt.layout, []Disk{vda}, PlanOptions{Override: &ov})
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NewPlan (-want +got):\n%s", diff)
			}
			checkPlanGeometry(t, got)
		})
	}
}

func TestOverrideErrors(t *testing.T) {
	vda := Disk{Name: "vda", Path: "/dev/vda", SizeBytes: gib(1), SectorSize: 512}
	tests := []struct {
		name, json, want string
	}{
		{"two grow", `{"disks":[{"partitions":[{"size":"grow","fs":"ext4","mountpoint":"/"},{"size":"grow"}]}]}`,
			"plan: override disk 1 partition 2: only one partition per disk may grow"},
		{"unknown flag", `{"disks":[{"partitions":[{"size":"grow","fs":"ext4","mountpoint":"/","flags":["hidden"]}]}]}`,
			`plan: override disk 1 partition 1: unknown flag "hidden" (known: boot, legacy_boot, esp, bios_grub, raid, lvm, swap)`},
		{"bios_grub on dos", `{"disks":[{"table":"dos","partitions":[{"size":1,"flags":["bios_grub"]},{"size":"grow","fs":"ext4","mountpoint":"/"}]}]}`,
			"plan: override disk 1 partition 1: bios_grub partitions exist on gpt only"},
		{"no root", `{"disks":[{"partitions":[{"size":"grow","fs":"ext4","mountpoint":"/srv"}]}]}`,
			"plan: the layout override mounts nothing on /"},
		{"bad percent", `{"disks":[{"partitions":[{"size":"120%","fs":"ext4","mountpoint":"/"}]}]}`,
			`plan: override disk 1 partition 1: size "120%": want a percentage above 0 and at most 100`},
		{"bad unit", `{"disks":[{"partitions":[{"size":"12X","fs":"ext4","mountpoint":"/"}]}]}`,
			`plan: override disk 1 partition 1: size "12X": unknown unit "X" (use K, M, G, T, P for powers of 1024, KB, MB, GB, TB, PB for powers of 1000)`},
		{"unknown fs", `{"disks":[{"partitions":[{"size":"grow","fs":"zfs","mountpoint":"/"}]}]}`,
			`plan: override disk 1 partition 1: filesystem "zfs" on /dev/vda1: goldcast makes ext2, ext3, ext4, xfs, btrfs, vfat and swap only`},
		{"mount point without fs", `{"disks":[{"partitions":[{"size":"grow","mountpoint":"/"}]}]}`,
			"plan: override disk 1 partition 1: mount point / needs a filesystem type (fs), as the captured layout has none there"},
		{"too big", `{"disks":[{"partitions":[{"size":"2G","fs":"swap"},{"size":"grow","fs":"ext4","mountpoint":"/"}]}]}`,
			"plan: disk /dev/vda (1024 MiB, 1022 MiB usable) is too small for the layout of the override: the partitions need " +
				"partition 1 (swap) 2048 MiB, partition 2 (ext4 on /) at least 8 MiB (grows); shrunk in proportion to fit, " +
				"partition 2 (ext4 on /) would get 4 MiB, below its minimum of 8 MiB"},
		{"percent over 100", `{"disks":[{"partitions":[{"size":"60%","fs":"swap"},{"size":"50%","fs":"ext4","mountpoint":"/"}]}]}`,
			"plan: override disk 1 partition 2: the percentages of override disk 1 add up to more than 100%"},
		{"five on dos", `{"disks":[{"table":"dos","partitions":[{"size":1},{"size":1},{"size":1},{"size":1},{"size":"grow","fs":"ext4","mountpoint":"/"}]}]}`,
			"plan: override disk 1: 5 partitions on a dos table, at most 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ov Override
			if err := json.Unmarshal([]byte(tt.json), &ov); err != nil {
				t.Fatalf("decode override: %v", err)
			}
			got, err := NewPlan(nil, []Disk{vda}, PlanOptions{Override: &ov})
			if err == nil {
				t.Fatalf("NewPlan succeeded with %+v, want error %q", got, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("NewPlan error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		def  int64
		want int64
	}{
		{"512", MiB, 512 * MiB},
		{"512M", 1, 512 * MiB},
		{"512MiB", 1, 512 * MiB},
		{"1.5G", 1, 3 << 29},
		{"100GB", 1, 100e9},
		{"2T", 1, 2 << 40},
		{"4096B", MiB, 4096},
		{"1k", 1, 1024},
		{"1KB", 1, 1000},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in, tt.def)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q, %d) = %d, %v; want %d", tt.in, tt.def, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "G", "1Q", "1MX", "-5"} {
		if got, err := ParseSize(bad, 1); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, got)
		}
	}
}

// TestOverrideYAML reads the documented override from YAML: the same keys,
// a bare number as MiB.
func TestOverrideYAML(t *testing.T) {
	const doc = `
disks:
  - table: gpt
    partitions:
      - size: 512
        flags: [esp]
        fs: vfat
        mountpoint: /boot/efi
      - {size: 10%, fs: swap}
      - size: grow
        fs: ext4
        mountpoint: /
`
	var ov Override
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&ov); err != nil {
		t.Fatal(err)
	}
	want := Override{Disks: []DiskOverride{{Table: "gpt", Partitions: []PartitionOverride{
		{Size: "512", Flags: []string{"esp"}, FS: "vfat", Mountpoint: "/boot/efi"},
		{Size: "10%", FS: "swap"},
		{Size: "grow", FS: "ext4", Mountpoint: "/"},
	}}}}
	if diff := cmp.Diff(want, ov); diff != "" {
		t.Errorf("yaml override (-want +got):\n%s", diff)
	}
	fixed, _, _, err := ov.Disks[0].Partitions[0].Size.parse()
	if err != nil || fixed != 512 {
		t.Errorf("size 512 = %d MiB, %v; want 512 MiB", fixed, err)
	}
}

func TestPlanString(t *testing.T) {
	p, err := NewPlan(raidLayout(), []Disk{{Path: "/dev/vda", SizeBytes: gib(8), SectorSize: 512}}, PlanOptions{NewFilesystemUUIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	want := `disk /dev/vda: gpt, 8192 MiB, from /dev/sda
  /dev/vda1: 8190 MiB at 1 MiB, raid
raid /dev/md0: raid1 of /dev/vda1 missing
ext4 /dev/md0 on / uuid new
note: captured disk /dev/sdb left out: no target disk for it
note: RAID array /dev/md0 is created degraded: 1 of 2 members have no target disk
`
	if diff := cmp.Diff(want, p.String()); diff != "" {
		t.Errorf("String (-want +got):\n%s", diff)
	}
}
