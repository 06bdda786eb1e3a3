// Package server is the goldcast daemon: one process that serves the
// image store over an HTTP API (images, streams, tree listings, deltas,
// captures), runs a read-only rsync daemon for stock rsync clients, and
// keeps capture sessions, node status and events in a crash-safe state
// database. Services run under one errgroup and stop together when the
// context ends (SIGTERM).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/overrides"
	"github.com/goldcast/goldcast/server/state"
	"github.com/goldcast/goldcast/transport/rsyncd"
)

// Config is everything the server needs; the zero value of each optional
// field is a sane default.
type Config struct {
	// DataDir holds the image store, state.db, admin.token and tls/.
	DataDir string
	// ConfigPath is goldcast.yaml (default DataDir/goldcast.yaml; a
	// missing default file is an empty configuration).
	ConfigPath string
	// HTTPAddr is the API's listen address, e.g. ":8080" or
	// "127.0.0.1:0".
	HTTPAddr string
	// RsyncAddr is the rsync daemon's listen address ("" turns it off).
	RsyncAddr string
	// TLSCert and TLSKey serve HTTPS with the given certificate;
	// TLSSelfSigned serves HTTPS with a certificate generated into
	// DataDir/tls on first start (clients pin its fingerprint).
	TLSCert, TLSKey string
	TLSSelfSigned   bool
	// CaptureTimeout is how long a capture session may stay silent before
	// another capture of the image may replace it (default 2 minutes;
	// clients send keep-alives every few seconds).
	CaptureTimeout time.Duration
	// ShutdownTimeout bounds the wait for running requests on shutdown
	// (default 10 s).
	ShutdownTimeout time.Duration
	// ConfigPollInterval is how often goldcast.yaml is checked for
	// changes (default 2 s); SIGHUP reloads at once.
	ConfigPollInterval time.Duration
	// Netboot turns on TFTP and DHCP.
	Netboot NetbootConfig
	// Torrent configures BitTorrent fan-out (see TorrentConfig).
	Torrent TorrentConfig
	// HealthTimeout is how long an installed node has to report healthy
	// from its first boot before it is marked unhealthy (0: no limit).
	HealthTimeout time.Duration
	// Logger receives the server's logs (default: discard).
	Logger *slog.Logger
	// Ready is called once every listener is bound, with the addresses
	// (useful with port 0) and, when a token was just generated, the
	// token to show once.
	Ready func(Ready)
}

// Ready describes a started server.
type Ready struct {
	HTTPAddr  string
	RsyncAddr string
	// URL is how clients reach the API.
	URL string
	// Fingerprint is the TLS certificate's sha256, when serving TLS.
	Fingerprint string
	// NewToken is the admin token when this start generated it (show it
	// once); empty otherwise.
	NewToken string
	// TokenPath is where the admin token is stored.
	TokenPath string
}

// Run starts the server and blocks until ctx ends or a service fails.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.CaptureTimeout <= 0 {
		cfg.CaptureTimeout = 2 * time.Minute
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.ConfigPollInterval <= 0 {
		cfg.ConfigPollInterval = 2 * time.Second
	}
	st, err := store.Open(cfg.DataDir, log)
	if err != nil {
		return err
	}
	cluster, err := newCluster(cfg, log)
	if err != nil {
		return err
	}
	db, err := state.Open(filepath.Join(st.Root(), "state.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if abandoned, err := db.AbandonAll(time.Now()); err != nil {
		return err
	} else if len(abandoned) > 0 {
		log.Warn("capture sessions interrupted by the last shutdown were abandoned", "count", len(abandoned))
	}
	tokenPath := filepath.Join(st.Root(), TokenFile)
	token, created, err := loadOrCreateToken(tokenPath)
	if err != nil {
		return err
	}
	networks, err := readNetworks(cluster.Get(), log)
	if err != nil {
		return err
	}
	auth := &authenticator{token: token}
	auth.networks.Store(&networks)
	cluster.onReload = func(old, c *config.Config) {
		if n, err := readNetworks(c, log); err == nil {
			auth.networks.Store(&n)
		}
		forgetLocalBoots(db, old, c, log)
	}
	m := newMetrics(st)

	var tlsConf *tls.Config
	var fingerprint string
	if cfg.TLSSelfSigned || cfg.TLSCert != "" || cfg.TLSKey != "" {
		if tlsConf, fingerprint, err = loadTLS(st.Root(), cfg.TLSCert, cfg.TLSKey, cfg.TLSSelfSigned); err != nil {
			return err
		}
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for the HTTP API on %q: %w", cfg.HTTPAddr, err)
	}
	if tlsConf != nil {
		httpLn = tls.NewListener(httpLn, tlsConf)
	}
	var rsyncLn net.Listener
	if cfg.RsyncAddr != "" {
		if rsyncLn, err = net.Listen("tcp", cfg.RsyncAddr); err != nil {
			httpLn.Close()
			return fmt.Errorf("listen for the rsync daemon on %q: %w", cfg.RsyncAddr, err)
		}
	}

	var rsyncAddr string
	if rsyncLn != nil {
		rsyncAddr = rsyncLn.Addr().String()
	}
	ov, err := overrides.Open(st.Root())
	if err != nil {
		return err
	}
	tor, err := newTorrentService(cfg.Torrent, st, cluster, httpLn.Addr(), log)
	if err != nil {
		return err
	}
	defer tor.close()
	inst := newInstallService(st.Root(), cluster, db, log, cfg.HealthTimeout)
	handler := newHandler(st, db, ov, cluster, auth, m, log, cfg.CaptureTimeout, api.ServerInfo{RsyncAddr: rsyncAddr}, tor, cfg.Netboot.UnknownNodes, inst)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	srv.RegisterOnShutdown(inst.stopStreams)

	ready := Ready{HTTPAddr: httpLn.Addr().String(), TokenPath: tokenPath, Fingerprint: fingerprint}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	ready.URL = scheme + "://" + clientAddr(httpLn.Addr())
	if created {
		ready.NewToken = token
	}
	if rsyncLn != nil {
		ready.RsyncAddr = clientAddr(rsyncLn.Addr())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cluster.Watch(gctx, cfg.ConfigPollInterval) })
	g.Go(func() error { return tor.run(gctx) })
	g.Go(func() error { return inst.watchHealth(gctx) })
	if err := startNetboot(gctx, g, cfg.Netboot, st.Root(), httpLn.Addr().(*net.TCPAddr).Port, cluster, db, log); err != nil {
		srv.Close()
		g.Wait()
		return err
	}
	g.Go(func() error {
		if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return nil
	})
	if rsyncLn != nil {
		rs := rsyncd.New(rsyncd.Config{Source: rsyncd.StoreModules(st), AllowNetworks: networks, Logger: log})
		counted := &countingListener{Listener: rsyncLn, accepted: m.rsyncConn.Inc}
		g.Go(func() error {
			if err := rs.Serve(gctx, counted); err != nil && gctx.Err() == nil {
				return fmt.Errorf("rsync daemon: %w", err)
			}
			return nil
		})
	}
	log.Info("goldcast server started", "api", ready.URL, "rsync", ready.RsyncAddr, "data", st.Root())
	if cfg.Ready != nil {
		cfg.Ready(ready)
	}
	err = g.Wait()
	log.Info("goldcast server stopped")
	return err
}

// clientAddr turns a listen address into one a client on this host can
// dial: an unspecified address (":8080") becomes loopback.
func clientAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
}

// readNetworks returns who may read without a token: server.allow_networks,
// or loopback only when the setting is absent.
func readNetworks(c *config.Config, log *slog.Logger) ([]netip.Prefix, error) {
	allow := c.Server.AllowNetworks
	if allow == nil {
		// Not configured: this host may read (a node on the server
		// itself, the admin's own checks); nobody else.
		allow = []string{"127.0.0.0/8", "::1/128"}
		log.Info("reads without a token allowed from loopback only; set server.allow_networks in goldcast.yaml for your nodes")
	}
	return parseNetworks(allow)
}

func parseNetworks(nets []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(nets))
	for _, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("server.allow_networks: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// newHandler builds the HTTP routes.
func newHandler(st *store.Store, db *state.Store, ov *overrides.Store, cl *cluster, auth *authenticator, m *metrics, log *slog.Logger, captureTimeout time.Duration, info api.ServerInfo, tor *torrentService, unknownNodes string, inst *installService) http.Handler {
	images := &imageHandler{store: st, log: log, metrics: m, indexes: newIndexCache(8)}
	nodes := &nodeHandler{store: st, overrides: ov, cluster: cl, images: images, log: log, trees: map[string]*servedTree{}}
	boot := &bootHandler{dataDir: st.Root(), cluster: cl, state: db, log: log, unknownNodes: unknownNodes}
	captures := &captureHandler{store: st, state: db, log: log, metrics: m, staleAfter: captureTimeout, work: map[string]*captureWork{}}
	mux := http.NewServeMux()
	route := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, m.instrument(pattern, h))
	}
	p := api.Prefix
	route("GET "+p+"/server", auth.read(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, info) }))
	route("GET "+p+"/images", auth.read(images.list))
	route("GET "+p+"/images/{ref}", auth.read(images.info))
	route("GET "+p+"/images/{name}/versions", auth.read(images.versions))
	route("GET "+p+"/images/{ref}/manifest", auth.read(images.manifest))
	route("GET "+p+"/images/{ref}/stream", auth.read(images.stream))
	route("POST "+p+"/images/{ref}/tree", auth.read(images.tree))
	route("POST "+p+"/images/{ref}/entries", auth.read(images.entries))
	route("POST "+p+"/images/{ref}/delta", auth.read(images.delta))
	route("GET "+p+"/nodes/{node}/plan", auth.node(st.Root(), nodes.info))
	route("GET "+p+api.InstallPlanPath, auth.node(st.Root(), nodes.installPlan))
	route("GET "+p+api.ScriptPath, auth.node(st.Root(), nodes.script))
	route("GET "+p+"/nodes/{node}/stream", auth.node(st.Root(), nodes.stream))
	route("POST "+p+"/nodes/{node}/tree", auth.node(st.Root(), nodes.tree))
	route("POST "+p+"/nodes/{node}/entries", auth.node(st.Root(), nodes.entries))
	route("POST "+p+"/nodes/{node}/delta", auth.node(st.Root(), nodes.delta))
	route("POST "+p+"/captures", auth.admin(captures.begin))
	route("POST "+p+"/captures/{id}/touch", auth.admin(captures.touch))
	route("PUT "+p+"/captures/{id}/stream", auth.admin(captures.stream))
	route("POST "+p+"/captures/{id}/manifest", auth.admin(captures.manifest))
	route("POST "+p+"/captures/{id}/signatures", auth.admin(captures.signatures))
	route("POST "+p+"/captures/{id}/content", auth.admin(captures.content))
	route("DELETE "+p+"/captures/{id}", auth.admin(captures.abort))
	tor.routes(route, auth)
	inst.routes(route, auth) // progress, health, status, events
	// Network boot: firmware and iPXE know no tokens; the script hands the
	// node a fresh token of its own for everything after.
	route("GET /boot/ipxe", boot.script)
	route("GET /boot/files/{name}", boot.file)
	route("POST "+p+"/boot/report", boot.report)
	route("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", m.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s; the API lives under %s", r.Method, r.URL.Path, api.Prefix))
	})
	return mux
}

// countingListener reports every accepted connection.
type countingListener struct {
	net.Listener
	accepted func()
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted()
	}
	return c, err
}

// eventsHandler lists stored events: ?since=SEQ (exclusive), ?node=NAME,
// ?limit=N (default 1000).
func eventsHandler(db *state.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var since uint64
		limit := 1000
		if v := q.Get("since"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("since=%q is not a sequence number", v))
				return
			}
			since = n
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("limit=%q is not a positive number", v))
				return
			}
			limit = n
		}
		evs, err := db.Events(since, q.Get("node"), limit)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if evs == nil {
			evs = []state.Event{}
		}
		writeJSON(w, http.StatusOK, evs)
	}
}
