package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// EventKind names what happened in an Event.
type EventKind string

// Event kinds.
const (
	// EventDiscover: a client's DHCPDISCOVER arrived.
	EventDiscover EventKind = "discover"
	// EventOffer: the server sent a DHCPOFFER.
	EventOffer EventKind = "offer"
	// EventAck: the server sent a DHCPACK (a lease, a renewal, or boot
	// information).
	EventAck EventKind = "ack"
	// EventNak: the server refused a DHCPREQUEST.
	EventNak EventKind = "nak"
	// EventRelease: a client released its lease.
	EventRelease EventKind = "release"
	// EventDecline: a client found its address in use and declined it.
	EventDecline EventKind = "decline"
)

// Event reports one step of a client's exchange to Deps.OnEvent.
type Event struct {
	// MAC is the client's hardware address.
	MAC net.HardwareAddr
	// IP is the address concerned; zero when there is none (a discover,
	// a proxy-mode answer).
	IP netip.Addr
	// Kind is what happened.
	Kind EventKind
	// Arch is the client's architecture (ArchUnknown when not told).
	Arch Arch
	// Hostname is the reserved host name, else the one the client sent.
	Hostname string
}

// Deps are a Server's collaborators.
type Deps struct {
	// Leases keeps full mode's leases; required in full mode.
	Leases LeaseStore
	// Reservations maps MAC addresses to fixed addresses; nil means none.
	Reservations Reservations
	// Logger receives the server's log; nil means slog.Default().
	Logger *slog.Logger
	// OnEvent, if set, is called for each Event, in order. Handle calls
	// it before it returns, from the calling goroutine; while Serve runs,
	// the events of the packets it answers are queued and delivered by
	// one goroutine, so a slow OnEvent never delays an answer. Should the
	// queue fill up (eventQueueSize events behind), further events are
	// dropped, counted in Stats.EventsDropped and logged. It must not
	// call Handle.
	OnEvent func(Event)
	// OnEvents, if set, is used instead of OnEvent and receives events in
	// batches: Handle passes each event alone, Serve all those queued at
	// that moment (up to eventBatch), in order. A consumer that stores
	// events can then store a batch with one transaction, and keep up
	// with a flood of requests where one transaction per event cannot.
	// The slice is reused once OnEvents returns.
	OnEvents func([]Event)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stats counts what a Server did with the packets it received.
type Stats struct {
	// Received counts packets read (or passed to Handle).
	Received uint64
	// Malformed counts packets that did not parse or were not sane
	// DHCPv4 client messages; they are dropped.
	Malformed uint64
	// Ignored counts sane packets that needed no answer or were not for
	// this server.
	Ignored uint64
	// Replies counts answers produced.
	Replies uint64
	// Errors counts packets that could not be answered because of a
	// failure (a lease store error, an exhausted pool, a send error).
	Errors uint64
	// EventsDropped counts events Serve could not queue for Deps.OnEvent
	// because it had fallen too far behind.
	EventsDropped uint64
}

// counters are a Server's Stats, updated atomically.
type counters struct {
	received, malformed, ignored, replies, errors, eventsDropped atomic.Uint64
}

// offer is an address offered to a client and held for it for a while.
type offer struct {
	ip    netip.Addr
	until time.Time
}

// offerHold is how long an offered address is kept for the client it was
// offered to.
const offerHold = time.Minute

// Server is a DHCPv4 server for network booting. Create it with New.
type Server struct {
	cfg    validated
	leases LeaseStore
	res    Reservations
	log    *slog.Logger
	events func([]Event)
	now    func() time.Time

	// mu serialises full-mode address decisions and guards pool. It is
	// never held while the lease store writes: a lease enters the pool
	// before it is written, so concurrent requests see the address taken,
	// and leaves it again if the write fails.
	mu   sync.Mutex
	pool *pool

	// queue, while Serve runs, carries events to OnEvent(s).
	queue atomic.Pointer[eventQueue]

	stats counters
}

// eventQueueSize is how many events Serve holds for a slow Deps.OnEvent
// before it drops them.
const eventQueueSize = 4096

// eventQueue hands events from the goroutines answering packets to the
// one calling Deps.OnEvent.
type eventQueue struct {
	ch chan Event
}

// New checks cfg and returns a Server; it opens no socket.
func New(cfg Config, deps Deps) (*Server, error) {
	v, err := validate(cfg)
	if err != nil {
		return nil, fmt.Errorf("new dhcp server: %w", err)
	}
	if v.Mode == ModeFull && deps.Leases == nil {
		return nil, errors.New("new dhcp server: full mode needs a lease store")
	}
	s := &Server{
		cfg:    v,
		leases: deps.Leases,
		res:    deps.Reservations,
		log:    deps.Logger,
		events: deps.OnEvents,
		now:    deps.Now,
	}
	if s.events == nil && deps.OnEvent != nil {
		one := deps.OnEvent
		s.events = func(evs []Event) {
			for _, ev := range evs {
				one(ev)
			}
		}
	}
	if v.Mode == ModeFull {
		all, err := deps.Leases.All()
		if err != nil {
			return nil, fmt.Errorf("new dhcp server: read leases: %w", err)
		}
		s.pool = newPool(v.Range.First, all)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "dhcp", "mode", string(v.Mode))
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Stats returns the server's counters so far.
func (s *Server) Stats() Stats {
	return Stats{
		Received:  s.stats.received.Load(),
		Malformed: s.stats.malformed.Load(),
		Ignored:   s.stats.ignored.Load(),
		Replies:   s.stats.replies.Load(),
		Errors:    s.stats.errors.Load(),

		EventsDropped: s.stats.eventsDropped.Load(),
	}
}

// Serve answers DHCP on UDP port 67 (and, in proxy mode, the PXE port
// 4011) of Config.Interface until ctx ends, then returns nil. In off mode
// it returns nil at once. It returns an error when a socket cannot be
// opened, for instance because another DHCP server holds the port on the
// same interface, or keeps failing to read.
func (s *Server) Serve(ctx context.Context) error {
	if s.cfg.Mode == ModeOff {
		s.log.InfoContext(ctx, "dhcp off")
		return nil
	}
	ports := []int{ServerPort}
	if s.cfg.Mode == ModeProxy {
		ports = append(ports, PXEPort)
	}
	conns := make([]net.PacketConn, 0, len(ports))
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for _, port := range ports {
		// A proxy shares port 67 with the site's DHCP server when both
		// run on one host (dnsmasq sets SO_REUSEADDR too): broadcasts
		// reach both sockets. Full mode never shares it.
		c, err := listen(ctx, s.cfg.Interface, port, s.cfg.Mode == ModeProxy && port == ServerPort)
		if err != nil {
			closeAll()
			return err
		}
		conns = append(conns, c)
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	defer closeAll()
	if s.events != nil {
		q := &eventQueue{ch: make(chan Event, eventQueueSize)}
		done := make(chan struct{})
		delivered := make(chan struct{})
		go s.deliver(q, done, delivered)
		s.queue.Store(q)
		defer func() {
			s.queue.Store(nil)
			close(done)
			<-delivered
		}()
	}
	s.log.InfoContext(ctx, "dhcp serving", "interface", s.cfg.Interface, "server_ip", s.cfg.ServerIP, "ports", ports)

	errs := make(chan error, len(conns))
	for i, c := range conns {
		go func() { errs <- s.serveConn(ctx, c, ports[i] == PXEPort) }()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
			closeAll()
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return first
}

// listen opens a broadcast-capable UDP socket on port, bound to iface
// when it is set. Unless shared is true it sets no SO_REUSEADDR, so a
// port another DHCP server holds on the same interface is an error rather
// than a silent split of the traffic; shared sets it, for a proxy beside
// a DHCP server on the same host (each sees every broadcast request).
func listen(ctx context.Context, iface string, port int, shared bool) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("set SO_BROADCAST: %w", serr)
				return
			}
			if shared {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
					serr = fmt.Errorf("set SO_REUSEADDR: %w", serr)
					return
				}
			}
			if iface != "" {
				if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface); serr != nil {
					serr = fmt.Errorf("bind to interface %s: %w", iface, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen for dhcp on %s port %d: %w", ifaceName(iface), port, err)
	}
	return c, nil
}

// ifaceName names iface in messages.
func ifaceName(iface string) string {
	if iface == "" {
		return "all interfaces"
	}
	return "interface " + iface
}

// maxPacket bounds a received packet; DHCP messages are far smaller.
const maxPacket = 8192

// A socket whose reads fail maxReadFailures times in a row, readRetryDelay
// apart, is given up on and Serve returns the error.
const (
	maxReadFailures = 50
	readRetryDelay  = 100 * time.Millisecond
)

// maxInFlight bounds the packets one socket handles at once. Requests
// wait for their lease to reach the disk, and a lease store writes the
// leases of all waiting requests with one flush, so concurrency is what
// makes durable leases fast: when a flush is slow (a busy disk can take
// 100 ms), the next one carries everything that arrived meanwhile.
const maxInFlight = 2048

// serveConn reads packets on c until it is closed and answers each on
// its own goroutine, waiting for them all before it returns. pxe is set
// for the port 4011 socket, whose answers go back to the sender.
func (s *Server) serveConn(ctx context.Context, c net.PacketConn, pxe bool) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	buf := make([]byte, maxPacket)
	failures := 0
	for {
		n, src, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if failures++; failures >= maxReadFailures {
				return fmt.Errorf("read dhcp packets on %v: %w", c.LocalAddr(), err)
			}
			s.log.WarnContext(ctx, "dhcp read failed", "local", c.LocalAddr(), "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(readRetryDelay):
			}
			continue
		}
		failures = 0
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		from := ua.AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		pkt := slices.Clone(buf[:n])
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.answer(ctx, c, pkt, from, pxe)
		})
	}
}

// answer handles one packet and sends the reply, if any.
func (s *Server) answer(ctx context.Context, c net.PacketConn, pkt []byte, from netip.AddrPort, pxe bool) {
	resp, req := s.handleBytes(ctx, pkt, from)
	if resp == nil {
		return
	}
	dst := replyAddr(req, resp, from, pxe)
	out := resp.ToBytes()
	if limit := maxReply(req); len(out) > limit {
		s.log.WarnContext(ctx, "dhcp reply larger than the client accepts; trim Config.Options", "mac", req.ClientHWAddr.String(), "size", len(out), "limit", limit)
	}
	if _, err := c.WriteTo(out, net.UDPAddrFromAddrPort(dst)); err != nil {
		s.stats.errors.Add(1)
		s.log.WarnContext(ctx, "dhcp send failed", "to", dst, "type", resp.MessageType().String(), "mac", req.ClientHWAddr.String(), "err", err)
		return
	}
	s.log.DebugContext(ctx, "dhcp sent", "to", dst, "type", resp.MessageType().String(), "mac", req.ClientHWAddr.String())
}

// eventBatch bounds the events handed to Deps.OnEvents at once.
const eventBatch = 256

// deliver hands the events queued on q to Deps.OnEvent(s), a batch at a
// time, until done is closed, then those still queued, and closes
// delivered.
func (s *Server) deliver(q *eventQueue, done <-chan struct{}, delivered chan<- struct{}) {
	defer close(delivered)
	batch := make([]Event, 0, eventBatch)
	// more adds the events queued now to batch, up to eventBatch.
	more := func() {
		for len(batch) < eventBatch {
			select {
			case ev := <-q.ch:
				batch = append(batch, ev)
			default:
				return
			}
		}
	}
	for {
		select {
		case ev := <-q.ch:
			batch = append(batch[:0], ev)
			more()
			s.events(batch)
		case <-done:
			for {
				batch = batch[:0]
				if more(); len(batch) == 0 {
					return
				}
				s.events(batch)
			}
		}
	}
}

// handleBytes parses one packet and handles it, never panicking: a panic
// is logged and counted as an error.
func (s *Server) handleBytes(ctx context.Context, b []byte, from netip.AddrPort) (resp, req *dhcpv4.DHCPv4) {
	defer func() {
		if r := recover(); r != nil {
			s.stats.errors.Add(1)
			s.log.ErrorContext(ctx, "dhcp handler panicked", "from", from, "panic", r, "stack", string(debug.Stack()))
			resp = nil
		}
	}()
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.stats.received.Add(1)
		s.stats.malformed.Add(1)
		s.log.DebugContext(ctx, "dhcp malformed packet", "from", from, "err", err)
		return nil, nil
	}
	resp, err = s.Handle(req, from)
	switch {
	case errors.Is(err, ErrMalformed):
		s.log.DebugContext(ctx, "dhcp malformed packet", "from", from, "err", err)
	case err != nil:
		s.log.WarnContext(ctx, "dhcp request not answered", "from", from, "mac", req.ClientHWAddr.String(), "err", err)
	}
	return resp, req
}

// maxReply is the largest DHCP message req's sender accepts: its option
// 57 if larger than the 576-byte IP datagram every host must accept,
// less the IP and UDP headers.
func maxReply(req *dhcpv4.DHCPv4) int {
	limit := dhcpv4.MaxMessageSize
	if n, err := req.MaxMessageSize(); err == nil && int(n) > limit {
		limit = int(n)
	}
	return limit - 28
}

// replyAddr is where a reply to req goes (RFC 2131 section 4.1): back to
// the sender on the PXE port; to the relay when relayed; to the client's
// address when it has one, except for a NAK; broadcast otherwise.
func replyAddr(req, resp *dhcpv4.DHCPv4, from netip.AddrPort, pxe bool) netip.AddrPort {
	if pxe {
		return from
	}
	if gi := addrOf(req.GatewayIPAddr); gi.IsValid() {
		return netip.AddrPortFrom(gi, ServerPort)
	}
	if ci := addrOf(req.ClientIPAddr); ci.IsValid() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return netip.AddrPortFrom(ci, ClientPort)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
}
