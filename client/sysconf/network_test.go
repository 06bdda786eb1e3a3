package sysconf

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Network configurations the format tests render.
func testNetConfigs() map[string]netConfig {
	return map[string]netConfig{
		"dhcp":         {mac: "52:54:00:ab:cd:ef", dhcp: true, domain: "example.com"},
		"dhcp, no MAC": {dhcp: true},
		"static": {
			mac:     "52:54:00:ab:cd:ef",
			addrs:   []netip.Prefix{netip.MustParsePrefix("10.0.0.11/24")},
			gateway: netip.MustParseAddr("10.0.0.1"),
			dns:     []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")},
			domain:  "example.com",
		},
		"dual stack": {
			mac: "52:54:00:ab:cd:ef",
			addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.11/24"), netip.MustParsePrefix("fd00::11/64"),
				netip.MustParsePrefix("10.0.1.11/24")},
			gateway: netip.MustParseAddr("fd00::1"),
			dns:     []netip.Addr{netip.MustParseAddr("fd00::2")},
		},
	}
}

func TestNetworkdFor(t *testing.T) {
	want := map[string]string{
		"dhcp":         goldcastHeader + "[Match]\nMACAddress=52:54:00:ab:cd:ef\n\n[Network]\nDHCP=yes\n",
		"dhcp, no MAC": goldcastHeader + "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
		"static": goldcastHeader + "[Match]\nMACAddress=52:54:00:ab:cd:ef\n\n[Network]\n" +
			"Address=10.0.0.11/24\nGateway=10.0.0.1\nDNS=10.0.0.2\nDNS=10.0.0.3\nDomains=example.com\n",
		"dual stack": goldcastHeader + "[Match]\nMACAddress=52:54:00:ab:cd:ef\n\n[Network]\n" +
			"Address=10.0.0.11/24\nAddress=fd00::11/64\nAddress=10.0.1.11/24\nGateway=fd00::1\nDNS=fd00::2\n",
	}
	for name, nc := range testNetConfigs() {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(want[name], networkdFor(nc)); diff != "" {
				t.Errorf("networkd (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNetplanFor(t *testing.T) {
	const top = goldcastHeader + "network:\n  version: 2\n"
	tests := []struct {
		nc, renderer, want string
	}{
		{"dhcp", "", top + "  ethernets:\n    goldcast0:\n      match:\n        macaddress: \"52:54:00:ab:cd:ef\"\n" +
			"      dhcp4: true\n      dhcp6: true\n"},
		{"dhcp, no MAC", "NetworkManager", top + "  renderer: NetworkManager\n  ethernets:\n    goldcast0:\n      match:\n        name: \"e*\"\n" +
			"      dhcp4: true\n      dhcp6: true\n"},
		{"static", "networkd", top + "  renderer: networkd\n  ethernets:\n    goldcast0:\n      match:\n        macaddress: \"52:54:00:ab:cd:ef\"\n" +
			"      dhcp4: false\n      dhcp6: false\n      addresses:\n        - \"10.0.0.11/24\"\n" +
			"      routes:\n        - to: \"0.0.0.0/0\"\n          via: \"10.0.0.1\"\n" +
			"      nameservers:\n        addresses: [10.0.0.2, 10.0.0.3]\n        search: [example.com]\n"},
		{"dual stack", "", top + "  ethernets:\n    goldcast0:\n      match:\n        macaddress: \"52:54:00:ab:cd:ef\"\n" +
			"      dhcp4: false\n      dhcp6: false\n      addresses:\n        - \"10.0.0.11/24\"\n        - \"fd00::11/64\"\n        - \"10.0.1.11/24\"\n" +
			"      routes:\n        - to: \"::/0\"\n          via: \"fd00::1\"\n" +
			"      nameservers:\n        addresses: [fd00::2]\n"},
	}
	for _, tc := range tests {
		t.Run(tc.nc, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, netplanFor(testNetConfigs()[tc.nc], tc.renderer)); diff != "" {
				t.Errorf("netplan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNMFor(t *testing.T) {
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88}
	const conn = goldcastHeader + "[connection]\nid=goldcast\nuuid=12345678-9abc-4ef0-bfee-ddccbbaa9988\ntype=ethernet\n" +
		"autoconnect=true\nautoconnect-priority=100\n\n[ethernet]\n"
	want := map[string]string{
		"dhcp":         conn + "mac-address=52:54:00:AB:CD:EF\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n",
		"dhcp, no MAC": conn + "\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n",
		"static": conn + "mac-address=52:54:00:AB:CD:EF\n\n[ipv4]\nmethod=manual\naddress1=10.0.0.11/24,10.0.0.1\n" +
			"dns=10.0.0.2;10.0.0.3;\ndns-search=example.com;\n\n[ipv6]\nmethod=ignore\n",
		"dual stack": conn + "mac-address=52:54:00:AB:CD:EF\n\n[ipv4]\nmethod=manual\naddress1=10.0.0.11/24\naddress2=10.0.1.11/24\n" +
			"\n[ipv6]\nmethod=manual\naddress1=fd00::11/64,fd00::1\ndns=fd00::2;\n",
	}
	for name, nc := range testNetConfigs() {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(want[name], nmFor(nc, uuid)); diff != "" {
				t.Errorf("NetworkManager keyfile (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIfupdownFor(t *testing.T) {
	const top = goldcastHeader + "# The image's own file, if it had one, is interfaces.goldcast-orig.\n\n"
	const lo = "auto lo\niface lo inet loopback\n\n"
	tests := []struct {
		nc      string
		sources []string
		want    string
	}{
		{"dhcp", []string{"source /etc/network/interfaces.d/*"}, top + "source /etc/network/interfaces.d/*\n\n" + lo +
			"auto mac/52:54:00:ab:cd:ef=goldcast0\niface goldcast0 inet dhcp\n"},
		{"dhcp, no MAC", nil, top + lo + "auto /e*/1=goldcast0\niface goldcast0 inet dhcp\n"},
		{"static", nil, top + lo + "auto mac/52:54:00:ab:cd:ef=goldcast0\niface goldcast0 inet static\n" +
			"\taddress 10.0.0.11/24\n\tgateway 10.0.0.1\n\tdns-nameservers 10.0.0.2 10.0.0.3\n\tdns-search example.com\n"},
		{"dual stack", nil, top + lo + "auto mac/52:54:00:ab:cd:ef=goldcast0\niface goldcast0 inet static\n" +
			"\taddress 10.0.0.11/24\n\tup ip address add 10.0.1.11/24 dev $IFACE\n\tdns-nameservers fd00::2\n" +
			"iface goldcast0 inet6 static\n\taddress fd00::11/64\n\tgateway fd00::1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.nc, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ifupdownFor(testNetConfigs()[tc.nc], tc.sources)); diff != "" {
				t.Errorf("interfaces (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvConfFor(t *testing.T) {
	want := "# Written by goldcast from the node's static configuration.\nsearch example.com\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
	if diff := cmp.Diff(want, resolvConfFor(testNetConfigs()["static"])); diff != "" {
		t.Errorf("resolv.conf (-want +got):\n%s", diff)
	}
}

func TestSourceLines(t *testing.T) {
	in := "# comment\nsource /etc/network/interfaces.d/*\n  source-directory   /etc/net.d\nauto lo\nsource\n"
	want := []string{"source /etc/network/interfaces.d/*", "source-directory /etc/net.d"}
	if diff := cmp.Diff(want, sourceLines(in)); diff != "" {
		t.Errorf("sourceLines (-want +got):\n%s", diff)
	}
}

func TestNMIsEthernet(t *testing.T) {
	tests := map[string]bool{
		"[connection]\nid=Wired\ntype=ethernet\n":              true,
		"[connection]\ntype = 802-3-ethernet\n":                true,
		"[connection]\ntype=wifi\n[ethernet]\ntype=ethernet\n": false,
		"[wifi]\ntype=ethernet\n":                              false,
	}
	for in, want := range tests {
		if got := nmIsEthernet(in); got != want {
			t.Errorf("nmIsEthernet(%q) = %v, want %v", in, got, want)
		}
	}
}

// makeTree creates a file tree under dir from spec: a path ending in "/"
// is a directory, a value starting with "-> " a symbolic link, anything
// else a file with that content.
func makeTree(t *testing.T, dir string, spec map[string]string) {
	t.Helper()
	for p, v := range spec {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(v, "-> "):
			err = os.Symlink(strings.TrimPrefix(v, "-> "), full)
		default:
			err = os.WriteFile(full, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// testConfigurer returns a configurer on a new tree made from spec.
func testConfigurer(t *testing.T, spec map[string]string) *configurer {
	t.Helper()
	dir := t.TempDir()
	makeTree(t, dir, spec)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &configurer{dir: dir, root: root, log: discardLogger()}
}

func TestDetectNetwork(t *testing.T) {
	const networkdOn = "-> /lib/systemd/system/systemd-networkd.service"
	tests := []struct {
		name string
		tree map[string]string
		want netDetection
	}{
		{"nothing", map[string]string{"etc/": ""}, netDetection{}},
		{"ifupdown", map[string]string{"etc/network/interfaces": "auto lo\n", "etc/systemd/network/": ""},
			netDetection{system: netIfupdown}},
		{"ifupdown without interfaces", map[string]string{"usr/sbin/ifup": ""}, netDetection{system: netIfupdown}},
		{"networkd enabled", map[string]string{"etc/systemd/network/": "",
			"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": networkdOn,
			"etc/network/interfaces": "auto lo\n"},
			netDetection{system: netNetworkd}},
		{"networkd with .network files", map[string]string{"etc/systemd/network/20-wired.network": "[Match]\n"},
			netDetection{system: netNetworkd}},
		{"networkd present but unused", map[string]string{"etc/systemd/network/": "", "etc/network/interfaces": ""},
			netDetection{system: netIfupdown}},
		{"NetworkManager", map[string]string{"etc/NetworkManager/NetworkManager.conf": "", "usr/sbin/NetworkManager": "",
			"etc/network/interfaces": "auto lo\n"},
			netDetection{system: netNetworkManager}},
		{"NetworkManager leftovers", map[string]string{"etc/NetworkManager/": "", "etc/network/interfaces": ""},
			netDetection{system: netIfupdown}},
		{"NetworkManager installed, networkd enabled", map[string]string{"etc/NetworkManager/": "", "usr/sbin/NetworkManager": "",
			"etc/systemd/network/": "", "etc/systemd/system/multi-user.target.wants/systemd-networkd.service": networkdOn},
			netDetection{system: netNetworkd}},
		{"NetworkManager and networkd both enabled", map[string]string{"etc/NetworkManager/": "", "usr/sbin/NetworkManager": "",
			"etc/systemd/system/multi-user.target.wants/NetworkManager.service": "-> /lib/systemd/system/NetworkManager.service",
			"etc/systemd/network/": "",
			"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": networkdOn},
			netDetection{system: netNetworkManager}},
		{"netplan", map[string]string{"etc/netplan/00-installer-config.yaml": "network:\n  version: 2\n  renderer: networkd\n",
			"etc/systemd/network/": "", "etc/systemd/system/multi-user.target.wants/systemd-networkd.service": networkdOn},
			netDetection{system: netNetplan, renderer: "networkd"}},
		{"netplan for NetworkManager", map[string]string{"etc/netplan/01-network-manager-all.yaml": "network:\n  renderer: 'NetworkManager'\n",
			"etc/NetworkManager/": "", "usr/sbin/NetworkManager": ""},
			netDetection{system: netNetplan, renderer: "NetworkManager"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := testConfigurer(t, tc.tree).detectNetwork()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(netDetection{})); diff != "" {
				t.Errorf("detectNetwork (-want +got):\n%s", diff)
			}
		})
	}
}
