package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Errors Handle wraps.
var (
	// ErrMalformed: the packet is not a sane DHCPv4 client message.
	ErrMalformed = errors.New("malformed dhcp packet")
	// ErrPoolExhausted: no address of the range is free.
	ErrPoolExhausted = errors.New("address pool exhausted")
	// ErrReservationInUse: a client's reserved address is leased to
	// another client.
	ErrReservationInUse = errors.New("reserved address leased to another client")
)

// pxeDiscoveryControl is option 43 for PXE firmware: sub-option 6
// (PXE_DISCOVERY_CONTROL) with bit 3 set, "boot the file in this answer,
// no boot-server discovery or menu", then the end sub-option.
func pxeDiscoveryControl() []byte { return []byte{6, 1, 8, 255} }

// Handle answers one DHCPv4 message that arrived from from; it does no
// network I/O, so it is the core Serve wraps and tests drive. It returns
// the reply, or nil when none is due. A nil reply with an error wrapping
// ErrMalformed means the packet was dropped as malformed; other errors
// say why a due answer could not be given (a lease store failure, an
// exhausted pool). Every call is counted in Stats.
func (s *Server) Handle(req *dhcpv4.DHCPv4, from netip.AddrPort) (*dhcpv4.DHCPv4, error) {
	s.stats.received.Add(1)
	if err := sane(req); err != nil {
		s.stats.malformed.Add(1)
		return nil, fmt.Errorf("dhcp packet from %v: %w", from, err)
	}
	var resp *dhcpv4.DHCPv4
	var err error
	switch s.cfg.Mode {
	case ModeFull:
		resp, err = s.handleFull(req)
	case ModeProxy:
		resp, err = s.handleProxy(req)
	}
	switch {
	case err != nil:
		s.stats.errors.Add(1)
		return nil, err
	case resp == nil:
		s.stats.ignored.Add(1)
	default:
		s.stats.replies.Add(1)
	}
	return resp, nil
}

// sane checks what Handle relies on: an Ethernet client's request with a
// DHCP message type.
func sane(req *dhcpv4.DHCPv4) error {
	switch {
	case req == nil:
		return fmt.Errorf("no message: %w", ErrMalformed)
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return fmt.Errorf("op %d is not a request: %w", req.OpCode, ErrMalformed)
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		return fmt.Errorf("hardware type %d, address length %d, want Ethernet: %w", req.HWType, len(req.ClientHWAddr), ErrMalformed)
	case req.Options == nil || len(req.Options.Get(dhcpv4.OptionDHCPMessageType)) != 1:
		return fmt.Errorf("no DHCP message type: %w", ErrMalformed)
	case req.HopCount > 16:
		return fmt.Errorf("%d relay hops: %w", req.HopCount, ErrMalformed)
	}
	for _, ip := range []net.IP{req.ClientIPAddr, req.GatewayIPAddr} {
		if len(ip) != 0 && ip.To4() == nil {
			return fmt.Errorf("address %v is not IPv4: %w", ip, ErrMalformed)
		}
	}
	return nil
}

// handleFull answers in full mode.
func (s *Server) handleFull(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	if gi := addrOf(req.GatewayIPAddr); gi.IsValid() && !s.cfg.subnet.Contains(gi) {
		s.log.Debug("dhcp relayed request for a subnet not served", "giaddr", gi, "mac", req.ClientHWAddr.String())
		return nil, nil
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return s.discover(req)
	case dhcpv4.MessageTypeRequest:
		return s.request(req)
	case dhcpv4.MessageTypeRelease:
		return nil, s.release(req)
	case dhcpv4.MessageTypeDecline:
		return nil, s.decline(req)
	case dhcpv4.MessageTypeInform:
		return s.inform(req)
	}
	return nil, nil
}

// discover answers a DHCPDISCOVER with an offer, holding the address for
// the client a while.
func (s *Server) discover(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr
	breq := bootRequest(req)
	s.emit(Event{MAC: mac, Kind: EventDiscover, Arch: breq.Arch, Hostname: req.HostName()})
	s.mu.Lock()
	now := s.now()
	ip, hostname, err := s.choose(mac, addrOf(req.RequestedIPAddress()), now)
	if err == nil {
		s.pool.offer(mac.String(), ip, now.Add(offerHold))
	}
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("offer to %v: %w", mac, err)
	}
	resp := s.reply(req, dhcpv4.MessageTypeOffer)
	resp.YourIPAddr = net.IP(ip.AsSlice())
	s.addLeaseOptions(resp, hostname)
	s.addBoot(resp, req, breq)
	s.addCustom(resp)
	s.emit(Event{MAC: mac, IP: ip, Kind: EventOffer, Arch: breq.Arch, Hostname: nameOr(hostname, req.HostName())})
	s.log.Debug("dhcp offer", "mac", mac.String(), "ip", ip, "file", resp.BootFileName)
	return resp, nil
}

// request answers a DHCPREQUEST in any state: selecting (server
// identifier set), init-reboot (requested address), renewing and
// rebinding (ciaddr). The lease enters the pool at once, so concurrent
// requests see its address taken, and the DHCPACK goes out only once the
// store has it on disk.
func (s *Server) request(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr
	key := mac.String()
	breq := bootRequest(req)
	if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != s.cfg.ServerIP {
		// The client chose another server's offer.
		s.mu.Lock()
		s.pool.dropOffer(key)
		s.mu.Unlock()
		return nil, nil
	}
	ip := addrOf(req.RequestedIPAddress())
	if !ip.IsValid() {
		ip = addrOf(req.ClientIPAddr)
	}
	if !ip.IsValid() {
		return nil, nil
	}
	s.mu.Lock()
	now := s.now()
	hostname, ok := s.allocatable(mac, ip, now)
	if !ok {
		s.mu.Unlock()
		s.emit(Event{MAC: mac, IP: ip, Kind: EventNak, Arch: breq.Arch, Hostname: req.HostName()})
		s.log.Info("dhcp nak", "mac", mac.String(), "ip", ip)
		return s.nak(req), nil
	}
	name := nameOr(hostname, req.HostName())
	l := Lease{MAC: mac, IP: ip, Hostname: name, Expiry: now.Add(s.cfg.LeaseTime)}
	prev, had := s.pool.put(l)
	s.pool.dropOffer(key)
	var stale []Lease
	for _, h := range s.pool.holders(ip) {
		if !slices.Equal(h.MAC, mac) {
			stale = append(stale, h)
		}
	}
	s.mu.Unlock()

	if err := s.leases.Put(l); err != nil {
		s.mu.Lock()
		s.pool.restore(key, l, prev, had)
		s.mu.Unlock()
		return nil, fmt.Errorf("record lease of %v for %v: %w", ip, mac, err)
	}
	s.dropStale(ip, stale)
	resp := s.reply(req, dhcpv4.MessageTypeAck)
	resp.ClientIPAddr = ipOrZero(req.ClientIPAddr)
	resp.YourIPAddr = net.IP(ip.AsSlice())
	s.addLeaseOptions(resp, hostname)
	s.addBoot(resp, req, breq)
	s.addCustom(resp)
	s.emit(Event{MAC: mac, IP: ip, Kind: EventAck, Arch: breq.Arch, Hostname: name})
	s.log.Info("dhcp ack", "mac", mac.String(), "ip", ip, "hostname", name, "file", resp.BootFileName)
	return resp, nil
}

// dropStale deletes stale, other clients' expired leases on ip, once a
// client holds it; a failure only leaves a harmless record behind.
func (s *Server) dropStale(ip netip.Addr, stale []Lease) {
	for _, l := range stale {
		key := l.MAC.String()
		s.mu.Lock()
		cur, ok := s.pool.byMAC[key]
		if ok && cur.IP == ip {
			s.pool.del(key)
		}
		s.mu.Unlock()
		if !ok || cur.IP != ip {
			continue
		}
		if err := s.leases.Delete(l.MAC); err != nil {
			s.log.Warn("dhcp drop stale lease", "mac", key, "ip", ip, "err", err)
		}
	}
}

// release ends a client's lease early, keeping the address as the
// client's preferred one until another client needs it.
func (s *Server) release(req *dhcpv4.DHCPv4) error {
	mac := req.ClientHWAddr
	key := mac.String()
	if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != s.cfg.ServerIP {
		return nil
	}
	ip := addrOf(req.ClientIPAddr)
	s.mu.Lock()
	l, ok := s.pool.byMAC[key]
	if !ok || l.IP != ip {
		s.mu.Unlock()
		return nil
	}
	if now := s.now(); l.Expiry.After(now) {
		ended := cloneLease(l)
		ended.Expiry = now
		prev, had := s.pool.put(ended)
		s.mu.Unlock()
		if err := s.leases.Put(ended); err != nil {
			s.mu.Lock()
			s.pool.restore(key, ended, prev, had)
			s.mu.Unlock()
			return fmt.Errorf("release %v by %v: %w", ip, mac, err)
		}
	} else {
		s.mu.Unlock()
	}
	s.emit(Event{MAC: mac, IP: ip, Kind: EventRelease, Arch: ArchUnknown, Hostname: l.Hostname})
	s.log.Info("dhcp release", "mac", mac.String(), "ip", ip)
	return nil
}

// decline drops a client's lease on an address it found in use and keeps
// the address out of the pool for DeclineTime.
func (s *Server) decline(req *dhcpv4.DHCPv4) error {
	mac := req.ClientHWAddr
	key := mac.String()
	if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != s.cfg.ServerIP {
		return nil
	}
	ip := addrOf(req.RequestedIPAddress())
	s.mu.Lock()
	now := s.now()
	l, leased := s.pool.byMAC[key]
	leased = leased && l.IP == ip
	o, offered := s.pool.liveOffer(key, now)
	if !leased && !(offered && o.ip == ip) {
		// Only the holder of an address may take it out of the pool.
		s.mu.Unlock()
		return nil
	}
	if leased {
		s.pool.del(key)
	}
	s.pool.dropOffer(key)
	until := now.Add(s.cfg.DeclineTime)
	s.pool.declined[ip] = until
	s.mu.Unlock()
	if leased {
		if err := s.leases.Delete(mac); err != nil {
			s.mu.Lock()
			if _, ok := s.pool.byMAC[key]; !ok {
				s.pool.put(l)
			}
			delete(s.pool.declined, ip)
			s.mu.Unlock()
			return fmt.Errorf("decline %v by %v: %w", ip, mac, err)
		}
	}
	s.emit(Event{MAC: mac, IP: ip, Kind: EventDecline, Arch: ArchUnknown, Hostname: l.Hostname})
	s.log.Warn("dhcp decline: address in use on the network", "mac", mac.String(), "ip", ip, "until", until)
	return nil
}

// inform answers a DHCPINFORM from a client configured by other means:
// the options, no address and no lease time.
func (s *Server) inform(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	if !addrOf(req.ClientIPAddr).IsValid() {
		return nil, nil
	}
	breq := bootRequest(req)
	resp := s.reply(req, dhcpv4.MessageTypeAck)
	resp.ClientIPAddr = ipOrZero(req.ClientIPAddr)
	s.addLeaseOptions(resp, "")
	resp.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
	resp.Options.Del(dhcpv4.OptionRenewTimeValue)
	resp.Options.Del(dhcpv4.OptionRebindingTimeValue)
	s.addBoot(resp, req, breq)
	s.addCustom(resp)
	s.emit(Event{MAC: req.ClientHWAddr, IP: addrOf(req.ClientIPAddr), Kind: EventAck, Arch: breq.Arch, Hostname: req.HostName()})
	return resp, nil
}

// handleProxy answers in proxy mode: PXE and HTTP boot clients only, with
// boot information and no address.
func (s *Server) handleProxy(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	breq := bootRequest(req)
	if !breq.PXE() && !breq.HTTP() {
		return nil, nil
	}
	mac := req.ClientHWAddr
	var t dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.emit(Event{MAC: mac, Kind: EventDiscover, Arch: breq.Arch, Hostname: req.HostName()})
		t = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		// The ProxyDHCP REQUEST (to port 4011) comes from a client that
		// already has its address; a REQUEST without one is meant for
		// the server that owns the addresses.
		if sid := addrOf(req.ServerIdentifier()); sid.IsValid() && sid != s.cfg.ServerIP {
			return nil, nil
		}
		if !addrOf(req.ClientIPAddr).IsValid() {
			return nil, nil
		}
		t = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	resp := s.reply(req, t)
	if !s.addBoot(resp, req, breq) {
		return nil, nil
	}
	if t == dhcpv4.MessageTypeAck {
		resp.ClientIPAddr = ipOrZero(req.ClientIPAddr)
	}
	kind := EventOffer
	if t == dhcpv4.MessageTypeAck {
		kind = EventAck
	}
	s.emit(Event{MAC: mac, IP: addrOf(req.ClientIPAddr), Kind: kind, Arch: breq.Arch, Hostname: req.HostName()})
	s.log.Debug("dhcp proxy answer", "type", t.String(), "mac", mac.String(), "file", resp.BootFileName)
	return resp, nil
}

// reservation looks mac up in the Reservations, if any; a reserved
// address outside the served subnet counts as no reservation.
func (s *Server) reservation(mac net.HardwareAddr) (netip.Addr, string, bool) {
	if s.res == nil {
		return netip.Addr{}, "", false
	}
	ip, hostname, ok := s.res.Lookup(mac)
	if !ok {
		return netip.Addr{}, "", false
	}
	if !ip.Is4() || !s.cfg.subnet.Contains(ip) {
		s.log.Warn("dhcp reservation outside the served subnet ignored", "mac", mac.String(), "ip", ip, "subnet", s.cfg.subnet)
		return netip.Addr{}, "", false
	}
	return ip, hostname, true
}

// reply starts an answer to req of type t: the header fields RFC 2131
// table 3 copies, the server identifier, and the relay agent information
// and client identifier echoed back (RFC 3046, RFC 6842).
func (s *Server) reply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero.To4(),
		YourIPAddr:    net.IPv4zero.To4(),
		ServerIPAddr:  net.IPv4zero.To4(),
		GatewayIPAddr: ipOrZero(req.GatewayIPAddr),
		ClientHWAddr:  slices.Clone(req.ClientHWAddr),
		Options:       dhcpv4.Options{},
	}
	resp.UpdateOption(dhcpv4.OptMessageType(t))
	resp.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(s.cfg.ServerIP.AsSlice())))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			resp.UpdateOption(dhcpv4.OptGeneric(code, slices.Clone(v)))
		}
	}
	return resp
}

// nak is a DHCPNAK for req, broadcast through a relay when relayed.
func (s *Server) nak(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	resp := s.reply(req, dhcpv4.MessageTypeNak)
	resp.UpdateOption(dhcpv4.OptMessage("requested address not available"))
	if addrOf(req.GatewayIPAddr).IsValid() {
		resp.SetBroadcast()
	}
	return resp
}

// addLeaseOptions adds the network configuration of a full-mode answer,
// with hostname (a reserved name; never the client's own echoed back) as
// option 12 when set.
func (s *Server) addLeaseOptions(resp *dhcpv4.DHCPv4, hostname string) {
	m := s.cfg.Netmask.As4()
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.IPMask(m[:])))
	if s.cfg.Router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(net.IP(s.cfg.Router.AsSlice())))
	}
	if len(s.cfg.DNS) > 0 {
		ips := make([]net.IP, len(s.cfg.DNS))
		for i, d := range s.cfg.DNS {
			ips[i] = d.AsSlice()
		}
		resp.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime * 7 / 8))
	if hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(hostname))
	}
}

// addCustom adds Config.Options.
func (s *Server) addCustom(resp *dhcpv4.DHCPv4) {
	for code, v := range s.cfg.Options {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), slices.Clone(v)))
	}
}

// addBoot asks the Booter and adds its answer: siaddr, the file field (and
// option 67 when the name is too long for it or the client asked for
// it), option 60, option 43 for PXE firmware, and the client's machine
// identifier (option 97) echoed as PXE firmware expects. It reports
// whether there was boot information to add.
func (s *Server) addBoot(resp, req *dhcpv4.DHCPv4, breq Request) bool {
	ans, err := s.cfg.BootFile.BootFile(breq)
	if err != nil {
		s.log.Warn("dhcp no boot file", "mac", breq.MAC.String(), "arch", breq.Arch, "vendor_class", breq.VendorClass, "err", err)
		return false
	}
	if ans.Filename == "" {
		return false
	}
	next := ans.NextServer
	if !next.Is4() {
		next = s.cfg.ServerIP
	}
	resp.ServerIPAddr = net.IP(next.AsSlice())
	if len(ans.Filename) < 128 {
		resp.BootFileName = ans.Filename
	}
	if len(ans.Filename) >= 128 || asked(req, dhcpv4.OptionBootfileName) {
		resp.UpdateOption(dhcpv4.OptBootFileName(ans.Filename))
	}
	vc := ans.VendorClass
	if vc == "" && breq.PXE() {
		vc = VendorPXE
	}
	if vc != "" {
		resp.UpdateOption(dhcpv4.OptClassIdentifier(vc))
	}
	if vc == VendorPXE {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl()))
	}
	if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, slices.Clone(v)))
	}
	return true
}

// asked reports whether req's parameter request list names code; unlike
// dhcpv4's IsOptionRequested, a missing list names nothing.
func asked(req *dhcpv4.DHCPv4, code dhcpv4.OptionCode) bool {
	for _, c := range req.ParameterRequestList() {
		if c.Code() == code.Code() {
			return true
		}
	}
	return false
}

// emit reports ev to Deps.OnEvent(s): through Serve's queue while Serve
// runs, else at once.
func (s *Server) emit(ev Event) {
	if s.events == nil {
		return
	}
	ev.MAC = slices.Clone(ev.MAC)
	q := s.queue.Load()
	if q == nil {
		s.events([]Event{ev})
		return
	}
	select {
	case q.ch <- ev:
	default:
		if n := s.stats.eventsDropped.Add(1); n&(n-1) == 0 {
			s.log.Warn("dhcp events dropped: the event consumer is too slow", "dropped", n)
		}
	}
}

// bootRequest is what the Booter learns of req.
func bootRequest(req *dhcpv4.DHCPv4) Request {
	r := Request{
		MAC:         slices.Clone(req.ClientHWAddr),
		Arch:        ArchUnknown,
		VendorClass: req.ClassIdentifier(),
	}
	if uc := req.UserClass(); len(uc) > 0 {
		r.UserClass = uc[0]
	}
	if archs := req.ClientArch(); len(archs) > 0 {
		r.Arch = Arch(archs[0])
	} else if a, ok := archFromVendorClass(r.VendorClass); ok {
		r.Arch = a
	}
	return r
}

// addrOf is ip as an IPv4 netip.Addr; the zero Addr when ip is empty,
// unspecified or not IPv4.
func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// ipOrZero is ip as four bytes, 0.0.0.0 when unset.
func ipOrZero(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return slices.Clone(v4)
	}
	return net.IPv4zero.To4()
}

// broadcastOf is the subnet's broadcast address.
func broadcastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := u32(netip.AddrFrom4(b)) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// nameOr is name, or fallback when name is empty.
func nameOr(name, fallback string) string {
	if name != "" {
		return name
	}
	return strings.TrimSpace(fallback)
}
