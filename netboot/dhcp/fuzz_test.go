package dhcp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fuzzServers are a full-mode and a proxy-mode server for FuzzHandle.
func fuzzServers(tb testing.TB) []*Server {
	tb.Helper()
	full := baseConfig()
	full.Options[OptionSSHDownloadURL] = []byte("ssh://10.0.0.1/images")
	var out []*Server
	for _, c := range []struct {
		cfg  Config
		deps Deps
	}{
		{full, Deps{Leases: &memLeases{}, Reservations: reservations{macR: {ip: "10.0.0.50", hostname: "node001"}}, Logger: quietLogger(), Now: t0}},
		{Config{Mode: ModeProxy, ServerIP: netip.MustParseAddr("10.0.0.1")}, Deps{Logger: quietLogger()}},
	} {
		srv, err := New(c.cfg, c.deps)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, srv)
	}
	return out
}

// FuzzHandle feeds arbitrary packets through parsing and Handle in both
// modes: nothing may panic, every reply must encode to a parseable
// packet, and every packet must be counted exactly once. Seeds live in
// testdata/fuzz/FuzzHandle.
func FuzzHandle(f *testing.F) {
	servers := fuzzServers(f)
	from := netip.MustParseAddrPort("0.0.0.0:68")
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for _, srv := range servers {
			resp, err := srv.Handle(req, from)
			if resp != nil && err != nil {
				t.Fatalf("both a reply and an error: %v", err)
			}
			if resp != nil {
				if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
					t.Fatalf("reply %v does not parse: %v", resp, err)
				}
			}
			st := srv.Stats()
			if st.Received != st.Malformed+st.Ignored+st.Replies+st.Errors {
				t.Fatalf("stats do not add up: %+v", st)
			}
		}
	})
}

// TestMalformedCounted checks the Serve path: packets that do not parse,
// or are not client requests, are dropped and counted.
func TestMalformedCounted(t *testing.T) {
	srv := fuzzServers(t)[0]
	reply := msg(t, dhcpv4.MessageTypeOffer, macA)
	reply.OpCode = dhcpv4.OpcodeBootReply
	tokenRing := msg(t, dhcpv4.MessageTypeDiscover, macA)
	tokenRing.HWType = 6
	for _, b := range [][]byte{
		nil,
		[]byte("not dhcp at all"),
		msg(t, dhcpv4.MessageTypeDiscover, macA).ToBytes()[:240],
		reply.ToBytes(),
		tokenRing.ToBytes(),
	} {
		if resp, _ := srv.handleBytes(context.Background(), b, netip.MustParseAddrPort("0.0.0.0:68")); resp != nil {
			t.Errorf("answered a malformed packet %q", b)
		}
	}
	if diff := cmp.Diff(Stats{Received: 5, Malformed: 5}, srv.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}
