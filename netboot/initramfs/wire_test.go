package initramfs_test

import (
	"encoding/json"
	"testing"

	"github.com/goldcast/goldcast/netboot/initramfs"
	"github.com/goldcast/goldcast/server"
	"github.com/google/go-cmp/cmp"
)

// TestReportWire checks that the server's boot report handler reads
// every fact of a Report it knows: the JSON names and types agree.
func TestReportWire(t *testing.T) {
	tests := []struct {
		name string
		rep  initramfs.Report
		want server.BootReport
	}{
		{
			name: "full",
			rep: initramfs.Report{
				Node: "node007", MACs: []string{"52:54:00:12:34:56", "52:54:00:12:34:57"}, CPUs: 8, MemoryKB: 16 << 20,
				Disks: []string{"nvme0n1", "sda"}, Kernel: "6.1.0-50-amd64", BootID: "e556196c-53eb-4636-be91-a55c152c6571",
				Machine: "x86_64", DiskBytes: map[string]int64{"nvme0n1": 1 << 40, "sda": 1 << 39}, Interface: "eth0", Address: "10.0.0.7/24",
			},
			want: server.BootReport{
				Node: "node007", MACs: []string{"52:54:00:12:34:56", "52:54:00:12:34:57"}, CPUs: 8, MemoryKB: 16 << 20,
				Disks: []string{"nvme0n1", "sda"}, Kernel: "6.1.0-50-amd64", BootID: "e556196c-53eb-4636-be91-a55c152c6571",
			},
		},
		{
			name: "no disks",
			rep:  initramfs.Report{Node: "n1", MACs: []string{"52:54:00:00:00:01"}, CPUs: 1, MemoryKB: 524288, Disks: []string{}, Kernel: "6.1.0"},
			want: server.BootReport{Node: "n1", MACs: []string{"52:54:00:00:00:01"}, CPUs: 1, MemoryKB: 524288, Disks: []string{}, Kernel: "6.1.0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(tc.rep)
			if err != nil {
				t.Fatal(err)
			}
			var got server.BootReport
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("server.BootReport decoded from %s (-want +got):\n%s", body, diff)
			}
		})
	}
}
