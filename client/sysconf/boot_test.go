package sysconf

import (
	"strings"
	"testing"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/google/go-cmp/cmp"
)

func TestDetectBoot(t *testing.T) {
	withESP := &disklayout.Layout{Filesystems: []disklayout.Filesystem{
		{Type: "ext4", Mountpoint: "/", UUID: "r"},
		{Type: "vfat", Mountpoint: "/boot/efi", UUID: "E"},
	}}
	plain := &disklayout.Layout{Filesystems: []disklayout.Filesystem{{Type: "ext4", Mountpoint: "/", UUID: "r"}}}
	const sdboot = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	tests := []struct {
		name   string
		tree   map[string]string
		layout *disklayout.Layout
		want   bootPlan
	}{
		{"GRUB for BIOS", map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/i386-pc/": ""}, plain,
			bootPlan{loader: bootGRUB, targets: []string{"i386-pc"}}},
		{"GRUB for BIOS, no layout", map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/i386-pc/": ""}, nil,
			bootPlan{loader: bootGRUB, targets: []string{"i386-pc"}}},
		{"GRUB for UEFI", map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/x86_64-efi/": ""}, withESP,
			bootPlan{loader: bootGRUB, targets: []string{"x86_64-efi"}, esp: "/boot/efi"}},
		{"GRUB for both", map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/x86_64-efi/": "", "usr/lib/grub/i386-pc/": ""}, withESP,
			bootPlan{loader: bootGRUB, targets: []string{"x86_64-efi", "i386-pc"}, esp: "/boot/efi"}},
		{"GRUB for UEFI without an ESP", map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/x86_64-efi/": "", "usr/lib/grub/i386-pc/": ""}, plain,
			bootPlan{loader: bootGRUB, targets: []string{"i386-pc"}}},
		{"GRUB without modules", map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/x86_64-efi/": ""}, plain,
			bootPlan{why: "the image has grub-install but neither GRUB's i386-pc modules nor x86_64-efi modules with an EFI system partition at /boot/efi"}},
		{"systemd-boot", map[string]string{"usr/bin/bootctl": "", sdboot: ""}, withESP,
			bootPlan{loader: bootSystemdBoot, esp: "/boot/efi"}},
		{"systemd-boot with the ESP at /boot", map[string]string{"usr/bin/bootctl": "", sdboot: ""},
			&disklayout.Layout{Filesystems: []disklayout.Filesystem{{Type: "vfat", Mountpoint: "/boot"}}},
			bootPlan{loader: bootSystemdBoot, esp: "/boot"}},
		{"systemd-boot without an ESP", map[string]string{"usr/bin/bootctl": "", sdboot: ""}, plain,
			bootPlan{why: "the image has systemd-boot but the layout has no EFI system partition (vfat at /boot/efi, /efi or /boot)"}},
		{"bootctl alone is systemd, not systemd-boot", map[string]string{"usr/bin/bootctl": ""}, withESP,
			bootPlan{why: "the image has neither GRUB (grub-install) nor systemd-boot (bootctl)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfigurer(t, tc.tree)
			c.o.Layout = tc.layout
			if diff := cmp.Diff(tc.want, c.detectBoot(), cmp.AllowUnexported(bootPlan{})); diff != "" {
				t.Errorf("detectBoot (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckBootsByUUID(t *testing.T) {
	const u = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	tests := []struct {
		name, cfg, wantErr string
	}{
		{"grub by UUID", "set root='hd0,msdos1'\nsearch --no-floppy --fs-uuid --set=root " + u + "\n" +
			"\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=UUID=" + u + " ro  quiet\n" +
			"\t\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=UUID=" + u + " ro single\n", ""},
		{"grub by device", "\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=/dev/loop3p1 ro  quiet\n" +
			"\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=/dev/loop3p1 ro single\n", "root=/dev/loop3p1, not root=UUID=" + u},
		{"another UUID", "linux /vmlinuz root=UUID=0000 ro\n", "root=UUID=0000, not root=UUID=" + u},
		{"no kernel", "### BEGIN /etc/grub.d/10_linux ###\n### END /etc/grub.d/10_linux ###\n", "no kernel command line"},
		{"boot loader entry", "title Debian\nlinux /abc/6.1/linux\noptions root=UUID=" + u + " ro quiet\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkBootsByUUID(tc.cfg, u)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("checkBootsByUUID: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("checkBootsByUUID error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct{ old, want string }{
		{"", "root=UUID=U ro\n"},
		{"root=/dev/sda2 rw quiet\n", "root=UUID=U rw quiet\n"},
		{"quiet splash root=UUID=old", "root=UUID=U ro quiet splash\n"},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, kernelCmdline(tc.old, "U")); diff != "" {
			t.Errorf("kernelCmdline(%q) (-want +got):\n%s", tc.old, diff)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	data := "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n" +
		"97 22 7:1 / /mnt/my\\040root rw,relatime - ext4 /dev/loop1p1 rw\n" +
		"98 97 0:52 /@home /mnt/my\\040root/home rw master:3 - btrfs /dev/sdb2 rw,subvol=/@home\n" +
		"garbage\n"
	want := []mountEntry{
		{major: 254, minor: 0, mountpoint: "/", fsType: "ext4", source: "/dev/vda"},
		{major: 7, minor: 1, mountpoint: "/mnt/my root", fsType: "ext4", source: "/dev/loop1p1"},
		{major: 0, minor: 52, mountpoint: "/mnt/my root/home", fsType: "btrfs", source: "/dev/sdb2"},
	}
	if diff := cmp.Diff(want, parseMountinfo([]byte(data)), cmp.AllowUnexported(mountEntry{})); diff != "" {
		t.Errorf("parseMountinfo (-want +got):\n%s", diff)
	}
}

func TestSetupScriptQuotes(t *testing.T) {
	ch := &chroot{
		devs:  []blockDev{{name: "loop3", major: 7, minor: 3}, {name: "dm-0", major: 253, minor: 0, mapper: "vg-root"}},
		uuids: map[string]string{"it's": "dm-0"},
	}
	s := ch.setupScript()
	for _, want := range []string{
		"mknod -m 0660 'loop3' b 7 3\n",
		"mknod -m 0660 'dm-0' b 253 0\nln -s '../dm-0' 'mapper/vg-root'\n",
		`ln -s '../../dm-0' 'disk/by-uuid/it'\''s'` + "\n",
		"exec chroot \"$root\" \"$@\"\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("setup script lacks %q:\n%s", want, s)
		}
	}
}
