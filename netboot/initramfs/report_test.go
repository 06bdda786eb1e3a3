package initramfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{in: "0\n", want: 1},
		{in: "0-3", want: 4},
		{in: "0-3,6,8-9\n", want: 7},
		{in: "", wantErr: true},
		{in: "0-", wantErr: true},
		{in: "3-1", wantErr: true},
		{in: "a", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseCPUList(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseCPUList(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseCPUList(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{name: "proc", in: "MemTotal:         468156 kB\nMemFree:          400000 kB\n", want: 468156},
		{name: "not first", in: "Foo: 1 kB\nMemTotal: 1024 kB\n", want: 1024},
		{name: "missing", in: "MemFree: 1 kB\n", wantErr: true},
		{name: "no unit", in: "MemTotal: 1024\n", wantErr: true},
		{name: "not a number", in: "MemTotal: x kB\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemTotal([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseMemTotal error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseMemTotal = %d, want %d", got, tc.want)
			}
		})
	}
}

// fakeTree writes files (path -> contents) and symbolic links (path ->
// "->target") under a new temporary directory.
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := cutArrow(data); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(data), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func cutArrow(s string) (string, bool) {
	if len(s) > 2 && s[:2] == "->" {
		return s[2:], true
	}
	return "", false
}

// iface returns the sysfs files of a network interface.
func iface(name, typ, index, mac string, device bool) map[string]string {
	m := map[string]string{
		"sys/class/net/" + name + "/type":    typ + "\n",
		"sys/class/net/" + name + "/ifindex": index + "\n",
		"sys/class/net/" + name + "/address": mac + "\n",
	}
	if device {
		m["sys/devices/pci0000:00/"+name+"/vendor"] = "0x1af4\n"
		m["sys/class/net/"+name+"/device"] = "->../../../devices/pci0000:00/" + name
	}
	return m
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestCollectFacts(t *testing.T) {
	machine := merge(
		iface("lo", "772", "1", "00:00:00:00:00:00", false),
		iface("eth1", "1", "3", "52:54:00:AA:BB:02", true),
		iface("eth0", "1", "2", "52:54:00:aa:bb:01", true),
		iface("br0", "1", "4", "52:54:00:aa:bb:99", false),
		iface("ib0", "32", "5", "80:00:00:00", true),
		map[string]string{
			"sys/devices/system/cpu/online":     "0-3\n",
			"proc/meminfo":                      "MemTotal:        8000000 kB\n",
			"proc/sys/kernel/random/boot_id":    "0c0ffee0-1234-4321-8888-abcdefabcdef\n",
			"sys/block/vda/size":                "2097152\n",
			"sys/block/sda/size":                "1024\n",
			"sys/block/nvme0n1/size":            "4096\n",
			"sys/block/loop0/size":              "100\n",
			"sys/block/sr0/size":                "0\n",
			"sys/block/ram0/size":               "8192\n",
			"sys/block/sdb/size":                "0\n", // a card reader without a card
			"sys/block/zram0/size":              "8192\n",
			"sys/block/dm-0/size":               "8192\n",
			"sys/block/md0/size":                "8192\n",
			"sys/block/nbd0/size":               "8192\n",
			"sys/block/fd0/size":                "8192\n",
			"sys/block/mmcblk0/size":            "8\n",
			"sys/class/net/.hidden-not-a-net/x": "",
		},
	)
	tests := []struct {
		name    string
		files   map[string]string
		want    Report
		wantErr bool
	}{
		{
			name:  "machine",
			files: machine,
			want: Report{
				MACs: []string{"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}, CPUs: 4, MemoryKB: 8000000,
				Disks:     []string{"mmcblk0", "nvme0n1", "sda", "vda"},
				DiskBytes: map[string]int64{"mmcblk0": 4096, "nvme0n1": 4096 * 512, "sda": 1024 * 512, "vda": 1 << 30},
				BootID:    "0c0ffee0-1234-4321-8888-abcdefabcdef",
			},
		},
		{
			name: "no NIC, no disk, no boot id",
			files: map[string]string{
				"sys/class/net/lo/type": "772\n", "sys/devices/system/cpu/online": "0\n",
				"proc/meminfo": "MemTotal: 1 kB\n", "sys/block/loop0/size": "1\n",
			},
			want: Report{MACs: []string{}, CPUs: 1, MemoryKB: 1, Disks: []string{}, DiskBytes: map[string]int64{}},
		},
		{
			name:    "no meminfo",
			files:   map[string]string{"sys/class/net/lo/type": "772\n", "sys/devices/system/cpu/online": "0\n", "sys/block/loop0/size": "1\n"},
			wantErr: true,
		},
		{
			name:    "bad disk size",
			files:   merge(machine, map[string]string{"sys/block/vdb/size": "lots\n"}),
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeTree(t, tc.files)
			got, err := collectFacts(filepath.Join(root, "proc"), filepath.Join(root, "sys"))
			if (err != nil) != tc.wantErr {
				t.Fatalf("collectFacts error %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("collectFacts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEthernetInterfaces(t *testing.T) {
	root := fakeTree(t, merge(
		iface("enp2s0", "1", "10", "52:54:00:00:00:10", true),
		iface("eno1", "1", "2", "52:54:00:00:00:02", true),
		iface("veth0", "1", "3", "52:54:00:00:00:03", false),
	))
	got, err := ethernetInterfaces(filepath.Join(root, "sys"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netInterface{{Name: "eno1", Index: 2, MAC: "52:54:00:00:00:02"}, {Name: "enp2s0", Index: 10, MAC: "52:54:00:00:00:10"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ethernetInterfaces (-want +got):\n%s", diff)
	}
}
