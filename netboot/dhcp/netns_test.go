package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// The veth pair joining a topology's namespaces, and the server's address.
const (
	srvIf   = "gcdhcp0"
	cliIf   = "gcdhcp1"
	srvAddr = "10.77.0.1"
)

// topology is two network namespaces created for one test and joined by
// a veth pair: srvIf with srvAddr/24 in srv, cliIf without an address in
// cli. No packet of the test leaves them.
type topology struct {
	srv, cli string
}

// ipCmd runs the ip command.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newTopology creates the namespaces (removed in t.Cleanup), or skips the
// test where that is impossible.
func newTopology(t *testing.T) topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces and a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs the ip command (iproute2) to create network namespaces")
	}
	id := fmt.Sprintf("%d-%08x", os.Getpid(), rand.Uint32())
	top := topology{srv: "gcdhcp-srv-" + id, cli: "gcdhcp-cli-" + id}
	if err := ipCmd("netns", "add", top.srv); err != nil {
		t.Skipf("skipping: cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() {
		if err := ipCmd("netns", "del", top.srv); err != nil {
			t.Errorf("remove namespace: %v", err)
		}
	})
	if err := ipCmd("netns", "add", top.cli); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ipCmd("netns", "del", top.cli); err != nil {
			t.Errorf("remove namespace: %v", err)
		}
	})
	for _, args := range [][]string{
		// Created inside the server namespace, the pair never exists in
		// the host's.
		{"-n", top.srv, "link", "add", srvIf, "type", "veth", "peer", "name", cliIf, "netns", top.cli},
		{"-n", top.srv, "addr", "add", srvAddr + "/24", "dev", srvIf},
		{"-n", top.srv, "link", "set", srvIf, "up"},
		{"-n", top.cli, "link", "set", cliIf, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return top
}

// inNetns runs fn on a goroutine locked to an OS thread that joined
// namespace ns, and returns a channel closed when fn returns. The thread
// is never unlocked, so it ends with the goroutine and no other goroutine
// ever runs in the namespace by accident.
func inNetns(t *testing.T, ns string, fn func()) <-chan struct{} {
	t.Helper()
	entered := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			entered <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		entered <- err
		if err == nil {
			fn()
		}
	}()
	if err := <-entered; err != nil {
		t.Fatalf("enter namespace %s: %v", ns, err)
	}
	return done
}

// startServer runs srv.Serve in the topology's server namespace until the
// test ends, and checks that it stops cleanly.
func startServer(t *testing.T, top topology, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	inNetns(t, top.srv, func() { errc <- srv.Serve(ctx) })
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not stop when its context ended")
		}
	})
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// udpExchange sends req from local to remote in the current namespace and
// returns the answer, or nil when none arrives in time.
func udpExchange(ctx context.Context, local, remote string, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	var d net.Dialer
	d.LocalAddr = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local))
	c, err := d.DialContext(ctx, "udp4", remote)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write(req.ToBytes()); err != nil {
		return nil, err
	}
	if req.MessageType() == dhcpv4.MessageTypeRelease {
		return nil, nil
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return dhcpv4.FromBytes(buf[:n])
}

// TestServeFullOverVeth runs a full-mode server in one namespace and
// insomniacslk's nclient4 in another: discover, offer, request, ack, then
// a renewal once the client configured its address, then a release.
func TestServeFullOverVeth(t *testing.T) {
	top := newTopology(t)
	st := openStore(t)
	var mu sync.Mutex
	var kinds []EventKind
	cfg := Config{
		Mode:      ModeFull,
		Interface: srvIf,
		ServerIP:  netip.MustParseAddr(srvAddr),
		Range:     Range{First: netip.MustParseAddr("10.77.0.100"), Last: netip.MustParseAddr("10.77.0.110")},
		Netmask:   netip.MustParseAddr("255.255.255.0"),
		Router:    netip.MustParseAddr(srvAddr),
		LeaseTime: time.Hour,
		Options:   map[uint8][]byte{OptionImageServer: {10, 77, 0, 1}},
	}
	srv, err := New(cfg, Deps{Leases: st, Logger: testLogger(t), OnEvent: func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, ev.Kind)
	}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, top, srv)

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var (
		lease, renewed *nclient4.Lease
		clientErr      error
	)
	<-inNetns(t, top.cli, func() {
		c, err := nclient4.New(cliIf, nclient4.WithTimeout(300*time.Millisecond), nclient4.WithRetry(15))
		if err != nil {
			clientErr = fmt.Errorf("new client: %w", err)
			return
		}
		defer c.Close()
		pxe := []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		}
		if lease, err = c.Request(ctx, pxe...); err != nil {
			clientErr = fmt.Errorf("request: %w", err)
			return
		}
		// Configure the address, as a client would, so the server's
		// unicast answer to the renewal can be delivered.
		yi := lease.ACK.YourIPAddr.String()
		if err := ipCmd("-n", top.cli, "addr", "add", yi+"/24", "dev", cliIf); err != nil {
			clientErr = err
			return
		}
		if renewed, err = c.Renew(ctx, lease); err != nil {
			clientErr = fmt.Errorf("renew: %w", err)
			return
		}
		rel, err := dhcpv4.NewReleaseFromACK(renewed.ACK)
		if err != nil {
			clientErr = err
			return
		}
		if _, err := udpExchange(ctx, yi+":68", srvAddr+":67", rel); err != nil {
			clientErr = fmt.Errorf("release: %w", err)
		}
	})
	if clientErr != nil {
		t.Fatal(clientErr)
	}

	type view struct {
		Offer, Ack, Renewal *summary
		ImageServer         []byte
	}
	got := view{Offer: summarize(lease.Offer), Ack: summarize(lease.ACK), Renewal: summarize(renewed.ACK),
		ImageServer: lease.ACK.Options.Get(dhcpv4.GenericOptionCode(OptionImageServer))}
	reply := func(typ string) *summary {
		return &summary{Type: typ, YourIP: "10.77.0.100", ClientIP: "0.0.0.0", RelayIP: "0.0.0.0", NextServer: srvAddr,
			ServerID: srvAddr, File: "ipxe.efi", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255},
			LeaseTime: time.Hour, Options: []uint8{1, 3, 43, 51, 53, 54, 58, 59, 60, 140}}
	}
	// nclient4 renews without the PXE vendor class: no boot information.
	renewal := &summary{Type: "ACK", YourIP: "10.77.0.100", ClientIP: "10.77.0.100", RelayIP: "0.0.0.0", NextServer: "0.0.0.0",
		ServerID: srvAddr, LeaseTime: time.Hour, Options: []uint8{1, 3, 51, 53, 54, 58, 59, 140}}
	want := view{Offer: reply("OFFER"), Ack: reply("ACK"), Renewal: renewal,
		ImageServer: []byte{10, 77, 0, 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exchange (-want +got):\n%s", diff)
	}

	// The release arrives asynchronously.
	wantKinds := []EventKind{EventDiscover, EventOffer, EventAck, EventAck, EventRelease}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		done := slices.Equal(kinds, wantKinds)
		gotKinds := slices.Clone(kinds)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %v, want %v", gotKinds, wantKinds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l, ok, err := st.Get(lease.ACK.ClientHWAddr)
	if err != nil || !ok {
		t.Fatalf("lease after release: %v, %v", ok, err)
	}
	if l.IP.String() != "10.77.0.100" || l.Expiry.After(time.Now()) {
		t.Errorf("lease after release: %+v, want 10.77.0.100 expired", l)
	}
}

// TestServeProxyOverVeth runs a proxy-mode server: nclient4, speaking as
// UEFI PXE firmware, gets an offer without an address, then the client,
// given an address by "the other server", asks on port 4011.
func TestServeProxyOverVeth(t *testing.T) {
	top := newTopology(t)
	srv, err := New(Config{Mode: ModeProxy, Interface: srvIf, ServerIP: netip.MustParseAddr(srvAddr)}, Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, top, srv)

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	var (
		offer, ack *dhcpv4.DHCPv4
		clientErr  error
	)
	<-inNetns(t, top.cli, func() {
		c, err := nclient4.New(cliIf, nclient4.WithTimeout(300*time.Millisecond), nclient4.WithRetry(15))
		if err != nil {
			clientErr = fmt.Errorf("new client: %w", err)
			return
		}
		mac := c.InterfaceAddr()
		offer, err = c.DiscoverOffer(ctx, pxe...)
		c.Close()
		if err != nil {
			clientErr = fmt.Errorf("discover: %w", err)
			return
		}
		if err := ipCmd("-n", top.cli, "addr", "add", "10.77.0.50/24", "dev", cliIf); err != nil {
			clientErr = err
			return
		}
		req, err := dhcpv4.New(append([]dhcpv4.Modifier{
			dhcpv4.WithHwAddr(mac),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithClientIP(net.ParseIP("10.77.0.50")),
		}, pxe...)...)
		if err != nil {
			clientErr = err
			return
		}
		if ack, err = udpExchange(ctx, "10.77.0.50:68", srvAddr+":4011", req); err != nil {
			clientErr = fmt.Errorf("port 4011 request: %w", err)
		}
	})
	if clientErr != nil {
		t.Fatal(clientErr)
	}
	want := []*summary{
		{Type: "OFFER", YourIP: "0.0.0.0", ClientIP: "0.0.0.0", RelayIP: "0.0.0.0", NextServer: srvAddr, ServerID: srvAddr,
			File: "ipxe.efi", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}, Options: []uint8{43, 53, 54, 60}},
		{Type: "ACK", YourIP: "0.0.0.0", ClientIP: "10.77.0.50", RelayIP: "0.0.0.0", NextServer: srvAddr, ServerID: srvAddr,
			File: "ipxe.efi", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}, Options: []uint8{43, 53, 54, 60}},
	}
	if diff := cmp.Diff(want, []*summary{summarize(offer), summarize(ack)}); diff != "" {
		t.Errorf("proxy exchange (-want +got):\n%s", diff)
	}
}
