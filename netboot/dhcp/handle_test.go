package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Test clients.
const (
	macA = "02:00:00:00:00:0a"
	macB = "02:00:00:00:00:0b"
	macC = "02:00:00:00:00:0c"
	macD = "02:00:00:00:00:0d"
	macR = "02:00:00:00:00:01" // has a reservation in the cases that say so
)

// clientFrom is where an unconfigured client's broadcasts come from.
func clientFrom() netip.AddrPort { return netip.MustParseAddrPort("0.0.0.0:68") }

// step is one message of a case and what it must produce.
type step struct {
	advance time.Duration
	req     *dhcpv4.DHCPv4
	want    *summary
	wantErr error
}

// fullReply is a full-mode OFFER or ACK of yip with the base config's
// options; tweak adjusts it.
func fullReply(typ, yip string, tweak ...func(*summary)) *summary {
	s := &summary{
		Type: typ, YourIP: yip, ClientIP: "0.0.0.0", RelayIP: "0.0.0.0", NextServer: "0.0.0.0",
		ServerID: "10.0.0.1", LeaseTime: time.Hour,
		Options: []uint8{1, 3, 6, 51, 53, 54, 58, 59, 140},
	}
	for _, f := range tweak {
		f(s)
	}
	return s
}

// nakReply is a DHCPNAK.
func nakReply() *summary {
	return &summary{
		Type: "NAK", YourIP: "0.0.0.0", ClientIP: "0.0.0.0", RelayIP: "0.0.0.0", NextServer: "0.0.0.0",
		ServerID: "10.0.0.1", Options: []uint8{53, 54, 56},
	}
}

func lease(mac, ip string, expiry time.Time) Lease {
	return Lease{MAC: mustMAC(mac), IP: netip.MustParseAddr(ip), Expiry: expiry}
}

func TestHandleFull(t *testing.T) {
	start := t0()
	hour := start.Add(time.Hour)
	reserved := reservations{macR: {ip: "10.0.0.50", hostname: "node001"}}
	tests := []struct {
		name       string
		res        reservations
		leases     []Lease
		steps      []step
		wantLeases []leaseView
	}{{
		name:  "discover without reservation offers the first pool address",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.100")}},
	}, {
		name: "discover with reservation offers the reserved address and host name",
		res:  reserved,
		steps: []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macR), want: fullReply("OFFER", "10.0.0.50", func(s *summary) {
			s.Hostname = "node001"
			s.Options = []uint8{1, 3, 6, 12, 51, 53, 54, 58, 59, 140}
		})}},
	}, {
		name:  "a reserved pool address is not offered to others",
		res:   reservations{macR: {ip: "10.0.0.100", hostname: "node001"}},
		steps: []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.101")}},
	}, {
		name:   "pool exhaustion",
		leases: []Lease{lease(macA, "10.0.0.100", hour), lease(macB, "10.0.0.101", hour), lease(macC, "10.0.0.102", hour)},
		steps:  []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macD), wantErr: ErrPoolExhausted}},
		wantLeases: []leaseView{
			{MAC: macA, IP: "10.0.0.100", Expiry: hour}, {MAC: macB, IP: "10.0.0.101", Expiry: hour}, {MAC: macC, IP: "10.0.0.102", Expiry: hour},
		},
	}, {
		name: "an offered address is held for its client",
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macB), want: fullReply("OFFER", "10.0.0.101")},
		},
	}, {
		name: "requested address is honoured",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macA, requested("10.0.0.102")),
			want: fullReply("OFFER", "10.0.0.102")}},
	}, {
		name: "discover, request, ack records the lease",
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeRequest, macA, serverID("10.0.0.1"), requested("10.0.0.100")), want: fullReply("ACK", "10.0.0.100")},
		},
		wantLeases: []leaseView{{MAC: macA, IP: "10.0.0.100", Expiry: hour}},
	}, {
		name: "reserved client gets an ack with its host name",
		res:  reserved,
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeRequest, macR, serverID("10.0.0.1"), requested("10.0.0.50")), want: fullReply("ACK", "10.0.0.50", func(s *summary) {
				s.Hostname = "node001"
				s.Options = []uint8{1, 3, 6, 12, 51, 53, 54, 58, 59, 140}
			})},
		},
		wantLeases: []leaseView{{MAC: macR, IP: "10.0.0.50", Hostname: "node001", Expiry: hour}},
	}, {
		name: "the client's own host name is recorded, not echoed",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeRequest, macA, serverID("10.0.0.1"), requested("10.0.0.100"),
			dhcpv4.WithOption(dhcpv4.OptHostName("web7"))), want: fullReply("ACK", "10.0.0.100")}},
		wantLeases: []leaseView{{MAC: macA, IP: "10.0.0.100", Hostname: "web7", Expiry: hour}},
	}, {
		name: "request naming another server is ignored and frees the offer",
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeRequest, macA, serverID("10.0.0.9"), requested("10.0.0.100"))},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macB), want: fullReply("OFFER", "10.0.0.100")},
		},
	}, {
		name:       "nak: address leased to another client",
		leases:     []Lease{lease(macB, "10.0.0.100", hour)},
		steps:      []step{{req: msg(t, dhcpv4.MessageTypeRequest, macA, requested("10.0.0.100")), want: nakReply()}},
		wantLeases: []leaseView{{MAC: macB, IP: "10.0.0.100", Expiry: hour}},
	}, {
		name: "nak: address offered to another client",
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDiscover, macB), want: fullReply("OFFER", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeRequest, macA, serverID("10.0.0.1"), requested("10.0.0.100")), want: nakReply()},
		},
	}, {
		name:  "nak: address of another subnet (client moved)",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeRequest, macA, requested("192.168.1.5")), want: nakReply()}},
	}, {
		name:  "nak: reserved client asks for another address",
		res:   reserved,
		steps: []step{{req: msg(t, dhcpv4.MessageTypeRequest, macR, requested("10.0.0.100")), want: nakReply()}},
	}, {
		name:   "renew extends the lease",
		leases: []Lease{lease(macA, "10.0.0.101", start.Add(40*time.Minute))},
		steps: []step{{advance: 30 * time.Minute, req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(ip4("10.0.0.101"))),
			want: fullReply("ACK", "10.0.0.101", func(s *summary) { s.ClientIP = "10.0.0.101" })}},
		wantLeases: []leaseView{{MAC: macA, IP: "10.0.0.101", Expiry: start.Add(90 * time.Minute)}},
	}, {
		name:       "renew of an address another client holds is refused",
		leases:     []Lease{lease(macB, "10.0.0.101", hour)},
		steps:      []step{{req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(ip4("10.0.0.101"))), want: nakReply()}},
		wantLeases: []leaseView{{MAC: macB, IP: "10.0.0.101", Expiry: hour}},
	}, {
		name:   "release ends the lease, the client gets the address back",
		leases: []Lease{lease(macA, "10.0.0.101", hour)},
		steps: []step{
			{advance: 10 * time.Minute, req: msg(t, dhcpv4.MessageTypeRelease, macA, serverID("10.0.0.1"), dhcpv4.WithClientIP(ip4("10.0.0.101")))},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.101")},
		},
		wantLeases: []leaseView{{MAC: macA, IP: "10.0.0.101", Expiry: start.Add(10 * time.Minute)}},
	}, {
		name:   "released address goes to another client when the pool is full",
		leases: []Lease{lease(macA, "10.0.0.100", hour), lease(macB, "10.0.0.101", hour), lease(macC, "10.0.0.102", hour)},
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeRelease, macC, serverID("10.0.0.1"), dhcpv4.WithClientIP(ip4("10.0.0.102")))},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macD), want: fullReply("OFFER", "10.0.0.102")},
			{req: msg(t, dhcpv4.MessageTypeRequest, macD, serverID("10.0.0.1"), requested("10.0.0.102")), want: fullReply("ACK", "10.0.0.102")},
		},
		wantLeases: []leaseView{
			{MAC: macA, IP: "10.0.0.100", Expiry: hour}, {MAC: macB, IP: "10.0.0.101", Expiry: hour}, {MAC: macD, IP: "10.0.0.102", Expiry: hour},
		},
	}, {
		name: "decline keeps the address out of the pool for a while",
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeRequest, macA, serverID("10.0.0.1"), requested("10.0.0.100")), want: fullReply("ACK", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeDecline, macA, serverID("10.0.0.1"), requested("10.0.0.100"))},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.101")},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macB), want: fullReply("OFFER", "10.0.0.102")},
			{advance: DefaultDeclineTime + time.Second, req: msg(t, dhcpv4.MessageTypeDiscover, macC), want: fullReply("OFFER", "10.0.0.100")},
		},
	}, {
		name:   "decline of another client's address is ignored",
		leases: []Lease{lease(macB, "10.0.0.100", hour)},
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDecline, macA, serverID("10.0.0.1"), requested("10.0.0.100"))},
			{req: msg(t, dhcpv4.MessageTypeDiscover, macB), want: fullReply("OFFER", "10.0.0.100")},
		},
		wantLeases: []leaseView{{MAC: macB, IP: "10.0.0.100", Expiry: hour}},
	}, {
		name: "expired leases are reused, oldest first, and the stale lease dropped",
		leases: []Lease{
			lease(macA, "10.0.0.100", start.Add(-2*time.Hour)), lease(macB, "10.0.0.101", start.Add(-time.Hour)), lease(macC, "10.0.0.102", hour),
		},
		steps: []step{
			{req: msg(t, dhcpv4.MessageTypeDiscover, macD), want: fullReply("OFFER", "10.0.0.100")},
			{req: msg(t, dhcpv4.MessageTypeRequest, macD, serverID("10.0.0.1"), requested("10.0.0.100")), want: fullReply("ACK", "10.0.0.100")},
		},
		wantLeases: []leaseView{
			{MAC: macB, IP: "10.0.0.101", Expiry: start.Add(-time.Hour)}, {MAC: macC, IP: "10.0.0.102", Expiry: hour}, {MAC: macD, IP: "10.0.0.100", Expiry: hour},
		},
	}, {
		name:       "a client gets its own expired address back",
		leases:     []Lease{lease(macA, "10.0.0.101", start.Add(-time.Hour))},
		steps:      []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macA), want: fullReply("OFFER", "10.0.0.101")}},
		wantLeases: []leaseView{{MAC: macA, IP: "10.0.0.101", Expiry: start.Add(-time.Hour)}},
	}, {
		name: "relayed request in the range's subnet is answered to the relay",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macA, dhcpv4.WithGatewayIP(ip4("10.0.0.2"))),
			want: fullReply("OFFER", "10.0.0.100", func(s *summary) { s.RelayIP = "10.0.0.2" })}},
	}, {
		name: "relayed nak sets the broadcast bit",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithGatewayIP(ip4("10.0.0.2")), requested("192.168.1.5")),
			want: func() *summary { s := nakReply(); s.RelayIP = "10.0.0.2"; s.Broadcast = true; return s }()}},
	}, {
		name:  "relayed request from another subnet is ignored",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeDiscover, macA, dhcpv4.WithGatewayIP(ip4("192.168.7.1")))}},
	}, {
		name: "inform gets the options without an address or lease time",
		steps: []step{{req: msg(t, dhcpv4.MessageTypeInform, macA, dhcpv4.WithClientIP(ip4("10.0.0.30"))),
			want: &summary{Type: "ACK", YourIP: "0.0.0.0", ClientIP: "10.0.0.30", RelayIP: "0.0.0.0", NextServer: "0.0.0.0",
				ServerID: "10.0.0.1", Options: []uint8{1, 3, 6, 53, 54, 140}}}},
	}, {
		name: "a server reply is malformed input",
		steps: []step{{req: func() *dhcpv4.DHCPv4 {
			m := msg(t, dhcpv4.MessageTypeDiscover, macA)
			m.OpCode = dhcpv4.OpcodeBootReply
			return m
		}(), wantErr: ErrMalformed}},
	}, {
		name: "a message without a DHCP type is malformed input",
		steps: []step{{req: func() *dhcpv4.DHCPv4 {
			m := msg(t, dhcpv4.MessageTypeDiscover, macA)
			m.Options.Del(dhcpv4.OptionDHCPMessageType)
			return m
		}(), wantErr: ErrMalformed}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			for _, l := range tc.leases {
				if err := st.Put(l); err != nil {
					t.Fatal(err)
				}
			}
			clk := &clock{t: start}
			deps := Deps{Leases: st, Logger: quietLogger(), Now: clk.now}
			if tc.res != nil {
				deps.Reservations = tc.res
			}
			srv, err := New(baseConfig(), deps)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				clk.advance(s.advance)
				resp, err := srv.Handle(s.req, clientFrom())
				if !errors.Is(err, s.wantErr) || (err != nil && s.wantErr == nil) {
					t.Fatalf("step %d (%v): error %v, want %v", i, s.req.MessageType(), err, s.wantErr)
				}
				if diff := cmp.Diff(s.want, summarize(resp)); diff != "" {
					t.Errorf("step %d (%v): reply (-want +got):\n%s", i, s.req.MessageType(), diff)
				}
			}
			if diff := cmp.Diff(tc.wantLeases, leaseViews(t, st)); diff != "" {
				t.Errorf("leases (-want +got):\n%s", diff)
			}
		})
	}
}

// bootView is the boot information of a reply.
type bootView struct {
	File, NextServer, VendorClass string
	Vendor43                      []byte
}

func TestHandleBootFile(t *testing.T) {
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want bootView
	}{{
		name: "plain client: no boot information",
		want: bootView{NextServer: "0.0.0.0"},
	}, {
		name: "BIOS PXE",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)},
		want: bootView{File: "undionly.kpxe", NextServer: "10.0.0.1", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
	}, {
		name: "x86-64 UEFI PXE",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)},
		want: bootView{File: "ipxe.efi", NextServer: "10.0.0.1", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
	}, {
		name: "EFI BC (x86-64 firmware) PXE",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00009:UNDI:003016"), arch(iana.EFI_BC)},
		want: bootView{File: "ipxe.efi", NextServer: "10.0.0.1", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
	}, {
		name: "arm64 UEFI PXE",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00011:UNDI:003000"), arch(iana.EFI_ARM64)},
		want: bootView{File: "ipxe-arm64.efi", NextServer: "10.0.0.1", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
	}, {
		name: "arch from the vendor class when option 93 is missing",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00011:UNDI:003000")},
		want: bootView{File: "ipxe-arm64.efi", NextServer: "10.0.0.1", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
	}, {
		name: "UEFI HTTP boot gets a URL and HTTPClient back",
		mods: []dhcpv4.Modifier{vendor("HTTPClient:Arch:00016:UNDI:003001"), arch(iana.EFI_X86_64_HTTP)},
		want: bootView{File: "http://10.0.0.1/boot/ipxe.efi", NextServer: "10.0.0.1", VendorClass: "HTTPClient"},
	}, {
		name: "iPXE gets its script, not iPXE again",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003010"), arch(iana.EFI_X86_64), userClass("iPXE")},
		want: bootView{File: "http://10.0.0.1/boot/ipxe?mac=${net0/mac}", NextServer: "10.0.0.1", VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255}},
	}, {
		name: "unsupported architecture: address without boot information",
		mods: []dhcpv4.Modifier{vendor("PXEClient:Arch:00006:UNDI:003016"), arch(iana.EFI_IA32)},
		want: bootView{NextServer: "0.0.0.0"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(baseConfig(), Deps{Leases: openStore(t), Logger: quietLogger(), Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Handle(msg(t, dhcpv4.MessageTypeDiscover, macA, tc.mods...), clientFrom())
			if err != nil || resp == nil {
				t.Fatalf("Handle: %v, %v", resp, err)
			}
			s := summarize(resp)
			got := bootView{File: s.File, NextServer: s.NextServer, VendorClass: s.VendorClass, Vendor43: s.Vendor43}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("boot information (-want +got):\n%s", diff)
			}
			if s.YourIP != "10.0.0.100" {
				t.Errorf("yiaddr %s, want 10.0.0.100", s.YourIP)
			}
		})
	}
}

// proxyReply is a proxy-mode answer: no address, boot information only.
func proxyReply(typ, file string, tweak ...func(*summary)) *summary {
	s := &summary{
		Type: typ, YourIP: "0.0.0.0", ClientIP: "0.0.0.0", RelayIP: "0.0.0.0", NextServer: "10.0.0.1",
		ServerID: "10.0.0.1", File: file, VendorClass: "PXEClient", Vendor43: []byte{6, 1, 8, 255},
		Options: []uint8{43, 53, 54, 60},
	}
	for _, f := range tweak {
		f(s)
	}
	return s
}

func TestHandleProxy(t *testing.T) {
	uefi := []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)}
	guid := dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		from netip.AddrPort
		want *summary
	}{{
		name: "BIOS PXE discover: offer without an address",
		req:  msg(t, dhcpv4.MessageTypeDiscover, macA, vendor("PXEClient:Arch:00000:UNDI:002001"), arch(iana.INTEL_X86PC)),
		want: proxyReply("OFFER", "undionly.kpxe"),
	}, {
		name: "UEFI discover: the machine identifier is echoed",
		req:  msg(t, dhcpv4.MessageTypeDiscover, macA, append(uefi, guid)...),
		want: proxyReply("OFFER", "ipxe.efi", func(s *summary) { s.Options = []uint8{43, 53, 54, 60, 97} }),
	}, {
		name: "UEFI HTTP boot discover",
		req:  msg(t, dhcpv4.MessageTypeDiscover, macA, vendor("HTTPClient:Arch:00016:UNDI:003001"), arch(iana.EFI_X86_64_HTTP)),
		want: proxyReply("OFFER", "http://10.0.0.1/boot/ipxe.efi", func(s *summary) {
			s.VendorClass, s.Vendor43, s.Options = "HTTPClient", nil, []uint8{53, 54, 60}
		}),
	}, {
		name: "iPXE discover gets the script",
		req:  msg(t, dhcpv4.MessageTypeDiscover, macA, append(uefi, userClass("iPXE"))...),
		want: proxyReply("OFFER", "http://10.0.0.1/boot/ipxe?mac=${net0/mac}"),
	}, {
		name: "non-PXE client is left to the other server",
		req:  msg(t, dhcpv4.MessageTypeDiscover, macA),
	}, {
		name: "port 4011 request from a configured client: ack with boot information",
		req:  msg(t, dhcpv4.MessageTypeRequest, macA, append(uefi, dhcpv4.WithClientIP(ip4("10.9.9.77")))...),
		from: netip.MustParseAddrPort("10.9.9.77:68"),
		want: proxyReply("ACK", "ipxe.efi", func(s *summary) { s.ClientIP = "10.9.9.77" }),
	}, {
		name: "request to the address server (no ciaddr) is not ours",
		req:  msg(t, dhcpv4.MessageTypeRequest, macA, append(uefi, requested("10.9.9.77"))...),
	}, {
		name: "request naming another server is not ours",
		req:  msg(t, dhcpv4.MessageTypeRequest, macA, append(uefi, serverID("10.9.9.1"), dhcpv4.WithClientIP(ip4("10.9.9.77")))...),
	}, {
		name: "release is not ours",
		req:  msg(t, dhcpv4.MessageTypeRelease, macA, append(uefi, dhcpv4.WithClientIP(ip4("10.9.9.77")))...),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(Config{Mode: ModeProxy, ServerIP: netip.MustParseAddr("10.0.0.1"), Options: map[uint8][]byte{140: {1}}},
				Deps{Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			from := tc.from
			if !from.IsValid() {
				from = clientFrom()
			}
			resp, err := srv.Handle(tc.req, from)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarize(resp)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplyAddr(t *testing.T) {
	bcast := "255.255.255.255:68"
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		resp dhcpv4.MessageType
		from string
		pxe  bool
		want string
	}{
		{name: "unconfigured client: broadcast", req: msg(t, dhcpv4.MessageTypeDiscover, macA), resp: dhcpv4.MessageTypeOffer, from: "0.0.0.0:68", want: bcast},
		{name: "renewing client: unicast to ciaddr", req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(ip4("10.0.0.5"))), resp: dhcpv4.MessageTypeAck, from: "10.0.0.5:68", want: "10.0.0.5:68"},
		{name: "nak: broadcast even with ciaddr", req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(ip4("10.0.0.5"))), resp: dhcpv4.MessageTypeNak, from: "10.0.0.5:68", want: bcast},
		{name: "relayed: to the relay's server port", req: msg(t, dhcpv4.MessageTypeDiscover, macA, dhcpv4.WithGatewayIP(ip4("10.0.0.2"))), resp: dhcpv4.MessageTypeOffer, from: "10.0.0.2:67", want: "10.0.0.2:67"},
		{name: "relayed nak: to the relay", req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithGatewayIP(ip4("10.0.0.2"))), resp: dhcpv4.MessageTypeNak, from: "10.0.0.2:67", want: "10.0.0.2:67"},
		{name: "port 4011: back to the sender", req: msg(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(ip4("10.0.0.5"))), resp: dhcpv4.MessageTypeAck, from: "10.0.0.5:4011", pxe: true, want: "10.0.0.5:4011"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := msg(t, tc.resp, macA)
			got := replyAddr(tc.req, resp, netip.MustParseAddrPort(tc.from), tc.pxe)
			if diff := cmp.Diff(tc.want, got.String()); diff != "" {
				t.Errorf("reply address (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	var got []Event
	srv, err := New(baseConfig(), Deps{
		Leases:       openStore(t),
		Reservations: reservations{macR: {ip: "10.0.0.50", hostname: "node001"}},
		Logger:       quietLogger(),
		Now:          t0,
		OnEvent:      func(ev Event) { got = append(got, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	pxe := []dhcpv4.Modifier{vendor("PXEClient:Arch:00007:UNDI:003016"), arch(iana.EFI_X86_64)}
	for _, req := range []*dhcpv4.DHCPv4{
		msg(t, dhcpv4.MessageTypeDiscover, macR, pxe...),
		msg(t, dhcpv4.MessageTypeRequest, macR, append(pxe, serverID("10.0.0.1"), requested("10.0.0.50"))...),
		msg(t, dhcpv4.MessageTypeRequest, macA, requested("10.0.0.50")),
		msg(t, dhcpv4.MessageTypeDecline, macR, serverID("10.0.0.1"), requested("10.0.0.50")),
		msg(t, dhcpv4.MessageTypeRequest, macB, serverID("10.0.0.1"), requested("10.0.0.100")),
		msg(t, dhcpv4.MessageTypeRelease, macB, serverID("10.0.0.1"), dhcpv4.WithClientIP(ip4("10.0.0.100"))),
	} {
		if _, err := srv.Handle(req, clientFrom()); err != nil {
			t.Fatal(err)
		}
	}
	mac := func(s string) []byte { return mustMAC(s) }
	ip := netip.MustParseAddr
	want := []Event{
		{MAC: mac(macR), Kind: EventDiscover, Arch: ArchEFIx8664},
		{MAC: mac(macR), IP: ip("10.0.0.50"), Kind: EventOffer, Arch: ArchEFIx8664, Hostname: "node001"},
		{MAC: mac(macR), IP: ip("10.0.0.50"), Kind: EventAck, Arch: ArchEFIx8664, Hostname: "node001"},
		{MAC: mac(macA), IP: ip("10.0.0.50"), Kind: EventNak, Arch: ArchUnknown},
		{MAC: mac(macR), IP: ip("10.0.0.50"), Kind: EventDecline, Arch: ArchUnknown, Hostname: "node001"},
		{MAC: mac(macB), IP: ip("10.0.0.100"), Kind: EventAck, Arch: ArchUnknown},
		{MAC: mac(macB), IP: ip("10.0.0.100"), Kind: EventRelease, Arch: ArchUnknown},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Received: 6, Ignored: 2, Replies: 4}, srv.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestNewValidates(t *testing.T) {
	ok := baseConfig()
	tests := []struct {
		name    string
		change  func(*Config)
		noStore bool
		wantErr bool
	}{
		{name: "valid full"},
		{name: "off needs nothing", change: func(c *Config) { *c = Config{} }, noStore: true},
		{name: "proxy needs no range or store", change: func(c *Config) { *c = Config{Mode: ModeProxy, ServerIP: ok.ServerIP} }, noStore: true},
		{name: "unknown mode", change: func(c *Config) { c.Mode = "relay" }, wantErr: true},
		{name: "no server IP", change: func(c *Config) { c.ServerIP = netip.Addr{} }, wantErr: true},
		{name: "IPv6 server IP", change: func(c *Config) { c.ServerIP = netip.MustParseAddr("fd00::1") }, wantErr: true},
		{name: "full mode without a store", noStore: true, wantErr: true},
		{name: "no netmask", change: func(c *Config) { c.Netmask = netip.Addr{} }, wantErr: true},
		{name: "non-contiguous netmask", change: func(c *Config) { c.Netmask = netip.MustParseAddr("255.0.255.0") }, wantErr: true},
		{name: "range backwards", change: func(c *Config) { c.Range.First, c.Range.Last = c.Range.Last, c.Range.First }, wantErr: true},
		{name: "range across subnets", change: func(c *Config) { c.Range.Last = netip.MustParseAddr("10.0.1.5") }, wantErr: true},
		{name: "reserved option", change: func(c *Config) { c.Options = map[uint8][]byte{54: {1, 2, 3, 4}} }, wantErr: true},
		{name: "oversized option", change: func(c *Config) { c.Options = map[uint8][]byte{141: make([]byte, 256)} }, wantErr: true},
		{name: "short lease", change: func(c *Config) { c.LeaseTime = time.Second }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			if tc.change != nil {
				tc.change(&cfg)
			}
			deps := Deps{Logger: quietLogger()}
			if !tc.noStore {
				deps.Leases = &memLeases{}
			}
			_, err := New(cfg, deps)
			if got := err != nil; got != tc.wantErr {
				t.Errorf("New error %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// TestHandleConcurrent runs many clients' exchanges at once, as Serve
// does: every client is acknowledged a different address, the store
// holds exactly those leases, and once the pool is used up a new client
// is refused.
func TestHandleConcurrent(t *testing.T) {
	cfg := baseConfig()
	cfg.Range = Range{First: mustAddr("10.0.0.100"), Last: mustAddr("10.0.0.199")}
	st := openStore(t)
	srv, err := New(cfg, Deps{Leases: st, Logger: quietLogger(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	const clients = 100
	macOf := func(i int) string { return fmt.Sprintf("02:00:00:00:01:%02x", i) }
	got := make([]string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			offer, err := srv.Handle(msg(t, dhcpv4.MessageTypeDiscover, macOf(i)), clientFrom())
			if err != nil {
				t.Errorf("discover %d: %v", i, err)
				return
			}
			ack, err := srv.Handle(msg(t, dhcpv4.MessageTypeRequest, macOf(i), serverID("10.0.0.1"), requested(offer.YourIPAddr.String())), clientFrom())
			if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				t.Errorf("request %d: %v %v", i, summarize(ack), err)
				return
			}
			got[i] = ack.YourIPAddr.String()
		})
	}
	wg.Wait()
	var want []leaseView
	seen := map[string]bool{}
	for i, ip := range got {
		if seen[ip] {
			t.Errorf("%s acknowledged twice", ip)
		}
		seen[ip] = true
		want = append(want, leaseView{MAC: macOf(i), IP: ip, Expiry: t0().Add(time.Hour)})
	}
	if diff := cmp.Diff(want, leaseViews(t, st)); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
	if _, err := srv.Handle(msg(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:02:00"), clientFrom()); !errors.Is(err, ErrPoolExhausted) {
		t.Errorf("discover with the pool used up: %v, want %v", err, ErrPoolExhausted)
	}
}

// TestExpiredOfferReturnsAddress checks that an address offered to a
// client that never asked for it goes back to the pool once the offer
// lapses: the next client gets the lowest address again.
func TestExpiredOfferReturnsAddress(t *testing.T) {
	clk := &clock{t: t0()}
	srv, err := New(baseConfig(), Deps{Leases: openStore(t), Logger: quietLogger(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, step := range []struct {
		mac     string
		advance time.Duration
	}{{macA, 0}, {macB, 0}, {macC, 2 * offerHold}, {macD, 0}} {
		clk.advance(step.advance)
		resp, err := srv.Handle(msg(t, dhcpv4.MessageTypeDiscover, step.mac), clientFrom())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.YourIPAddr.String())
	}
	want := []string{"10.0.0.100", "10.0.0.101", "10.0.0.100", "10.0.0.101"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("offers (-want +got):\n%s", diff)
	}
}

// TestEventQueue checks how Serve hands events on: in order, in batches
// of at most eventBatch to OnEvents, everything queued before it stops;
// and counted as dropped, not waited for, when the queue is full.
func TestEventQueue(t *testing.T) {
	var got [][]Event
	srv, err := New(baseConfig(), Deps{Leases: openStore(t), Logger: quietLogger(), Now: t0,
		OnEvents: func(evs []Event) { got = append(got, slices.Clone(evs)) }})
	if err != nil {
		t.Fatal(err)
	}
	var want []Event
	q := &eventQueue{ch: make(chan Event, eventQueueSize)}
	for i := range eventBatch + 44 {
		ev := Event{Kind: EventAck, IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}
		q.ch <- ev
		want = append(want, ev)
	}
	done, delivered := make(chan struct{}), make(chan struct{})
	go srv.deliver(q, done, delivered)
	close(done)
	<-delivered
	var flat []Event
	var sizes []int
	for _, b := range got {
		flat = append(flat, b...)
		sizes = append(sizes, len(b))
	}
	if diff := cmp.Diff(want, flat, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("delivered events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{eventBatch, 44}, sizes); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}

	full := &eventQueue{ch: make(chan Event, 1)}
	srv.queue.Store(full)
	for range 3 {
		srv.emit(Event{Kind: EventDiscover})
	}
	if n := srv.Stats().EventsDropped; n != 2 || len(full.ch) != 1 {
		t.Errorf("full queue: %d dropped, %d queued; want 2 and 1", n, len(full.ch))
	}
}
