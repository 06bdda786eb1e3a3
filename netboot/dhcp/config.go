// Package dhcp is goldcast's DHCPv4 server for network booting: it hands
// out addresses (full mode) or only boot information next to another DHCP
// server (proxy mode), and tells each booting machine which network boot
// program to load.
//
// The package knows nothing of the goldcast server. What it needs from
// the outside arrives through small interfaces: a Booter picks the boot
// file for a request, Reservations maps MAC addresses to fixed addresses
// and host names, and a LeaseStore keeps leases durably (FileLeaseStore is
// a file-backed one).
//
// # Modes
//
// In full mode (ModeFull) the server is authoritative for one subnet: it
// offers addresses from Config.Range (or a node's reserved address),
// acknowledges, renews, releases and declines them, and reuses addresses
// whose leases expired. Requests forwarded by a relay agent (giaddr set)
// are answered to the relay and only when giaddr lies in the range's
// subnet. A lease is on disk before its DHCPACK is sent. Serve answers
// packets concurrently: address decisions are made one at a time in
// memory, the lease writes overlap, and a FileLeaseStore flushes the
// leases of all waiting requests together, so durable leases cost about
// one disk flush per batch rather than one per client.
//
// In proxy mode (ModeProxy) another server hands out addresses; goldcast
// answers only PXE and UEFI HTTP boot clients, with a DHCPOFFER that
// carries no address but the boot file, option 60 ("PXEClient" or
// "HTTPClient") and, for PXE clients, option 43 telling the firmware to
// boot the file without a boot-server discovery. Clients that ask again on
// UDP port 4011 (the PXE "ProxyDHCP" REQUEST) get a DHCPACK with the same
// boot information.
//
// In off mode (ModeOff) Serve returns at once.
//
// # Boot files
//
// DefaultBooter implements the usual iPXE chain: legacy BIOS PXE firmware
// loads undionly.kpxe over TFTP, x86-64 UEFI loads ipxe.efi, arm64 UEFI
// loads ipxe-arm64.efi, UEFI HTTP boot loads the same programs by URL, and
// iPXE itself (user class "iPXE") is sent to a per-node script URL so that
// it does not chainload itself forever.
//
// Only Ethernet clients are served, and leases are keyed by MAC address
// (the client identifier, option 61, is echoed but not used as a key).
//
// # Replies
//
// Replies to relayed requests go to the relay (giaddr, port 67); replies
// to clients with an address (ciaddr set) go to that address; all other
// replies, DHCPNAKs included, are broadcast on the bound interface, so no
// ARP entry for an unconfigured client is needed.
package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Mode selects what the server answers.
type Mode string

const (
	// ModeFull hands out addresses and boot information.
	ModeFull Mode = "full"
	// ModeProxy hands out boot information only, next to another DHCP
	// server that owns the addresses.
	ModeProxy Mode = "proxy"
	// ModeOff answers nothing; the empty Mode means the same.
	ModeOff Mode = "off"
)

// Well-known UDP ports.
const (
	// ServerPort is the port DHCP servers (and relays) listen on.
	ServerPort = 67
	// ClientPort is the port DHCP clients listen on.
	ClientPort = 68
	// PXEPort is the PXE boot-server port ProxyDHCP REQUESTs are sent to.
	PXEPort = 4011
)

// SystemImager's site-specific options, which its installer reads from the
// DHCP answer. They are documented here so Config.Options can carry them;
// the server sends whatever bytes Config.Options holds.
const (
	// OptionImageServer (140) is the image server's IPv4 address, four
	// bytes.
	OptionImageServer uint8 = 140
	// OptionLogServerPort (141) is the log server's TCP port, a 16-bit
	// big-endian integer.
	OptionLogServerPort uint8 = 141
	// OptionSSHDownloadURL (142) is the URL to fetch images from over SSH,
	// a string.
	OptionSSHDownloadURL uint8 = 142
	// OptionFlamethrowerPort (143) is the Flamethrower multicast port
	// base, a 16-bit big-endian integer.
	OptionFlamethrowerPort uint8 = 143
)

// Defaults for zero Config fields.
const (
	// DefaultLeaseTime is Config.LeaseTime's default.
	DefaultLeaseTime = time.Hour
	// DefaultDeclineTime is Config.DeclineTime's default.
	DefaultDeclineTime = 10 * time.Minute
	// maxRangeSize bounds Config.Range: the pool is scanned linearly.
	maxRangeSize = 1 << 16
)

// reservedOption reports whether Config.Options may not set code: pad,
// end, and the options that carry the protocol's own state.
func reservedOption(code uint8) bool {
	switch code {
	case 0, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82, 255:
		return true
	}
	return false
}

// Range is an inclusive range of IPv4 addresses.
type Range struct {
	// First is the lowest address of the range.
	First netip.Addr
	// Last is the highest address of the range.
	Last netip.Addr
}

// Contains reports whether ip lies in the range.
func (r Range) Contains(ip netip.Addr) bool {
	return ip.Is4() && r.First.Compare(ip) <= 0 && ip.Compare(r.Last) <= 0
}

// Config configures a Server.
type Config struct {
	// Mode is full, proxy or off (the default).
	Mode Mode
	// Interface is the network interface to serve on; the sockets are
	// bound to it (SO_BINDTODEVICE) and broadcasts leave through it.
	// Empty means every interface, which is rarely wise for a DHCP server.
	Interface string
	// ServerIP is this server's IPv4 address on Interface: the server
	// identifier (option 54) and the default TFTP next-server. Required
	// unless Mode is off.
	ServerIP netip.Addr
	// Range is the pool full mode hands addresses out of. Its subnet
	// (Range.First masked by Netmask) must hold all of it; relayed requests
	// are answered only when giaddr lies in that subnet. The server's own
	// address, the router and the subnet's network and broadcast addresses
	// are never handed out. Reserved addresses should lie outside the
	// range (see AddressReserver).
	Range Range
	// Netmask is the subnet mask sent to clients (option 1), such as
	// 255.255.255.0. Required in full mode.
	Netmask netip.Addr
	// Router is the default gateway sent to clients (option 3); the zero
	// Addr sends none.
	Router netip.Addr
	// DNS lists the name servers sent to clients (option 6).
	DNS []netip.Addr
	// LeaseTime is the lease duration in full mode; zero means
	// DefaultLeaseTime. Renewal (T1) and rebinding (T2) times are 1/2 and
	// 7/8 of it.
	LeaseTime time.Duration
	// DeclineTime is how long an address a client declined (found in use)
	// is kept out of the pool; zero means DefaultDeclineTime. Declined
	// addresses are remembered in memory only.
	DeclineTime time.Duration
	// Options are extra options added, as given, to every full-mode OFFER
	// and ACK, after (and replacing) the server's own: for instance
	// SystemImager's OptionImageServer (140), OptionLogServerPort (141),
	// OptionSSHDownloadURL (142) and OptionFlamethrowerPort (143). Values
	// are at most 255 bytes; codes the protocol itself manages (0, 50-55,
	// 57-59, 61, 82, 255) are refused. Proxy-mode answers carry boot
	// information only and never these.
	Options map[uint8][]byte
	// BootFile chooses the boot program for each request; nil means
	// DefaultBooter{NextServer: ServerIP}.
	BootFile Booter
}

// validated is a Config checked by New, with defaults filled in and the
// derived subnet.
type validated struct {
	Config
	subnet netip.Prefix
}

// validate checks cfg for New.
func validate(cfg Config) (validated, error) {
	v := validated{Config: cfg}
	switch cfg.Mode {
	case "", ModeOff:
		v.Mode = ModeOff
		return v, nil
	case ModeFull, ModeProxy:
	default:
		return v, fmt.Errorf("dhcp mode %q: want full, proxy or off", cfg.Mode)
	}
	if !cfg.ServerIP.Is4() || cfg.ServerIP.IsUnspecified() {
		return v, fmt.Errorf("dhcp server IP %v: want an IPv4 address", cfg.ServerIP)
	}
	if v.LeaseTime == 0 {
		v.LeaseTime = DefaultLeaseTime
	}
	if v.LeaseTime < time.Minute || v.LeaseTime > 0xffffffff*time.Second {
		return v, fmt.Errorf("dhcp lease time %v: want between 1m and 2^32-1 s", v.LeaseTime)
	}
	if v.DeclineTime == 0 {
		v.DeclineTime = DefaultDeclineTime
	}
	if v.DeclineTime < 0 {
		return v, fmt.Errorf("dhcp decline time %v: negative", v.DeclineTime)
	}
	if v.BootFile == nil {
		v.BootFile = DefaultBooter{NextServer: cfg.ServerIP}
	}
	if cfg.Mode == ModeProxy {
		return v, nil
	}

	if !cfg.Netmask.Is4() {
		return v, errors.New("dhcp netmask: want an IPv4 mask such as 255.255.255.0")
	}
	m4 := cfg.Netmask.As4()
	ones, bits := net.IPMask(m4[:]).Size()
	if bits == 0 || ones == 0 || ones > 30 {
		return v, fmt.Errorf("dhcp netmask %v: want a contiguous mask of /1 to /30", cfg.Netmask)
	}
	if !cfg.Range.First.Is4() || !cfg.Range.Last.Is4() || cfg.Range.Last.Less(cfg.Range.First) {
		return v, fmt.Errorf("dhcp range %v-%v: want two IPv4 addresses, first <= last", cfg.Range.First, cfg.Range.Last)
	}
	v.subnet = netip.PrefixFrom(cfg.Range.First, ones).Masked()
	if !v.subnet.Contains(cfg.Range.Last) {
		return v, fmt.Errorf("dhcp range %v-%v: spans more than subnet %v", cfg.Range.First, cfg.Range.Last, v.subnet)
	}
	if u32(cfg.Range.Last)-u32(cfg.Range.First) >= maxRangeSize {
		return v, fmt.Errorf("dhcp range %v-%v: more than %d addresses", cfg.Range.First, cfg.Range.Last, maxRangeSize)
	}
	if cfg.Router.IsValid() && !cfg.Router.Is4() {
		return v, fmt.Errorf("dhcp router %v: want an IPv4 address", cfg.Router)
	}
	for _, d := range cfg.DNS {
		if !d.Is4() {
			return v, fmt.Errorf("dhcp DNS server %v: want an IPv4 address", d)
		}
	}
	for code, val := range cfg.Options {
		if reservedOption(code) {
			return v, fmt.Errorf("dhcp option %d: managed by the server, cannot be set", code)
		}
		if len(val) > 255 {
			return v, fmt.Errorf("dhcp option %d: %d bytes, want at most 255", code, len(val))
		}
	}
	return v, nil
}

// u32 is an IPv4 address as a number.
func u32(ip netip.Addr) uint32 {
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
