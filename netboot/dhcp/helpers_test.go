package dhcp

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// t0 is the tests' fixed start time.
func t0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reservations is a map-backed Reservations and AddressReserver.
type reservations map[string]struct {
	ip       string
	hostname string
}

func (r reservations) Lookup(mac net.HardwareAddr) (netip.Addr, string, bool) {
	e, ok := r[mac.String()]
	if !ok {
		return netip.Addr{}, "", false
	}
	return netip.MustParseAddr(e.ip), e.hostname, true
}

func (r reservations) ReservedFor(ip netip.Addr) (net.HardwareAddr, bool) {
	for mac, e := range r {
		if e.ip == ip.String() {
			return mustMAC(mac), true
		}
	}
	return nil, false
}

// memLeases is an in-memory LeaseStore for the fuzz test.
type memLeases struct {
	mu sync.Mutex
	m  map[string]Lease
}

func (s *memLeases) Get(mac net.HardwareAddr) (Lease, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[mac.String()]
	return l, ok, nil
}

func (s *memLeases) Put(l Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Lease{}
	}
	s.m[l.MAC.String()] = l
	return nil
}

func (s *memLeases) Delete(mac net.HardwareAddr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, mac.String())
	return nil
}

func (s *memLeases) All() ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Lease
	for _, l := range s.m {
		out = append(out, l)
	}
	return out, nil
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ip4(s string) net.IP { return net.ParseIP(s).To4() }

// quietLogger discards the server's log.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// baseConfig is a full-mode configuration with a three-address pool.
func baseConfig() Config {
	return Config{
		Mode:      ModeFull,
		ServerIP:  netip.MustParseAddr("10.0.0.1"),
		Range:     Range{First: netip.MustParseAddr("10.0.0.100"), Last: netip.MustParseAddr("10.0.0.102")},
		Netmask:   netip.MustParseAddr("255.255.255.0"),
		Router:    netip.MustParseAddr("10.0.0.254"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.0.0.53")},
		LeaseTime: time.Hour,
		Options:   map[uint8][]byte{OptionImageServer: {10, 0, 0, 1}},
	}
}

// openStore opens a FileLeaseStore in a test directory.
func openStore(t *testing.T) *FileLeaseStore {
	t.Helper()
	st, err := OpenFileLeaseStore(filepath.Join(t.TempDir(), "leases.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// msg builds a client message of type mt from mac.
func msg(t testing.TB, mt dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	all := append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mustMAC(mac)),
		dhcpv4.WithHWType(iana.HWTypeEthernet),
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}),
	}, mods...)
	m, err := dhcpv4.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Modifiers for test messages.
func serverID(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4(s)))
}

func requested(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4(s)))
}

func vendor(s string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(s))
}

func arch(a iana.Arch) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClientArch(a))
}

func userClass(s string) dhcpv4.Modifier { return dhcpv4.WithUserClass(s, false) }

// summary is the part of a reply the tests compare.
type summary struct {
	Type        string
	YourIP      string
	ClientIP    string
	RelayIP     string
	NextServer  string
	ServerID    string
	File        string
	Hostname    string
	VendorClass string
	Vendor43    []byte
	LeaseTime   time.Duration
	Broadcast   bool
	// Options lists the option codes present.
	Options []uint8
}

// summarize is resp's summary; nil for no reply.
func summarize(resp *dhcpv4.DHCPv4) *summary {
	if resp == nil {
		return nil
	}
	s := &summary{
		Type:        resp.MessageType().String(),
		YourIP:      resp.YourIPAddr.String(),
		ClientIP:    resp.ClientIPAddr.String(),
		RelayIP:     resp.GatewayIPAddr.String(),
		NextServer:  resp.ServerIPAddr.String(),
		ServerID:    resp.ServerIdentifier().String(),
		File:        resp.BootFileName,
		Hostname:    resp.HostName(),
		VendorClass: resp.ClassIdentifier(),
		Vendor43:    resp.Options.Get(dhcpv4.OptionVendorSpecificInformation),
		LeaseTime:   resp.IPAddressLeaseTime(0),
		Broadcast:   resp.IsBroadcast(),
	}
	for code := range resp.Options {
		s.Options = append(s.Options, code)
	}
	slices.Sort(s.Options)
	return s
}

// leaseView is a lease as the tests compare it.
type leaseView struct {
	MAC, IP, Hostname string
	Expiry            time.Time
}

// leaseViews lists a store's leases, sorted by MAC.
func leaseViews(t *testing.T, st LeaseStore) []leaseView {
	t.Helper()
	all, err := st.All()
	if err != nil {
		t.Fatal(err)
	}
	var out []leaseView
	for _, l := range all {
		out = append(out, leaseView{MAC: l.MAC.String(), IP: l.IP.String(), Hostname: l.Hostname, Expiry: l.Expiry})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
