package disks

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeDisk describes a disk for fakeSys.
type fakeDisk struct {
	name      string
	sectors   int64
	removable bool
	ro        bool
	ss        int
	files     map[string]string // extra attributes, relative to the disk's directory
	devPath   string            // where /sys/block/NAME points, below sys/devices
}

// fakeSys builds a sysfs tree with /sys/block entries linking into
// /sys/devices, as the kernel lays it out.
func fakeSys(t *testing.T, disks []fakeDisk) string {
	t.Helper()
	sys := t.TempDir()
	write := func(p, v string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(sys, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		dev := filepath.Join(sys, "devices", "virtual", "block", d.name)
		if d.devPath != "" {
			dev = filepath.Join(sys, "devices", d.devPath, "block", d.name)
		}
		b := func(v bool) string {
			if v {
				return "1"
			}
			return "0"
		}
		write(filepath.Join(dev, "size"), itoa(d.sectors))
		write(filepath.Join(dev, "removable"), b(d.removable))
		write(filepath.Join(dev, "ro"), b(d.ro))
		ss := d.ss
		if ss == 0 {
			ss = 512
		}
		write(filepath.Join(dev, "queue", "logical_block_size"), itoa(int64(ss)))
		for k, v := range d.files {
			write(filepath.Join(dev, k), v)
		}
		rel, err := filepath.Rel(filepath.Join(sys, "block"), dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, filepath.Join(sys, "block", d.name)); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// testMachine is a machine with a USB stick, an optical drive, a loop
// device, two SATA disks, a virtio disk and an NVMe disk.
func testMachine(t *testing.T) string {
	const g = 1 << 21 // sectors in a GiB
	return fakeSys(t, []fakeDisk{
		{name: "sdc", sectors: 16 * g, removable: true, devPath: "pci0000:00/0000:00:14.0/usb1/1-1/host2/target2:0:0/2:0:0:0"},
		{name: "sr0", sectors: 0, removable: true, files: map[string]string{"device/type": "5"}},
		{name: "loop0", sectors: 4 * g},
		{name: "sdb", sectors: 500 * g, devPath: "pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0",
			files: map[string]string{"device/model": "BIG DISK", "device/wwid": "naa.5000C500A1B2C3D4"}},
		{name: "sda", sectors: 120 * g, devPath: "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
			files: map[string]string{"device/model": "Samsung SSD 860"}},
		{name: "vda", sectors: 40 * g, devPath: "pci0000:00/0000:00:04.0/virtio1", files: map[string]string{"serial": "node-007"}},
		{name: "nvme0n1", sectors: 256 * g, ss: 4096, devPath: "pci0000:00/0000:00:05.0/nvme/nvme0",
			files: map[string]string{"device/model": "QEMU NVMe Ctrl", "device/serial": "deadbeef", "wwid": "eui.0011223344556677", "nsid": "1"}},
		{name: "sdd", sectors: 200 * g, ro: true},
		{name: "nvme1c1n1", sectors: 256 * g, files: map[string]string{"hidden": "1"}},
	})
}

func TestListDisks(t *testing.T) {
	const g = int64(1) << 30
	got, err := listDisks(context.Background(), testMachine(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []Disk{
		{Name: "loop0", Path: "/dev/loop0", SizeBytes: 4 * g, SectorSize: 512, Virtual: true},
		{Name: "nvme0n1", Path: "/dev/nvme0n1", SizeBytes: 256 * g, SectorSize: 4096, Model: "QEMU NVMe Ctrl", Serial: "deadbeef",
			IDs: []string{"nvme-QEMU_NVMe_Ctrl_deadbeef", "nvme-eui.0011223344556677", "pci-0000:00:05.0-nvme-1"}},
		{Name: "nvme1c1n1", Path: "/dev/nvme1c1n1", SizeBytes: 256 * g, SectorSize: 512, Virtual: true},
		{Name: "sda", Path: "/dev/sda", SizeBytes: 120 * g, SectorSize: 512, Model: "Samsung SSD 860"},
		{Name: "sdb", Path: "/dev/sdb", SizeBytes: 500 * g, SectorSize: 512, Model: "BIG DISK", IDs: []string{"wwn-0x5000c500a1b2c3d4"}},
		{Name: "sdc", Path: "/dev/sdc", SizeBytes: 16 * g, SectorSize: 512, Removable: true},
		{Name: "sdd", Path: "/dev/sdd", SizeBytes: 200 * g, SectorSize: 512, ReadOnly: true},
		{Name: "sr0", Path: "/dev/sr0", SectorSize: 512, Removable: true, Virtual: true},
		{Name: "vda", Path: "/dev/vda", SizeBytes: 40 * g, SectorSize: 512, Serial: "node-007", IDs: []string{"virtio-node-007", "pci-0000:00:04.0"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listDisks (-want +got):\n%s", diff)
	}
}

func TestSelectRules(t *testing.T) {
	all, err := listDisks(context.Background(), testMachine(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rule Rule
		want string
	}{
		{"", "nvme0n1"}, // loop0 sorts first but is virtual
		{"smallest", "vda"},
		{"largest", "sdb"},
		{"size>=100G", "nvme0n1"},
		{"size<100G", "vda"},
		{"size>=100G,smallest", "sda"},
		{"size<=300G, largest", "nvme0n1"},
		{"size=40G", "vda"},
		{"sdc", "sdc"}, // named: removable is fine
		{"/dev/loop0", "loop0"},
	}
	for _, tt := range tests {
		got, err := selectFrom(all, tt.rule)
		if err != nil {
			t.Errorf("rule %q: %v", tt.rule, err)
			continue
		}
		if got.Name != tt.want {
			t.Errorf("rule %q chose %s, want %s", tt.rule, got.Name, tt.want)
		}
	}
	for _, tt := range []struct {
		rule Rule
		want string
	}{
		{"size>=1T", `no disk matches rule "size>=1T"; passed over: loop0 (virtual), nvme0n1 (274877906944 bytes), nvme1c1n1 (virtual), sda (128849018880 bytes), sdb (536870912000 bytes), sdc (removable), sdd (read-only), sr0 (virtual), vda (42949672960 bytes)`},
		{"size~5G", `disk rule "size~5G": condition "size~5G": no comparison (>=, >, <=, <, =)`},
		{"biggest,size>1G", `disk rule "biggest,size>1G": condition "biggest": want size>=N, size>N, size<=N, size<N, size=N, smallest or largest`},
		{"xvda", "select disk \"xvda\": no disk xvda in /sys/block"},
	} {
		got, err := selectFrom(all, tt.rule)
		if err == nil {
			t.Errorf("rule %q chose %s, want error", tt.rule, got.Name)
			continue
		}
		if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
			t.Errorf("rule %q error (-want +got):\n%s", tt.rule, diff)
		}
	}
	for path, want := range map[string]string{
		"/dev/disk/by-id/virtio-node-007":              "vda",
		"/dev/disk/by-path/pci-0000:00:04.0":           "vda",
		"/dev/disk/by-id/wwn-0x5000c500a1b2c3d4":       "sdb",
		"/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_deadbeef": "nvme0n1",
		"/dev/disk/by-path/pci-0000:00:05.0-nvme-1":    "nvme0n1",
		"/dev/disk/by-id/virtio-node-008":              "",
		"/dev/disk/by-uuid/virtio-node-007":            "",
	} {
		d, ok := byID(all, path)
		if ok != (want != "") || d.Name != want {
			t.Errorf("byID(%s) = %s, %v; want %q", path, d.Name, ok, want)
		}
	}
}

func TestNaturalCompare(t *testing.T) {
	names := []string{"sdaa", "nvme10n1", "sdb", "vda", "sda", "nvme2n1", "sdz", "nvme0n1p1", "nvme0n1"}
	want := []string{"nvme0n1", "nvme0n1p1", "nvme2n1", "nvme10n1", "sda", "sdb", "sdz", "sdaa", "vda"}
	got := append([]string(nil), names...)
	slices.SortFunc(got, naturalCompare)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("natural order (-want +got):\n%s", diff)
	}
}

func TestSelectSeveral(t *testing.T) {
	all, err := listDisks(context.Background(), testMachine(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rules []Rule
		want  []string
		err   string
	}{
		{rules: []Rule{"", ""}, want: []string{"nvme0n1", "sda"}},
		{rules: []Rule{"largest", "largest"}, want: []string{"sdb", "nvme0n1"}},
		{rules: []Rule{"vda", "smallest"}, want: []string{"vda", "sda"}},
		{rules: []Rule{"sda", "size>=100G,smallest"}, want: []string{"sda", "nvme0n1"}},
		{rules: []Rule{"", "nvme0n1"}, err: `select disk "nvme0n1": nvme0n1 is already chosen by an earlier rule`},
		{rules: []Rule{"", "", "", "", ""}, err: `no eligible disk; passed over: loop0 (virtual), nvme0n1 (chosen already), nvme1c1n1 (virtual), sda (chosen already), sdb (chosen already), sdc (removable), sdd (read-only), sr0 (virtual), vda (chosen already)`},
	}
	for _, tt := range tests {
		var chosen []Disk
		var err error
		for _, r := range tt.rules {
			var d Disk
			if d, err = selectOne(all, chosen, r); err != nil {
				break
			}
			chosen = append(chosen, d)
		}
		var names []string
		for _, d := range chosen {
			names = append(names, d.Name)
		}
		switch {
		case tt.err != "":
			if err == nil || err.Error() != tt.err {
				t.Errorf("rules %q: chose %q, error %v; want error %q", tt.rules, names, err, tt.err)
			}
		case err != nil:
			t.Errorf("rules %q: %v", tt.rules, err)
		default:
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("rules %q (-want +got):\n%s", tt.rules, diff)
			}
		}
	}
}
