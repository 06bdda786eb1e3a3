package multicast

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported: Linux can cut one send into many datagrams (UDP GSO).
const gsoSupported = true

// udpSegment is the control message asking the kernel to cut a send
// into datagrams of seg bytes (UDP_SEGMENT, Linux 4.18 and later).
func udpSegment(seg int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(seg))
	return b
}
