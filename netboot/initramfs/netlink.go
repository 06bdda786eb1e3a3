package initramfs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// rtnl is a route netlink socket for the few changes the initramfs makes:
// an interface up, an IPv4 address, a default route. Each request waits
// for the kernel's acknowledgement.
type rtnl struct {
	fd  int
	seq uint32
}

// openRTNL opens a NETLINK_ROUTE socket.
func openRTNL() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open route netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind route netlink socket: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

func (r *rtnl) close() error { return unix.Close(r.fd) }

// nlAttr appends a route attribute (length, type, value, padding) to b.
func nlAttr(b []byte, typ uint16, value []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(value)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, value...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends one message of type typ with body and waits for its
// acknowledgement, returning the error the kernel answered.
func (r *rtnl) request(typ, flags uint16, body []byte) error {
	r.seq++
	msg := make([]byte, 0, unix.SizeofNlMsghdr+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.SizeofNlMsghdr+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	msg = binary.NativeEndian.AppendUint32(msg, r.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := binary.NativeEndian.Uint32(b[0:4])
			mtype := binary.NativeEndian.Uint16(b[4:6])
			seq := binary.NativeEndian.Uint32(b[8:12])
			if l < unix.SizeofNlMsghdr || int(l) > len(b) {
				return fmt.Errorf("receive: malformed netlink message (length %d of %d bytes)", l, len(b))
			}
			if seq == r.seq && mtype == unix.NLMSG_ERROR {
				if l < unix.SizeofNlMsghdr+4 {
					return fmt.Errorf("receive: short netlink error message")
				}
				if errno := int32(binary.NativeEndian.Uint32(b[16:20])); errno != 0 {
					return unix.Errno(-errno)
				}
				return nil
			}
			next := (int(l) + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
			if next > len(b) {
				break
			}
			b = b[next:]
		}
	}
}

// linkUp sets IFF_UP on the interface with index ifindex.
func (r *rtnl) linkUp(ifindex int) error {
	body := make([]byte, 0, unix.SizeofIfInfomsg)
	body = append(body, unix.AF_UNSPEC, 0)
	body = binary.NativeEndian.AppendUint16(body, 0) // device type: unchanged
	body = binary.NativeEndian.AppendUint32(body, uint32(ifindex))
	body = binary.NativeEndian.AppendUint32(body, unix.IFF_UP) // flags
	body = binary.NativeEndian.AppendUint32(body, unix.IFF_UP) // change mask
	if err := r.request(unix.RTM_NEWLINK, 0, body); err != nil {
		return fmt.Errorf("set interface %d up: %w", ifindex, err)
	}
	return nil
}

// addAddr gives the interface an IPv4 address with its prefix and
// broadcast address, replacing the same address if it is already there.
func (r *rtnl) addAddr(ifindex int, p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("add address %s: not an IPv4 address", p)
	}
	ip := p.Addr().As4()
	mask := ^uint32(0)
	if p.Bits() < 32 {
		mask = ^(^uint32(0) >> p.Bits())
	}
	var bcast [4]byte
	binary.BigEndian.PutUint32(bcast[:], binary.BigEndian.Uint32(ip[:])|^mask)
	body := []byte{unix.AF_INET, byte(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE}
	body = binary.NativeEndian.AppendUint32(body, uint32(ifindex))
	body = nlAttr(body, unix.IFA_LOCAL, ip[:])
	body = nlAttr(body, unix.IFA_ADDRESS, ip[:])
	if p.Bits() < 31 {
		body = nlAttr(body, unix.IFA_BROADCAST, bcast[:])
	}
	if err := r.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("add address %s to interface %d: %w", p, ifindex, err)
	}
	return nil
}

// addDefaultRoute routes 0.0.0.0/0 through gw on the interface, replacing
// any default route of the main table.
func (r *rtnl) addDefaultRoute(ifindex int, gw netip.Addr) error {
	if !gw.Is4() {
		return fmt.Errorf("add default route via %s: not an IPv4 address", gw)
	}
	body := []byte{
		unix.AF_INET, 0, 0, 0, // family, destination and source prefix length, TOS
		unix.RT_TABLE_MAIN, unix.RTPROT_DHCP, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST,
	}
	body = binary.NativeEndian.AppendUint32(body, 0) // flags
	g := gw.As4()
	body = nlAttr(body, unix.RTA_GATEWAY, g[:])
	body = nlAttr(body, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(ifindex)))
	if err := r.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("add default route via %s on interface %d: %w", gw, ifindex, err)
	}
	return nil
}
