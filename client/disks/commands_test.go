package disks

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSfdiskScript(t *testing.T) {
	tests := []struct {
		name string
		dp   DiskPlan
		want string
	}{
		{
			name: "gpt with ids, names and attributes",
			dp: DiskPlan{Path: "/dev/vda", SectorSize: 512, Table: "gpt", ID: "11111111-2222-4333-8444-555555555555", Partitions: []PartitionPlan{
				{Number: 1, Path: "/dev/vda1", Start: 2048, Size: 2048, Type: gptBIOSBoot},
				{Number: 2, Path: "/dev/vda2", Start: 4096, Size: 8192, Type: gptLinux, Name: "my root", UUID: "AAAAAAAA-0000-4000-8000-000000000002", Attrs: "LegacyBIOSBootable"},
			}},
			want: "label: gpt\nlabel-id: 11111111-2222-4333-8444-555555555555\nunit: sectors\n\n" +
				"/dev/vda1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n" +
				"/dev/vda2 : start=4096, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=AAAAAAAA-0000-4000-8000-000000000002, name=\"my root\", attrs=\"LegacyBIOSBootable\"\n",
		},
		{
			name: "dos with bootable and logical partitions",
			dp: DiskPlan{Path: "/dev/loop3", SectorSize: 512, Table: "dos", Partitions: []PartitionPlan{
				{Number: 1, Path: "/dev/loop3p1", Start: 2048, Size: 4096, Type: "83", Bootable: true},
				{Number: 2, Path: "/dev/loop3p2", Start: 6144, Size: 10240, Type: "5", Extended: true},
				{Number: 5, Path: "/dev/loop3p5", Start: 8192, Size: 8192, Type: "82"},
			}},
			want: "label: dos\nunit: sectors\n\n" +
				"/dev/loop3p1 : start=2048, size=4096, type=83, bootable\n" +
				"/dev/loop3p2 : start=6144, size=10240, type=5\n" +
				"/dev/loop3p5 : start=8192, size=8192, type=82\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sfdiskScript(tt.dp)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sfdiskScript (-want +got):\n%s", diff)
			}
		})
	}
	bad := DiskPlan{Path: "/dev/vda", Table: "gpt", Partitions: []PartitionPlan{{Path: "/dev/vda1", Start: 2048, Size: 1, Type: gptLinux, Name: `a"b`}}}
	if _, err := sfdiskScript(bad); err == nil {
		t.Error("sfdiskScript accepted a name with a quote")
	}
}

func TestMkfsCommand(t *testing.T) {
	tests := []struct {
		fs       FilesystemPlan
		wantName string
		wantArgs []string
	}{
		{FilesystemPlan{Device: "/dev/vda2", Type: "ext4", Label: "root", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13"},
			"mkfs.ext4", []string{"-F", "-q", "-L", "root", "-U", "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13", "/dev/vda2"}},
		{FilesystemPlan{Device: "/dev/vda3", Type: "ext2"}, "mkfs.ext2", []string{"-F", "-q", "/dev/vda3"}},
		{FilesystemPlan{Device: "/dev/vda2", Type: "xfs", Label: "root", UUID: "44444444-4444-4444-8444-444444444444"},
			"mkfs.xfs", []string{"-f", "-q", "-L", "root", "-m", "uuid=44444444-4444-4444-8444-444444444444", "/dev/vda2"}},
		{FilesystemPlan{Device: "/dev/vda4", Type: "btrfs", Label: "data", UUID: "44444444-4444-4444-8444-444444444445"},
			"mkfs.btrfs", []string{"-f", "-q", "-L", "data", "-U", "44444444-4444-4444-8444-444444444445", "/dev/vda4"}},
		{FilesystemPlan{Device: "/dev/vda1", Type: "vfat", Label: "EFI", UUID: "abcd-1234", ESP: true, SizeBytes: 512 * MiB},
			"mkfs.vfat", []string{"-F", "32", "-n", "EFI", "-i", "ABCD1234", "/dev/vda1"}},
		{FilesystemPlan{Device: "/dev/vda1", Type: "vfat", UUID: "ABCD-1234", ESP: true, SizeBytes: 64 * MiB},
			"mkfs.vfat", []string{"-i", "ABCD1234", "/dev/vda1"}},
		{FilesystemPlan{Device: "/dev/vda5", Type: "swap", Label: "sw", UUID: "33333333-3333-4333-8333-333333333333"},
			"mkswap", []string{"-L", "sw", "-U", "33333333-3333-4333-8333-333333333333", "/dev/vda5"}},
	}
	for _, tt := range tests {
		name, args, err := mkfsCommand(tt.fs)
		if err != nil {
			t.Errorf("mkfsCommand(%+v): %v", tt.fs, err)
			continue
		}
		if name != tt.wantName || !cmp.Equal(args, tt.wantArgs) {
			t.Errorf("mkfsCommand(%+v) = %s %q, want %s %q", tt.fs, name, args, tt.wantName, tt.wantArgs)
		}
	}
	for _, bad := range []FilesystemPlan{
		{Device: "/dev/vda1", Type: "vfat", UUID: "0b3f5a52-7c1e-4d6a-9b8f-2e4c6a8d0f13"},
		{Device: "/dev/vda1", Type: "zfs"},
	} {
		if name, args, err := mkfsCommand(bad); err == nil {
			t.Errorf("mkfsCommand(%+v) = %s %q, want an error", bad, name, args)
		}
	}
}

func TestMdadmCreate(t *testing.T) {
	tests := []struct {
		r    RAIDPlan
		want []string
	}{
		{RAIDPlan{Path: "/dev/md0", Level: "raid1", Metadata: "1.2", Name: "root", UUID: "3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e", Devices: []string{"/dev/vda1", "missing"}},
			[]string{"--create", "/dev/md0", "--run", "--level=raid1", "--raid-devices=2", "--metadata=1.2", "--name=root",
				"--uuid=3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e", "/dev/vda1", "missing"}},
		{RAIDPlan{Path: "/dev/md1", Level: "raid5", ChunkKiB: 512, Devices: []string{"/dev/sda2", "/dev/sdb2", "/dev/sdc2"}, Spares: []string{"/dev/sdd2"}},
			[]string{"--create", "/dev/md1", "--run", "--level=raid5", "--raid-devices=3", "--chunk=512K", "--spare-devices=1",
				"/dev/sda2", "/dev/sdb2", "/dev/sdc2", "/dev/sdd2"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, mdadmCreate(tt.r)); diff != "" {
			t.Errorf("mdadmCreate(%s) (-want +got):\n%s", tt.r.Path, diff)
		}
	}
}

func TestLVMCommands(t *testing.T) {
	v := VolumeGroupPlan{Name: "vg0", ExtentSizeBytes: 4 * MiB, PVs: []string{"/dev/vda2", "/dev/vdb1"}, LVs: []LogicalVolumePlan{
		{Name: "root", SizeBytes: 4 << 30, Path: "/dev/vg0/root"},
		{Name: "home", Rest: true, Path: "/dev/vg0/home"},
	}}
	want := [][]string{
		{"pvcreate", "-y", "-ff", "/dev/vda2", "/dev/vdb1"},
		{"vgcreate", "-y", "-s", "4096k", "vg0", "/dev/vda2", "/dev/vdb1"},
		{"lvcreate", "-y", "--wipesignatures", "y", "-n", "root", "-L", "4294967296b", "vg0"},
		{"lvcreate", "-y", "--wipesignatures", "y", "-n", "home", "-l", "100%FREE", "vg0"},
		{"vgmknodes", "vg0"},
	}
	if diff := cmp.Diff(want, lvmCommands(v)); diff != "" {
		t.Errorf("lvmCommands (-want +got):\n%s", diff)
	}
}

func TestFstabEntries(t *testing.T) {
	plan := &Plan{Filesystems: []FilesystemPlan{
		{Device: "/dev/vda3", Type: "ext4", Mountpoint: "/", Options: "rw,relatime"},
		{Device: "/dev/vda4", Type: "xfs", Mountpoint: "/srv/data"},
		{Device: "/dev/vda1", Type: "vfat", Mountpoint: "/boot/efi"},
		{Device: "/dev/vda2", Type: "swap", Options: "pri=5"},
		{Device: "/dev/vda5", Type: "btrfs", Mountpoint: "/home", FSRoot: "/@home"},
		{Device: "/dev/vda6", Type: "ext4"},
	}}
	made := map[string]madeFS{
		"/dev/vda3": {Type: "ext4", UUID: "u3"},
		"/dev/vda4": {Type: "xfs", UUID: "u4"},
		"/dev/vda1": {Type: "vfat", UUID: "AB-CD"},
		"/dev/vda2": {Type: "swap", UUID: "u2"},
		"/dev/vda5": {Type: "btrfs", Label: "home"},
	}
	want := []FstabEntry{
		{Spec: "UUID=u3", File: "/", Type: "ext4", Options: "rw,relatime", Pass: 1},
		{Spec: "UUID=AB-CD", File: "/boot/efi", Type: "vfat", Options: "defaults", Pass: 2},
		{Spec: "LABEL=home", File: "/home", Type: "btrfs", Options: "defaults,subvol=/@home", Pass: 0},
		{Spec: "UUID=u4", File: "/srv/data", Type: "xfs", Options: "defaults", Pass: 0},
		{Spec: "UUID=u2", File: "none", Type: "swap", Options: "sw,pri=5"},
	}
	if diff := cmp.Diff(want, fstabEntries(plan, made)); diff != "" {
		t.Errorf("fstabEntries (-want +got):\n%s", diff)
	}
	if got, want := want[0].String(), "UUID=u3\t/\text4\trw,relatime\t0\t1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestNeededTools(t *testing.T) {
	plan := &Plan{
		Disks:        []DiskPlan{{Path: "/dev/vda", Table: "gpt"}},
		RAID:         []RAIDPlan{{Path: "/dev/md0"}},
		VolumeGroups: []VolumeGroupPlan{{Name: "vg0"}},
		Filesystems:  []FilesystemPlan{{Type: "xfs", Device: "/dev/vda1"}, {Type: "btrfs", FSRoot: "/@", Device: "/dev/md0"}, {Type: "swap", Device: "/dev/vda2"}},
	}
	want := []string{"wipefs", "blkid", "sfdisk", "partx", "mdadm", "pvcreate", "vgcreate", "lvcreate", "vgmknodes",
		"mkfs.xfs", "mkfs.btrfs", "mkswap", "btrfs"}
	var got []string
	for _, n := range neededTools(plan, Options{}) {
		got = append(got, n.tool)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("neededTools (-want +got):\n%s", diff)
	}
}
