package sysconf

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// hostsIPv6 are the IPv6 lines of Debian's default /etc/hosts, added when
// the image has no /etc/hosts.
const hostsIPv6 = `
# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
`

// hostsFor returns /etc/hosts for a node named short (fully qualified
// fqdn) at addr ("127.0.1.1" when it has no static address): first
// "127.0.0.1 localhost" and "ADDR FQDN SHORT", then the lines of the
// existing file except those for 127.0.0.1, 127.0.1.1 or addr, with the
// old and new host names taken out of the others (a line left without
// names goes). Comments and blank lines are kept. An empty existing file
// gets Debian's IPv6 lines.
func hostsFor(existing string, oldNames []string, short, fqdn, addr string) string {
	drop := map[string]bool{}
	for _, n := range slices.Concat(oldNames, []string{short, fqdn}) {
		if n != "" && n != "localhost" {
			drop[strings.ToLower(n)] = true
		}
	}
	var sb strings.Builder
	sb.WriteString("127.0.0.1\tlocalhost\n")
	if fqdn != short {
		fmt.Fprintf(&sb, "%s\t%s %s\n", addr, fqdn, short)
	} else {
		fmt.Fprintf(&sb, "%s\t%s\n", addr, short)
	}
	if strings.TrimSpace(existing) == "" {
		sb.WriteString(hostsIPv6)
		return sb.String()
	}
	for line := range strings.Lines(existing) {
		line = strings.TrimRight(line, "\n")
		body, comment, hasComment := strings.Cut(line, "#")
		fields := strings.Fields(body)
		if len(fields) < 2 {
			sb.WriteString(line + "\n")
			continue
		}
		if fields[0] == "127.0.0.1" || fields[0] == "127.0.1.1" || fields[0] == addr {
			continue
		}
		names := slices.DeleteFunc(slices.Clone(fields[1:]), func(n string) bool { return drop[strings.ToLower(n)] })
		switch {
		case len(names) == 0:
			continue
		case len(names) == len(fields)-1:
			sb.WriteString(line + "\n")
		default:
			out := fields[0] + "\t" + strings.Join(names, " ")
			if hasComment {
				out += " #" + comment
			}
			sb.WriteString(out + "\n")
		}
	}
	return sb.String()
}

// hostname is the hostname step.
func (c *configurer) hostname(context.Context) error {
	short, fqdn, err := c.o.Node.names()
	if err != nil {
		return err
	}
	if short == "" {
		c.note("host name left as it is: the node has no name")
		return nil
	}
	oldHostname, err := c.readFile("etc/hostname")
	if err != nil {
		return err
	}
	var old []string
	for _, n := range []string{strings.TrimSpace(string(oldHostname)), c.layoutHost()} {
		if n != "" {
			s, _, _ := strings.Cut(n, ".")
			old = append(old, n, s)
		}
	}
	if changed, err := c.writeFile("etc/hostname", []byte(short+"\n"), 0o644); err != nil {
		return err
	} else if changed {
		c.changed("etc/hostname", "host name "+short)
	}

	nc, err := c.o.Node.netConfig()
	if err != nil {
		return err
	}
	addr := "127.0.1.1"
	if !nc.dhcp && len(nc.addrs) > 0 {
		addr = nc.addrs[0].Addr().String()
	}
	existing, err := c.readFile("etc/hosts")
	if err != nil {
		return err
	}
	hosts := hostsFor(string(existing), old, short, fqdn, addr)
	if changed, err := c.writeFile("etc/hosts", []byte(hosts), 0o644); err != nil {
		return err
	} else if changed {
		c.changed("etc/hosts", fmt.Sprintf("%s is %s", addr, fqdn))
	}
	return nil
}

// layoutHost is the golden client's host name from the layout, if any.
func (c *configurer) layoutHost() string {
	if c.o.Layout == nil {
		return ""
	}
	return c.o.Layout.Host
}
