package disklayout

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixture reads a file of testdata.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []mountEntry
		wantErr bool
	}{
		{
			name: "root",
			in:   "27 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro\n",
			want: []mountEntry{{ID: 27, ParentID: 1, MajMin: "8:2", FSRoot: "/", Mountpoint: "/",
				Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda2", SuperOptions: "rw,errors=remount-ro"}},
		},
		{
			name: "no optional fields",
			in:   "36 35 98:0 /mnt1 /mnt2 rw,noatime - ext3 /dev/root rw,errors=continue",
			want: []mountEntry{{ID: 36, ParentID: 35, MajMin: "98:0", FSRoot: "/mnt1", Mountpoint: "/mnt2",
				Options: "rw,noatime", FSType: "ext3", Source: "/dev/root", SuperOptions: "rw,errors=continue"}},
		},
		{
			name: "several optional fields and btrfs subvolume",
			in:   "40 27 0:33 /@home /home rw,relatime shared:5 master:1 propagate_from:2 - btrfs /dev/nvme0n1p2 rw,ssd,space_cache=v2,subvolid=257,subvol=/@home\n",
			want: []mountEntry{{ID: 40, ParentID: 27, MajMin: "0:33", FSRoot: "/@home", Mountpoint: "/home",
				Options: "rw,relatime", FSType: "btrfs", Source: "/dev/nvme0n1p2",
				SuperOptions: "rw,ssd,space_cache=v2,subvolid=257,subvol=/@home"}},
		},
		{
			name: "escaped space, tab, backslash",
			in:   `74 27 0:45 /a\134b /mnt/nfs\040share\011x rw - nfs4 server:/ex\040port rw,vers=4.2`,
			want: []mountEntry{{ID: 74, ParentID: 27, MajMin: "0:45", FSRoot: `/a\b`, Mountpoint: "/mnt/nfs share\tx",
				Options: "rw", FSType: "nfs4", Source: "server:/ex port", SuperOptions: "rw,vers=4.2"}},
		},
		{
			name: "blank lines",
			in:   "\n27 1 8:2 / / rw - ext4 /dev/sda2 rw\n\n",
			want: []mountEntry{{ID: 27, ParentID: 1, MajMin: "8:2", FSRoot: "/", Mountpoint: "/",
				Options: "rw", FSType: "ext4", Source: "/dev/sda2", SuperOptions: "rw"}},
		},
		{name: "no separator", in: "27 1 8:2 / / rw shared:1 ext4 /dev/sda2 rw", wantErr: true},
		{name: "short", in: "27 1 8:2 /", wantErr: true},
		{name: "bad id", in: "x 1 8:2 / / rw - ext4 /dev/sda2 rw", wantErr: true},
		{name: "bad device number", in: "27 1 82 / / rw - ext4 /dev/sda2 rw", wantErr: true},
		{name: "nothing after separator", in: "27 1 8:2 / / rw - ext4", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMountinfo error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseMountinfo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMountinfoFixtures(t *testing.T) {
	tests := []struct {
		file      string
		count     int
		index     int
		wantEntry mountEntry
	}{
		{"mountinfo.txt", 24, 22, mountEntry{ID: 74, ParentID: 27, MajMin: "0:45", FSRoot: "/", Mountpoint: "/mnt/nfs share",
			Options: "rw,relatime", FSType: "nfs4", Source: "fileserver:/export/share",
			SuperOptions: "rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,local_lock=none"}},
		{"mountinfo-rescue.txt", 12, 6, mountEntry{ID: 80, ParentID: 24, MajMin: "8:2", FSRoot: "/", Mountpoint: "/mnt/golden",
			Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda2", SuperOptions: "rw"}},
		{"mountinfo-container.txt", 10, 9, mountEntry{ID: 621, ParentID: 612, MajMin: "8:2",
			FSRoot: "/var/lib/docker/containers/9f3c/hosts", Mountpoint: "/etc/hosts",
			Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda2", SuperOptions: "rw,errors=remount-ro"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseMountinfo(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.count {
				t.Fatalf("parseMountinfo: %d mounts, want %d", len(got), tt.count)
			}
			if diff := cmp.Diff(tt.wantEntry, got[tt.index]); diff != "" {
				t.Errorf("mount %d (-want +got):\n%s", tt.index, diff)
			}
		})
	}
}

func TestParseSwaps(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []swapEntry
		wantErr bool
	}{
		{
			name: "fixture",
			in:   fixture(t, "swaps.txt"),
			want: []swapEntry{
				{Filename: "/dev/sda3", Type: "partition", SizeBytes: 2097148 * 1024, Priority: -2},
				{Filename: "/swapfile", Type: "file", SizeBytes: 1048572 * 1024, Priority: -3},
				{Filename: "/dev/zram0", Type: "partition", SizeBytes: 4194300 * 1024, Priority: 100},
			},
		},
		{name: "header only", in: []byte("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")},
		{
			name: "escaped file name",
			in:   []byte("Filename Type Size Used Priority\n/var/swap\\040file file 1024 0 5\n"),
			want: []swapEntry{{Filename: "/var/swap file", Type: "file", SizeBytes: 1024 * 1024, Priority: 5}},
		},
		{name: "short line", in: []byte("Filename Type Size Used Priority\n/dev/sda3 partition 2097148\n"), wantErr: true},
		{name: "bad size", in: []byte("Filename Type Size Used Priority\n/dev/sda3 partition big 0 -2\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSwaps(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSwaps error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseSwaps (-want +got):\n%s", diff)
			}
		})
	}
}

// devSummary is what TestParseLsblk checks of each device.
type devSummary struct {
	KName, Name, Path, Type, MajMin string
	Size                            int64
	Removable                       bool
	FSType, Label, UUID             string
	Parents                         []string
}

func summarize(tr *blockTree) []devSummary {
	var out []devSummary
	for _, k := range tr.order {
		d := tr.devices[k]
		out = append(out, devSummary{
			KName: d.KName, Name: d.Name, Path: d.Path, Type: d.Type, MajMin: d.MajMin,
			Size: d.Size, Removable: d.Removable, FSType: d.FSType, Label: d.Label, UUID: d.UUID,
			Parents: d.parents,
		})
	}
	return out
}

func TestParseLsblk(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []devSummary
		wantErr bool
	}{
		{
			name: "fixture: disks, partitions, RAID under two members, LVM, removable",
			in:   fixture(t, "lsblk.json"),
			want: []devSummary{
				{KName: "loop0", Name: "loop0", Path: "/dev/loop0", Type: "loop", MajMin: "7:0", Size: 77713408, FSType: "squashfs"},
				{KName: "sda", Name: "sda", Path: "/dev/sda", Type: "disk", MajMin: "8:0", Size: 68719476736},
				{KName: "sda1", Name: "sda1", Path: "/dev/sda1", Type: "part", MajMin: "8:1", Size: 536870912,
					FSType: "vfat", Label: "ESP", UUID: "7A3B-1C9D", Parents: []string{"sda"}},
				{KName: "sda2", Name: "sda2", Path: "/dev/sda2", Type: "part", MajMin: "8:2", Size: 21474836480,
					FSType: "ext4", Label: "root", UUID: "b3c1e4a2-5d6f-4e8a-9b0c-1d2e3f4a5b6c", Parents: []string{"sda"}},
				{KName: "sda3", Name: "sda3", Path: "/dev/sda3", Type: "part", MajMin: "8:3", Size: 2147483648,
					FSType: "swap", Label: "swap", UUID: "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", Parents: []string{"sda"}},
				{KName: "sda4", Name: "sda4", Path: "/dev/sda4", Type: "part", MajMin: "8:4", Size: 44558188544,
					FSType: "linux_raid_member", Label: "golden01:0", UUID: "3b0d4c1e-8f2a-6b7d-9c1e-2f3a4b5c6d7e", Parents: []string{"sda"}},
				{KName: "md0", Name: "md0", Path: "/dev/md0", Type: "raid1", MajMin: "9:0", Size: 44423970816,
					FSType: "LVM2_member", UUID: "Xq1c2V-3b4N-5m6L-7k8J-9h0G-1f2D-3s4A5a", Parents: []string{"sda4", "sdb2"}},
				{KName: "dm-0", Name: "vgdata-home", Path: "/dev/mapper/vgdata-home", Type: "lvm", MajMin: "253:0", Size: 21474836480,
					FSType: "xfs", Label: "home", UUID: "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f", Parents: []string{"md0"}},
				{KName: "dm-1", Name: "vgdata-srv", Path: "/dev/mapper/vgdata-srv", Type: "lvm", MajMin: "253:1", Size: 10737418240,
					FSType: "ext4", Label: "srv", UUID: "a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d", Parents: []string{"md0"}},
				{KName: "sdb", Name: "sdb", Path: "/dev/sdb", Type: "disk", MajMin: "8:16", Size: 51539607552},
				{KName: "sdb1", Name: "sdb1", Path: "/dev/sdb1", Type: "part", MajMin: "8:17", Size: 1073741824,
					FSType: "ext4", Label: "boot", UUID: "0d9e8f7a-6b5c-4d3e-8f1a-0b9c8d7e6f5a", Parents: []string{"sdb"}},
				{KName: "sdb2", Name: "sdb2", Path: "/dev/sdb2", Type: "part", MajMin: "8:18", Size: 50464817152,
					FSType: "linux_raid_member", Label: "golden01:0", UUID: "3b0d4c1e-8f2a-6b7d-9c1e-2f3a4b5c6d7e", Parents: []string{"sdb"}},
				{KName: "sdc", Name: "sdc", Path: "/dev/sdc", Type: "disk", MajMin: "8:32", Size: 8004304896, Removable: true},
				{KName: "sdc1", Name: "sdc1", Path: "/dev/sdc1", Type: "part", MajMin: "8:33", Size: 8003256320, Removable: true,
					FSType: "vfat", Label: "USBSTICK", UUID: "1234-ABCD", Parents: []string{"sdc"}},
				{KName: "sdd", Name: "sdd", Path: "/dev/sdd", Type: "disk", MajMin: "8:48", Size: 500107862016,
					FSType: "LVM2_member", UUID: "Pq9W8e-7R6t-5Y4u-3I2o-1P0a-9S8d-7F6g5H"},
				{KName: "dm-2", Name: "vgbackup-archive", Path: "/dev/mapper/vgbackup-archive", Type: "lvm", MajMin: "253:2", Size: 107374182400,
					FSType: "ext4", Label: "archive", UUID: "f0e1d2c3-b4a5-4968-8776-655443322110", Parents: []string{"sdd"}},
				{KName: "zram0", Name: "zram0", Path: "/dev/zram0", Type: "disk", MajMin: "252:0", Size: 4294967296,
					FSType: "swap", UUID: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"},
			},
		},
		{
			name: "util-linux before 2.33: strings, no path or kname",
			in: []byte(`{"blockdevices": [
				{"name": "vda", "maj:min": "252:0", "rm": "0", "size": "10737418240", "ro": "0", "type": "disk", "fstype": null,
				 "children": [{"name": "vda1", "maj:min": "252:1", "rm": "0", "size": "10736369664", "ro": "0", "type": "part", "fstype": "ext4"}]},
				{"name": "sr0", "maj:min": "11:0", "rm": "1", "size": "1073741312", "ro": "1", "type": "rom"}]}`),
			want: []devSummary{
				{KName: "vda", Name: "vda", Path: "/dev/vda", Type: "disk", MajMin: "252:0", Size: 10737418240},
				{KName: "vda1", Name: "vda1", Path: "/dev/vda1", Type: "part", MajMin: "252:1", Size: 10736369664,
					FSType: "ext4", Parents: []string{"vda"}},
				{KName: "sr0", Name: "sr0", Path: "/dev/sr0", Type: "rom", MajMin: "11:0", Size: 1073741312, Removable: true},
			},
		},
		{name: "empty", in: []byte(`{"blockdevices": []}`)},
		{name: "not json", in: []byte("NAME MAJ:MIN\nsda 8:0\n"), wantErr: true},
		{name: "bad size", in: []byte(`{"blockdevices": [{"name": "sda", "size": "12G"}]}`), wantErr: true},
		{name: "bad rm", in: []byte(`{"blockdevices": [{"name": "sda", "rm": "maybe"}]}`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLsblk(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseLsblk error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("parseLsblk (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBlockTreeQueries(t *testing.T) {
	tr, err := parseLsblk(fixture(t, "lsblk.json"))
	if err != nil {
		t.Fatal(err)
	}
	knames := func(ds []*blockDevice) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.KName)
		}
		return out
	}
	lookups := []struct {
		majMin, source string
		want           string
	}{
		{"8:2", "/dev/sda2", "sda2"},
		{"8:2", "/dev/root", "sda2"},                 // found by device number
		{"0:33", "/dev/sda2", "sda2"},                // btrfs: anonymous device number
		{"253:0", "/dev/mapper/vgdata-home", "dm-0"}, // device-mapper name
		{"", "/dev/dm-1", "dm-1"},                    // kernel name
		{"0:45", "fileserver:/export", ""},           // network filesystem
		{"0:23", "tmpfs", ""},                        // no block device
		{"0:50", "/dev/nonexistent-device", ""},      // unknown path
	}
	for _, tt := range lookups {
		got := ""
		if d := tr.lookup(tt.majMin, tt.source); d != nil {
			got = d.KName
		}
		if got != tt.want {
			t.Errorf("lookup(%q, %q) = %q, want %q", tt.majMin, tt.source, got, tt.want)
		}
	}

	disks := []struct {
		kname string
		want  []string
	}{
		{"sda2", []string{"sda"}},
		{"sda", []string{"sda"}},
		{"md0", []string{"sda", "sdb"}},
		{"dm-1", []string{"sda", "sdb"}},
		{"dm-2", []string{"sdd"}},
	}
	for _, tt := range disks {
		if diff := cmp.Diff(tt.want, knames(tr.disksOf(tr.devices[tt.kname]))); diff != "" {
			t.Errorf("disksOf(%s) (-want +got):\n%s", tt.kname, diff)
		}
	}

	comps := []struct {
		name  string
		seeds []string
		extra map[string][]string
		want  []string
	}{
		{"partition takes its disk and all on it", []string{"sda2"}, nil,
			[]string{"sda", "sda1", "sda2", "sda3", "sda4", "md0", "dm-0", "dm-1", "sdb", "sdb1", "sdb2"}},
		{"lone disk", []string{"sdc1"}, nil, []string{"sdc", "sdc1"}},
		{"volume group link", []string{"sdc1"}, map[string][]string{"sdc": {"sdd"}, "sdd": {"sdc"}},
			[]string{"sdc", "sdc1", "sdd", "dm-2"}},
		{"unknown seed", []string{"nvme0n1"}, nil, nil},
	}
	for _, tt := range comps {
		if diff := cmp.Diff(tt.want, knames(tr.component(tt.seeds, tt.extra))); diff != "" {
			t.Errorf("component %s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestParseSfdisk(t *testing.T) {
	const (
		esp   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
		linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
		swap  = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
		raid  = "A19D880F-05FC-4D3B-A006-743F0F84911E"
		lvm   = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
		bios  = "21686148-6449-6E6F-744E-656564454649"
		mib   = 1 << 20
	)
	tests := []struct {
		name       string
		in         []byte
		sectorSize int
		want       *partitionTable
		wantErr    bool
	}{
		{
			name: "gpt: esp, root, swap, raid",
			in:   fixture(t, "sfdisk-sda.json"),
			want: &partitionTable{Table: "gpt", ID: "5E1F3C2A-8B4D-4E6F-9A0B-1C2D3E4F5A6B", SectorSize: 512, Partitions: []Partition{
				{Number: 1, Path: "/dev/sda1", StartBytes: 1 * mib, SizeBytes: 512 * mib, Type: esp, Name: "EFI System Partition",
					UUID: "0F3A5C7E-1B2D-4F60-8A9B-0C1D2E3F4A5B", Flags: []string{"esp"}},
				{Number: 2, Path: "/dev/sda2", StartBytes: 513 * mib, SizeBytes: 20480 * mib, Type: linux, Name: "root",
					UUID: "6A7B8C9D-0E1F-4A2B-9C3D-4E5F6A7B8C9D"},
				{Number: 3, Path: "/dev/sda3", StartBytes: 20993 * mib, SizeBytes: 2048 * mib, Type: swap, Name: "swap",
					UUID: "9D8C7B6A-5F4E-4D3C-8B2A-1F0E9D8C7B6A", Flags: []string{"swap"}},
				{Number: 4, Path: "/dev/sda4", StartBytes: 23041 * mib, SizeBytes: 87027712 * 512, Type: raid, Name: "raid-a",
					UUID: "2B3C4D5E-6F70-4812-9A3B-4C5D6E7F8091", Attrs: "RequiredPartition", Flags: []string{"raid"}},
			}},
		},
		{
			name: "dos: bootable, raid; PARTUUIDs derived",
			in:   fixture(t, "sfdisk-sdb.json"),
			want: &partitionTable{Table: "dos", ID: "0x8c3e51a2", SectorSize: 512, Partitions: []Partition{
				{Number: 1, Path: "/dev/sdb1", StartBytes: 1 * mib, SizeBytes: 1024 * mib, Type: "83", UUID: "8c3e51a2-01", Flags: []string{"boot"}},
				{Number: 2, Path: "/dev/sdb2", StartBytes: 1025 * mib, SizeBytes: 98564096 * 512, Type: "fd", UUID: "8c3e51a2-02", Flags: []string{"raid"}},
			}},
		},
		{
			name: "dos: extended with logical swap and lvm",
			in:   fixture(t, "sfdisk-dos-extended.json"),
			want: &partitionTable{Table: "dos", ID: "0x0004a1b2", SectorSize: 512, Partitions: []Partition{
				{Number: 1, Path: "/dev/sdc1", StartBytes: 1 * mib, SizeBytes: 1024000 * 512, Type: "83", UUID: "0004a1b2-01", Flags: []string{"boot"}},
				{Number: 2, Path: "/dev/sdc2", StartBytes: 1026048 * 512, SizeBytes: 7362560 * 512, Type: "5", UUID: "0004a1b2-02"},
				{Number: 5, Path: "/dev/sdc5", StartBytes: 1028096 * 512, SizeBytes: 1024 * mib, Type: "82", UUID: "0004a1b2-05", Flags: []string{"swap"}},
				{Number: 6, Path: "/dev/sdc6", StartBytes: 3127296 * 512, SizeBytes: 5261312 * 512, Type: "8e", UUID: "0004a1b2-06", Flags: []string{"lvm"}},
			}},
		},
		{
			name: "gpt: bios boot, legacy bootable, lvm",
			in:   fixture(t, "sfdisk-gpt-bios.json"),
			want: &partitionTable{Table: "gpt", ID: "7D0E5B1A-3C4F-4A2B-8E9D-0F1A2B3C4D5E", SectorSize: 512, Partitions: []Partition{
				{Number: 1, Path: "/dev/sdd1", StartBytes: 1 * mib, SizeBytes: 1 * mib, Type: bios, Name: "bios",
					UUID: "11111111-2222-4333-8444-555555555555", Flags: []string{"bios_grub"}},
				{Number: 2, Path: "/dev/sdd2", StartBytes: 2 * mib, SizeBytes: 512 * mib, Type: linux, Name: "boot",
					UUID: "66666666-7777-4888-9999-AAAAAAAAAAAA", Attrs: "LegacyBIOSBootable", Flags: []string{"legacy_boot"}},
				{Number: 3, Path: "/dev/sdd3", StartBytes: 514 * mib, SizeBytes: 1024 * mib, Type: lvm, Name: "lvm",
					UUID: "BBBBBBBB-CCCC-4DDD-8EEE-FFFFFFFFFFFF", Flags: []string{"lvm"}},
			}},
		},
		{
			name: "4Kn disk, nvme names, old sfdisk without sectorsize",
			in: []byte(`{"partitiontable": {"label": "gpt", "id": "A1B2C3D4-0000-4000-8000-000000000001", "device": "/dev/nvme0n1",
				"unit": "sectors", "firstlba": 256, "lastlba": 262138, "partitions": [
				{"node": "/dev/nvme0n1p1", "start": 256, "size": 65536, "type": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"}]}}`),
			sectorSize: 4096,
			want: &partitionTable{Table: "gpt", ID: "A1B2C3D4-0000-4000-8000-000000000001", SectorSize: 4096, Partitions: []Partition{
				{Number: 1, Path: "/dev/nvme0n1p1", StartBytes: 1 * mib, SizeBytes: 256 * mib, Type: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
					Flags: []string{"esp"}},
			}},
		},
		{
			name: "empty table",
			in:   []byte(`{"partitiontable": {"label": "gpt", "id": "A1B2C3D4-0000-4000-8000-000000000001", "device": "/dev/vdb", "unit": "sectors", "sectorsize": 512}}`),
			want: &partitionTable{Table: "gpt", ID: "A1B2C3D4-0000-4000-8000-000000000001", SectorSize: 512},
		},
		{name: "not json", in: []byte("label: gpt\n"), wantErr: true},
		{name: "no label", in: []byte(`{"partitiontable": {}}`), wantErr: true},
		{name: "unit not sectors", in: []byte(`{"partitiontable": {"label": "dos", "unit": "cylinders"}}`), wantErr: true},
		{name: "node without number", in: []byte(`{"partitiontable": {"label": "dos", "unit": "sectors", "partitions": [{"node": "/dev/sda", "start": 1, "size": 1, "type": "83"}]}}`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSfdisk(tt.in, tt.sectorSize)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSfdisk error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseSfdisk (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarkGrow(t *testing.T) {
	const mib = 1 << 20
	part := func(start, size int64) Partition { return Partition{StartBytes: start, SizeBytes: size} }
	tests := []struct {
		name     string
		parts    []Partition
		diskSize int64
		want     []bool
	}{
		{"gpt last partition ends 1 MiB before the end", []Partition{part(mib, 16*mib), part(17*mib, 46*mib)}, 64 * mib, []bool{false, true}},
		{"gpt last partition ends at the last usable sector", []Partition{part(mib, 63*mib-17408)}, 64 * mib, []bool{true}},
		{"dos partition ends at the disk end", []Partition{part(mib, 99*mib)}, 100 * mib, []bool{true}},
		{"exactly GrowSlack left", []Partition{part(mib, 97*mib)}, 100 * mib, []bool{true}},
		{"more than GrowSlack left", []Partition{part(mib, 97*mib-512)}, 100 * mib, []bool{false}},
		{"extended and its last logical both grow", []Partition{part(mib, 10*mib), part(11*mib, 89*mib), part(12*mib, 10*mib), part(23*mib, 77*mib)}, 100 * mib, []bool{false, true, false, true}},
		{"partitions in table order, not disk order", []Partition{part(50*mib, 50*mib), part(mib, 49*mib)}, 100 * mib, []bool{true, false}},
		{"partition past the end", []Partition{part(mib, 200*mib)}, 100 * mib, []bool{false}},
		{"unknown disk size", []Partition{part(mib, 99*mib)}, 0, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			markGrow(tt.parts, tt.diskSize)
			var got []bool
			for _, p := range tt.parts {
				got = append(got, p.Grow)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("markGrow (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSfdiskHelpers(t *testing.T) {
	numbers := []struct {
		node string
		want int
		ok   bool
	}{
		{"/dev/sda1", 1, true},
		{"/dev/sda12", 12, true},
		{"/dev/nvme0n1p3", 3, true},
		{"/dev/mmcblk0p2", 2, true},
		{"/dev/mapper/mpatha-part1", 1, true},
		{"/tmp/disk.img2", 2, true},
		{"/dev/sda", 0, false},
		{"", 0, false},
	}
	for _, tt := range numbers {
		got, err := partitionNumber(tt.node)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("partitionNumber(%q) = %d, %v; want %d, ok %v", tt.node, got, err, tt.want, tt.ok)
		}
	}
	uuids := []struct {
		id   string
		num  int
		want string
	}{
		{"0x8c3e51a2", 2, "8c3e51a2-02"},
		{"0x0004A1B2", 5, "0004a1b2-05"},
		{"0x00000000", 1, ""},
		{"", 1, ""},
		{"garbage", 1, ""},
	}
	for _, tt := range uuids {
		if got := mbrPartUUID(tt.id, tt.num); got != tt.want {
			t.Errorf("mbrPartUUID(%q, %d) = %q, want %q", tt.id, tt.num, got, tt.want)
		}
	}
	flags := []struct {
		label, typ, attrs string
		bootable          bool
		want              []string
	}{
		{"gpt", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "", false, []string{"esp"}},
		{"gpt", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "RequiredPartition LegacyBIOSBootable GUID:63", false, []string{"legacy_boot"}},
		{"gpt", "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "", false, nil},
		{"dos", "ef", "", false, []string{"esp"}},
		{"dos", "0x82", "", false, []string{"swap"}},
		{"dos", "8E", "", true, []string{"boot", "lvm"}},
		{"dos", "7", "", true, []string{"boot"}},
		{"dos", "zz", "", false, nil},
	}
	for _, tt := range flags {
		var got []string
		if tt.label == "gpt" {
			got = gptFlags(tt.typ, tt.attrs)
		} else {
			got = mbrFlags(tt.typ, tt.bootable)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s flags of %q %q bootable=%v (-want +got):\n%s", tt.label, tt.typ, tt.attrs, tt.bootable, diff)
		}
	}
}

func TestParseBlkid(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    map[string]map[string]string
		wantErr bool
	}{
		{
			name: "devices with escapes",
			in: []byte("DEVNAME=/dev/loop0p1\nSEC_TYPE=msdos\nLABEL=MY\\ DISK\nUUID=C1CA-43F0\nTYPE=vfat\nPARTLABEL=EFI\\ \\(boot\\)\n\n" +
				"DEVNAME=/dev/loop0p2\nUUID=3f1b2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f\nTYPE=ext4\n"),
			want: map[string]map[string]string{
				"/dev/loop0p1": {"DEVNAME": "/dev/loop0p1", "SEC_TYPE": "msdos", "LABEL": "MY DISK", "UUID": "C1CA-43F0", "TYPE": "vfat", "PARTLABEL": "EFI (boot)"},
				"/dev/loop0p2": {"DEVNAME": "/dev/loop0p2", "UUID": "3f1b2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "TYPE": "ext4"},
			},
		},
		{name: "nothing found", in: nil, want: map[string]map[string]string{}},
		{name: "tag before DEVNAME", in: []byte("TYPE=ext4\nDEVNAME=/dev/sda1\n"), wantErr: true},
		{name: "not export format", in: []byte("/dev/sda1: UUID=\"x\" TYPE=\"ext4\"\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBlkid(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseBlkid error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseBlkid (-want +got):\n%s", diff)
			}
		})
	}

	got, err := parseBlkid(fixture(t, "blkid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 11 || got["/dev/sda1"]["PARTLABEL"] != "EFI System Partition" || got["/dev/md0"]["TYPE"] != "LVM2_member" {
		t.Errorf("parseBlkid(blkid.txt): %d devices, sda1 %v, md0 %v", len(got), got["/dev/sda1"], got["/dev/md0"])
	}
}

func TestParseMdstat(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []mdstatArray
		wantErr bool
	}{
		{
			name: "fixture: raid1 with bitmap",
			in:   fixture(t, "mdstat.txt"),
			want: []mdstatArray{{Name: "md0", Active: true, Level: "raid1", SizeKiB: 43382784, Metadata: "1.2", RaidDevices: 2,
				Members: []mdMember{{Name: "sda4", Index: 0}, {Name: "sdb2", Index: 1}}}},
		},
		{
			name: "raid5 recovering with failed and spare, raid0, read-only 0.90, inactive container",
			in: []byte(`Personalities : [raid6] [raid5] [raid4] [raid0] [raid1]
md1 : active raid5 sdd1[3] sdc1[2](F) sdb1[1] sde1[4](S) sda1[0]
      3139584 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [UU_]
      [=>...................]  recovery =  8.1% (127616/1569792) finish=0.5min speed=42538K/sec
      
md2 : active raid0 sdf1[1] sdg1[0]
      4188160 blocks super 1.2 512k chunks
      
md3 : active (auto-read-only) raid1 sdh1[1] sdi1[0]
      1048512 blocks [2/2] [UU]
      
md127 : inactive sdj[0](S)
      5040 blocks super external:imsm
       
unused devices: <none>
`),
			want: []mdstatArray{
				{Name: "md1", Active: true, Level: "raid5", SizeKiB: 3139584, Metadata: "1.2", ChunkKiB: 512, RaidDevices: 3,
					Members: []mdMember{{Name: "sda1", Index: 0}, {Name: "sdb1", Index: 1}, {Name: "sdc1", Index: 2, Failed: true},
						{Name: "sdd1", Index: 3}, {Name: "sde1", Index: 4, Spare: true}}},
				{Name: "md2", Active: true, Level: "raid0", SizeKiB: 4188160, Metadata: "1.2", ChunkKiB: 512,
					Members: []mdMember{{Name: "sdg1", Index: 0}, {Name: "sdf1", Index: 1}}},
				{Name: "md3", Active: true, Level: "raid1", SizeKiB: 1048512, Metadata: "0.90", RaidDevices: 2,
					Members: []mdMember{{Name: "sdi1", Index: 0}, {Name: "sdh1", Index: 1}}},
				{Name: "md127", SizeKiB: 5040, Metadata: "external:imsm",
					Members: []mdMember{{Name: "sdj", Index: 0, Spare: true}}},
			},
		},
		{name: "no arrays", in: []byte("Personalities : \nunused devices: <none>\n")},
		{name: "bad member", in: []byte("md0 : active raid1 sda1 sdb1[1]\n"), wantErr: true},
		{name: "nothing after colon", in: []byte("md0 : \n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMdstat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMdstat error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseMdstat (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMdadmDetail(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    *mdadmDetail
		wantErr bool
	}{
		{
			name: "fixture: raid1, members listed out of role order",
			in:   fixture(t, "mdadm-md0.txt"),
			want: &mdadmDetail{Level: "raid1", RaidDevices: 2, Metadata: "1.2", UUID: "3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e",
				Name: "golden01:0", Devices: []string{"/dev/sda4", "/dev/sdb2"}},
		},
		{
			name: "raid5 with spare, 0.90 metadata without name",
			in: []byte("MD_LEVEL=raid5\nMD_DEVICES=3\nMD_METADATA=0.90\nMD_UUID=a1b2c3d4:e5f60718:293a4b5c:6d7e8f90\n" +
				"MD_DEVICE_ev_sdc1_ROLE=2\nMD_DEVICE_ev_sdc1_DEV=/dev/sdc1\nMD_DEVICE_ev_sdd1_ROLE=spare\nMD_DEVICE_ev_sdd1_DEV=/dev/sdd1\n" +
				"MD_DEVICE_ev_sda1_ROLE=0\nMD_DEVICE_ev_sda1_DEV=/dev/sda1\nMD_DEVICE_ev_sdb1_ROLE=1\nMD_DEVICE_ev_sdb1_DEV=/dev/sdb1\n" +
				"MD_DEVICE_ev_sde1_ROLE=faulty\nMD_DEVICE_ev_sde1_DEV=/dev/sde1\nMD_DEVICE_ev_sdf1_ROLE=3\n"),
			want: &mdadmDetail{Level: "raid5", RaidDevices: 3, Metadata: "0.90", UUID: "a1b2c3d4:e5f60718:293a4b5c:6d7e8f90",
				Devices: []string{"/dev/sda1", "/dev/sdb1", "/dev/sdc1"}, Spares: []string{"/dev/sdd1"}, Failed: []string{"/dev/sde1"}},
		},
		{name: "no level", in: []byte("MD_DEVICES=2\n"), wantErr: true},
		{name: "not export format", in: []byte("/dev/md0:\n           Version : 1.2\n"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMdadmDetail(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMdadmDetail error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseMdadmDetail (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseLVM(t *testing.T) {
	empty := func(section string) []byte {
		return []byte(`{"report": [{"` + section + `": []}]}`)
	}
	tests := []struct {
		name          string
		vgs, lvs, pvs []byte
		want          *LVM
		wantErr       bool
	}{
		{
			name: "fixture: two groups, orphan-free",
			vgs:  fixture(t, "vgs.json"), lvs: fixture(t, "lvs.json"), pvs: fixture(t, "pvs.json"),
			want: &LVM{
				VolumeGroups: []VolumeGroup{
					{Name: "vgbackup", UUID: "bK7mQ2-x9Lr-Tq4W-8ZpN-c3Vd-Hs6J-0aYfEu", ExtentSizeBytes: 4194304, SizeBytes: 500103643136,
						PVs: []PhysicalVolume{{Device: "/dev/sdd", UUID: "Pq9W8e-7R6t-5Y4u-3I2o-1P0a-9S8d-7F6g5H", SizeBytes: 500103643136}}},
					{Name: "vgdata", UUID: "kK3Ie0-hFBJ-OeUy-x2fo-qZTx-5hIQ-wKMsfl", ExtentSizeBytes: 4194304, SizeBytes: 44421677056,
						PVs: []PhysicalVolume{{Device: "/dev/md0", UUID: "Xq1c2V-3b4N-5m6L-7k8J-9h0G-1f2D-3s4A5a", SizeBytes: 44421677056}}},
				},
				LogicalVolumes: []LogicalVolume{
					{Name: "archive", VG: "vgbackup", UUID: "R2d8sF-0qWe-3Lk5-Zx7C-v1Bn-9Mh4-GjTy6p", SizeBytes: 107374182400,
						SegType: "linear", Attr: "-wi-a-----", Path: "/dev/vgbackup/archive"},
					{Name: "home", VG: "vgdata", UUID: "Yc1Xe9-2Tf4-Ug6h-8Ij0-Kl2m-No4p-Qr6sSt", SizeBytes: 21474836480,
						SegType: "linear", Attr: "-wi-ao----", Path: "/dev/vgdata/home"},
					{Name: "srv", VG: "vgdata", UUID: "Hb3Nc5-6Dv7-Ew8F-9xG0-yH1i-Zj2k-3Al4Bm", SizeBytes: 10737418240,
						SegType: "linear", Attr: "-wi-ao----", Path: "/dev/vgdata/srv"},
				},
			},
		},
		{
			name: "orphan PV, sizes with suffix and fraction",
			vgs:  []byte(`{"report": [{"vg": [{"vg_name":"vg0", "vg_uuid":"u", "vg_size":"264241152B", "vg_extent_size":"4194304.00"}]}]}`),
			lvs:  empty("lv"),
			pvs: []byte(`{"report": [{"pv": [{"pv_name":"/dev/loop1", "vg_name":"vg0", "pv_uuid":"p1", "pv_size":"264241152"},
				{"pv_name":"/dev/loop2", "vg_name":"", "pv_uuid":"p2", "pv_size":"1048576"}]}]}`),
			want: &LVM{VolumeGroups: []VolumeGroup{{Name: "vg0", UUID: "u", ExtentSizeBytes: 4194304, SizeBytes: 264241152,
				PVs: []PhysicalVolume{{Device: "/dev/loop1", UUID: "p1", SizeBytes: 264241152}}}}},
		},
		{name: "no volume groups", vgs: empty("vg"), lvs: empty("lv"), pvs: empty("pv")},
		{name: "bad json", vgs: []byte("  VG #PV\n"), lvs: empty("lv"), pvs: empty("pv"), wantErr: true},
		{name: "bad size", vgs: []byte(`{"report": [{"vg": [{"vg_name":"vg0", "vg_size":"12g", "vg_extent_size":"4194304"}]}]}`),
			lvs: empty("lv"), pvs: empty("pv"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLVM(tt.vgs, tt.lvs, tt.pvs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseLVM error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseLVM (-want +got):\n%s", diff)
			}
		})
	}
}
