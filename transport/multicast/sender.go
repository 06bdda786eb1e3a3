package multicast

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// Defaults for SenderConfig and ReceiverConfig fields left zero.
const (
	DefaultBlockSize      = 1440 // a 1472-byte UDP payload: fits a 1500-byte MTU
	DefaultGroupSize      = 64
	DefaultDataPort       = 7172
	DefaultMaxBitrate     = 100_000_000
	DefaultStatusInterval = 100 * time.Millisecond
)

// BlockSizeForMTU is the largest block (a multiple of 8) whose data
// packet fits one frame of the given MTU, so nothing is fragmented:
// DefaultBlockSize for Ethernet's 1500, about 8.9 KB for jumbo frames.
func BlockSizeForMTU(mtu int) int {
	if mtu <= 0 || mtu > MaxPacket {
		mtu = min(max(mtu, 1500), MaxPacket)
	}
	b := (mtu - 20 - 8 - headerLen - dataHeaderLen - trailerLen) &^ 7
	return max(b, 256)
}

// SenderConfig describes one multicast session.
type SenderConfig struct {
	// Interface is the network interface to send on (required).
	Interface string
	// Stream is the version stream (random access, for repairs) and Size
	// its length in bytes.
	Stream io.ReaderAt
	Size   int64
	// Digest is the hex sha256 of the version's manifest; Image and
	// Version name it. Receivers choose sessions by them.
	Digest  string
	Image   string
	Version int
	// MaxBitrate caps the send rate in bit/s of UDP payload and headers
	// (DefaultMaxBitrate when zero). Adaptive lets the rate fall to
	// MinBitrate (MaxBitrate/20 when zero) on widespread loss and climb
	// back when it clears.
	MaxBitrate int64
	Adaptive   bool
	MinBitrate int64
	// BlockSize is the data bytes per packet (default: the most that fits
	// the interface's MTU, see BlockSizeForMTU); GroupSize
	// the data blocks per FEC group (DefaultGroupSize, at most 128).
	BlockSize int
	GroupSize int
	// FEC is the parity sent with every group before any loss is
	// reported: negative adapts it to the loss receivers report
	// (default), zero sends none, n sends n per group.
	FEC int
	// DataGroup is the session's multicast group (random in
	// 239.255.72.0/24 when empty) and DataPort its port.
	DataGroup string
	DataPort  int
	// AnnounceAddr overrides AnnounceGroup:AnnouncePort.
	AnnounceAddr string
	// TTL is the multicast TTL (1: the local link).
	TTL int
	// Loopback delivers the sender's packets to receivers on the same
	// host (tests); off for real deployments.
	Loopback bool
	// Policy decides when sending starts.
	Policy Policy
	// MaxLoss evicts a receiver that lost more than this fraction of the
	// packets sent during EvictAfter (defaults 0.5 and 2 s).
	MaxLoss    float64
	EvictAfter time.Duration
	// StallTimeout evicts a receiver whose delivered bytes do not move
	// for this long while the sender is sending (default 15 s).
	StallTimeout time.Duration
	// ReceiverTimeout drops a receiver silent for this long (default 3 s).
	ReceiverTimeout time.Duration
	// Events receives per-receiver progress and session events.
	Events func(Event)
	// Log receives diagnostics; nil discards.
	Log *slog.Logger
}

// Event is a session or per-receiver event.
type Event struct {
	Time time.Time `json:"time"`
	// Kind: waiting, start, registered, progress, done, evicted, lost,
	// refused, failed, pass, finish.
	Kind     string `json:"kind"`
	Receiver string `json:"receiver,omitempty"`
	Addr     string `json:"addr,omitempty"`
	// Bytes is what the receiver has extracted of Total.
	Bytes   int64   `json:"bytes,omitempty"`
	Total   int64   `json:"total,omitempty"`
	Percent float64 `json:"percent,omitempty"`
	// Loss is the receiver's packet loss over the last interval.
	Loss float64 `json:"loss,omitempty"`
	// Rate is the sender's current rate in bit/s.
	Rate    int64  `json:"rate,omitempty"`
	Message string `json:"message,omitempty"`
}

// ReceiverReport is how one receiver fared.
type ReceiverReport struct {
	Name   string        `json:"name"`
	Addr   string        `json:"addr"`
	State  string        `json:"state"` // done, evicted, lost, failed, refused
	Reason string        `json:"reason,omitempty"`
	Bytes  int64         `json:"bytes"`
	Took   time.Duration `json:"took_ns"`
}

// SendResult summarises a session.
type SendResult struct {
	Session   string           `json:"session"`
	Receivers []ReceiverReport `json:"receivers"`
	// Packets counts data and parity packets sent; Repairs those sent on
	// NACKs; Passes the passes over (part of) the stream.
	Packets int64 `json:"packets"`
	Repairs int64 `json:"repairs"`
	Passes  int   `json:"passes"`
	// Stray counts packets ignored: malformed, corrupt or another session's.
	Stray int64         `json:"stray"`
	Took  time.Duration `json:"took_ns"`
	// FirstPass is when the first pass over the stream had been sent;
	// the rest of Took went to repairs, further passes and waiting for
	// the receivers' confirmations.
	FirstPass time.Duration `json:"first_pass_ns"`
}

// Done counts receivers that completed.
func (r *SendResult) Done() int {
	n := 0
	for _, x := range r.Receivers {
		if x.State == "done" {
			n++
		}
	}
	return n
}

// rx is the sender's view of one receiver.
type rx struct {
	id                 uint64
	name               string
	addr               netip.AddrPort
	joined, lastSeen   time.Time
	st                 status
	sentAtStatus       int64 // packets the sender had sent when st arrived
	evalSent, evalRecv int64
	loss               float64
	highLoss           time.Duration
	lastDelivered      uint64
	lastMove           time.Time
	state              string // "", done, evicted, lost, failed, refused
	reason             string
	doneAt             time.Time
}

func (r *rx) active() bool { return r.state == "" }

// repairState avoids answering the same loss twice: repairs sent for a
// group within the hold-off cover NACKs that crossed them.
type repairState struct {
	amount int
	until  time.Time
}

// repairJob queues count repair shards of group.
type repairJob struct {
	group, count int
}

type sender struct {
	cfg     SenderConfig
	log     *slog.Logger
	session uint64
	lay     layout
	conn    *ipv4.PacketConn
	annDst  *net.UDPAddr
	dataDst *net.UDPAddr
	ann     announce
	coder   *coder
	pace    pacer
	rc      *rateControl

	rxs    map[uint64]*rx
	order  []uint64
	stray  int64
	sent   int64
	repair int64
	passes int

	// the current pass
	sending          bool
	passFrom, passTo int
	cursor           int // group
	shard            int // within the cursor group: data then parity
	curGroup         int
	curData          [][]byte
	curParity        [][]byte
	idleSince        time.Time
	fecP             int
	pass             uint32
	// firstPassEnd is when the first pass had been sent.
	firstPassEnd time.Time

	// UDP GSO: equal-sized data packets go out up to gsoSegs per system
	// call and travel the local stack as one buffer until the receiving
	// socket (or the NIC) splits them. Turned off at the first refusal.
	udp    *net.UDPConn
	gso    bool
	batch  []byte
	batchN int

	nextParity map[int]int // next parity index to send per group
	repairs    map[int]*repairState
	queue      []repairJob
	cache      map[int][][]byte // group -> parity computed so far
	cacheOrder []int
	buf        []byte
}

// Send runs one session until every registered receiver has the stream,
// was evicted, or went silent, or ctx ends.
func Send(ctx context.Context, cfg SenderConfig) (*SendResult, error) {
	s, err := newSender(cfg)
	if err != nil {
		return nil, err
	}
	defer s.conn.Close()
	return s.run(ctx)
}

func newSender(cfg SenderConfig) (*sender, error) {
	if cfg.Interface == "" {
		return nil, errors.New("multicast send: an interface is required")
	}
	if cfg.Stream == nil || cfg.Size <= 0 {
		return nil, errors.New("multicast send: an empty stream")
	}
	digest, err := hex.DecodeString(cfg.Digest)
	if err != nil || len(digest) != 32 {
		return nil, fmt.Errorf("multicast send: manifest digest %q is not a hex sha256", cfg.Digest)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.GroupSize, DefaultGroupSize)
	def(&cfg.DataPort, DefaultDataPort)
	def(&cfg.TTL, 1)
	if cfg.MaxBitrate == 0 {
		cfg.MaxBitrate = DefaultMaxBitrate
	}
	if cfg.MinBitrate == 0 {
		cfg.MinBitrate = cfg.MaxBitrate / 20
	}
	if cfg.MaxLoss == 0 {
		cfg.MaxLoss = 0.5
	}
	if cfg.EvictAfter == 0 {
		cfg.EvictAfter = 2 * time.Second
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 15 * time.Second
	}
	if cfg.ReceiverTimeout == 0 {
		cfg.ReceiverTimeout = 3 * time.Second
	}
	if cfg.BlockSize == 0 {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("multicast interface %q: %w", cfg.Interface, err)
		}
		cfg.BlockSize = BlockSizeForMTU(ifi.MTU)
	}
	if cfg.BlockSize+headerLen+dataHeaderLen+trailerLen > MaxPacket {
		return nil, fmt.Errorf("multicast send: block size %d too large", cfg.BlockSize)
	}
	lay, err := newLayout(cfg.Size, cfg.BlockSize, cfg.GroupSize)
	if err != nil {
		return nil, fmt.Errorf("multicast send: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var sid [8]byte
	rand.Read(sid[:])
	s := &sender{cfg: cfg, log: log, session: binary.BigEndian.Uint64(sid[:]), lay: lay, coder: newCoder(),
		rxs: map[uint64]*rx{}, nextParity: map[int]int{}, repairs: map[int]*repairState{}, cache: map[int][][]byte{},
		buf: make([]byte, 0, MaxPacket)}
	s.rc = &rateControl{max: float64(cfg.MaxBitrate), min: float64(cfg.MinBitrate), cur: float64(cfg.MaxBitrate), threshold: 0.1}
	s.pace.rate = s.rc.cur
	group := cfg.DataGroup
	if group == "" {
		group = fmt.Sprintf("239.255.72.%d", 1+int(sid[7])%254)
	}
	ga, err := netip.ParseAddr(group)
	if err != nil || !ga.Is4() || !ga.IsMulticast() {
		return nil, fmt.Errorf("multicast send: data group %q is not an IPv4 multicast address", group)
	}
	annAddr := cfg.AnnounceAddr
	if annAddr == "" {
		annAddr = fmt.Sprintf("%s:%d", AnnounceGroup, AnnouncePort)
	}
	s.annDst, err = net.ResolveUDPAddr("udp4", annAddr)
	if err != nil {
		return nil, fmt.Errorf("multicast send: announce address %q: %w", annAddr, err)
	}
	s.dataDst = &net.UDPAddr{IP: ga.AsSlice(), Port: cfg.DataPort}
	s.ann = announce{dataGroup: ga, dataPort: uint16(cfg.DataPort), blockSize: uint16(cfg.BlockSize), groupSize: uint16(cfg.GroupSize),
		streamSize: uint64(cfg.Size), digest: [32]byte(digest), version: uint32(cfg.Version), image: cfg.Image}
	s.conn, err = openSendConn(cfg.Interface, cfg.TTL, cfg.Loopback)
	if err != nil {
		return nil, err
	}
	s.udp, s.gso = s.conn.PacketConn.(*net.UDPConn)
	s.gso = s.gso && gsoSupported
	return s, nil
}

// openSendConn opens the socket that sends announcements and data and
// receives status reports.
func openSendConn(ifname string, ttl int, loop bool) (*ipv4.PacketConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("multicast interface %q: %w", ifname, err)
	}
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return nil, fmt.Errorf("multicast sender socket: %w", err)
	}
	if uc, ok := c.(*net.UDPConn); ok {
		uc.SetWriteBuffer(4 << 20)
		uc.SetReadBuffer(4 << 20)
	}
	p := ipv4.NewPacketConn(c)
	for _, step := range []struct {
		what string
		err  error
	}{
		{"interface", p.SetMulticastInterface(ifi)},
		{"TTL", p.SetMulticastTTL(ttl)},
		{"loopback", p.SetMulticastLoopback(loop)},
	} {
		if step.err != nil {
			p.Close()
			return nil, fmt.Errorf("multicast sender socket: set %s on %q: %w", step.what, ifname, step.err)
		}
	}
	return p, nil
}

// incoming is one status report with its source.
type incoming struct {
	st   status
	from netip.AddrPort
}

func (s *sender) emit(e Event) {
	e.Time = time.Now()
	if e.Rate == 0 {
		e.Rate = int64(s.pace.rate)
	}
	if s.cfg.Events != nil {
		s.cfg.Events(e)
	}
}

func (s *sender) run(ctx context.Context) (*SendResult, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan incoming, 1024)
	strays := make(chan struct{}, 1024)
	go s.readStatus(ctx, in, strays)
	go func() { <-ctx.Done(); s.conn.SetReadDeadline(time.Now()) }()

	s.emit(Event{Kind: "waiting", Total: s.cfg.Size, Message: fmt.Sprintf("session %016x: %s@%d, %d bytes, data group %s", s.session, s.cfg.Image, s.cfg.Version, s.cfg.Size, s.dataDst)})
	if err := s.wait(ctx, in, strays); err != nil {
		return nil, err
	}
	s.startPass(0, s.lay.groups)
	s.ann.state = stateSending
	nextAnnounce := time.Now()
	nextEval := time.Now().Add(time.Second)
	for {
		now := time.Now()
		s.drain(in, strays, now)
		if now.After(nextAnnounce) {
			s.announce()
			nextAnnounce = now.Add(250 * time.Millisecond)
		}
		if now.After(nextEval) {
			s.evaluate(now)
			nextEval = now.Add(time.Second)
		}
		if s.finished() {
			break
		}
		sentOne, err := s.step(ctx, now)
		if err != nil {
			return nil, err
		}
		if !sentOne {
			if err := s.flush(); err != nil {
				return nil, err
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case m := <-in:
				s.handle(m, time.Now())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if err := s.flush(); err != nil {
		return nil, err
	}
	s.ann.state = stateFinished
	for i := 0; i < 3; i++ {
		s.announce()
		time.Sleep(20 * time.Millisecond)
	}
	res := &SendResult{Session: fmt.Sprintf("%016x", s.session), Packets: s.sent, Repairs: s.repair, Passes: s.passes, Stray: s.stray, Took: time.Since(start)}
	if !s.firstPassEnd.IsZero() {
		res.FirstPass = s.firstPassEnd.Sub(start)
	}
	for _, id := range s.order {
		r := s.rxs[id]
		rep := ReceiverReport{Name: r.name, Addr: r.addr.String(), State: r.state, Reason: r.reason, Bytes: int64(r.st.delivered)}
		if r.state == "done" {
			rep.Took = r.doneAt.Sub(start)
		}
		res.Receivers = append(res.Receivers, rep)
	}
	s.emit(Event{Kind: "finish", Message: fmt.Sprintf("%d of %d receivers done; %d packets, %d repairs, %d passes, %d stray", res.Done(), len(res.Receivers), s.sent, s.repair, s.passes, s.stray)})
	return res, nil
}

// wait announces the session until the policy lets it start.
func (s *sender) wait(ctx context.Context, in <-chan incoming, strays <-chan struct{}) error {
	began := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.announce()
		var names []string
		for _, id := range s.order {
			if r := s.rxs[id]; r.active() {
				names = append(names, r.name)
			}
		}
		ok, why, err := s.cfg.Policy.decide(time.Since(began), names)
		if err != nil {
			return fmt.Errorf("multicast session %s@%d: %w", s.cfg.Image, s.cfg.Version, err)
		}
		if ok {
			s.emit(Event{Kind: "start", Message: why})
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-in:
			s.handle(m, time.Now())
		case <-strays:
			s.stray++
		case <-tick.C:
			s.expire(time.Now())
		}
	}
}

func (s *sender) readStatus(ctx context.Context, in chan<- incoming, strays chan<- struct{}) {
	buf := make([]byte, MaxPacket)
	for ctx.Err() == nil {
		n, _, src, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			pause(ctx)
			continue
		}
		ua, _ := src.(*net.UDPAddr)
		h, body, err := parseHeader(buf[:n])
		var st status
		if err == nil && (h.session != s.session || h.typ != typeStatus) {
			err = errPacket
		}
		if err == nil {
			st, err = parseStatus(body)
		}
		if err != nil || ua == nil {
			select {
			case strays <- struct{}{}:
			default:
			}
			continue
		}
		select {
		case in <- incoming{st: st, from: ua.AddrPort()}:
		case <-ctx.Done():
			return
		}
	}
}

func (s *sender) drain(in <-chan incoming, strays <-chan struct{}, now time.Time) {
	for {
		select {
		case m := <-in:
			s.handle(m, now)
		case <-strays:
			s.stray++
		default:
			return
		}
	}
}

func (s *sender) reply(r *rx, verdict byte, reason string) {
	p := (&reply{receiver: r.id, verdict: verdict, reason: reason}).marshal(s.session)
	s.conn.WriteTo(p, nil, net.UDPAddrFromAddrPort(r.addr))
}

// handle takes one status report: registration, progress, NACKs.
func (s *sender) handle(m incoming, now time.Time) {
	st := m.st
	r := s.rxs[st.receiver]
	if r == nil {
		name := st.name
		if name == "" {
			name = m.from.Addr().String()
		}
		// Loss is measured from here on: a late joiner did not lose what
		// was sent before it came.
		r = &rx{id: st.receiver, name: name, addr: m.from, joined: now, lastMove: now, evalSent: s.sent, evalRecv: int64(st.received)}
		s.rxs[st.receiver] = r
		s.order = append(s.order, st.receiver)
		if st.digest != s.ann.digest {
			r.state, r.reason = "refused", fmt.Sprintf("receiver wants manifest %x, session sends %s", st.digest[:6], s.cfg.Digest[:12])
			s.emit(Event{Kind: "refused", Receiver: r.name, Addr: r.addr.String(), Message: r.reason})
		} else {
			s.emit(Event{Kind: "registered", Receiver: r.name, Addr: r.addr.String(), Total: s.cfg.Size,
				Message: fmt.Sprintf("%d receivers", len(s.order))})
		}
		s.ann.receivers = uint16(min(len(s.order), math.MaxUint16))
	}
	r.lastSeen = now
	r.addr = m.from
	switch r.state {
	case "refused":
		s.reply(r, verdictRefused, r.reason)
		return
	case "evicted":
		s.reply(r, verdictEvicted, r.reason)
		return
	case "lost":
		// It came back: take it in again.
		r.state, r.reason = "", ""
		r.evalSent, r.evalRecv = s.sent, int64(st.received)
		r.lastMove = now
	}
	if st.received < r.st.received {
		// A receiver restarted with the same id: rebase the counters.
		r.evalRecv = int64(st.received)
		r.evalSent = s.sent
	}
	// Progress is extracting or receiving: a late joiner collecting
	// ahead of its next group is not stalled.
	if st.delivered != r.lastDelivered || st.received != r.st.received {
		r.lastDelivered, r.lastMove = st.delivered, now
	}
	r.st = st
	r.sentAtStatus = s.sent
	switch st.state {
	case rxDone:
		if r.state == "" {
			r.state, r.doneAt = "done", now
			s.emit(Event{Kind: "done", Receiver: r.name, Addr: r.addr.String(), Bytes: int64(st.delivered), Total: s.cfg.Size, Percent: 100,
				Message: fmt.Sprintf("verified in %s", now.Sub(r.joined).Round(time.Millisecond))})
		}
		s.reply(r, verdictFinal, "done")
		return
	case rxFailed:
		if r.state == "" {
			r.state, r.reason = "failed", "receiver reported a failure"
			s.emit(Event{Kind: "failed", Receiver: r.name, Addr: r.addr.String(), Message: r.reason})
		}
		s.reply(r, verdictFinal, "failed")
		return
	}
	s.reply(r, verdictRegistered, "")
	if !r.active() || !s.sending && s.ann.state == stateWaiting || r.loss > s.cfg.MaxLoss {
		return
	}
	for _, k := range st.nacks {
		s.nack(int(k.Group), int(k.Missing), now)
	}
}

// nack schedules repairs for group g so that a receiver missing
// missing shards can decode it, unless repairs in flight already cover it.
func (s *sender) nack(g, missing int, now time.Time) {
	if g < 0 || g >= s.lay.groups || missing <= 0 {
		return
	}
	missing = min(missing, s.lay.dataShards(g))
	st := s.repairs[g]
	if st == nil {
		st = &repairState{}
		s.repairs[g] = st
	}
	covered := 0
	if now.Before(st.until) {
		covered = st.amount
	}
	if missing <= covered {
		return
	}
	extra := missing - covered
	s.queue = append(s.queue, repairJob{group: g, count: extra})
	queued := 0
	for _, j := range s.queue {
		queued += j.count
	}
	drain := time.Duration(float64(queued*(s.lay.blockSize+60)*8) / s.pace.rate * float64(time.Second))
	st.amount = covered + extra
	st.until = now.Add(drain + 3*DefaultStatusInterval)
}

// evaluate measures each receiver's loss over the last interval, evicts
// those that cannot keep up, drops silent ones, adapts rate and FEC, and
// reports progress.
func (s *sender) evaluate(now time.Time) {
	s.expire(now)
	var losses []float64
	for _, id := range s.order {
		r := s.rxs[id]
		if !r.active() {
			continue
		}
		ds := r.sentAtStatus - r.evalSent
		dr := int64(r.st.received) - r.evalRecv
		if ds >= 50 {
			r.loss = max(0, 1-float64(dr)/float64(ds))
			r.evalSent, r.evalRecv = r.sentAtStatus, int64(r.st.received)
			if r.loss > s.cfg.MaxLoss {
				r.highLoss += time.Second
			} else {
				r.highLoss = 0
			}
			losses = append(losses, r.loss)
		}
		pct := 100 * float64(r.st.delivered) / float64(s.cfg.Size)
		s.emit(Event{Kind: "progress", Receiver: r.name, Addr: r.addr.String(), Bytes: int64(r.st.delivered), Total: s.cfg.Size, Percent: math.Round(pct*10) / 10, Loss: math.Round(r.loss*1000) / 1000})
		switch {
		case r.highLoss >= s.cfg.EvictAfter:
			s.evict(r, fmt.Sprintf("lost %.0f%% of packets for %s (limit %.0f%%): too slow for the session rate", 100*r.loss, r.highLoss, 100*s.cfg.MaxLoss))
		case s.sending && now.Sub(r.lastMove) > s.cfg.StallTimeout:
			s.evict(r, fmt.Sprintf("no progress for %s", now.Sub(r.lastMove).Round(time.Second)))
		}
	}
	if s.cfg.Adaptive {
		if rate := s.rc.adjust(losses); rate != s.pace.rate {
			s.pace.rate = rate
			s.log.Debug("multicast rate", "bitrate", int64(rate))
		}
	}
	s.ann.rate = uint64(s.pace.rate)
	if s.cfg.FEC < 0 {
		worst := 0.0
		for _, l := range losses {
			if l <= s.cfg.MaxLoss {
				worst = max(worst, l)
			}
		}
		p := 0
		if worst > 0.002 {
			p = int(math.Ceil(float64(s.lay.k)*worst*1.5)) + 1
		}
		s.fecP = min(p, s.lay.k/4)
	}
}

func (s *sender) evict(r *rx, reason string) {
	r.state, r.reason = "evicted", reason
	s.emit(Event{Kind: "evicted", Receiver: r.name, Addr: r.addr.String(), Bytes: int64(r.st.delivered), Total: s.cfg.Size, Message: reason})
	for i := 0; i < 3; i++ {
		s.reply(r, verdictEvicted, reason)
	}
}

// expire marks receivers silent for too long as lost.
func (s *sender) expire(now time.Time) {
	for _, id := range s.order {
		r := s.rxs[id]
		if r.active() && now.Sub(r.lastSeen) > s.cfg.ReceiverTimeout {
			r.state, r.reason = "lost", fmt.Sprintf("silent for %s", now.Sub(r.lastSeen).Round(time.Millisecond))
			s.emit(Event{Kind: "lost", Receiver: r.name, Addr: r.addr.String(), Bytes: int64(r.st.delivered), Total: s.cfg.Size, Message: r.reason})
		}
	}
}

// finished: nobody active still needs anything.
func (s *sender) finished() bool {
	for _, r := range s.rxs {
		if r.active() {
			return false
		}
	}
	return true
}

func (s *sender) announce() {
	s.ann.rate = uint64(s.pace.rate)
	p := s.ann.marshal(s.session)
	s.conn.WriteTo(p, nil, s.annDst)
}

func (s *sender) startPass(from, to int) {
	s.sending, s.passFrom, s.passTo = true, from, to
	s.cursor, s.shard, s.curGroup = from, 0, -1
	s.passes++
	s.pass++
	if s.cfg.FEC >= 0 {
		s.fecP = s.cfg.FEC
	}
	s.emit(Event{Kind: "pass", Message: fmt.Sprintf("pass %d over groups %d-%d of %d", s.passes, from, to-1, s.lay.groups)})
}

// step sends at most one packet: a queued repair first (but at most every
// other packet while a pass is under way), else the pass's next shard. It
// also ends and starts passes. It reports whether it sent.
func (s *sender) step(ctx context.Context, now time.Time) (bool, error) {
	repairTurn := len(s.queue) > 0 && (!s.sending || s.sent%2 == 0)
	if repairTurn {
		return true, s.sendRepair(ctx)
	}
	if s.sending {
		return true, s.sendPass(ctx, now)
	}
	if len(s.queue) > 0 {
		return true, s.sendRepair(ctx)
	}
	// Idle between passes: start another when someone needs groups it
	// never saw (late join, window overflow), or made no headway.
	if now.Sub(s.idleSince) < 4*DefaultStatusInterval {
		return false, nil
	}
	from, to := s.lay.groups, 0
	for _, r := range s.rxs {
		if !r.active() || r.st.carouselTo <= r.st.carouselFrom {
			continue
		}
		from, to = min(from, int(r.st.carouselFrom)), max(to, int(r.st.carouselTo))
	}
	if from >= to && now.Sub(s.idleSince) > 2*time.Second {
		// Nobody asked, nobody finished: sweep from the laggard.
		for _, r := range s.rxs {
			if r.active() && now.Sub(r.lastMove) > time.Second {
				from, to = min(from, int(r.st.nextGroup)), s.lay.groups
			}
		}
	}
	if from < to && to <= s.lay.groups {
		s.startPass(from, to)
		return false, nil
	}
	return false, nil
}

// gsoSegs bounds the packets in one GSO send (the kernel's limit is 64
// segments and 64 KiB).
const gsoSegs = 40

func (s *sender) transmit(ctx context.Context, d *dataPacket) error {
	d.pass = s.pass
	p := marshalData(s.buf, s.session, d)
	s.buf = p[:0]
	if err := s.pace.wait(ctx, len(p)+28); err != nil {
		return err
	}
	s.sent++
	if !s.gso {
		return s.write(p)
	}
	if s.batchN > 0 && len(p) != len(s.batch)/s.batchN {
		if err := s.flush(); err != nil {
			return err
		}
	}
	s.batch = append(s.batch, p...)
	s.batchN++
	if s.batchN >= gsoSegs || len(s.batch)+len(p) > 65000 {
		return s.flush()
	}
	return nil
}

// write sends one datagram to the data group, riding out full queues.
func (s *sender) write(p []byte) error {
	for tries := 0; ; tries++ {
		_, err := s.conn.WriteTo(p, nil, s.dataDst)
		if err == nil {
			return nil
		}
		if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		if tries > 3 {
			return fmt.Errorf("multicast send to %s: %w", s.dataDst, err)
		}
	}
}

// flush sends the batched packets as one GSO datagram train; if the
// kernel refuses GSO, it sends them one by one and stops batching.
func (s *sender) flush() error {
	n := s.batchN
	if n == 0 {
		return nil
	}
	b := s.batch
	s.batch, s.batchN = s.batch[:0], 0
	seg := len(b) / n
	if n == 1 {
		return s.write(b)
	}
	oob := udpSegment(seg)
	for {
		_, _, err := s.udp.WriteMsgUDP(b, oob, s.dataDst)
		if err == nil {
			return nil
		}
		if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		s.gso = false
		s.log.Debug("UDP GSO refused; sending packets one by one", "err", err)
		for i := 0; i < n; i++ {
			if err := s.write(b[i*seg : (i+1)*seg]); err != nil {
				return err
			}
		}
		return nil
	}
}

// readGroup loads group g's data shards (the last padded with zeros).
func (s *sender) readGroup(g int) ([][]byte, error) {
	k := s.lay.dataShards(g)
	buf := make([]byte, k*s.lay.blockSize)
	n, err := s.cfg.Stream.ReadAt(buf[:s.lay.groupBytes(g)], s.lay.offset(g, 0))
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == s.lay.groupBytes(g)) {
		return nil, fmt.Errorf("read stream group %d: %w", g, err)
	}
	shards := make([][]byte, k)
	for i := range shards {
		shards[i] = buf[i*s.lay.blockSize : (i+1)*s.lay.blockSize]
	}
	return shards, nil
}

// parityFor returns parity shards 0..n-1 of group g, computing and
// caching them as needed.
func (s *sender) parityFor(g, n int, data [][]byte) ([][]byte, error) {
	if have := s.cache[g]; len(have) >= n {
		return have[:n], nil
	}
	var err error
	if data == nil {
		if data, err = s.readGroup(g); err != nil {
			return nil, err
		}
	}
	par, err := s.coder.parity(data, n)
	if err != nil {
		return nil, err
	}
	if _, ok := s.cache[g]; !ok {
		s.cacheOrder = append(s.cacheOrder, g)
		if len(s.cacheOrder) > 256 {
			delete(s.cache, s.cacheOrder[0])
			s.cacheOrder = s.cacheOrder[1:]
		}
	}
	s.cache[g] = par
	return par, nil
}

func (s *sender) sendPass(ctx context.Context, now time.Time) error {
	g := s.cursor
	if s.curGroup != g {
		data, err := s.readGroup(g)
		if err != nil {
			return err
		}
		s.curGroup, s.curData, s.curParity = g, data, nil
		p := min(s.fecP, maxShards-len(data))
		if p > 0 {
			if s.curParity, err = s.parityFor(g, p, data); err != nil {
				return err
			}
		}
		s.nextParity[g] = max(s.nextParity[g], p)
	}
	k := len(s.curData)
	var d dataPacket
	if s.shard < k {
		d = dataPacket{group: uint32(g), shard: uint16(s.shard), payload: s.curData[s.shard]}
	} else {
		d = dataPacket{group: uint32(g), shard: uint16(s.shard), payload: s.curParity[s.shard-k]}
	}
	if err := s.transmit(ctx, &d); err != nil {
		return err
	}
	s.shard++
	if s.shard >= k+len(s.curParity) {
		s.cursor++
		s.shard = 0
		if s.cursor >= s.passTo {
			s.sending = false
			s.idleSince = now
			if s.firstPassEnd.IsZero() {
				s.firstPassEnd = time.Now()
			}
			s.curData, s.curParity, s.curGroup = nil, nil, -1
		}
	}
	return nil
}

// sendRepair sends the next shard of the first queued repair: a parity
// shard not sent before for that group, or, once parity runs out, data
// shards in turn.
func (s *sender) sendRepair(ctx context.Context) error {
	job := &s.queue[0]
	g := job.group
	k := s.lay.dataShards(g)
	j := s.nextParity[g]
	s.nextParity[g] = j + 1
	var d dataPacket
	if k+j < maxShards {
		par, err := s.parityFor(g, max(j+1, min(j+8, maxShards-k)), nil)
		if err != nil {
			return err
		}
		d = dataPacket{group: uint32(g), shard: uint16(k + j), payload: par[j], repair: true}
	} else {
		data, err := s.readGroup(g)
		if err != nil {
			return err
		}
		i := (k + j) % k
		d = dataPacket{group: uint32(g), shard: uint16(i), payload: data[i], repair: true}
	}
	job.count--
	if job.count <= 0 {
		s.queue = s.queue[1:]
	}
	s.repair++
	return s.transmit(ctx, &d)
}
