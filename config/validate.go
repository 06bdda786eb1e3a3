package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goldcast/goldcast/images/ref"
)

// reporter receives validation problems. Load's decoder is one: it knows
// the line of every field path the file gives.
type reporter interface {
	// report records a problem with the field at path.
	report(path string, err error)
	// line returns the line of the field at path, or of the nearest
	// enclosing value the file gives.
	line(path string) int
}

// validate checks c, whose defaults are filled in, reporting every problem
// to r. It rewrites MACs, IPs and networks into canonical form.
func validate(c *Config, r reporter) {
	validateServer(&c.Server, r)
	groups := validateGroups(c.Groups, r)
	validateNodes(c.Nodes, groups, r)
	checkOverrides(c.Overrides, "overrides", r)
}

// validateServer checks the server section.
func validateServer(s *Server, r reporter) {
	if err := checkListen(s.Listen); err != nil {
		r.report("server.listen", err)
	}
	if err := checkListen(s.RsyncListen); err != nil {
		r.report("server.rsync_listen", err)
	}
	for i, n := range s.AllowNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			r.report(index("server.allow_networks", i), fmt.Errorf("%q is not a network in CIDR notation such as 10.0.0.0/8", n))
			continue
		}
		if p != p.Masked() {
			r.report(index("server.allow_networks", i), fmt.Errorf("%q has address bits set beyond the prefix length; did you mean %q?", n, p.Masked()))
			continue
		}
		s.AllowNetworks[i] = p.String()
	}
	if s.TFTPListen != "" {
		if err := checkListen(s.TFTPListen); err != nil {
			r.report("server.tftp_listen", err)
		}
	}
	switch s.UnknownNodes {
	case "", "menu", "register":
	default:
		r.report("server.unknown_nodes", fmt.Errorf("%q: want menu or register", s.UnknownNodes))
	}
	validateDHCP(&s.DHCP, r)
}

// validateDHCP checks the server.dhcp section.
func validateDHCP(d *DHCP, r reporter) {
	switch d.Mode {
	case "", "off", "full", "proxy":
	default:
		r.report("server.dhcp.mode", fmt.Errorf("%q: want full, proxy or off", d.Mode))
	}
	if (d.Mode == "full" || d.Mode == "proxy") && d.Interface == "" {
		r.report("server.dhcp.interface", errors.New("a DHCP server must know which interface it serves: set server.dhcp.interface"))
	}
	if d.Range != "" {
		first, last, ok := strings.Cut(d.Range, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		switch {
		case !ok || err1 != nil || err2 != nil || !a.Is4() || !b.Is4():
			r.report("server.dhcp.range", fmt.Errorf("%q: want FIRST-LAST IPv4 addresses, such as 10.0.0.100-10.0.0.199", d.Range))
		case b.Less(a):
			r.report("server.dhcp.range", fmt.Errorf("%q: the last address is below the first", d.Range))
		}
	} else if d.Mode == "full" {
		r.report("server.dhcp.range", errors.New("full mode needs an address pool, such as 10.0.0.100-10.0.0.199"))
	}
	if d.Router != "" {
		if a, err := netip.ParseAddr(d.Router); err != nil || !a.Is4() {
			r.report("server.dhcp.router", fmt.Errorf("%q is not an IPv4 address", d.Router))
		}
	}
	for i, n := range d.DNS {
		if a, err := netip.ParseAddr(n); err != nil || !a.Is4() {
			r.report(index("server.dhcp.dns", i), fmt.Errorf("%q is not an IPv4 address", n))
		}
	}
	if d.LeaseTime != "" {
		if t, err := time.ParseDuration(d.LeaseTime); err != nil || t < time.Minute {
			r.report("server.dhcp.lease_time", fmt.Errorf("%q: want a duration of at least 1m, such as 1h or 30m", d.LeaseTime))
		}
	}
}

// checkListen checks a host:port listen address with a numeric port.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not a host:port address: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// validateGroups checks the groups and returns the index of each validly
// named group by name.
func validateGroups(groups []Group, r reporter) map[string]int {
	byName := map[string]int{}
	for i, g := range groups {
		path := index("groups", i)
		switch err := ref.CheckName("group", g.Name); {
		case g.Name == "":
			r.report(field(path, "name"), errors.New("required"))
		case err != nil:
			r.report(field(path, "name"), err)
		default:
			if first, dup := byName[g.Name]; dup {
				r.report(field(path, "name"), fmt.Errorf("group %q already declared at line %d", g.Name, r.line(field(index("groups", first), "name"))))
			} else {
				byName[g.Name] = i
			}
		}
		if g.Image != "" {
			if _, _, err := ref.Parse(g.Image); err != nil {
				r.report(field(path, "image"), err)
			}
		}
		checkOverrides(g.Overrides, field(path, "overrides"), r)
		if g.Nodes != "" {
			if _, err := expandHostNames(g.Nodes); err != nil {
				r.report(field(path, "nodes"), err)
			}
		}
	}
	return byName
}

// checkOverrides checks the names in the overrides list at path.
func checkOverrides(overrides []string, path string, r reporter) {
	for i, o := range overrides {
		if err := ref.CheckName("override", o); err != nil {
			r.report(index(path, i), err)
		}
	}
}

// owner records which node first used a MAC or IP address.
type owner struct {
	node string
	line int
}

// validateNodes checks the nodes against each other and against the groups
// declared, given by name.
func validateNodes(nodes []Node, groups map[string]int, r reporter) {
	names := map[string]string{} // host name -> path of the name declaring it
	macs := map[string]owner{}
	ips := map[string]owner{}
	uuids := map[string]owner{}
	for i := range nodes {
		n := &nodes[i]
		path := index("nodes", i)

		var hosts []string
		if n.Name == "" {
			r.report(field(path, "name"), errors.New("required"))
		} else if h, err := expandHostNames(n.Name); err != nil {
			r.report(field(path, "name"), err)
		} else {
			hosts = h
			checkDuplicateHosts(hosts, names, field(path, "name"), r)
		}

		// hostFor names the node the j-th MAC or IP belongs to.
		hostFor := func(j, count int) string {
			switch {
			case len(hosts) == 1:
				return hosts[0]
			case len(hosts) == count:
				return hosts[j]
			}
			return n.Name
		}
		if len(hosts) > 1 && len(n.MACs) > 0 && len(n.MACs) != len(hosts) {
			r.report(field(path, "macs"), fmt.Errorf("%d addresses for the %d nodes %q declares; give one per node, in order, or none", len(n.MACs), len(hosts), n.Name))
		}
		for j, m := range n.MACs {
			p := index(field(path, "macs"), j)
			hw, err := net.ParseMAC(m)
			if err != nil {
				r.report(p, fmt.Errorf("%q is not a MAC address", m))
				continue
			}
			n.MACs[j] = hw.String()
			claim(macs, "MAC", n.MACs[j], owner{hostFor(j, len(n.MACs)), r.line(p)}, p, r)
		}
		if len(hosts) > 1 && len(n.IPs) > 0 && len(n.IPs) != len(hosts) {
			r.report(field(path, "ips"), fmt.Errorf("%d addresses for the %d nodes %q declares; give one per node, in order, or none", len(n.IPs), len(hosts), n.Name))
		}
		for j, a := range n.IPs {
			p := index(field(path, "ips"), j)
			ip, err := netip.ParseAddr(a)
			if err != nil {
				r.report(p, fmt.Errorf("%q is not an IP address", a))
				continue
			}
			if ip.Zone() != "" {
				r.report(p, fmt.Errorf("%q has a zone; zones are not allowed", a))
				continue
			}
			n.IPs[j] = ip.String()
			claim(ips, "IP", n.IPs[j], owner{hostFor(j, len(n.IPs)), r.line(p)}, p, r)
		}

		if n.UUID != "" {
			p := field(path, "uuid")
			u, ok := canonicalUUID(n.UUID)
			switch {
			case !ok:
				r.report(p, fmt.Errorf("%q is not a UUID such as 4c4c4544-0042-3510-8052-b4c04f564433", n.UUID))
			case len(hosts) > 1:
				r.report(p, fmt.Errorf("a UUID names one machine, but %q declares %d nodes", n.Name, len(hosts)))
			default:
				n.UUID = u
				claim(uuids, "UUID", u, owner{hostFor(0, 1), r.line(p)}, p, r)
			}
		}
		if n.Image != "" {
			if _, _, err := ref.Parse(n.Image); err != nil {
				r.report(field(path, "image"), err)
			}
		}
		listed := map[string]bool{}
		for j, g := range n.Groups {
			p := index(field(path, "groups"), j)
			if _, ok := groups[g]; !ok {
				r.report(p, fmt.Errorf("unknown group %q", g))
			} else if listed[g] {
				r.report(p, fmt.Errorf("group %q listed twice", g))
			}
			listed[g] = true
		}
		if !slices.Contains(boots(), n.Boot) {
			r.report(field(path, "boot"), fmt.Errorf("%q is not one of %s", n.Boot, join(boots())))
		}
		if !slices.Contains(transports(), n.Transport) {
			r.report(field(path, "transport"), fmt.Errorf("%q is not one of %s", n.Transport, join(transports())))
		}
		checkOverrides(n.Overrides, field(path, "overrides"), r)
		if l := n.Install.Layout; l != "" && (strings.ContainsAny(l, "/\\") || strings.HasPrefix(l, ".")) {
			r.report(field(field(path, "install"), "layout"), fmt.Errorf("%q: want the name of a file in DATA/layouts, without a directory", l))
		}
		if a := n.Install.PostAction; a != "" && !slices.Contains(PostActions(), a) {
			r.report(field(field(path, "install"), "post_action"), fmt.Errorf("%q is not one of %s", a, strings.Join(PostActions(), ", ")))
		}
	}
}

// checkDuplicateHosts reports the host names among hosts, declared by the
// node name at path, that seen says are already declared, and adds the
// others to seen. It reports one problem per node, however many names
// clash.
func checkDuplicateHosts(hosts []string, seen map[string]string, path string, r reporter) {
	var dups []string
	first := ""
	for _, h := range hosts {
		if p, dup := seen[h]; dup {
			if len(dups) == 0 {
				first = p
			}
			dups = append(dups, h)
			continue
		}
		seen[h] = path
	}
	switch {
	case len(dups) == 0:
	case first == path:
		r.report(path, fmt.Errorf("node %q declared twice", dups[0]))
	case len(dups) == 1:
		r.report(path, fmt.Errorf("node %q already declared at line %d", dups[0], r.line(first)))
	default:
		r.report(path, fmt.Errorf("node %q and %d more already declared, the first at line %d", dups[0], len(dups)-1, r.line(first)))
	}
}

// claim records that o uses the address addr (a MAC or IP, as kind says)
// given at path, reporting a problem if another node already uses it.
func claim(used map[string]owner, kind, addr string, o owner, path string, r reporter) {
	if first, dup := used[addr]; dup {
		if first.node == o.node {
			r.report(path, fmt.Errorf("%s %s given twice for %s", kind, addr, o.node))
		} else {
			r.report(path, fmt.Errorf("%s %s already belongs to %s at line %d", kind, addr, first.node, first.line))
		}
		return
	}
	used[addr] = o
}

// expandHostNames expands a host range expression and checks that every
// name it gives is a valid host name.
func expandHostNames(expr string) ([]string, error) {
	hosts, err := ExpandHosts(expr)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if err := checkHostName(h); err != nil {
			return nil, err
		}
	}
	return hosts, nil
}

// checkHostName checks that name is a valid host name: dot-separated labels
// of 1 to 63 ASCII letters, digits, "-" and "_", not starting or ending with
// "-", 253 bytes in all at most.
func checkHostName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("host name %q is longer than 253 bytes", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return fmt.Errorf("host name %q has an empty label", name)
		case len(label) > 63:
			return fmt.Errorf("host name %q has a label longer than 63 bytes", name)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("host name %q has a label starting or ending with %q", name, "-")
		}
		for _, c := range label {
			if !isAlnum(c) && c != '-' && c != '_' {
				return fmt.Errorf("host name %q contains %q; only letters, digits, \".\", \"-\" and \"_\" are allowed", name, c)
			}
		}
	}
	return nil
}

// join lists values for an error message: "a, b, c".
func join[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// isAlnum reports whether r is an ASCII letter or digit.
func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// canonicalUUID returns u in lowercase 8-4-4-4-12 form, and whether it
// is a UUID at all.
func canonicalUUID(u string) (string, bool) {
	u = strings.ToLower(strings.TrimSpace(u))
	if len(u) != 36 {
		return "", false
	}
	for i, c := range u {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return "", false
			}
		}
	}
	return u, true
}
