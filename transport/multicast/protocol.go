// Package multicast sends one image version stream to many receivers at
// once over IP multicast: the sender announces a session on a well-known
// group, receivers register by unicast status reports, the stream travels
// once in numbered blocks grouped for Reed-Solomon forward error
// correction, loss is repaired by parity sent on aggregated negative
// acknowledgements, late joiners are served by carousel passes, and a
// receiver that cannot keep up is evicted so it never stalls the others.
// Receivers feed contiguous blocks straight into stream.Extract, so a
// target is verified by the same code as every other transport.
//
// docs/multicast.md describes the wire protocol.
package multicast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Well-known session announcement address: every sender announces there,
// every receiver listens there.
const (
	// AnnounceGroup is the administratively scoped group for announcements.
	AnnounceGroup = "239.255.71.71"
	// AnnouncePort is the UDP port announcements go to.
	AnnouncePort = 7171
)

// Packet types.
const (
	typeAnnounce = 1 // sender -> announce group: session description
	typeData     = 2 // sender -> data group: a data or parity shard
	typeStatus   = 3 // receiver -> sender (unicast): registration, progress, NACKs
	typeReply    = 4 // sender -> receiver (unicast): verdict on a status
)

// Session states carried by announcements.
const (
	stateWaiting  = 0 // collecting receivers
	stateSending  = 1 // passes under way
	stateFinished = 2 // every receiver is done; nothing more will be sent
)

// Receiver states carried by status reports.
const (
	rxReceiving = 0
	rxDone      = 1
	rxFailed    = 2
)

// Verdicts carried by replies.
const (
	verdictRegistered = 0
	verdictEvicted    = 1
	verdictRefused    = 2
	verdictFinal      = 3 // the receiver's done or failed state is recorded
)

const (
	magic      = "GCMC"
	wireVer    = 1
	headerLen  = 16 // magic, version, type, flags, reserved, session
	trailerLen = 4  // CRC-32C of everything before it
	// MaxPacket bounds every datagram goldcast sends or accepts.
	MaxPacket = 9000
	// dataHeaderLen follows the common header in a data packet.
	dataHeaderLen = 4 + 4 + 2 // pass, group, shard
	// maxNACKs bounds the NACK entries in one status report.
	maxNACKs = 160
)

// flagRepair marks a data packet sent as a repair rather than by the pass.
const flagRepair = 1

// errPacket classifies packets that fail to parse.
var errPacket = errors.New("malformed packet")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the part every packet shares.
type header struct {
	typ     byte
	flags   byte
	session uint64
}

// announce describes a session.
type announce struct {
	state      byte
	dataGroup  netip.Addr
	dataPort   uint16
	blockSize  uint16
	groupSize  uint16 // K: data shards per FEC group
	streamSize uint64
	rate       uint64 // bit/s the sender currently paces at
	digest     [32]byte
	version    uint32
	receivers  uint16 // registered so far
	image      string
}

// dataPacket is one shard of one FEC group.
type dataPacket struct {
	pass    uint32
	group   uint32
	shard   uint16 // < K: data block; >= K: parity
	repair  bool
	payload []byte
}

// nack asks for Missing more shards of Group.
type nack struct {
	Group   uint32
	Missing uint16
}

// status is a receiver's report, sent periodically to the sender.
type status struct {
	receiver     uint64
	state        byte
	nextGroup    uint32 // every group below is complete
	received     uint64 // valid data packets received, cumulative
	delivered    uint64 // stream bytes handed to extraction
	carouselFrom uint32 // groups [from, to) were never swept while listening
	carouselTo   uint32
	digest       [32]byte
	name         string
	nacks        []nack
}

// reply is the sender's verdict on a receiver.
type reply struct {
	receiver uint64
	verdict  byte
	reason   string
}

func putHeader(b []byte, h header) []byte {
	b = append(b, magic...)
	b = append(b, wireVer, h.typ, h.flags, 0)
	return binary.BigEndian.AppendUint64(b, h.session)
}

func seal(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// parseHeader checks magic, version and checksum and returns the header
// and the body between header and trailer.
func parseHeader(p []byte) (header, []byte, error) {
	if len(p) < headerLen+trailerLen || string(p[:4]) != magic {
		return header{}, nil, fmt.Errorf("%w: not a goldcast packet", errPacket)
	}
	if p[4] != wireVer {
		return header{}, nil, fmt.Errorf("%w: protocol version %d", errPacket, p[4])
	}
	n := len(p) - trailerLen
	if crc32.Checksum(p[:n], castagnoli) != binary.BigEndian.Uint32(p[n:]) {
		return header{}, nil, fmt.Errorf("%w: checksum mismatch", errPacket)
	}
	h := header{typ: p[5], flags: p[6], session: binary.BigEndian.Uint64(p[8:16])}
	return h, p[headerLen:n], nil
}

func appendString(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// reader consumes a body and remembers the first shortfall.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
func (r *reader) u8() byte    { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }
func (r *reader) str() string { return string(r.take(int(r.u8()))) }
func (r *reader) err(what string) error {
	if r.bad {
		return fmt.Errorf("%w: short %s", errPacket, what)
	}
	return nil
}

func (a *announce) marshal(session uint64) []byte {
	b := putHeader(make([]byte, 0, 128), header{typ: typeAnnounce, session: session})
	b = append(b, a.state)
	g := a.dataGroup.As4()
	b = append(b, g[:]...)
	b = binary.BigEndian.AppendUint16(b, a.dataPort)
	b = binary.BigEndian.AppendUint16(b, a.blockSize)
	b = binary.BigEndian.AppendUint16(b, a.groupSize)
	b = binary.BigEndian.AppendUint64(b, a.streamSize)
	b = binary.BigEndian.AppendUint64(b, a.rate)
	b = append(b, a.digest[:]...)
	b = binary.BigEndian.AppendUint32(b, a.version)
	b = binary.BigEndian.AppendUint16(b, a.receivers)
	b = appendString(b, a.image)
	return seal(b)
}

func parseAnnounce(body []byte) (announce, error) {
	r := reader{b: body}
	var a announce
	a.state = r.u8()
	a.dataGroup = netip.AddrFrom4([4]byte(r.take(4)))
	a.dataPort = r.u16()
	a.blockSize = r.u16()
	a.groupSize = r.u16()
	a.streamSize = r.u64()
	a.rate = r.u64()
	a.digest = [32]byte(r.take(32))
	a.version = r.u32()
	a.receivers = r.u16()
	a.image = r.str()
	if err := r.err("announcement"); err != nil {
		return a, err
	}
	if !a.dataGroup.IsMulticast() || a.blockSize == 0 || a.groupSize == 0 || int(a.groupSize) > maxGroup || int(a.blockSize) > MaxPacket {
		return a, fmt.Errorf("%w: announcement with group %s, block size %d, group size %d", errPacket, a.dataGroup, a.blockSize, a.groupSize)
	}
	return a, nil
}

// marshalData encodes a shard into buf (reused by the caller).
func marshalData(buf []byte, session uint64, d *dataPacket) []byte {
	var flags byte
	if d.repair {
		flags = flagRepair
	}
	b := putHeader(buf[:0], header{typ: typeData, flags: flags, session: session})
	b = binary.BigEndian.AppendUint32(b, d.pass)
	b = binary.BigEndian.AppendUint32(b, d.group)
	b = binary.BigEndian.AppendUint16(b, d.shard)
	b = append(b, d.payload...)
	return seal(b)
}

func parseData(h header, body []byte) (dataPacket, error) {
	if len(body) < dataHeaderLen {
		return dataPacket{}, fmt.Errorf("%w: short data packet", errPacket)
	}
	return dataPacket{
		pass:    binary.BigEndian.Uint32(body[0:4]),
		group:   binary.BigEndian.Uint32(body[4:8]),
		shard:   binary.BigEndian.Uint16(body[8:10]),
		repair:  h.flags&flagRepair != 0,
		payload: body[dataHeaderLen:],
	}, nil
}

func (s *status) marshal(session uint64) []byte {
	b := putHeader(make([]byte, 0, 128+len(s.nacks)*6), header{typ: typeStatus, session: session})
	b = binary.BigEndian.AppendUint64(b, s.receiver)
	b = append(b, s.state)
	b = binary.BigEndian.AppendUint32(b, s.nextGroup)
	b = binary.BigEndian.AppendUint64(b, s.received)
	b = binary.BigEndian.AppendUint64(b, s.delivered)
	b = binary.BigEndian.AppendUint32(b, s.carouselFrom)
	b = binary.BigEndian.AppendUint32(b, s.carouselTo)
	b = append(b, s.digest[:]...)
	b = appendString(b, s.name)
	n := min(len(s.nacks), maxNACKs)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, k := range s.nacks[:n] {
		b = binary.BigEndian.AppendUint32(b, k.Group)
		b = binary.BigEndian.AppendUint16(b, k.Missing)
	}
	return seal(b)
}

func parseStatus(body []byte) (status, error) {
	r := reader{b: body}
	var s status
	s.receiver = r.u64()
	s.state = r.u8()
	s.nextGroup = r.u32()
	s.received = r.u64()
	s.delivered = r.u64()
	s.carouselFrom = r.u32()
	s.carouselTo = r.u32()
	s.digest = [32]byte(r.take(32))
	s.name = r.str()
	n := int(r.u16())
	if n > maxNACKs {
		return s, fmt.Errorf("%w: %d NACKs", errPacket, n)
	}
	for i := 0; i < n && !r.bad; i++ {
		s.nacks = append(s.nacks, nack{Group: r.u32(), Missing: r.u16()})
	}
	return s, r.err("status")
}

func (r *reply) marshal(session uint64) []byte {
	b := putHeader(make([]byte, 0, 64), header{typ: typeReply, session: session})
	b = binary.BigEndian.AppendUint64(b, r.receiver)
	b = append(b, r.verdict)
	b = appendString(b, r.reason)
	return seal(b)
}

func parseReply(body []byte) (reply, error) {
	r := reader{b: body}
	var p reply
	p.receiver = r.u64()
	p.verdict = r.u8()
	p.reason = r.str()
	return p, r.err("reply")
}
