package sysconf

import (
	"log/slog"
	"testing"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/google/go-cmp/cmp"
)

func TestFstabFor(t *testing.T) {
	const head = fstabHeader + "# <file system> <mount point> <type> <options> <dump> <pass>\n"
	tests := []struct {
		name      string
		fs        []disklayout.Filesystem
		want      string
		mounts    int
		swaps     int
		wantNotes []string
	}{
		{
			name: "root only",
			fs: []disklayout.Filesystem{
				{Device: "/dev/sda1", Type: "ext4", Mountpoint: "/", UUID: "aaaa-1", Options: "rw,relatime"},
			},
			want: fstabHeader +
				"# <file system> <mount point> <type> <options>   <dump> <pass>\n" +
				"UUID=aaaa-1     /             ext4   rw,relatime 0      1\n",
			mounts: 1,
		},
		{
			name: "parents first, then swap",
			fs: []disklayout.Filesystem{
				{Device: "/dev/sda2", Type: "xfs", Mountpoint: "/home", UUID: "h"},
				{Device: "/dev/sda1", Type: "vfat", Mountpoint: "/boot/efi", UUID: "ABCD-EF01", Options: "rw,umask=0077"},
				{Device: "/dev/sda3", Type: "ext4", Mountpoint: "/", UUID: "r", Options: "rw"},
				{Device: "/dev/sda4", Type: "ext4", Mountpoint: "/boot", UUID: "b"},
				{Device: "/dev/sda5", Type: "swap", UUID: "s", Options: "pri=5"},
				{Type: "swap", File: "/swapfile"},
				{Device: "/dev/sdb1", Type: "ext4", UUID: "unmounted"},
			},
			want: fstabHeader +
				"# <file system> <mount point> <type> <options>     <dump> <pass>\n" +
				"UUID=r          /             ext4   rw            0      1\n" +
				"UUID=b          /boot         ext4   defaults      0      2\n" +
				"UUID=ABCD-EF01  /boot/efi     vfat   rw,umask=0077 0      2\n" +
				"UUID=h          /home         xfs    defaults      0      0\n" +
				"UUID=s          none          swap   sw,pri=5      0      0\n" +
				"/swapfile       none          swap   sw            0      0\n",
			mounts: 4, swaps: 2,
		},
		{
			name: "labels, devices, tmpfs, btrfs subvolumes, spaces",
			fs: []disklayout.Filesystem{
				{Device: "/dev/sda2", Type: "btrfs", Mountpoint: "/", FSRoot: "/@", UUID: "bt", Options: "rw,noatime"},
				{Device: "/dev/sda2", Type: "btrfs", Mountpoint: "/home", FSRoot: "/@home", UUID: "bt", Options: "rw,subvol=/@home"},
				{Device: "/dev/sdc1", Type: "ext4", Mountpoint: "/srv/my data", Label: "DATA"},
				{Device: "/dev/sdd1", Type: "ext4", Mountpoint: "/scratch"},
				{Source: "tmpfs", Type: "tmpfs", Mountpoint: "/tmp", Options: "rw,nosuid"},
				{Source: "overlay", Type: "overlay", Mountpoint: "/var/lib/x"},
				{Device: "/dev/sde1", Type: "ext4", Mountpoint: "/scratch", UUID: "dup"},
				{Device: "/dev/sdf1", Type: "swap"},
				{Device: "/dev/sdg1", Type: "swap", UUID: "s"},
				{Device: "/dev/sdg1", Type: "swap", UUID: "s"},
			},
			want: fstabHeader +
				"# <file system> <mount point>   <type> <options>            <dump> <pass>\n" +
				"UUID=bt         /               btrfs  rw,noatime,subvol=/@ 0      0\n" +
				"UUID=bt         /home           btrfs  rw,subvol=/@home     0      0\n" +
				"/dev/sdd1       /scratch        ext4   defaults             0      2\n" +
				"LABEL=DATA      /srv/my\\040data ext4   defaults             0      2\n" +
				"tmpfs           /tmp            tmpfs  rw,nosuid            0      0\n" +
				"UUID=s          none            swap   sw                   0      0\n",
			mounts: 5, swaps: 1,
			wantNotes: []string{
				"/scratch named by device path /dev/sdd1: it has no UUID or label",
				"/var/lib/x (overlay) left out: it has no block device",
				"ext4 on /scratch left out: /scratch is already mounted from another filesystem",
				"swap on /dev/sdf1 left out: it has no UUID or label",
			},
		},
		{
			name: "nothing mounted",
			fs:   []disklayout.Filesystem{{Device: "/dev/sdb1", Type: "ext4", UUID: "x"}},
			want: head,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, mounts, swaps, notes := fstabFor(&disklayout.Layout{Filesystems: tc.fs})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("fstab (-want +got):\n%s", diff)
			}
			if mounts != tc.mounts || swaps != tc.swaps {
				t.Errorf("mounts, swaps = %d, %d, want %d, %d", mounts, swaps, tc.mounts, tc.swaps)
			}
			if diff := cmp.Diff(tc.wantNotes, notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompareMountpoints(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"/", "/boot", -1},
		{"/boot", "/boot/efi", -1},
		{"/boot/efi", "/home", -1},
		{"/home", "/boot/efi", 1},
		{"/var", "/var-lib", -1},
		{"/var/lib", "/var-lib", -1}, // "/var-lib" < "/var/lib" bytewise, but /var is its parent
		{"/srv", "/srv", 0},
	}
	for _, tc := range tests {
		if got := compareMountpoints(tc.a, tc.b); got != tc.want {
			t.Errorf("compareMountpoints(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// discardLogger returns a logger that drops everything.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
