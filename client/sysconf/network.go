package sysconf

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"strings"
)

// The network configuration systems the network step recognises.
const (
	netNetplan        = "netplan"
	netNetworkManager = "NetworkManager"
	netNetworkd       = "systemd-networkd"
	netIfupdown       = "ifupdown"
)

// The files the network step writes, relative to the root.
const (
	netplanFile  = "etc/netplan/50-goldcast.yaml"
	nmFile       = "etc/NetworkManager/system-connections/goldcast.nmconnection"
	networkdFile = "etc/systemd/network/10-goldcast.network"
	ifupdownFile = "etc/network/interfaces"
)

// goldcastHeader starts the network files Configure writes.
const goldcastHeader = "# Written by goldcast: the node's network configuration.\n"

// logicalIface is the name the configuration gives the node's interface
// where the format needs one (netplan, ifupdown): the real name is not
// known in advance.
const logicalIface = "goldcast0"

// netDetection is what detectNetwork found in the image.
type netDetection struct {
	system   string // one of the net* constants; empty when none
	renderer string // netplan's renderer, when the image's files name one
}

// detectNetwork finds which network configuration system the image uses,
// in this order: netplan (an /etc/netplan directory), NetworkManager
// (/etc/NetworkManager and its daemon, unless systemd-networkd is enabled
// and NetworkManager is not), systemd-networkd (/etc/systemd/network and
// the unit enabled, or .network files there), ifupdown
// (/etc/network/interfaces or ifup).
func (c *configurer) detectNetwork() (netDetection, error) {
	networkdOn := c.unitEnabled("systemd-networkd.service")
	if c.isDir("etc/netplan") {
		d := netDetection{system: netNetplan}
		names, err := c.listDir("etc/netplan")
		if err != nil {
			return d, err
		}
		for _, n := range names {
			if !strings.HasSuffix(n, ".yaml") || path.Join("etc/netplan", n) == netplanFile {
				continue
			}
			data, err := c.readFile(path.Join("etc/netplan", n))
			if err != nil {
				return d, err
			}
			for line := range strings.Lines(string(data)) {
				if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "renderer" {
					d.renderer = strings.Trim(strings.TrimSpace(v), `"'`)
				}
			}
		}
		return d, nil
	}
	if c.isDir("etc/NetworkManager") && (c.exists("usr/sbin/NetworkManager") || c.exists("sbin/NetworkManager")) &&
		(c.unitEnabled("NetworkManager.service") || !networkdOn) {
		return netDetection{system: netNetworkManager}, nil
	}
	if c.isDir("etc/systemd/network") {
		names, err := c.listDir("etc/systemd/network")
		if err != nil {
			return netDetection{}, err
		}
		hasNetwork := false
		for _, n := range names {
			if strings.HasSuffix(n, ".network") && path.Join("etc/systemd/network", n) != networkdFile {
				hasNetwork = true
			}
		}
		if networkdOn || hasNetwork {
			return netDetection{system: netNetworkd}, nil
		}
	}
	if c.exists("etc/network/interfaces") || c.exists("usr/sbin/ifup") || c.exists("sbin/ifup") {
		return netDetection{system: netIfupdown}, nil
	}
	return netDetection{}, nil
}

// unitEnabled reports whether systemd unit is enabled in the image: a
// link to it in one of /etc/systemd/system/*.wants.
func (c *configurer) unitEnabled(unit string) bool {
	names, err := c.listDir("etc/systemd/system")
	if err != nil {
		return false
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".wants") && c.exists(path.Join("etc/systemd/system", n, unit)) {
			return true
		}
	}
	return false
}

// network is the network step.
func (c *configurer) network(context.Context) error {
	nc, err := c.o.Node.netConfig()
	if err != nil {
		return err
	}
	if !nc.dhcp && len(nc.addrs) == 0 {
		return fmt.Errorf("static configuration without addresses")
	}
	det, err := c.detectNetwork()
	if err != nil {
		return err
	}
	what := nc.describe() + " (" + det.system + ")"
	switch det.system {
	case "":
		c.note("network left as it is: the image uses none of netplan, NetworkManager, systemd-networkd or ifupdown")
		return nil
	case netNetplan:
		if err := c.moveAsideAll("etc/netplan", ".yaml", netplanFile); err != nil {
			return err
		}
		return c.writeNet(netplanFile, netplanFor(nc, det.renderer), 0o600, what)
	case netNetworkManager:
		dir := "etc/NetworkManager/system-connections"
		names, err := c.listDir(dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			rel := path.Join(dir, n)
			if rel == nmFile || strings.HasSuffix(n, origSuffix) || !c.isRegular(rel) {
				continue
			}
			data, err := c.readFile(rel)
			if err != nil {
				return err
			}
			if nmIsEthernet(string(data)) {
				if err := c.moveAside(rel); err != nil {
					return err
				}
			}
		}
		var uuid [16]byte
		rand.Read(uuid[:])
		return c.writeNet(nmFile, nmFor(nc, uuid), 0o600, what)
	case netNetworkd:
		if err := c.moveAsideAll("etc/systemd/network", ".network", networkdFile); err != nil {
			return err
		}
		if err := c.writeNet(networkdFile, networkdFor(nc), 0o644, what); err != nil {
			return err
		}
	case netIfupdown:
		old, err := c.readFile(ifupdownFile)
		if err != nil {
			return err
		}
		content := ifupdownFor(nc, sourceLines(string(old)))
		if len(old) > 0 && !strings.HasPrefix(string(old), goldcastHeader) && string(old) != content {
			if err := c.moveAside(ifupdownFile); err != nil {
				return err
			}
		}
		if err := c.writeNet(ifupdownFile, content, 0o644, what); err != nil {
			return err
		}
	}
	return c.resolvConf(nc)
}

// writeNet writes one network configuration file and reports it.
func (c *configurer) writeNet(rel, content string, perm fs.FileMode, what string) error {
	changed, err := c.writeFile(rel, []byte(content), perm)
	if err != nil {
		return err
	}
	if changed {
		c.changed(rel, what)
	}
	return nil
}

// moveAsideAll moves aside the regular files of dir whose names end in
// suffix, except keep.
func (c *configurer) moveAsideAll(dir, suffix, keep string) error {
	names, err := c.listDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		rel := path.Join(dir, n)
		if rel != keep && strings.HasSuffix(n, suffix) && (c.isRegular(rel) || c.isSymlink(rel)) {
			if err := c.moveAside(rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolvConf writes /etc/resolv.conf for a static configuration with name
// servers, unless it is a symbolic link (resolvconf, systemd-resolved or
// NetworkManager manage it then). ifupdown without resolvconf, and
// systemd-networkd without systemd-resolved, leave it to the
// administrator.
func (c *configurer) resolvConf(nc netConfig) error {
	if nc.dhcp || len(nc.dns) == 0 {
		return nil
	}
	if c.isSymlink("etc/resolv.conf") {
		c.note("/etc/resolv.conf left as it is: it is a symbolic link, so a resolver manager writes it")
		return nil
	}
	return c.writeNet("etc/resolv.conf", resolvConfFor(nc), 0o644, "name servers "+joinAddrs(nc.dns, " "))
}

// describe says what the configuration is, for Change.What.
func (nc netConfig) describe() string {
	on := "the first Ethernet interface"
	if nc.mac != "" {
		on = nc.mac
	}
	if nc.dhcp {
		return "DHCP on " + on
	}
	var as []string
	for _, a := range nc.addrs {
		as = append(as, a.String())
	}
	return "static " + strings.Join(as, " ") + " on " + on
}

// sourceLines returns the "source" and "source-directory" lines of an
// ifupdown interfaces file, so a rewritten one keeps including them.
func sourceLines(interfaces string) []string {
	var out []string
	for line := range strings.Lines(interfaces) {
		f := strings.Fields(line)
		if len(f) > 1 && (f[0] == "source" || f[0] == "source-directory") {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

// nmIsEthernet reports whether a NetworkManager keyfile is a wired
// connection profile.
func nmIsEthernet(keyfile string) bool {
	section := ""
	for line := range strings.Lines(keyfile) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "[connection]" && strings.TrimSpace(k) == "type" {
			v = strings.TrimSpace(v)
			return v == "ethernet" || v == "802-3-ethernet"
		}
	}
	return false
}

// gatewayFor returns the gateway if it is of the given family.
func (nc netConfig) gatewayFor(v6 bool) (netip.Addr, bool) {
	if nc.gateway.IsValid() && nc.gateway.Is6() == v6 {
		return nc.gateway, true
	}
	return netip.Addr{}, false
}

// joinAddrs joins addresses with sep.
func joinAddrs(as []netip.Addr, sep string) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, sep)
}

// networkdFor returns a systemd-networkd .network file: matching the MAC,
// or without one every en* and eth* interface.
func networkdFor(nc netConfig) string {
	var b strings.Builder
	b.WriteString(goldcastHeader)
	b.WriteString("[Match]\n")
	if nc.mac != "" {
		fmt.Fprintf(&b, "MACAddress=%s\n", nc.mac)
	} else {
		b.WriteString("Name=en* eth*\n")
	}
	b.WriteString("\n[Network]\n")
	if nc.dhcp {
		b.WriteString("DHCP=yes\n")
		return b.String()
	}
	for _, a := range nc.addrs {
		fmt.Fprintf(&b, "Address=%s\n", a)
	}
	if nc.gateway.IsValid() {
		fmt.Fprintf(&b, "Gateway=%s\n", nc.gateway)
	}
	for _, d := range nc.dns {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if nc.domain != "" {
		fmt.Fprintf(&b, "Domains=%s\n", nc.domain)
	}
	return b.String()
}

// netplanFor returns a netplan file with one Ethernet interface matched
// by MAC (or, without one, by the name pattern "e*"), with renderer when
// not empty.
func netplanFor(nc netConfig, renderer string) string {
	var b strings.Builder
	b.WriteString(goldcastHeader)
	b.WriteString("network:\n  version: 2\n")
	if renderer != "" {
		fmt.Fprintf(&b, "  renderer: %s\n", renderer)
	}
	fmt.Fprintf(&b, "  ethernets:\n    %s:\n      match:\n", logicalIface)
	if nc.mac != "" {
		fmt.Fprintf(&b, "        macaddress: %q\n", nc.mac)
	} else {
		b.WriteString("        name: \"e*\"\n")
	}
	if nc.dhcp {
		b.WriteString("      dhcp4: true\n      dhcp6: true\n")
		return b.String()
	}
	b.WriteString("      dhcp4: false\n      dhcp6: false\n      addresses:\n")
	for _, a := range nc.addrs {
		fmt.Fprintf(&b, "        - %q\n", a)
	}
	if nc.gateway.IsValid() {
		to := "0.0.0.0/0"
		if nc.gateway.Is6() {
			to = "::/0"
		}
		fmt.Fprintf(&b, "      routes:\n        - to: %q\n          via: %q\n", to, nc.gateway)
	}
	if len(nc.dns) > 0 || nc.domain != "" {
		b.WriteString("      nameservers:\n")
		if len(nc.dns) > 0 {
			fmt.Fprintf(&b, "        addresses: [%s]\n", joinAddrs(nc.dns, ", "))
		}
		if nc.domain != "" {
			fmt.Fprintf(&b, "        search: [%s]\n", nc.domain)
		}
	}
	return b.String()
}

// nmFor returns a NetworkManager keyfile for a wired connection "goldcast"
// with the given UUID, bound to the MAC when there is one.
func nmFor(nc netConfig, uuid [16]byte) string {
	uuid[6] = uuid[6]&0x0f | 0x40 // version 4
	uuid[8] = uuid[8]&0x3f | 0x80 // RFC 4122 variant
	var b strings.Builder
	b.WriteString(goldcastHeader)
	fmt.Fprintf(&b, "[connection]\nid=goldcast\nuuid=%x-%x-%x-%x-%x\ntype=ethernet\nautoconnect=true\nautoconnect-priority=100\n",
		uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:16])
	b.WriteString("\n[ethernet]\n")
	if nc.mac != "" {
		fmt.Fprintf(&b, "mac-address=%s\n", strings.ToUpper(nc.mac))
	}
	for _, v6 := range []bool{false, true} {
		sec := "ipv4"
		if v6 {
			sec = "ipv6"
		}
		fmt.Fprintf(&b, "\n[%s]\n", sec)
		addrs := family(nc.addrs, v6)
		switch {
		case nc.dhcp:
			b.WriteString("method=auto\n")
			continue
		case len(addrs) == 0 && v6:
			b.WriteString("method=ignore\n")
			continue
		case len(addrs) == 0:
			b.WriteString("method=disabled\n")
			continue
		}
		b.WriteString("method=manual\n")
		for i, a := range addrs {
			fmt.Fprintf(&b, "address%d=%s", i+1, a)
			if gw, ok := nc.gatewayFor(v6); ok && i == 0 {
				fmt.Fprintf(&b, ",%s", gw)
			}
			b.WriteString("\n")
		}
		var dns []netip.Addr
		for _, d := range nc.dns {
			if d.Is6() == v6 {
				dns = append(dns, d)
			}
		}
		if len(dns) > 0 {
			fmt.Fprintf(&b, "dns=%s;\n", joinAddrs(dns, ";"))
		}
		if nc.domain != "" && (!v6 || len(family(nc.addrs, false)) == 0) {
			fmt.Fprintf(&b, "dns-search=%s;\n", nc.domain)
		}
	}
	return b.String()
}

// ifupdownFor returns /etc/network/interfaces: the loopback, and the node's
// interface under the logical name goldcast0, chosen by MAC
// ("auto mac/MAC=goldcast0") or without one as the first interface whose
// name starts with "e" ("auto /e*/1=goldcast0"). sources are the image's
// "source" lines, kept first.
func ifupdownFor(nc netConfig, sources []string) string {
	var b strings.Builder
	b.WriteString(goldcastHeader)
	b.WriteString("# The image's own file, if it had one, is interfaces" + origSuffix + ".\n\n")
	for _, s := range sources {
		b.WriteString(s + "\n")
	}
	if len(sources) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("auto lo\niface lo inet loopback\n\n")
	if nc.mac != "" {
		fmt.Fprintf(&b, "auto mac/%s=%s\n", nc.mac, logicalIface)
	} else {
		fmt.Fprintf(&b, "auto /e*/1=%s\n", logicalIface)
	}
	if nc.dhcp {
		fmt.Fprintf(&b, "iface %s inet dhcp\n", logicalIface)
		return b.String()
	}
	for _, v6 := range []bool{false, true} {
		addrs := family(nc.addrs, v6)
		if len(addrs) == 0 {
			continue
		}
		fam := "inet"
		if v6 {
			fam = "inet6"
		}
		fmt.Fprintf(&b, "iface %s %s static\n", logicalIface, fam)
		fmt.Fprintf(&b, "\taddress %s\n", addrs[0])
		if gw, ok := nc.gatewayFor(v6); ok {
			fmt.Fprintf(&b, "\tgateway %s\n", gw)
		}
		for _, a := range addrs[1:] {
			fmt.Fprintf(&b, "\tup ip address add %s dev $IFACE\n", a)
		}
		if !v6 || len(family(nc.addrs, false)) == 0 {
			if len(nc.dns) > 0 {
				fmt.Fprintf(&b, "\tdns-nameservers %s\n", joinAddrs(nc.dns, " "))
			}
			if nc.domain != "" {
				fmt.Fprintf(&b, "\tdns-search %s\n", nc.domain)
			}
		}
	}
	return b.String()
}

// resolvConfFor returns /etc/resolv.conf for a static configuration.
func resolvConfFor(nc netConfig) string {
	var b strings.Builder
	b.WriteString("# Written by goldcast from the node's static configuration.\n")
	if nc.domain != "" {
		fmt.Fprintf(&b, "search %s\n", nc.domain)
	}
	for _, d := range nc.dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return b.String()
}
