package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// pool is full mode's view of the address space: every lease the store
// holds plus the ones being written to it, indexed by MAC and by address,
// the live offers, and the declined addresses. It answers "who holds this
// address" without reading the store, so choosing an address costs a few
// map lookups instead of a pass over every lease. The Server's mutex
// guards it.
type pool struct {
	// byMAC holds each client's lease; byIP lists the MACs (keys of
	// byMAC) of the leases naming an address, usually one.
	byMAC map[string]Lease
	byIP  map[netip.Addr][]string
	// offers holds each client's pending offer, offered the client each
	// address is offered to.
	offers  map[string]offer
	offered map[netip.Addr]string
	// nextSweep is when expired offers are next removed in bulk.
	nextSweep time.Time
	declined  map[netip.Addr]time.Time
	// fresh is the lowest range address that may have neither a lease
	// nor an offer: every address below it has one (or is never handed
	// out).
	fresh netip.Addr
}

// newPool indexes leases.
func newPool(first netip.Addr, leases []Lease) *pool {
	p := &pool{
		byMAC:    make(map[string]Lease, len(leases)),
		byIP:     make(map[netip.Addr][]string, len(leases)),
		offers:   map[string]offer{},
		offered:  map[netip.Addr]string{},
		declined: map[netip.Addr]time.Time{},
		fresh:    first,
	}
	for _, l := range leases {
		p.put(l)
	}
	return p
}

// put records l, replacing the lease of l.MAC, and returns the lease it
// replaced.
func (p *pool) put(l Lease) (prev Lease, had bool) {
	key := l.MAC.String()
	l = cloneLease(l)
	if prev, had = p.byMAC[key]; had && prev.IP == l.IP {
		// A renewal: the address keeps its holder, and the cursor stays.
		p.byMAC[key] = l
		return prev, had
	}
	p.del(key)
	p.byMAC[key] = l
	p.byIP[l.IP] = append(p.byIP[l.IP], key)
	return prev, had
}

// del removes the lease of the client key and returns it.
func (p *pool) del(key string) (Lease, bool) {
	l, ok := p.byMAC[key]
	if !ok {
		return Lease{}, false
	}
	delete(p.byMAC, key)
	holders := slices.DeleteFunc(p.byIP[l.IP], func(k string) bool { return k == key })
	if len(holders) == 0 {
		delete(p.byIP, l.IP)
		if l.IP.Is4() && l.IP.Less(p.fresh) {
			p.fresh = l.IP
		}
	} else {
		p.byIP[l.IP] = holders
	}
	return l, true
}

// restore undoes a put of the lease of key: prev (if had) is the lease
// again, unless another put replaced the lease since (then want, the
// lease put, no longer matches and nothing changes).
func (p *pool) restore(key string, want Lease, prev Lease, had bool) {
	cur, ok := p.byMAC[key]
	if !ok || cur.IP != want.IP || !cur.Expiry.Equal(want.Expiry) {
		return
	}
	if had {
		p.put(prev)
		return
	}
	p.del(key)
}

// holders returns the leases naming ip.
func (p *pool) holders(ip netip.Addr) []Lease {
	keys := p.byIP[ip]
	out := make([]Lease, 0, len(keys))
	for _, k := range keys {
		out = append(out, p.byMAC[k])
	}
	return out
}

// offer holds ip for the client key until until.
func (p *pool) offer(key string, ip netip.Addr, until time.Time) {
	p.dropOffer(key)
	p.offers[key] = offer{ip: ip, until: until}
	p.offered[ip] = key
}

// dropOffer forgets the client key's offer.
func (p *pool) dropOffer(key string) {
	o, ok := p.offers[key]
	if !ok {
		return
	}
	delete(p.offers, key)
	if p.offered[o.ip] == key {
		delete(p.offered, o.ip)
		if len(p.byIP[o.ip]) == 0 && o.ip.Less(p.fresh) {
			p.fresh = o.ip
		}
	}
}

// liveOffer returns the client key's unexpired offer.
func (p *pool) liveOffer(key string, now time.Time) (offer, bool) {
	o, ok := p.offers[key]
	if ok && !now.Before(o.until) {
		p.dropOffer(key)
		return offer{}, false
	}
	return o, ok
}

// offeredTo returns the client an unexpired offer holds ip for.
func (p *pool) offeredTo(ip netip.Addr, now time.Time) (string, bool) {
	key, ok := p.offered[ip]
	if !ok {
		return "", false
	}
	if _, live := p.liveOffer(key, now); !live {
		return "", false
	}
	return key, true
}

// sweep drops expired offers, at most once per offerHold.
func (p *pool) sweep(now time.Time) {
	if now.Before(p.nextSweep) {
		return
	}
	p.nextSweep = now.Add(offerHold)
	for key := range p.offers {
		p.liveOffer(key, now)
	}
}

// choose picks the address to offer mac: its reservation, the address
// just offered to it, its last lease's address, the address it asks for,
// the lowest never-leased address, or the address whose lease expired
// longest ago. The caller holds s.mu.
func (s *Server) choose(mac net.HardwareAddr, requested netip.Addr, now time.Time) (netip.Addr, string, error) {
	p := s.pool
	p.sweep(now)
	if ip, hostname, ok := s.reservation(mac); ok {
		if other, busy := s.leasedToOther(ip, mac, now); busy {
			return netip.Addr{}, "", fmt.Errorf("%v for %v (leased to %v): %w", ip, mac, other, ErrReservationInUse)
		}
		if until, ok := p.declined[ip]; ok && now.Before(until) {
			return netip.Addr{}, "", fmt.Errorf("reserved %v for %v was declined until %v: %w", ip, mac, until.Format(time.RFC3339), ErrPoolExhausted)
		}
		return ip, hostname, nil
	}
	key := mac.String()
	var prefer []netip.Addr
	if o, ok := p.liveOffer(key, now); ok {
		prefer = append(prefer, o.ip)
	}
	if l, ok := p.byMAC[key]; ok {
		prefer = append(prefer, l.IP)
	}
	prefer = append(prefer, requested)
	for _, ip := range prefer {
		if ip.IsValid() && s.free(ip, mac, key, now) {
			return ip, "", nil
		}
	}
	// The lowest address no lease names. Addresses below p.fresh all
	// have leases or offers; the cursor moves up over leased, offered and
	// never-usable addresses, and back down when a lease or an offer
	// goes.
	if ip, ok := s.freshAddr(mac, key, now); ok {
		return ip, "", nil
	}
	// Offers that expired since the last sweep hold their addresses
	// until one: sweep now and look again before reusing old leases.
	p.nextSweep = time.Time{}
	p.sweep(now)
	if ip, ok := s.freshAddr(mac, key, now); ok {
		return ip, "", nil
	}
	r := s.cfg.Range
	// Every address has a lease: the one expired longest ago.
	var oldest Lease
	for ip := r.First; ip.IsValid() && r.Contains(ip); ip = ip.Next() {
		ls := p.byIP[ip]
		if len(ls) == 0 || !s.free(ip, mac, key, now) {
			continue
		}
		latest := slices.MaxFunc(s.pool.holders(ip), func(a, b Lease) int { return a.Expiry.Compare(b.Expiry) })
		if !oldest.IP.IsValid() || latest.Expiry.Before(oldest.Expiry) {
			oldest = latest
		}
	}
	if !oldest.IP.IsValid() {
		return netip.Addr{}, "", fmt.Errorf("range %v-%v: %w", r.First, r.Last, ErrPoolExhausted)
	}
	return oldest.IP, "", nil
}

// freshAddr returns the lowest address of the range that no lease
// names and that mac may have. The caller holds s.mu.
func (s *Server) freshAddr(mac net.HardwareAddr, key string, now time.Time) (netip.Addr, bool) {
	p, r := s.pool, s.cfg.Range
	advance := true
	for ip := p.fresh; ip.IsValid() && r.Contains(ip); ip = ip.Next() {
		_, offered := p.offered[ip]
		if len(p.byIP[ip]) > 0 || offered || s.never(ip) {
			if advance {
				p.fresh = ip.Next()
			}
			continue
		}
		advance = false
		if s.free(ip, mac, key, now) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// allocatable reports whether mac may have ip now: its reservation, or a
// free pool address when it has none. The caller holds s.mu.
func (s *Server) allocatable(mac net.HardwareAddr, ip netip.Addr, now time.Time) (string, bool) {
	if rip, hostname, ok := s.reservation(mac); ok {
		if ip != rip {
			return "", false
		}
		_, busy := s.leasedToOther(ip, mac, now)
		return hostname, !busy
	}
	return "", s.free(ip, mac, mac.String(), now)
}

// never reports whether the pool never hands ip out whatever the leases
// say: outside the range, the server's or the router's address, or the
// subnet's network or broadcast address.
func (s *Server) never(ip netip.Addr) bool {
	return !s.cfg.Range.Contains(ip) || ip == s.cfg.ServerIP || ip == s.cfg.Router ||
		ip == s.cfg.subnet.Addr() || ip == broadcastOf(s.cfg.subnet)
}

// free reports whether the pool may give ip to mac (whose key is
// mac.String()): not an address it never hands out, not declined, not
// reserved for or leased to or just offered to another client. The
// caller holds s.mu.
func (s *Server) free(ip netip.Addr, mac net.HardwareAddr, key string, now time.Time) bool {
	p := s.pool
	if s.never(ip) {
		return false
	}
	if until, ok := p.declined[ip]; ok {
		if now.Before(until) {
			return false
		}
		delete(p.declined, ip)
	}
	if r, ok := s.res.(AddressReserver); ok {
		if owner, ok := r.ReservedFor(ip); ok && !slices.Equal(owner, mac) {
			return false
		}
	}
	for _, k := range p.byIP[ip] {
		if k != key && !p.byMAC[k].Expired(now) {
			return false
		}
	}
	if k, ok := p.offeredTo(ip, now); ok && k != key {
		return false
	}
	return true
}

// leasedToOther reports whether another client holds an unexpired lease
// on ip. The caller holds s.mu.
func (s *Server) leasedToOther(ip netip.Addr, mac net.HardwareAddr, now time.Time) (net.HardwareAddr, bool) {
	key := mac.String()
	for _, k := range s.pool.byIP[ip] {
		if l := s.pool.byMAC[k]; k != key && !l.Expired(now) {
			return l.MAC, true
		}
	}
	return nil, false
}
