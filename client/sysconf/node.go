package sysconf

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// names returns the node's short host name and fully qualified name (the
// short name when there is no domain), checked to be valid DNS names.
func (n Node) names() (short, fqdn string, err error) {
	host := n.Hostname
	if host == "" {
		host = n.Name
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", "", nil
	}
	domain := strings.Trim(n.Domain, ".")
	short, rest, dotted := strings.Cut(host, ".")
	if dotted && domain == "" {
		domain = rest
	}
	if err := checkDNSName(short); err != nil {
		return "", "", fmt.Errorf("host name %q: %w", host, err)
	}
	if domain == "" {
		return short, short, nil
	}
	fqdn = short + "." + domain
	if err := checkDNSName(fqdn); err != nil {
		return "", "", fmt.Errorf("fully qualified name %q: %w", fqdn, err)
	}
	return short, fqdn, nil
}

// checkDNSName checks that name is a valid host name (RFC 1123): labels
// of letters, digits and inner hyphens, at most 63 bytes each and 253 in
// all.
func checkDNSName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %q is empty or longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("label %q holds %q", label, r)
			}
		}
	}
	return nil
}

// netConfig is a node's network configuration, parsed and checked.
type netConfig struct {
	mac     string         // first MAC, lowercase with colons; empty when none
	dhcp    bool           // DHCP rather than static
	addrs   []netip.Prefix // static addresses with their prefixes
	gateway netip.Addr     // static default gateway; invalid when none
	dns     []netip.Addr   // static name servers
	domain  string         // DNS search domain
}

// netConfig parses the node's addresses.
func (n Node) netConfig() (netConfig, error) {
	var nc netConfig
	if len(n.MACs) > 0 {
		hw, err := net.ParseMAC(n.MACs[0])
		if err != nil || len(hw) != 6 {
			return nc, fmt.Errorf("MAC address %q is not an Ethernet address", n.MACs[0])
		}
		nc.mac = hw.String()
	}
	if _, fqdn, err := n.names(); err == nil {
		if _, d, ok := strings.Cut(fqdn, "."); ok {
			nc.domain = d
		}
	}
	nc.dhcp = n.DHCP || len(n.IPs) == 0
	if nc.dhcp {
		return nc, nil
	}
	for _, s := range n.IPs {
		p, err := parseAddr(s)
		if err != nil {
			return nc, err
		}
		nc.addrs = append(nc.addrs, p)
	}
	if n.Gateway != "" {
		gw, err := netip.ParseAddr(n.Gateway)
		if err != nil {
			return nc, fmt.Errorf("gateway %q: %w", n.Gateway, err)
		}
		nc.gateway = gw
	}
	for _, s := range n.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nc, fmt.Errorf("DNS server %q: %w", s, err)
		}
		nc.dns = append(nc.dns, a)
	}
	return nc, nil
}

// parseAddr parses "10.0.0.11/24" or a bare "10.0.0.11", which gets /24
// (/64 for IPv6).
func parseAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("address %q: %w", s, err)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: %w", s, err)
	}
	bits := 24
	if a.Is6() {
		bits = 64
	}
	return netip.PrefixFrom(a, bits), nil
}

// family returns the prefixes of one address family.
func family(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}
