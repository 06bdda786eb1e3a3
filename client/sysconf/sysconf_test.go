package sysconf

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// goldenTree is what a golden client's root holds of what Configure
// rewrites.
func goldenTree() map[string]string {
	return map[string]string{
		"etc/fstab":    "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n",
		"etc/hostname": "golden\n",
		"etc/hosts":    "127.0.0.1 localhost\n127.0.1.1 golden.example.org golden\n10.0.0.9 nfs\n",
		"etc/network/interfaces": "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n" +
			"allow-hotplug ens3\niface ens3 inet static\n address 10.0.0.5/24\n",
		"etc/systemd/network/":             "",
		"etc/resolv.conf":                  "nameserver 192.168.0.1\n",
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id":          "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key":     "old private key\n",
		"etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA root@golden\n",
		"usr/sbin/sshd":                    "",
	}
}

func goldenLayout() *disklayout.Layout {
	return &disklayout.Layout{
		Version: disklayout.FormatVersion,
		Host:    "golden.example.org",
		Filesystems: []disklayout.Filesystem{
			{Device: "/dev/sda2", Type: "ext4", Mountpoint: "/", UUID: "11111111-2222-4333-8444-555555555555", Options: "rw,relatime"},
			{Device: "/dev/sda3", Type: "swap", UUID: "66666666-7777-4888-9999-000000000000"},
		},
	}
}

// stepPaths returns the step and path of each change, without the SSH
// host key changes (which key types ssh-keygen makes depends on the host)
// and notes.
func stepPaths(changes []Change) []Change {
	var out []Change
	for _, c := range changes {
		if c.Step != StepSSHKeys && c.Path != "" {
			out = append(out, Change{Step: c.Step, Path: c.Path})
		}
	}
	return out
}

func TestConfigureTree(t *testing.T) {
	node := Node{Name: "node07", Domain: "cluster.example", IPs: []string{"10.0.0.17/24"}, Gateway: "10.0.0.1",
		DNS: []string{"10.0.0.2"}, MACs: []string{"52:54:00:ab:cd:07"}}
	dir := t.TempDir()
	makeTree(t, dir, goldenTree())
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A hostile or careless image: a link from the image to the host.
	if err := os.Symlink(outside, filepath.Join(dir, "etc/mailname")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "etc/hostname")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "etc/hostname")); err != nil {
		t.Fatal(err)
	}

	opts := Options{Root: dir, Layout: goldenLayout(), Node: node, NoBootloader: true, Log: discardLogger()}
	changes, err := Configure(context.Background(), opts)
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	want := []Change{
		{Step: StepFstab, Path: "/etc/fstab"},
		{Step: StepHostname, Path: "/etc/hostname"},
		{Step: StepHostname, Path: "/etc/hosts"},
		{Step: StepNetwork, Path: "/etc/network/interfaces"}, // moved aside
		{Step: StepNetwork, Path: "/etc/network/interfaces"},
		{Step: StepNetwork, Path: "/etc/resolv.conf"},
		{Step: StepMachineID, Path: "/etc/machine-id"},
		{Step: StepMachineID, Path: "/var/lib/dbus/machine-id"},
	}
	if diff := cmp.Diff(want, stepPaths(changes)); diff != "" {
		t.Errorf("changes (-want +got):\n%s\nall: %v", diff, changes)
	}

	read := func(rel string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := read("etc/hostname"); got != "node07\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	if st, err := os.Lstat(filepath.Join(dir, "etc/hostname")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("/etc/hostname is not a regular file: %v %v", st, err)
	}
	if got, _ := os.ReadFile(outside); string(got) != "host file\n" {
		t.Errorf("a write went through the image's link to the host: %s = %q", outside, got)
	}
	if got, want := read("etc/hosts"), "127.0.0.1\tlocalhost\n10.0.0.17\tnode07.cluster.example node07\n10.0.0.9 nfs\n"; got != want {
		t.Errorf("/etc/hosts:\n%s", cmp.Diff(want, got))
	}
	fstab := read("etc/fstab")
	for _, re := range []string{`(?m)^UUID=11111111-2222-4333-8444-555555555555\s+/\s+ext4\s+rw,relatime\s+0\s+1$`,
		`(?m)^UUID=66666666-7777-4888-9999-000000000000\s+none\s+swap\s+sw\s+0\s+0$`, `(?m)^# Written by goldcast`} {
		if !regexp.MustCompile(re).MatchString(fstab) {
			t.Errorf("/etc/fstab does not match %s:\n%s", re, fstab)
		}
	}
	if got := read("etc/network/interfaces.goldcast-orig"); got != goldenTree()["etc/network/interfaces"] {
		t.Errorf("the image's interfaces were not kept aside: %q", got)
	}
	if got := read("etc/network/interfaces"); !strings.Contains(got, "auto mac/52:54:00:ab:cd:07=goldcast0\niface goldcast0 inet static\n\taddress 10.0.0.17/24\n") {
		t.Errorf("/etc/network/interfaces:\n%s", got)
	}
	if got := read("etc/resolv.conf"); !strings.Contains(got, "nameserver 10.0.0.2\n") || strings.Contains(got, "192.168.0.1") {
		t.Errorf("/etc/resolv.conf:\n%s", got)
	}
	id := read("etc/machine-id")
	if !regexp.MustCompile(`^[0-9a-f]{32}\n$`).MatchString(id) || id == goldenTree()["etc/machine-id"] {
		t.Errorf("/etc/machine-id = %q, want a fresh one", id)
	}
	if st, err := os.Stat(filepath.Join(dir, "etc/machine-id")); err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("/etc/machine-id mode: %v %v", st, err)
	}
	if got := read("var/lib/dbus/machine-id"); got != id {
		t.Errorf("/var/lib/dbus/machine-id = %q, want %q", got, id)
	}
	if _, err := lookTool("ssh-keygen"); err == nil {
		if got := read("etc/ssh/ssh_host_ed25519_key"); got == "old private key\n" {
			t.Errorf("the golden client's SSH host key was kept")
		}
		if got := read("etc/ssh/ssh_host_ed25519_key.pub"); !strings.HasSuffix(got, " root@node07\n") {
			t.Errorf("new public key %q does not name the node", got)
		}
	}

	// A second run rewrites only what must be new each time.
	changes, err = Configure(context.Background(), opts)
	if err != nil {
		t.Fatalf("second Configure: %v", err)
	}
	want = []Change{
		{Step: StepMachineID, Path: "/etc/machine-id"},
		{Step: StepMachineID, Path: "/var/lib/dbus/machine-id"},
	}
	if diff := cmp.Diff(want, stepPaths(changes)); diff != "" {
		t.Errorf("second run's changes (-want +got):\n%s", diff)
	}
}

func TestConfigureOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		tree    map[string]string
		want    []Change // notes and changes, What of changes ignored
		wantErr string
	}{
		{
			name: "no layout, DHCP, keep keys, everything else off",
			opts: Options{Node: Node{Name: "n1", DHCP: true}, KeepSSHKeys: true, NoMachineID: true, NoBootloader: true},
			tree: goldenTree(),
			want: []Change{
				{Step: StepFstab, What: "/etc/fstab left as it is: no disk layout"},
				{Step: StepHostname, Path: "/etc/hostname"},
				{Step: StepHostname, Path: "/etc/hosts"},
				{Step: StepNetwork, Path: "/etc/network/interfaces"},
				{Step: StepNetwork, Path: "/etc/network/interfaces"},
				{Step: StepSSHKeys, What: "SSH host keys kept: the node's own are provided by an override"},
			},
		},
		{
			name: "networkd image, no name",
			opts: Options{Node: Node{MACs: []string{"52:54:00:00:00:01"}}, NoFstab: true, NoMachineID: true, NoSSHKeys: true},
			tree: map[string]string{
				"etc/systemd/network/50-golden.network": "[Match]\nName=ens3\n[Network]\nAddress=10.0.0.5/24\n",
				"etc/systemd/network/99-default.link":   "",
			},
			want: []Change{
				{Step: StepHostname, What: "host name left as it is: the node has no name"},
				{Step: StepNetwork, Path: "/etc/systemd/network/50-golden.network"},
				{Step: StepNetwork, Path: "/etc/systemd/network/10-goldcast.network"},
				{Step: StepBootloader, What: "bootloader left as it is: the image has neither GRUB (grub-install) nor systemd-boot (bootctl)"},
			},
		},
		{
			name: "NetworkManager image",
			opts: Options{Node: Node{Name: "n1"}, NoFstab: true, NoHostname: true, NoMachineID: true, NoSSHKeys: true, NoBootloader: true},
			tree: map[string]string{
				"usr/sbin/NetworkManager": "",
				"etc/NetworkManager/system-connections/Wired connection 1.nmconnection": "[connection]\ntype=ethernet\n",
				"etc/NetworkManager/system-connections/home-wifi.nmconnection":          "[connection]\ntype=wifi\n",
			},
			want: []Change{
				{Step: StepNetwork, Path: "/etc/NetworkManager/system-connections/Wired connection 1.nmconnection"},
				{Step: StepNetwork, Path: "/etc/NetworkManager/system-connections/goldcast.nmconnection"},
			},
		},
		{
			name: "netplan image",
			opts: Options{Node: Node{Name: "n1"}, NoFstab: true, NoHostname: true, NoMachineID: true, NoSSHKeys: true, NoBootloader: true},
			tree: map[string]string{
				"etc/netplan/00-installer-config.yaml": "network:\n  ethernets:\n    ens3:\n      dhcp4: true\n",
			},
			want: []Change{
				{Step: StepNetwork, Path: "/etc/netplan/00-installer-config.yaml"},
				{Step: StepNetwork, Path: "/etc/netplan/50-goldcast.yaml"},
			},
		},
		{
			name: "no network system, no /etc/ssh",
			opts: Options{Node: Node{Name: "n1"}, NoFstab: true, NoHostname: true, NoMachineID: true, NoBootloader: true},
			tree: map[string]string{"etc/": ""},
			want: []Change{
				{Step: StepNetwork, What: "network left as it is: the image uses none of netplan, NetworkManager, systemd-networkd or ifupdown"},
				{Step: StepSSHKeys, What: "SSH host keys left out: the image has no /etc/ssh directory"},
			},
		},
		{
			name: "ssh client only",
			opts: Options{NoFstab: true, NoHostname: true, NoNetwork: true, NoMachineID: true, NoBootloader: true},
			tree: map[string]string{"etc/ssh/ssh_config": ""},
			want: []Change{{Step: StepSSHKeys, What: "SSH host keys left out: the image has no SSH server"}},
		},
		{
			name:    "GRUB image on a plain directory",
			opts:    Options{Disk: "/dev/null", NoFstab: true, NoHostname: true, NoNetwork: true, NoMachineID: true, NoSSHKeys: true},
			tree:    map[string]string{"usr/sbin/grub-install": "", "usr/lib/grub/i386-pc/": ""},
			wantErr: "is not a mount point",
		},
		{
			name:    "bad node",
			opts:    Options{Node: Node{Name: "bad name"}},
			tree:    map[string]string{"etc/": ""},
			want:    []Change{{Step: StepFstab, What: "/etc/fstab left as it is: no disk layout"}},
			wantErr: "sysconf: hostname: host name \"bad name\"",
		},
		{
			name:    "bad address",
			opts:    Options{Node: Node{IPs: []string{"10.0.0.1/99"}}, NoFstab: true, NoHostname: true},
			tree:    map[string]string{"etc/": ""},
			wantErr: "sysconf: network: address \"10.0.0.1/99\"",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			makeTree(t, dir, tc.tree)
			tc.opts.Root = dir
			changes, err := Configure(context.Background(), tc.opts)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Configure: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Configure error = %v, want one containing %q", err, tc.wantErr)
			}
			for i := range changes {
				if changes[i].Path != "" {
					changes[i].What = ""
				}
			}
			if diff := cmp.Diff(tc.want, changes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigureRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ root, wantErr string }{
		{"", "Options.Root is empty"},
		{"/", "refusing to configure the running system's root"},
		{"/.", "refusing to configure the running system's root"},
		{file, "is not a directory"},
		{filepath.Join(t.TempDir(), "missing"), "no such file or directory"},
	}
	for _, tc := range tests {
		_, err := Configure(context.Background(), Options{Root: tc.root})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Configure(Root: %q) error = %v, want one containing %q", tc.root, err, tc.wantErr)
		}
	}
}

func TestConfigureCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	changes, err := Configure(ctx, Options{Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "context canceled") || len(changes) != 0 {
		t.Errorf("Configure with a canceled context = %v, %v", changes, err)
	}
}
