// Package tftp is a read-only TFTP server (RFC 1350) for network booting:
// a PXE ROM or UEFI firmware, told by DHCP where to look, fetches its boot
// loader (an iPXE binary, say) from the boot directory this server offers.
// It uses github.com/pin/tftp/v3 for the protocol and adds what a boot
// server needs around it:
//
//   - Read-only. A write request is answered with an error packet and
//     reported as [ErrWriteRefused]; nothing is created.
//   - Files come from the boot directory ([Config.Root]) only. A requested
//     name that is empty, absolute ("/etc/passwd") or has a ".." component
//     ("../x", "a/../../x", even "a/../b") is refused before the file
//     system is touched, as is one that is not valid UTF-8 (boot file
//     names are ASCII); "." components and repeated slashes are dropped.
//     The remaining path is opened through an [os.Root], so a symbolic link
//     inside the boot directory is followed only while it stays inside:
//     a link that leads out (an absolute link, or a relative one climbing
//     above the root) is refused, as are directories, devices and pipes.
//     Every refusal is logged with its reason and reported as
//     [ErrPathRefused] (or [ErrNotRegular]).
//   - Backslashes are path separators: Windows boot loaders (wdsnbp.com,
//     bootmgr) ask for "boot\x64\bootmgr.efi", which is served as
//     "boot/x64/bootmgr.efi". A name starting with a backslash is
//     absolute, and refused like one starting with a slash. The price: a
//     file whose name contains a backslash cannot be served.
//   - Options (RFC 2347): blksize (RFC 2348) is negotiated up to
//     [Config.MaxBlockSize] and the MTU of the interface the request came
//     in on; tsize (RFC 2349) is answered with the file's size, taken from
//     the open file. Other options (timeout, windowsize) are ignored, as
//     RFC 2347 allows. The library leaves tsize out of its answer for an
//     empty file.
//   - The UEFI size probe: EDK2 firmware asks for a file with tsize, reads
//     the size from the option acknowledgement and then ends the transfer
//     with an error packet, only to ask again for the contents. That is
//     logged at debug level as "size probe" and reported with
//     [Transfer.SizeProbe] set and no error, not as a failed transfer.
//   - One [Transfer] event per request, through [Config.OnTransfer], and
//     log/slog lines: info for a file sent or not found, warn for a
//     refusal or a failed transfer, debug for a size probe.
//
// Error packets: the library sends every error with code 1 (file not
// found), whatever the cause; the message says what happened ("access
// violation: ...", "write requests are not supported"). The messages
// never contain server paths.
//
// Transfers run on a new UDP port each (the RFC 1350 transfer ID), bound to
// the address the request was sent to, so replies leave from the address
// the client talked to. A transfer in flight when the server stops is
// aborted at its next block.
package tftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pin/tftp/v3"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// DefaultAddr is the address ListenAndServe binds when Config.Addr is
// empty: the TFTP port on every interface.
const DefaultAddr = ":69"

// Block size limits of RFC 2348 as pin/tftp applies them: it cannot cap
// the block size at 512, so a MaxBlockSize below 513 is refused.
const (
	minMaxBlockSize = 513
	maxMaxBlockSize = 65464
)

var (
	// ErrWriteRefused is reported for every write request: the server is
	// read-only.
	ErrWriteRefused = errors.New("write requests are refused")
	// ErrPathRefused is reported for a name that is empty, not valid
	// UTF-8, absolute, has a ".." component, or leads out of the boot
	// directory through a symbolic link.
	ErrPathRefused = errors.New("path refused")
	// ErrNotRegular is reported for a name that resolves to something other
	// than a regular file (a directory, a device, a pipe).
	ErrNotRegular = errors.New("not a regular file")
)

// Config configures a Server. Only Root is required.
type Config struct {
	// Root is the boot directory: every file served is inside it. It must
	// exist and be a directory.
	Root string
	// Addr is the UDP address ListenAndServe binds, such as ":69" or
	// "127.0.0.1:0"; empty means DefaultAddr. Serve ignores it.
	Addr string
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// OnTransfer, if set, is called once for every read or write request
	// when it ends, from the goroutine of that transfer; calls may be
	// concurrent. It should return quickly: a refused request is answered
	// only after it returns, and stopping the server waits for it.
	OnTransfer func(Transfer)
	// Timeout is how long the server waits for each acknowledgement before
	// sending the packet again; pin/tftp gives up after 5 retries, each
	// after a random pause of up to a second. Zero means the library's
	// default of 5 seconds.
	Timeout time.Duration
	// MaxBlockSize caps the block size a client may negotiate with the
	// blksize option, between 513 and 65464. Zero leaves the cap to the
	// MTU of the interface the request came in on (minus IP and UDP
	// headers), which is what a boot ROM on that link can receive.
	MaxBlockSize int
}

// Transfer describes one request, successful or not, as reported to
// Config.OnTransfer.
type Transfer struct {
	// Remote is the client's address and port (an IPv4 client on a
	// dual-stack socket appears as IPv4).
	Remote netip.AddrPort
	// File is the name the client asked for, as sent.
	File string
	// Bytes is how much of the file was read for sending; for a complete
	// transfer, the file's size.
	Bytes int64
	// Duration is the time from the request to the end of the transfer.
	Duration time.Duration
	// SizeProbe reports a request the client ended with an error packet in
	// answer to the option acknowledgement, before any data: how UEFI
	// firmware learns a file's size from the tsize option. Err is nil
	// then, and Bytes 0.
	SizeProbe bool
	// Err is why the request failed, nil on success. It wraps
	// ErrWriteRefused, ErrPathRefused, ErrNotRegular or fs.ErrNotExist
	// when one of those is the cause.
	Err error
}

// Server is a read-only TFTP server for one boot directory. A Server
// serves once: call Serve or ListenAndServe a single time.
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	started bool

	// bound is closed once addr or bindErr is set.
	bound   chan struct{}
	addr    net.Addr
	bindErr error
}

// New checks cfg and returns a Server for it. The boot directory is opened
// only when serving starts.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("tftp: config: Root (the boot directory) is empty")
	}
	fi, err := os.Stat(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("tftp: config: boot directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("tftp: config: boot directory %s is not a directory", cfg.Root)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("tftp: config: Timeout %v is negative", cfg.Timeout)
	}
	if cfg.MaxBlockSize != 0 && (cfg.MaxBlockSize < minMaxBlockSize || cfg.MaxBlockSize > maxMaxBlockSize) {
		return nil, fmt.Errorf("tftp: config: MaxBlockSize %d is outside %d..%d (or 0 for the interface MTU)",
			cfg.MaxBlockSize, minMaxBlockSize, maxMaxBlockSize)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, bound: make(chan struct{})}, nil
}

// ListenAndServe binds Config.Addr (UDP) and serves on it until ctx ends,
// then closes it; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.start(); err != nil {
		return err
	}
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(ctx, "udp", s.cfg.Addr)
	if err != nil {
		err = fmt.Errorf("tftp: listening on %s: %w", s.cfg.Addr, err)
		s.setBound(nil, err)
		return err
	}
	return s.serve(ctx, conn)
}

// Serve answers TFTP requests arriving on conn, a UDP socket, until ctx
// ends. It then stops taking requests, closes conn, waits for the
// transfers in flight to end (they are aborted at their next block) and
// returns nil. It returns an error if the boot directory cannot be opened
// or conn is unusable. Serve owns conn: the caller must not close it
// (pin/tftp would spin on the failing reads until ctx ends).
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.serve(ctx, conn)
}

// Addr waits until the server is bound and returns its local address: the
// actual port when Config.Addr asked for port 0. It returns an error if
// serving failed before that or ctx ends first.
func (s *Server) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-s.bound:
		return s.addr, s.bindErr
	case <-ctx.Done():
		return nil, fmt.Errorf("tftp: waiting for the server's address: %w", ctx.Err())
	}
}

// start marks the server used, refusing a second start.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("tftp: server already started (a Server serves once)")
	}
	s.started = true
	return nil
}

// setBound publishes the bound address, or why there is none, to Addr.
func (s *Server) setBound(addr net.Addr, err error) {
	s.addr, s.bindErr = addr, err
	close(s.bound)
}

func (s *Server) serve(ctx context.Context, conn net.PacketConn) error {
	root, err := os.OpenRoot(s.cfg.Root)
	if err != nil {
		conn.Close()
		err = fmt.Errorf("tftp: opening boot directory: %w", err)
		s.setBound(nil, err)
		return err
	}
	defer root.Close()

	h := &handler{ctx: ctx, cfg: &s.cfg, log: s.log, root: root, escapeErr: rootEscapeError(root)}
	ts := tftp.NewServer(h.read, h.write)
	ts.SetTimeout(s.cfg.Timeout)
	if s.cfg.MaxBlockSize > 0 {
		ts.SetBlockSize(s.cfg.MaxBlockSize)
	}
	ts.SetHook(requestHook{ctx: ctx, log: s.log})

	enablePacketInfo(conn)
	s.setBound(conn.LocalAddr(), nil)
	s.log.Info("tftp serving", "addr", conn.LocalAddr().String(), "root", s.cfg.Root)

	done := make(chan error, 1)
	go func() { done <- ts.Serve(conn) }()
	select {
	case <-ctx.Done():
		ts.Shutdown()
		<-done
		// Shutdown closes conn only if the library's Serve got as far as
		// recording it.
		conn.Close()
		s.log.Info("tftp stopped", "addr", conn.LocalAddr().String())
		return nil
	case err := <-done:
		ts.Shutdown()
		conn.Close()
		return fmt.Errorf("tftp: serving on %s: %w", conn.LocalAddr(), err)
	}
}

// enablePacketInfo asks the kernel for the destination address and
// interface of every datagram on conn, as pin/tftp's Serve does when it
// starts. Doing it before the address is published means no request is
// read without them: pin/tftp would answer such a request with 512-byte
// blocks whatever blksize was asked, from an unbound source address.
// Errors are ignored, as pin/tftp ignores them: it then does without.
func enablePacketInfo(conn net.PacketConn) {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return
	}
	la, ok := uc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	if la.IP.To4() != nil {
		_ = ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		_ = ipv6.NewPacketConn(uc).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
}

// rootEscapeError returns the error os.Root wraps when a path leads out of
// it. Go does not export it, so it is taken from a path that certainly
// escapes; errors.Is then tells an escaping symbolic link from other
// failures to open.
func rootEscapeError(root *os.Root) error {
	f, err := root.Open("..")
	if err == nil {
		f.Close()
		return nil
	}
	return errors.Unwrap(err)
}

// requestHook logs the failures pin/tftp reports outside any transfer: a
// request it could not parse or start. Transfer failures are logged by
// handler.
type requestHook struct {
	ctx context.Context
	log *slog.Logger
}

// OnSuccess ignores a finished transfer; handler reports it.
func (requestHook) OnSuccess(tftp.TransferStats) {}

// OnFailure logs a request dropped before it became a transfer.
func (h requestHook) OnFailure(st tftp.TransferStats, err error) {
	if st.Filename != "" || st.Mode != "" || h.ctx.Err() != nil {
		return // a transfer's failure (handler logs it), or shutting down
	}
	h.log.Warn("tftp request dropped", "err", err)
}

// handler answers the requests of one Serve call.
type handler struct {
	ctx       context.Context
	cfg       *Config
	log       *slog.Logger
	root      *os.Root
	escapeErr error
}

// read serves a read request: it sends the file, or returns the error whose
// text pin/tftp sends to the client in an error packet.
func (h *handler) read(name string, rf io.ReaderFrom) error {
	start := time.Now()
	tr := Transfer{File: name}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		tr.Remote = addrPort(ot.RemoteAddr())
	}
	clientErr := h.send(name, rf, &tr)
	tr.Duration = time.Since(start)
	h.report(tr)
	return clientErr
}

// send opens name inside the root and sends it, filling in tr. It returns
// the error for the client, whose text is all the client learns.
func (h *handler) send(name string, rf io.ReaderFrom, tr *Transfer) error {
	rel, err := requestPath(name)
	if err != nil {
		tr.Err = fmt.Errorf("tftp: read request: %w", err)
		return errors.New("access violation: file name refused")
	}
	// O_NONBLOCK keeps a named pipe from blocking the open; it does not
	// change reading a regular file.
	f, err := h.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	switch {
	case err == nil:
	case h.escapeErr != nil && errors.Is(err, h.escapeErr):
		tr.Err = fmt.Errorf("tftp: opening %s: %w: %w", rel, ErrPathRefused, err)
		return errors.New("access violation: file name refused")
	case errors.Is(err, os.ErrNotExist):
		tr.Err = fmt.Errorf("tftp: opening %s: %w", rel, err)
		return errors.New("file not found")
	case errors.Is(err, os.ErrPermission):
		tr.Err = fmt.Errorf("tftp: opening %s: %w", rel, err)
		return errors.New("access violation: permission denied")
	default:
		tr.Err = fmt.Errorf("tftp: opening %s: %w", rel, err)
		return errors.New("cannot open file")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		tr.Err = fmt.Errorf("tftp: stat %s: %w", rel, err)
		return errors.New("cannot open file")
	}
	if !fi.Mode().IsRegular() {
		tr.Err = fmt.Errorf("tftp: opening %s (%s): %w", rel, fileKind(fi.Mode()), ErrNotRegular)
		return errors.New("access violation: not a regular file")
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(fi.Size()) // tsize, if the client asked for it
	}
	// Blocks are small (512 to 1468 bytes, usually); reading the file in
	// larger pieces saves a system call per block.
	r := &ctxReader{ctx: h.ctx, r: bufio.NewReaderSize(f, readBuffer(fi.Size()))}
	n, err := rf.ReadFrom(r)
	tr.Bytes = n
	if err != nil {
		if isSizeProbe(err, r.reads) {
			tr.SizeProbe = true
			return nil // the library has closed the transfer
		}
		tr.Err = fmt.Errorf("tftp: sending %s: %w", rel, err)
		return err
	}
	return nil
}

// isSizeProbe reports whether a transfer that failed with err ended as the
// UEFI size probe does: the client answered the option acknowledgement (the
// only packet pin/tftp sends before reading the file) with an error packet.
// A timeout or a socket failure there is a net.Error instead.
func isSizeProbe(err error, reads int) bool {
	if reads > 0 {
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne)
}

// write refuses a write request.
func (h *handler) write(name string, wt io.WriterTo) error {
	tr := Transfer{File: name, Err: fmt.Errorf("tftp: write request: %w", ErrWriteRefused)}
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		tr.Remote = addrPort(it.RemoteAddr())
	}
	h.report(tr)
	return errors.New("access violation: write requests are not supported")
}

// report logs tr and hands it to OnTransfer.
func (h *handler) report(tr Transfer) {
	attrs := []any{"remote", tr.Remote.String(), "file", tr.File}
	switch {
	case tr.SizeProbe:
		h.log.Debug("size probe", attrs...)
	case tr.Err == nil:
		h.log.Info("tftp sent", append(attrs, "bytes", tr.Bytes, "duration", tr.Duration)...)
	case errors.Is(tr.Err, ErrWriteRefused):
		h.log.Warn("tftp write request refused", append(attrs, "err", tr.Err)...)
	case errors.Is(tr.Err, ErrPathRefused), errors.Is(tr.Err, ErrNotRegular):
		h.log.Warn("tftp request refused", append(attrs, "err", tr.Err)...)
	case errors.Is(tr.Err, os.ErrNotExist):
		h.log.Info("tftp file not found", append(attrs, "err", tr.Err)...)
	default:
		h.log.Warn("tftp transfer failed", append(attrs, "bytes", tr.Bytes, "duration", tr.Duration, "err", tr.Err)...)
	}
	if h.cfg.OnTransfer != nil {
		h.cfg.OnTransfer(tr)
	}
}

// fileKind names the type of a file that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "type " + m.Type().String()
	}
}

// addrPort converts a UDP address, unmapping IPv4 from a dual-stack socket.
func addrPort(a net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// maxReadBuffer bounds the buffer a file is read through.
const maxReadBuffer = 256 << 10

// readBuffer is the read buffer size for a file of size bytes: the whole
// file when small, maxReadBuffer at most, and at least bufio's minimum.
func readBuffer(size int64) int {
	return int(max(min(size+1, maxReadBuffer), 16))
}

// ctxReader reads from r until ctx ends, counting the reads.
type ctxReader struct {
	ctx   context.Context
	r     io.Reader
	reads int
}

// Read reads from the underlying reader, or fails once ctx has ended.
func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("server stopping: %w", err)
	}
	c.reads++
	return c.r.Read(p)
}

// requestPath turns the file name of a request into a slash-separated path
// relative to the boot directory. Backslashes count as slashes, and "." and
// empty components are dropped. A name that is empty, contains a NUL byte,
// is not valid UTF-8 (boot file names are ASCII), is absolute or has a ".."
// component is refused with ErrPathRefused. The result is local
// (filepath.IsLocal), valid for io/fs (fs.ValidPath) and free of "." and
// ".." components; symbolic links are left to os.Root.
func requestPath(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty file name", ErrPathRefused)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrPathRefused, name)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrPathRefused, name)
	}
	p := strings.ReplaceAll(name, `\`, "/")
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: %q is absolute", ErrPathRefused, name)
	}
	parts := make([]string, 0, strings.Count(p, "/")+1)
	for part := range strings.SplitSeq(p, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: %q has a parent directory (..) component", ErrPathRefused, name)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("%w: %q names no file", ErrPathRefused, name)
	}
	p = strings.Join(parts, "/")
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("%w: %q is not a local path", ErrPathRefused, name)
	}
	return p, nil
}
