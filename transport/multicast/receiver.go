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
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/goldcast/goldcast/images/stream"
)

// Errors a receiver returns; test with errors.Is.
var (
	// ErrEvicted: the sender cut this receiver loose (too slow, or no
	// progress), or finished the session without it. The caller should
	// fetch the version by unicast; the target has been emptied again.
	ErrEvicted = errors.New("evicted from the multicast session")
	// ErrRefused: the sender refused this receiver (version mismatch).
	ErrRefused = errors.New("refused by the multicast sender")
	// ErrNoSession: no matching session was announced in time.
	ErrNoSession = errors.New("no matching multicast session")
	// ErrSenderGone: the sender went silent.
	ErrSenderGone = errors.New("multicast sender gone")
)

// DefaultWindow is how much of the stream a receiver holds ahead of what
// it has extracted.
const DefaultWindow = 64 << 20

// ReceiverConfig describes how to join a session and where to put it.
type ReceiverConfig struct {
	// Interface is the network interface to listen on (required).
	Interface string
	// Target is the empty (or absent) directory to extract into.
	Target string
	// Name identifies this receiver to the sender (default: host name).
	Name string
	// Image, Version (0: any) and Digest (hex manifest sha256) choose
	// the session; empty ones match anything. A session for another
	// version is refused.
	Image   string
	Version int
	Digest  string
	// AnnounceAddr overrides AnnounceGroup:AnnouncePort.
	AnnounceAddr string
	// Window bounds the stream bytes held ahead of extraction
	// (DefaultWindow).
	Window int64
	// StatusInterval is how often to report to the sender
	// (DefaultStatusInterval).
	StatusInterval time.Duration
	// JoinTimeout bounds the wait for a matching announcement (0: wait
	// for ever); SenderTimeout the silence tolerated from a joined
	// sender (default 10 s).
	JoinTimeout   time.Duration
	SenderTimeout time.Duration
	// Extract passes through to stream.Extract (Verify, Materialize,
	// Progress, Logger); the digest check against the announcement is
	// added to Verify.
	Extract stream.ExtractOptions
	// Fallback, when set, is called after an eviction or when the sender
	// went silent (the target has been emptied) to fetch the version
	// another way, e.g. by HTTP from the image server; its error becomes
	// Receive's.
	Fallback func(ctx context.Context, image string, version int, reason string) error
	// Log receives diagnostics; nil discards.
	Log *slog.Logger
}

// Result reports a finished receive.
type Result struct {
	Session string `json:"session"`
	Image   string `json:"image"`
	Version int    `json:"version"`
	Digest  string `json:"manifest_digest"`
	Bytes   int64  `json:"bytes"`
	// Packets counts shards accepted; Rebuilt groups repaired by FEC;
	// Stray packets ignored (malformed, corrupt, another session's).
	Packets int64         `json:"packets"`
	Rebuilt int64         `json:"rebuilt_groups"`
	Stray   int64         `json:"stray"`
	Took    time.Duration `json:"took_ns"`
	// FellBack is set when the version came by Fallback after eviction;
	// Evicted then holds the sender's reason.
	FellBack bool   `json:"fell_back,omitempty"`
	Evicted  string `json:"evicted,omitempty"`
	// Extract is what stream.Extract verified (nil after a fallback).
	Extract *stream.Result `json:"-"`
}

// session is what a receiver learned from the chosen announcement.
type session struct {
	id     uint64
	ann    announce
	sender netip.AddrPort
}

// Receive waits for a matching session on the interface, joins it,
// extracts the stream into cfg.Target as it arrives and verifies it.
func Receive(ctx context.Context, cfg ReceiverConfig) (*Result, error) {
	if cfg.Interface == "" || cfg.Target == "" {
		return nil, errors.New("multicast receive: an interface and a target are required")
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.SenderTimeout == 0 {
		cfg.SenderTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("multicast interface %q: %w", cfg.Interface, err)
	}
	annAddr := cfg.AnnounceAddr
	if annAddr == "" {
		annAddr = fmt.Sprintf("%s:%d", AnnounceGroup, AnnouncePort)
	}
	annConn, err := joinGroup(ifi, annAddr)
	if err != nil {
		return nil, err
	}
	defer annConn.Close()
	start := time.Now()
	var stray atomic.Int64
	sess, err := findSession(ctx, annConn, cfg, &stray)
	if err != nil {
		return nil, err
	}
	res, err := receiveSession(ctx, cfg, ifi, annConn, sess, &stray)
	if res != nil {
		res.Took = time.Since(start)
	}
	if (errors.Is(err, ErrEvicted) || errors.Is(err, ErrSenderGone)) && cfg.Fallback != nil {
		reason := err.Error()
		cfg.Log.Warn("multicast failed; falling back", "reason", reason)
		if ferr := cfg.Fallback(ctx, sess.ann.image, int(sess.ann.version), reason); ferr != nil {
			return res, fmt.Errorf("%w; fallback: %w", err, ferr)
		}
		res.FellBack, res.Evicted, res.Took = true, reason, time.Since(start)
		return res, nil
	}
	return res, err
}

// joinGroup listens on a multicast group:port on one interface.
func joinGroup(ifi *net.Interface, addr string) (*ipv4.PacketConn, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil || !ua.IP.IsMulticast() {
		return nil, fmt.Errorf("multicast address %q: not an IPv4 group:port", addr)
	}
	c, err := net.ListenPacket("udp4", ua.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", ua, err)
	}
	if uc, ok := c.(*net.UDPConn); ok {
		bigReadBuffer(uc, 16<<20)
	}
	p := ipv4.NewPacketConn(c)
	if err := p.JoinGroup(ifi, &net.UDPAddr{IP: ua.IP}); err != nil {
		p.Close()
		return nil, fmt.Errorf("join %s on %s: %w", ua.IP, ifi.Name, err)
	}
	return p, nil
}

// bigReadBuffer asks for a large socket receive buffer, beyond
// net.core.rmem_max when privileged, so a receiver descheduled for a
// moment does not lose a burst.
func bigReadBuffer(uc *net.UDPConn, n int) {
	if rc, err := uc.SyscallConn(); err == nil {
		var serr error
		rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n)
		})
		if serr == nil {
			return
		}
	}
	uc.SetReadBuffer(n)
}

// findSession waits for an announcement that matches the config.
func findSession(ctx context.Context, c *ipv4.PacketConn, cfg ReceiverConfig, stray *atomic.Int64) (session, error) {
	var want [32]byte
	if cfg.Digest != "" {
		d, err := hex.DecodeString(cfg.Digest)
		if err != nil || len(d) != 32 {
			return session{}, fmt.Errorf("manifest digest %q is not a hex sha256", cfg.Digest)
		}
		want = [32]byte(d)
	}
	var deadline time.Time
	if cfg.JoinTimeout > 0 {
		deadline = time.Now().Add(cfg.JoinTimeout)
	}
	seen := map[uint64]bool{}
	var others []string
	buf := make([]byte, MaxPacket)
	for {
		if err := ctx.Err(); err != nil {
			return session{}, err
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			msg := fmt.Sprintf("after %s on %s", cfg.JoinTimeout, cfg.Interface)
			if len(others) > 0 {
				msg += fmt.Sprintf(" (refused sessions for %v)", others)
			}
			return session{}, fmt.Errorf("%w for %s: %s", ErrNoSession, describeWant(cfg), msg)
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, src, err := c.ReadFrom(buf)
		if err != nil {
			continue
		}
		h, body, err := parseHeader(buf[:n])
		if err != nil || h.typ != typeAnnounce {
			stray.Add(1)
			continue
		}
		a, err := parseAnnounce(body)
		if err != nil {
			stray.Add(1)
			continue
		}
		ua, _ := src.(*net.UDPAddr)
		if ua == nil || a.state == stateFinished {
			continue
		}
		ref := fmt.Sprintf("%s@%d", a.image, a.version)
		switch {
		case cfg.Image != "" && a.image != cfg.Image,
			cfg.Version != 0 && int(a.version) != cfg.Version,
			cfg.Digest != "" && a.digest != want:
			if !seen[h.session] {
				seen[h.session] = true
				others = append(others, ref)
				cfg.Log.Info("refusing multicast session for another version", "session", fmt.Sprintf("%016x", h.session), "offers", ref, "want", describeWant(cfg))
			}
			stray.Add(1)
			continue
		}
		cfg.Log.Info("joining multicast session", "session", fmt.Sprintf("%016x", h.session), "image", ref, "bytes", a.streamSize,
			"group", a.dataGroup, "sender", ua.AddrPort())
		return session{id: h.session, ann: a, sender: ua.AddrPort()}, nil
	}
}

func describeWant(cfg ReceiverConfig) string {
	w := cfg.Image
	if w == "" {
		w = "any image"
	}
	if cfg.Version != 0 {
		w += fmt.Sprintf("@%d", cfg.Version)
	}
	if cfg.Digest != "" {
		w += " with manifest " + cfg.Digest
	}
	return w
}

// rxShared is the state the receiver's goroutines share.
type rxShared struct {
	mu       sync.Mutex
	asm      *assembler
	lastHear time.Time
	state    byte
	done     chan struct{} // closed when the sender acknowledged a final state
	doneOnce sync.Once
	kick     chan struct{} // report now (the state changed)
}

func receiveSession(ctx context.Context, cfg ReceiverConfig, ifi *net.Interface, annConn *ipv4.PacketConn, sess session, stray *atomic.Int64) (*Result, error) {
	a := sess.ann
	lay, err := newLayout(int64(a.streamSize), int(a.blockSize), int(a.groupSize))
	if err != nil {
		return nil, fmt.Errorf("multicast session %016x: %w", sess.id, err)
	}
	dataConn, err := joinGroup(ifi, fmt.Sprintf("%s:%d", a.dataGroup, a.dataPort))
	if err != nil {
		return nil, err
	}
	defer dataConn.Close()
	ctlUDP, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return nil, fmt.Errorf("multicast status socket: %w", err)
	}
	defer ctlUDP.Close()

	var idb [8]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint64(idb[:])
	sh := &rxShared{asm: newAssembler(lay, cfg.Window), lastHear: time.Now(), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	res := &Result{Session: fmt.Sprintf("%016x", sess.id), Image: a.image, Version: int(a.version), Digest: hex.EncodeToString(a.digest[:])}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	unblock := func(c net.PacketConn) {
		<-ctx.Done()
		c.SetReadDeadline(time.Now())
	}
	annConn.SetReadDeadline(time.Time{}) // findSession left one
	go unblock(dataConn.PacketConn)
	go unblock(annConn.PacketConn)
	go unblock(ctlUDP)

	// Released groups go to the extractor in order, handed over as they
	// are (the assembler never reuses a released group's buffer).
	out := make(chan []byte, 64)
	var delivered atomic.Int64
	pr := &groupReader{ctx: ctx, groups: out, delivered: &delivered}

	wg.Add(1)
	go func() { // data
		defer wg.Done()
		readData(ctx, dataConn, sess, sh, out, stray)
	}()
	wg.Add(1)
	go func() { // announcements: sender alive, or finished without us
		defer wg.Done()
		buf := make([]byte, MaxPacket)
		for ctx.Err() == nil {
			n, _, _, err := annConn.ReadFrom(buf)
			if err != nil {
				pause(ctx)
				continue
			}
			h, body, err := parseHeader(buf[:n])
			if err != nil || h.session != sess.id || h.typ != typeAnnounce {
				continue
			}
			an, err := parseAnnounce(body)
			if err != nil {
				continue
			}
			sh.mu.Lock()
			sh.lastHear = time.Now()
			st := sh.state
			sh.mu.Unlock()
			if an.state == stateFinished && st == rxReceiving {
				// It gave up on us (its eviction notice may have been
				// lost on the very link that made us slow).
				cancel(fmt.Errorf("%w: the sender finished the session without this receiver", ErrEvicted))
			}
		}
	}()
	wg.Add(1)
	go func() { // replies
		defer wg.Done()
		buf := make([]byte, 512)
		for ctx.Err() == nil {
			n, _, err := ctlUDP.ReadFrom(buf)
			if err != nil {
				pause(ctx)
				continue
			}
			h, body, err := parseHeader(buf[:n])
			if err != nil || h.session != sess.id || h.typ != typeReply {
				stray.Add(1)
				continue
			}
			r, err := parseReply(body)
			if err != nil || r.receiver != id {
				stray.Add(1)
				continue
			}
			sh.mu.Lock()
			sh.lastHear = time.Now()
			sh.mu.Unlock()
			switch r.verdict {
			case verdictEvicted:
				cancel(fmt.Errorf("%w: %s", ErrEvicted, r.reason))
			case verdictRefused:
				cancel(fmt.Errorf("%w: %s", ErrRefused, r.reason))
			case verdictFinal:
				sh.doneOnce.Do(func() { close(sh.done) })
			}
		}
	}()
	wg.Add(1)
	go func() { // status reports
		defer wg.Done()
		tick := time.NewTicker(cfg.StatusInterval)
		defer tick.Stop()
		st := status{receiver: id, digest: a.digest, name: cfg.Name}
		dst := net.UDPAddrFromAddrPort(sess.sender)
		for {
			now := time.Now()
			sh.mu.Lock()
			sh.asm.idle(now, 3*cfg.StatusInterval)
			sh.asm.report(&st)
			st.state = sh.state
			silent := now.Sub(sh.lastHear)
			sh.mu.Unlock()
			st.delivered = uint64(delivered.Load())
			ctlUDP.WriteTo(st.marshal(sess.id), dst)
			if silent > cfg.SenderTimeout && st.state == rxReceiving {
				cancel(fmt.Errorf("%w: nothing heard for %s", ErrSenderGone, silent.Round(time.Second)))
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			case <-sh.kick:
			}
		}
	}()

	opts := cfg.Extract
	userVerify := opts.Verify
	opts.Verify = func(digest string, sig []byte) error {
		if digest != res.Digest {
			return fmt.Errorf("%w: the stream's manifest is %s, the session announced %s", stream.ErrMismatch, digest, res.Digest)
		}
		if userVerify != nil {
			return userVerify(digest, sig)
		}
		return nil
	}
	xr, xerr := stream.Extract(ctx, pr, cfg.Target, opts)
	sh.mu.Lock()
	res.Packets, res.Rebuilt = sh.asm.received, sh.asm.rebuilt
	if xerr == nil {
		sh.state = rxDone
	} else {
		sh.state = rxFailed
	}
	sh.mu.Unlock()
	select {
	case sh.kick <- struct{}{}:
	default:
	}
	res.Bytes = delivered.Load()
	res.Stray = stray.Load()
	if cause := context.Cause(ctx); cause != nil && xerr != nil {
		// Evicted, refused, sender gone or cancelled: say that, not
		// what the cut-off stream looked like.
		return res, fmt.Errorf("multicast receive of %s@%d: %w", a.image, a.version, cause)
	}
	// Tell the sender the outcome until it acknowledges (or briefly).
	select {
	case <-sh.done:
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	if xerr != nil {
		return res, fmt.Errorf("multicast receive of %s@%d: %w", a.image, a.version, xerr)
	}
	res.Extract = xr
	return res, nil
}

// pause slows a read loop down after an error, so a socket that keeps
// failing cannot spin a CPU.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
}

// readData receives shards in batches, feeds the assembler and passes
// complete groups on in order.
func readData(ctx context.Context, c *ipv4.PacketConn, sess session, sh *rxShared, out chan<- []byte, stray *atomic.Int64) {
	const (
		batch    = 64
		coalesce = time.Millisecond
	)
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, MaxPacket)}
	}
	closed := false
	for ctx.Err() == nil {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.ReadBatch(ms, 0)
		if err != nil && n <= 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
			pause(ctx)
		}
		if n > 0 && n < batch/4 {
			// Let packets gather in the socket buffer (16 MiB) rather
			// than waking for every one or two: far fewer system calls
			// and wake-ups for the same data.
			time.Sleep(coalesce)
		}
		now := time.Now()
		sh.mu.Lock()
		for i := 0; i < n; i++ {
			p := ms[i].Buffers[0][:ms[i].N]
			h, body, err := parseHeader(p)
			if err != nil || h.session != sess.id || h.typ != typeData {
				stray.Add(1)
				continue
			}
			d, err := parseData(h, body)
			if err == nil {
				err = sh.asm.add(d, now)
			}
			if err != nil {
				stray.Add(1)
				continue
			}
			sh.lastHear = now
		}
		sh.mu.Unlock()
		// Hand complete groups on while the extractor keeps up; when it
		// does not, they wait in the window (the reader never blocks).
		if !closed {
			sh.mu.Lock()
			for len(out) < cap(out) {
				b, ok := sh.asm.release()
				if !ok {
					break
				}
				out <- b
			}
			if sh.asm.finished() {
				close(out)
				closed = true
			}
			sh.mu.Unlock()
		}
	}
}

// groupReader reads the released groups in order.
type groupReader struct {
	ctx       context.Context
	groups    <-chan []byte
	cur       []byte
	delivered *atomic.Int64
}

func (r *groupReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		select {
		case b, ok := <-r.groups:
			if !ok {
				return 0, io.EOF
			}
			r.cur = b
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.delivered.Add(int64(n))
	return n, nil
}
