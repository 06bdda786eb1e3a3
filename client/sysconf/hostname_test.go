package sysconf

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHostsFor(t *testing.T) {
	const debianDefault = "127.0.0.1\tlocalhost\n127.0.1.1\tgolden.example.org\tgolden\n\n" +
		"# The following lines are desirable for IPv6 capable hosts\n" +
		"::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
	tests := []struct {
		name                    string
		existing                string
		old                     []string
		short, fqdn, addr, want string
	}{
		{
			name:  "no file, DHCP",
			short: "node01", fqdn: "node01.example.com", addr: "127.0.1.1",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\tnode01.example.com node01\n" + hostsIPv6,
		},
		{
			name:  "no domain",
			short: "node01", fqdn: "node01", addr: "127.0.1.1",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\tnode01\n" + hostsIPv6,
		},
		{
			name:     "Debian default of the golden client, static node",
			existing: debianDefault,
			old:      []string{"golden.example.org", "golden"},
			short:    "node01", fqdn: "node01.example.com", addr: "10.0.0.11",
			want: "127.0.0.1\tlocalhost\n10.0.0.11\tnode01.example.com node01\n\n" +
				"# The following lines are desirable for IPv6 capable hosts\n" +
				"::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n",
		},
		{
			name: "other lines kept, old names taken out of them",
			existing: "# site hosts\n127.0.0.1 localhost localhost.localdomain\n" +
				"10.0.0.5 golden golden-alias # the golden client\n" +
				"10.0.0.11 stale-entry-for-the-node-address\n" +
				"10.0.0.1 gw.example.com gw\n" +
				"::1 localhost golden\n",
			old:   []string{"golden"},
			short: "node01", fqdn: "node01", addr: "10.0.0.11",
			want: "127.0.0.1\tlocalhost\n10.0.0.11\tnode01\n# site hosts\n" +
				"10.0.0.5\tgolden-alias # the golden client\n" +
				"10.0.0.1 gw.example.com gw\n" +
				"::1\tlocalhost\n",
		},
		{
			name:     "a line naming only the node goes",
			existing: "10.0.0.99 node01.example.com node01\n10.0.0.1 gw\n",
			short:    "node01", fqdn: "node01.example.com", addr: "127.0.1.1",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\tnode01.example.com node01\n10.0.0.1 gw\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := hostsFor(tc.existing, tc.old, tc.short, tc.fqdn, tc.addr)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
			// Running again on the result changes nothing.
			if again := hostsFor(got, tc.old, tc.short, tc.fqdn, tc.addr); again != got {
				t.Errorf("second run differs (-first +second):\n%s", cmp.Diff(got, again))
			}
		})
	}
}

func TestNodeNames(t *testing.T) {
	tests := []struct {
		name              string
		node              Node
		wantShort, wantFQ string
		wantErr           bool
	}{
		{name: "name only", node: Node{Name: "node01"}, wantShort: "node01", wantFQ: "node01"},
		{name: "hostname wins", node: Node{Name: "n1", Hostname: "node01", Domain: "example.com"}, wantShort: "node01", wantFQ: "node01.example.com"},
		{name: "fully qualified hostname", node: Node{Hostname: "node01.example.com."}, wantShort: "node01", wantFQ: "node01.example.com"},
		{name: "domain beats the hostname's", node: Node{Hostname: "node01.a.org", Domain: ".b.org."}, wantShort: "node01", wantFQ: "node01.b.org"},
		{name: "none", node: Node{}},
		{name: "underscore", node: Node{Name: "node_01"}, wantErr: true},
		{name: "leading hyphen", node: Node{Name: "-node"}, wantErr: true},
		{name: "injection", node: Node{Name: "node\n10.0.0.1 evil"}, wantErr: true},
		{name: "bad domain", node: Node{Name: "node", Domain: "a..b"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			short, fq, err := tc.node.names()
			if (err != nil) != tc.wantErr {
				t.Fatalf("names() error = %v, want error %v", err, tc.wantErr)
			}
			if short != tc.wantShort || fq != tc.wantFQ {
				t.Errorf("names() = %q, %q, want %q, %q", short, fq, tc.wantShort, tc.wantFQ)
			}
		})
	}
}

func TestNetConfig(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name    string
		node    Node
		want    netConfig
		wantErr bool
	}{
		{name: "no addresses means DHCP", node: Node{Name: "n", MACs: []string{"52-54-00-AB-CD-EF", "52:54:00:00:00:02"}},
			want: netConfig{mac: "52:54:00:ab:cd:ef", dhcp: true}},
		{name: "DHCP ignores the addresses", node: Node{Name: "n", Domain: "x.org", DHCP: true, IPs: []string{"bogus"}},
			want: netConfig{dhcp: true, domain: "x.org"}},
		{name: "bare addresses get default prefixes", node: Node{IPs: []string{"10.0.0.11", "fd00::11", "192.168.1.5/16"}, Gateway: "10.0.0.1", DNS: []string{"10.0.0.2", "fd00::2"}},
			want: netConfig{addrs: []netip.Prefix{pfx("10.0.0.11/24"), pfx("fd00::11/64"), pfx("192.168.1.5/16")},
				gateway: netip.MustParseAddr("10.0.0.1"), dns: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}}},
		{name: "bad MAC", node: Node{MACs: []string{"52:54:00"}}, wantErr: true},
		{name: "InfiniBand MAC", node: Node{MACs: []string{"00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"}}, wantErr: true},
		{name: "bad address", node: Node{IPs: []string{"10.0.0.300/24"}}, wantErr: true},
		{name: "bad prefix", node: Node{IPs: []string{"10.0.0.3/33"}}, wantErr: true},
		{name: "bad gateway", node: Node{IPs: []string{"10.0.0.3"}, Gateway: "gw"}, wantErr: true},
		{name: "bad DNS", node: Node{IPs: []string{"10.0.0.3"}, DNS: []string{"dns.example.com"}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.node.netConfig()
			if (err != nil) != tc.wantErr {
				t.Fatalf("netConfig() error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(netConfig{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("netConfig() (-want +got):\n%s", diff)
			}
		})
	}
}
