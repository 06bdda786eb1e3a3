package initramfs

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{in: "", want: nil},
		{in: "  \n", want: nil},
		{in: "console=ttyS0 quiet\n", want: []string{"console=ttyS0", "quiet"}},
		{in: `a="b c" "d e" f`, want: []string{"a=b c", "d e", "f"}},
		{in: `x="" y`, want: []string{"x=", "y"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, splitCmdline(tc.in)); diff != "" {
				t.Errorf("splitCmdline(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	const ok = "BOOT_IMAGE=vmlinuz initrd=goldcast-initrd.img console=tty0 console=ttyS0,115200 goldcast.server=http://10.0.0.1:8080 goldcast.node=node007 "
	tests := []struct {
		name    string
		in      string
		want    bootConfig
		wantErr string
	}{
		{name: "iPXE install line", in: ok + "goldcast.token=ab12 goldcast.action=install quiet net.ifnames=0\n",
			want: bootConfig{Server: "http://10.0.0.1:8080", Node: "node007", Token: "ab12", Action: "install"}},
		{name: "no action", in: ok, want: bootConfig{Server: "http://10.0.0.1:8080", Node: "node007"}},
		{name: "shell, the last one wins", in: ok + "goldcast.action=reboot goldcast.action=shell goldcast.node=n2",
			want: bootConfig{Server: "http://10.0.0.1:8080", Node: "n2", Action: "shell"}},
		{name: "https", in: "goldcast.server=https://gc.example/ goldcast.node=a", want: bootConfig{Server: "https://gc.example/", Node: "a"}},
		{name: "no server", in: "goldcast.node=a", wantErr: "kernel command line: no goldcast.server=URL"},
		{name: "server not a URL", in: "goldcast.server=10.0.0.1:8080 goldcast.node=a", wantErr: `kernel command line: goldcast.server="10.0.0.1:8080" is not an http or https URL`},
		{name: "ftp server", in: "goldcast.server=ftp://x goldcast.node=a", wantErr: "is not an http or https URL"},
		{name: "no node", in: "goldcast.server=http://x", wantErr: "kernel command line: no goldcast.node=NAME"},
		{name: "unknown action", in: "goldcast.server=http://x goldcast.node=a goldcast.action=dance", wantErr: `unknown goldcast.action="dance"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCmdline(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseCmdline error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseCmdline (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeaseNetwork(t *testing.T) {
	ack := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(mods...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	yi := dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15))
	tests := []struct {
		name    string
		ack     *dhcpv4.DHCPv4
		want    leaseConfig
		wantErr bool
	}{
		{
			name: "QEMU user networking",
			ack:  ack(yi, dhcpv4.WithNetmask(net.IPv4Mask(255, 255, 255, 0)), dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)), dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3))),
			want: leaseConfig{addr: netip.MustParsePrefix("10.0.2.15/24"), router: netip.MustParseAddr("10.0.2.2"), dns: []netip.Addr{netip.MustParseAddr("10.0.2.3")}},
		},
		{
			name: "no mask: classful, no router, no DNS",
			ack:  ack(yi),
			want: leaseConfig{addr: netip.MustParsePrefix("10.0.2.15/8")},
		},
		{
			name: "two routers, two DNS servers",
			ack: ack(dhcpv4.WithYourIP(net.IPv4(192, 168, 7, 9)), dhcpv4.WithNetmask(net.IPv4Mask(255, 255, 252, 0)),
				dhcpv4.WithRouter(net.IPv4(192, 168, 4, 1), net.IPv4(192, 168, 4, 2)), dhcpv4.WithDNS(net.IPv4(1, 1, 1, 1), net.IPv4(8, 8, 8, 8))),
			want: leaseConfig{addr: netip.MustParsePrefix("192.168.7.9/22"), router: netip.MustParseAddr("192.168.4.1"),
				dns: []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("8.8.8.8")}},
		},
		{name: "no address", ack: ack(), wantErr: true},
		{name: "holey mask", ack: ack(yi, dhcpv4.WithNetmask(net.IPv4Mask(255, 0, 255, 0))), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := leaseNetwork(tc.ack)
			if (err != nil) != tc.wantErr {
				t.Fatalf("leaseNetwork error %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(leaseConfig{}), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("leaseNetwork (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReporterPost sends a report to a server answering with a scripted
// series of statuses.
func TestReporterPost(t *testing.T) {
	rep := Report{Node: "n1", MACs: []string{"52:54:00:00:00:01"}, CPUs: 2, MemoryKB: 1024, Disks: []string{"vda"}, Kernel: "6.1.0"}
	tests := []struct {
		name     string
		statuses []int // answers, in order; the last repeats
		token    string
		tries    int
		wantErr  string // a part of the error, "" for success
		wantHits int
	}{
		{name: "accepted", statuses: []int{http.StatusNoContent}, token: "tok", tries: 3, wantHits: 1},
		{name: "no token", statuses: []int{http.StatusOK}, tries: 3, wantHits: 1},
		{name: "retried after 5xx", statuses: []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusNoContent}, token: "tok", tries: 3, wantHits: 3},
		{name: "gives up", statuses: []int{http.StatusInternalServerError}, token: "tok", tries: 3, wantHits: 3,
			wantErr: "(try 3 of 3): 500 Internal Server Error: boom"},
		{name: "refused at once", statuses: []int{http.StatusForbidden}, token: "bad", tries: 3, wantHits: 1,
			wantErr: "(try 1 of 3): server refused the report: 403 Forbidden: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var hits int
			var bodies []Report
			var tokens []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if r.Method != http.MethodPost || r.URL.Path != "/prefix"+ReportPath || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
				}
				var got Report
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					t.Errorf("decode: %v", err)
				}
				bodies = append(bodies, got)
				tokens = append(tokens, r.Header.Get(api.NodeTokenHeader))
				status := tc.statuses[min(hits, len(tc.statuses)-1)]
				hits++
				if status >= 300 {
					http.Error(w, "boom", status)
					return
				}
				w.WriteHeader(status)
			}))
			defer srv.Close()
			var logBuf bytes.Buffer
			r := reporter{client: srv.Client(), log: &consoleLog{w: &logBuf, start: time.Now()}, tries: tc.tries, backoff: time.Millisecond}
			err := r.post(t.Context(), srv.URL+"/prefix/", tc.token, rep)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("post: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("post error %v, want %q", err, tc.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			wantBodies, wantTokens := []Report{}, []string{}
			for range tc.wantHits {
				wantBodies, wantTokens = append(wantBodies, rep), append(wantTokens, tc.token)
			}
			if diff := cmp.Diff(wantBodies, append([]Report{}, bodies...)); diff != "" {
				t.Errorf("reports received (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantTokens, append([]string{}, tokens...)); diff != "" {
				t.Errorf("tokens received (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenewAfter(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []dhcpv4.Option
		want time.Duration
	}{
		{"renewal time given", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(time.Hour), dhcpv4.OptRenewTimeValue(10 * time.Minute)}, 10 * time.Minute},
		{"half the lease", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(2 * time.Hour)}, time.Hour},
		{"no times: half an hour", nil, 30 * time.Minute},
		{"at least a minute", []dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(30 * time.Second)}, time.Minute},
	} {
		ack, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range tc.opts {
			ack.UpdateOption(o)
		}
		if got := renewAfter(ack); got != tc.want {
			t.Errorf("%s: renewAfter = %v, want %v", tc.name, got, tc.want)
		}
	}
}
