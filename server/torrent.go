package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/transport/torrent"
)

// TorrentConfig configures BitTorrent fan-out: a private torrent per
// version's stream, the tracker, the server's seeder and its web seed.
type TorrentConfig struct {
	// PeerAddr is where the server's seeder accepts BitTorrent peers
	// (default: the HTTP API's host, a free port; the tracker tells
	// peers which). "off" runs no seeder: peers then get the server's
	// bytes from its web seed only.
	PeerAddr string
	// AnnounceInterval is the interval the tracker hands out (default
	// 15 s).
	AnnounceInterval time.Duration
	// UploadRate limits the seeder, in bytes per second (0: unlimited).
	UploadRate int64
	// SyncInterval is how often new and removed versions are noticed
	// (default 5 s).
	SyncInterval time.Duration
}

// torrentService wires transport/torrent into the server: the catalog
// of torrents (one per version, made on publish for images that nodes
// install by torrent and on first request for any other), the tracker,
// the seeder and the web seed.
type torrentService struct {
	cfg     TorrentConfig
	store   *store.Store
	cluster *cluster
	log     *slog.Logger
	tracker *torrent.Tracker
	seeder  *torrent.Seeder
	catalog *torrent.Catalog
}

func newTorrentService(cfg TorrentConfig, st *store.Store, cl *cluster, httpAddr net.Addr, log *slog.Logger) (*torrentService, error) {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 5 * time.Second
	}
	s := &torrentService{cfg: cfg, store: st, cluster: cl, log: log}
	if cfg.PeerAddr != "off" {
		addr := cfg.PeerAddr
		if addr == "" {
			host := ""
			if ta, ok := httpAddr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
				host = ta.IP.String()
			}
			addr = net.JoinHostPort(host, "0")
		}
		seeder, err := torrent.NewSeeder(torrent.SeederConfig{ListenAddr: addr, UploadRate: cfg.UploadRate, Logger: log.With("component", "torrent")})
		if err != nil {
			return nil, err
		}
		s.seeder = seeder
	}
	s.tracker = torrent.NewTracker(torrent.TrackerConfig{
		Interval: cfg.AnnounceInterval,
		Known: func(ih metainfo.Hash) bool {
			_, ok := s.catalog.Alive(ih)
			return ok
		},
		SelfPort: func(ih metainfo.Hash) (uint16, bool) {
			if s.seeder == nil || !s.seeder.Seeding(ih) {
				return 0, false
			}
			return uint16(s.seeder.Port()), true
		},
	})
	cat, err := torrent.NewCatalog(torrent.CatalogConfig{
		Store: st, Dir: filepath.Join(st.Root(), "streams"), Seeder: s.seeder, Tracker: s.tracker, Logger: log,
	})
	if err != nil {
		s.close()
		return nil, err
	}
	s.catalog = cat
	return s, nil
}

// run keeps the catalog in step with the store until ctx ends.
func (s *torrentService) run(ctx context.Context) error {
	if s.seeder != nil {
		s.log.Info("torrent seeder listening", "addrs", s.seeder.Addrs())
	}
	return s.catalog.Run(ctx, s.cfg.SyncInterval, s.wanted)
}

// wanted lists the images of nodes that install by torrent: their
// torrents are made as soon as a version is published.
func (s *torrentService) wanted() []string {
	seen := map[string]bool{}
	var refs []string
	for _, n := range s.cluster.Get().EffectiveNodes() {
		if n.Transport == config.TransportTorrent && n.Image != "" && !seen[n.Image] {
			seen[n.Image] = true
			refs = append(refs, n.Image)
		}
	}
	return refs
}

func (s *torrentService) close() {
	if s.seeder != nil {
		if err := s.seeder.Close(); err != nil {
			s.log.Warn("stop torrent seeder", "err", err)
		}
	}
}

// routes registers the torrent endpoints. Reads follow the image reads'
// rules, plus a node's own token.
func (s *torrentService) routes(route func(string, http.HandlerFunc), auth *authenticator) {
	p := api.Prefix
	read := func(h http.HandlerFunc) http.HandlerFunc { return torrentRead(auth, s.store.Root(), h) }
	route("GET "+p+"/images/{ref}/torrent", read(s.torrentFile))
	route("GET "+p+"/torrent/announce", read(s.tracker.Handler().ServeHTTP))
	route("GET "+p+"/torrent/{infohash}/data", read(s.webSeed))
	route("HEAD "+p+"/torrent/{infohash}/data", read(s.webSeed))
	route("GET "+p+"/torrents", read(s.list))
	route("GET "+p+"/torrents/{infohash}", read(s.status))
}

// torrentRead allows the admin token, a node's own token (with its name
// in torrent.NodeHeader) or an address in server.allow_networks.
func torrentRead(a *authenticator, dataDir string, next http.HandlerFunc) http.HandlerFunc {
	read := a.read(next)
	return func(w http.ResponseWriter, r *http.Request) {
		if tok := r.Header.Get(api.NodeTokenHeader); tok != "" && r.Header.Get(api.TokenHeader) == "" {
			node := r.Header.Get(torrent.NodeHeader)
			if !nodeTokenValid(dataDir, node, tok) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("the node token given is not the token of node %q", node))
				return
			}
			next(w, r)
			return
		}
		read(w, r)
	}
}

// baseURL is how the requesting peer reaches this server.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// torrentFile serves a version's .torrent, making it on first request.
func (s *torrentService) torrentFile(w http.ResponseWriter, r *http.Request) {
	v, err := s.store.Resolve(r.PathValue("ref"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	e, err := s.catalog.Ensure(r.Context(), v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	base := baseURL(r) + api.Prefix
	mi := torrent.MetaInfo(e.InfoBytes, base+"/torrent/announce", base+"/torrent/"+e.InfoHash+"/data")
	w.Header().Set("Content-Type", "application/x-bittorrent")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", e.Ref+".torrent"))
	w.Header().Set("X-Goldcast-Version", e.Ref)
	w.Header().Set("X-Goldcast-Manifest-Digest", e.ManifestDigest)
	w.Header().Set("X-Goldcast-Info-Hash", e.InfoHash)
	if err := mi.Write(w); err != nil {
		s.log.Warn("send torrent", "image", e.Ref, "err", err)
	}
}

// entry finds the live torrent a request names, answering 404 itself.
func (s *torrentService) entry(w http.ResponseWriter, r *http.Request) (*torrent.Entry, bool) {
	var ih metainfo.Hash
	if err := ih.FromHexString(r.PathValue("infohash")); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an info hash (40 hex digits)", r.PathValue("infohash")))
		return nil, false
	}
	e, ok := s.catalog.Alive(ih)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("torrent %s: not served here (its version was removed, or it never was one of ours)", ih.HexString()))
		return nil, false
	}
	return e, true
}

// webSeed serves the stream file itself (BEP 19), with Range support.
func (s *torrentService) webSeed(w http.ResponseWriter, r *http.Request) {
	e, ok := s.entry(w, r)
	if !ok {
		return
	}
	f, err := os.Open(e.Path)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("stream of %s: %v", e.Ref, err))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/zstd")
	w.Header().Set("X-Goldcast-Version", e.Ref)
	http.ServeContent(w, r, filepath.Base(e.Path), e.Created, f)
}

func (s *torrentService) statusOf(e *torrent.Entry) torrent.TorrentStatus {
	st := torrent.TorrentStatus{Entry: *e, Swarm: s.tracker.Swarm(e.Hash())}
	if s.seeder != nil {
		st.ServerUploaded = s.seeder.Uploaded(e.Hash())
	}
	return st
}

func (s *torrentService) list(w http.ResponseWriter, _ *http.Request) {
	out := []torrent.TorrentStatus{}
	for _, e := range s.catalog.List() {
		out = append(out, s.statusOf(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *torrentService) status(w http.ResponseWriter, r *http.Request) {
	if e, ok := s.entry(w, r); ok {
		writeJSON(w, http.StatusOK, s.statusOf(e))
	}
}
