// Package rsyncd is goldcast's rsync daemon: it offers image version trees
// as read-only modules to stock rsync clients (rsync://HOST/NAME@N/), using
// the sender of github.com/gokrazy/rsync for the file list and the
// rolling-checksum delta.
//
// The daemon does the rsync daemon handshake itself (greeting, module
// listing with comments, module lookup, network and connection limits) and
// hands a connection to gokrazy/rsync only once a module is chosen, through
// a guard that reads what the client sends until the transfer starts. The
// guard refuses, before the library acts on them:
//
//   - client filter rules (--exclude, --include, --filter). gokrazy/rsync
//     v0.2.2 mishandles every kind of rule: excluding a file skips the rest of
//     its directory, so the file's later siblings are silently missing (and a
//     client pulling with --delete deletes its copies of them); a rule with a
//     wildcard panics and would take the whole process down; an anchored rule
//     ("/dir/b") never matches, and rsync 3.2.5+ clients then abort the
//     transfer; an include rule excludes. goldcast applies excludes when an
//     image is imported, so a pull never needs them: ask for the whole module
//     or name the paths wanted;
//   - paths that leave the module: the library joins the requested path to
//     the module directory as given, so "NAME/../../etc/shadow", or a path
//     through a symbolic link in the image ("NAME/var/run/x" where var/run is
//     a link to /run), would be served from the server's own file system. A
//     path naming ".." or crossing a symbolic link inside the module is
//     refused; a link at the end of a path is sent as a link, as always;
//   - options the library accepts without implementing them, after which
//     the stock client misreads the stream (a bogus error, or a hang until
//     a timeout): -H, -z and its relatives, --numeric-ids and
//     --checksum-choice;
//   - uploads: every module is read-only.
//
// What a stock client receives: gokrazy/rsync speaks protocol 27, so names,
// contents, symbolic link targets, permission bits (without setuid, setgid
// and sticky), modification times in whole seconds, owners and groups (by
// name, as rsync maps them) and device nodes. Hard links arrive as separate
// copies; ACLs, extended attributes and sub-second times are not sent.
// goldcast's manifest carries and verifies those.
package rsyncd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gokrazy/rsync"
	grsyncd "github.com/gokrazy/rsync/rsyncd"
)

const (
	// handshakeTimeout bounds each read and write until a module is chosen
	// and the client has sent its arguments, and the call to Source.
	handshakeTimeout = 30 * time.Second
	// idleTimeout bounds each read and write during a transfer: a client
	// that stalls for longer is disconnected.
	idleTimeout = 5 * time.Minute
	// refusalTimeout bounds writing the error line to a refused client.
	refusalTimeout = 5 * time.Second
	// defaultDrainTimeout is Config.DrainTimeout's default.
	defaultDrainTimeout = 30 * time.Second
	// forceCloseWait bounds the wait for connections after they were
	// closed at the end of the drain.
	forceCloseWait = 5 * time.Second
	// maxLine bounds a line of the daemon handshake and of the client's
	// arguments.
	maxLine = 16 << 10
)

// ModuleSource lists the modules to offer. It is called for every
// connection, so newly published versions appear without a restart.
type ModuleSource func(ctx context.Context) ([]Module, error)

// Module is one read-only rsync module: the directory tree at Path offered
// under Name. Modules are never writable.
type Module struct {
	// Name is what clients ask for (rsync://HOST/NAME/). It must not be
	// empty, start with "#", or hold "/" or white space.
	Name string
	// Path is the absolute directory the module serves.
	Path string
	// Comment is shown next to Name in module listings.
	Comment string
}

// Config configures a Server.
type Config struct {
	// Source lists the modules; it is required.
	Source ModuleSource
	// AllowNetworks lists the networks clients may connect from; empty
	// refuses everyone (images hold secrets such as /etc/shadow, and the
	// rsync protocol carries no token). Connections from elsewhere are
	// logged, told "@ERROR: access denied" and closed.
	AllowNetworks []netip.Prefix
	// Logger receives the daemon's log; nil discards it. gokrazy/rsync's
	// own messages arrive at debug level (see New).
	Logger *slog.Logger
	// MaxConns bounds the connections served at once; further clients
	// are told so and disconnected. Zero or less means no bound.
	MaxConns int
	// DrainTimeout bounds how long Serve waits, once its context is done,
	// for open connections to finish before it closes them; zero means
	// 30 seconds.
	DrainTimeout time.Duration
}

// Server is an rsync daemon serving read-only modules; see New and Serve.
type Server struct {
	cfg   Config
	log   *slog.Logger
	slots chan struct{} // nil when MaxConns is unbounded
}

// New returns a Server for cfg.
//
// gokrazy/rsync keeps one logger for the whole process: its WithLogger
// option stores the logger in a package variable, and every server it
// builds without that option, and some of its file-reading code, log
// through that variable. New therefore calls WithLogger exactly once,
// installing an adapter from cfg.Logger, and the per-connection servers
// are built without it, so that connections never write the variable
// while others read it. The consequence: with several Servers in one
// process, the library's own (debug-level) messages go to the logger of
// the Server created last, and New must not run while another Server
// serves. Separately, merely importing gokrazy/rsync sets the standard log
// package's flags (adding file:line) at program start; this package cannot
// prevent that.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = defaultDrainTimeout
	}
	cfg.AllowNetworks = slices.Clone(cfg.AllowNetworks)
	s := &Server{cfg: cfg, log: log}
	if cfg.MaxConns > 0 {
		s.slots = make(chan struct{}, cfg.MaxConns)
	}
	RouteLibraryLogs(log)
	return s
}

// RouteLibraryLogs sends gokrazy/rsync's process-wide log output (client
// and server side alike) to log at debug level, or warn for what looks
// like an error, instead of stderr. New calls it; an rsync client (a
// deploy over rsync) calls it before its first transfer.
func RouteLibraryLogs(log *slog.Logger) {
	if _, err := grsyncd.NewServer(nil, grsyncd.WithLogger(gokrazyLogger{log: log.With("component", "gokrazy-rsync")})); err != nil {
		// NewServer only fails on invalid modules, and there are none.
		log.Error("install gokrazy/rsync logger", "err", err)
	}
}

// Serve accepts rsync clients on ln until ctx is done, serving each on its
// own goroutine with the module list Source returns at that moment. When
// ctx is done it closes ln, waits up to DrainTimeout for open connections
// to finish, then closes the rest and waits a few more seconds for their
// goroutines; it returns nil after such a shutdown, or the error that
// made accepting fail.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Source == nil {
		ln.Close()
		return errors.New("serve rsync: Config.Source is nil")
	}
	stopClosing := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopClosing()
	s.log.Info("rsync daemon listening", "addr", ln.Addr().String())

	// Connections outlive ctx until the drain ends; cancelling connCtx
	// closes them.
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	var wg sync.WaitGroup
	var active atomic.Int64

	var serveErr error
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				serveErr = fmt.Errorf("accept rsync connections on %s: %w", ln.Addr(), err)
				break
			}
			// Out of file descriptors or similar: wait, then try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept rsync connection", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		wg.Add(1)
		active.Add(1)
		go func() {
			defer wg.Done()
			defer active.Add(-1)
			s.serveConn(connCtx, conn)
		}()
	}
	ln.Close()

	if n := active.Load(); n > 0 {
		s.log.Info("rsync daemon stopping: waiting for connections", "connections", n, "timeout", s.cfg.DrainTimeout)
	}
	if !waitTimeout(&wg, s.cfg.DrainTimeout) {
		s.log.Warn("rsync daemon stopping: closing unfinished connections", "connections", active.Load())
		closeConns()
		if !waitTimeout(&wg, forceCloseWait) {
			s.log.Error("rsync daemon stopped with connections still running", "connections", active.Load())
		}
	}
	s.log.Info("rsync daemon stopped", "addr", ln.Addr().String())
	return serveErr
}

// waitTimeout waits for wg for at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// serveConn serves one client connection and closes it.
func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	remote := remoteAddr(conn)
	log := s.log.With("remote", conn.RemoteAddr().String())
	defer func() {
		// The library panics on some inputs it does not implement; the
		// guard refuses those we know of, and no connection may take the
		// daemon down.
		if r := recover(); r != nil {
			log.Error("rsync connection handler panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()

	if !s.allowed(remote) {
		log.Warn("rsync connection refused: client address is outside the allowed networks",
			"addr", remote.String(), "allow_networks", fmt.Sprint(s.cfg.AllowNetworks))
		refuse(conn, fmt.Sprintf("access denied to goldcast rsync daemon from %s", remote))
		return
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			log.Warn("rsync connection refused: too many connections", "max_conns", s.cfg.MaxConns)
			refuse(conn, fmt.Sprintf("max connections (%d) reached -- try again later", s.cfg.MaxConns))
			return
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	dc := &deadlineConn{Conn: conn}
	dc.timeout.Store(int64(handshakeTimeout))
	start := time.Now()
	module, err := s.handle(ctx, dc, log)
	attrs := []any{"duration", time.Since(start).Round(time.Millisecond),
		"bytes_read", dc.read.Load(), "bytes_written", dc.written.Load()}
	if module != "" {
		attrs = append(attrs, "module", module)
	}
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		log.Warn("rsync request refused", append(attrs, "reason", ref.Error())...)
	case err != nil:
		log.Warn("rsync connection failed", append(attrs, "err", err)...)
	default:
		log.Debug("rsync connection done", attrs...)
	}
}

// remoteAddr returns the client's IP address, or the zero Addr when the
// connection has none (a unix socket).
func remoteAddr(conn net.Conn) netip.Addr {
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// allowed reports whether a client at addr may connect.
func (s *Server) allowed(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, p := range s.cfg.AllowNetworks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// refuse tells a client why it is turned away, in the form stock rsync
// prints, before any greeting.
func refuse(conn net.Conn, msg string) {
	conn.SetWriteDeadline(time.Now().Add(refusalTimeout))
	io.WriteString(conn, "@ERROR: "+msg+"\n")
}

// handle runs the daemon handshake on conn and, when the client asks for a
// module, the transfer. It returns the module's name once one was chosen.
func (s *Server) handle(ctx context.Context, conn *deadlineConn, log *slog.Logger) (string, error) {
	if _, err := fmt.Fprintf(conn, "@RSYNCD: %d\n", rsync.ProtocolVersion); err != nil {
		return "", fmt.Errorf("send greeting: %w", err)
	}
	br := bufio.NewReaderSize(conn, maxLine)
	greeting, err := readLine(br)
	if err != nil {
		return "", fmt.Errorf("read client greeting: %w", err)
	}
	version, ok := parseGreeting(greeting)
	if !ok {
		return "", fmt.Errorf("client greeting %q is not an rsync greeting", strings.TrimSpace(greeting))
	}
	if version < rsync.ProtocolVersion {
		msg := fmt.Sprintf("client speaks rsync protocol %d; this daemon needs %d or newer", version, rsync.ProtocolVersion)
		io.WriteString(conn, "@ERROR: "+msg+"\n")
		return "", &refusal{msg}
	}
	request, err := readLine(br)
	if err != nil {
		return "", fmt.Errorf("read requested module: %w", err)
	}
	name := strings.TrimSpace(request)

	mctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	modules, err := s.modules(mctx, log)
	cancel()
	if err != nil {
		io.WriteString(conn, "@ERROR: module list unavailable\n")
		return "", err
	}

	if name == "" || name == "#list" {
		log.Info("rsync module listing", "modules", len(modules))
		var b strings.Builder
		for _, m := range modules {
			fmt.Fprintf(&b, "%-15s\t%s\n", m.Name, m.Comment)
		}
		b.WriteString("@RSYNCD: EXIT\n")
		if _, err := io.WriteString(conn, b.String()); err != nil {
			return "", fmt.Errorf("send module list: %w", err)
		}
		return "", nil
	}
	i := slices.IndexFunc(modules, func(m Module) bool { return m.Name == name })
	if i < 0 {
		io.WriteString(conn, fmt.Sprintf("@ERROR: Unknown module '%s'\n", name))
		return "", &refusal{fmt.Sprintf("unknown module %q", name)}
	}
	module := modules[i]

	srv, err := grsyncd.NewServer([]grsyncd.Module{{Name: module.Name, Path: module.Path}})
	if err != nil {
		io.WriteString(conn, "@ERROR: module unavailable\n")
		return module.Name, fmt.Errorf("set up module %q: %w", module.Name, err)
	}
	g := &guard{br: br, w: conn, conn: conn, module: module, log: log}
	// The library does the handshake again: it is given the client's
	// greeting and request once more, and its own greeting, a duplicate of
	// the one sent above, is dropped.
	rw := struct {
		io.Reader
		io.Writer
	}{
		Reader: io.MultiReader(strings.NewReader(greeting+request), g),
		Writer: &lineDropper{w: conn},
	}
	err = srv.HandleDaemonConn(ctx, rw, conn.RemoteAddr())
	if g.refused != nil {
		return module.Name, g.refused
	}
	if err != nil {
		return module.Name, fmt.Errorf("serve module %q: %w", module.Name, err)
	}
	return module.Name, nil
}

// parseGreeting returns the protocol version of an "@RSYNCD: 31.0 ..."
// greeting.
func parseGreeting(line string) (int, bool) {
	rest, ok := strings.CutPrefix(line, "@RSYNCD: ")
	if !ok {
		return 0, false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	v, err := strconv.Atoi(rest[:end])
	return v, err == nil
}

// modules asks Source for the modules and drops, with a warning, those
// that are invalid or whose name repeats an earlier one.
func (s *Server) modules(ctx context.Context, log *slog.Logger) ([]Module, error) {
	mods, err := s.cfg.Source(ctx)
	if err != nil {
		return nil, fmt.Errorf("list rsync modules: %w", err)
	}
	out := mods[:0:0]
	seen := make(map[string]bool, len(mods))
	for _, m := range mods {
		if err := validModule(m); err != nil {
			log.Warn("rsync module skipped", "module", m.Name, "err", err)
			continue
		}
		if seen[m.Name] {
			log.Warn("rsync module skipped: name already used", "module", m.Name, "path", m.Path)
			continue
		}
		seen[m.Name] = true
		m.Path = filepath.Clean(m.Path)
		out = append(out, m)
	}
	return out, nil
}

// validModule checks a module's name and path.
func validModule(m Module) error {
	switch {
	case m.Name == "":
		return errors.New("module name is empty")
	case strings.HasPrefix(m.Name, "#"):
		return fmt.Errorf("module name %q starts with \"#\"", m.Name)
	case strings.ContainsFunc(m.Name, func(r rune) bool { return r == '/' || r <= ' ' || r == 0x7f }):
		return fmt.Errorf("module name %q holds \"/\", white space or a control character", m.Name)
	case !strings.HasPrefix(m.Path, "/"):
		return fmt.Errorf("module %q: path %q is not absolute", m.Name, m.Path)
	case strings.ContainsAny(m.Comment, "\n\r"):
		return fmt.Errorf("module %q: comment holds a line break", m.Name)
	}
	return nil
}

// readLine reads one "\n"-terminated line of at most maxLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("line longer than %d bytes", br.Size())
	}
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// deadlineConn sets a fresh deadline before every read and write, so a
// stalled client cannot hold a connection forever, and counts bytes.
type deadlineConn struct {
	net.Conn
	timeout       atomic.Int64 // a time.Duration
	read, written atomic.Int64
}

// Read reads with a deadline of timeout from now.
func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// Write writes with a deadline of timeout from now.
func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// lineDropper drops everything written up to and including the first
// newline, then passes writes through.
type lineDropper struct {
	w       io.Writer
	dropped bool
}

// Write drops p up to the first newline until one has been seen.
func (d *lineDropper) Write(p []byte) (int, error) {
	if d.dropped {
		return d.w.Write(p)
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return len(p), nil
	}
	d.dropped = true
	if rest := p[i+1:]; len(rest) > 0 {
		n, err := d.w.Write(rest)
		return i + 1 + n, err
	}
	return len(p), nil
}

// gokrazyLogger adapts slog to the logger interface of gokrazy/rsync. The
// library logs every step of every connection, so its messages go out at
// debug level, except those that report a problem.
type gokrazyLogger struct{ log *slog.Logger }

var _ rsync.Logger = gokrazyLogger{}

// Printf logs a formatted message.
func (l gokrazyLogger) Printf(msg string, a ...any) { l.emit(fmt.Sprintf(msg, a...)) }

// Output logs s; calldepth is ignored.
func (l gokrazyLogger) Output(calldepth int, s string) error {
	l.emit(s)
	return nil
}

func (l gokrazyLogger) emit(s string) {
	s = strings.TrimSuffix(s, "\n")
	level := slog.LevelDebug
	lower := strings.ToLower(s)
	// The library logs its whole option struct ("ioErrors: 0" and all)
	// on every run; only lines that report a failure deserve a warning.
	if strings.HasPrefix(s, "BUG") || strings.HasPrefix(lower, "error") || strings.Contains(lower, "error:") ||
		strings.Contains(lower, "vanished") || strings.Contains(lower, "changed mid-transfer") {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, s)
}
