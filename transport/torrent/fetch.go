package torrent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"

	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/signing"
	"github.com/goldcast/goldcast/images/stream"
)

// Headers a fetch sends with every request to the server (API, tracker,
// web seed). The server accepts them like the other image reads.
const (
	// TokenHeader carries the admin token.
	TokenHeader = "X-Goldcast-Token"
	// NodeHeader and NodeTokenHeader carry a node's name and its own
	// token (goldcast node token NAME).
	NodeHeader      = "X-Goldcast-Node"
	NodeTokenHeader = "X-Goldcast-Node-Token"
)

// Progress stages.
const (
	StageFetching = "fetching"
	StageStalled  = "stalled"
	StageResumed  = "resumed"
	StageComplete = "complete"
	StageSeeding  = "seeding"
	StageDone     = "done"
)

// FetchConfig describes fetching one version by BitTorrent.
type FetchConfig struct {
	// ServerURL is the goldcast server (http://host:8080).
	ServerURL string
	// Token is the admin token; Node and NodeToken a node's credentials.
	// Neither is needed from a network the server allows to read.
	Token           string
	Node, NodeToken string
	// HTTPClient talks to the server's API (default: a plain client).
	HTTPClient *http.Client
	// Ref is NAME (the latest version) or NAME@V.
	Ref string
	// Target is the empty directory the version is extracted into.
	Target string
	// MountedTarget lets Target hold the empty mount points of other
	// filesystems (an installer's /target; see
	// stream.ExtractOptions.MountedTarget).
	MountedTarget bool
	// StageDir keeps the stream's pieces (what this node seeds to the
	// others). Default: a temporary directory, removed at the end. Give a
	// directory on the target's filesystem when memory is short (the
	// installer's temporary directory is RAM).
	StageDir string
	// Staged downloads the whole stream into StageDir first and extracts
	// it afterwards; by default each piece is extracted as soon as it and
	// every piece before it are verified. Either way the pieces are
	// fetched rarest first in an order of the node's own, never in stream
	// order: nodes that all asked for the next piece of the stream would
	// all ask the server for the same pieces.
	Staged bool
	// ListenAddr is where other peers connect, HOST:PORT (default ":0":
	// every address, a free port; the tracker tells the others).
	ListenAddr string
	// SeedTime bounds how long the node keeps seeding after it has the
	// whole stream; seeding stops earlier when the deploy wave ends (the
	// tracker knows no peer still fetching). 0: leave at once.
	SeedTime time.Duration
	// SeedFull seeds for the whole SeedTime even when no peer is
	// fetching (a node placed to seed a wave that has not started yet).
	SeedFull bool
	// NoWebSeed ignores the server's web seed: the server's bytes come
	// from its BitTorrent seeder only. By default the web seed is a
	// fallback, used once no piece has arrived for WebSeedAfter (the
	// server's seeder port blocked, say): asked alongside the seeder it
	// makes every node fetch the same pieces from the server.
	NoWebSeed bool
	// WebSeedAfter is how long without a new piece before the web seed
	// joins (default 3 s).
	WebSeedAfter time.Duration
	// RateLimit caps download and upload, in bytes per second (0: none).
	RateLimit int64
	// PublicKey, when set, requires the version's manifest to be signed
	// by it.
	PublicKey ed25519.PublicKey
	// StallAfter is how long without progress before a fetch reports it
	// is stalled (default 10 s). A stalled fetch keeps waiting (for the
	// server to return or for a peer that holds the missing pieces)
	// until StallTimeout (0: until ctx ends).
	StallAfter, StallTimeout time.Duration
	// Progress, when set, is told how the fetch goes about every
	// ProgressInterval (default 1 s) and at every stage change.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Logger receives notes and the library's warnings (default: discard).
	Logger *slog.Logger
}

// Progress is one report of a fetch: how far it is, from whom the bytes
// came, and how many peers it sees.
type Progress struct {
	Stage string `json:"stage"`
	Ref   string `json:"ref"`
	// Bytes of the Total stream bytes are verified and stored.
	Bytes int64 `json:"bytes"`
	Total int64 `json:"total"`
	// Peers are the connected peers (the server's seeder included);
	// Seeders those among them with the whole stream.
	Peers   int `json:"peers"`
	Seeders int `json:"seeders"`
	// FromPeers and FromServer split the useful bytes received.
	FromPeers  int64 `json:"from_peers"`
	FromServer int64 `json:"from_server"`
	// Uploaded is what this node sent to other peers.
	Uploaded int64  `json:"uploaded"`
	Message  string `json:"message,omitempty"`
}

// Result reports a fetch.
type Result struct {
	Ref            string `json:"ref"`
	ManifestDigest string `json:"manifest_digest"`
	InfoHash       string `json:"info_hash"`
	Size           int64  `json:"size"`
	Entries        int    `json:"entries"`
	// FromPeers, FromServer (its BitTorrent seeder and its web seed) and
	// FromWebSeed (part of FromServer) count useful bytes received, as
	// the library's per-peer statistics attribute them.
	FromPeers   int64 `json:"from_peers"`
	FromServer  int64 `json:"from_server"`
	FromWebSeed int64 `json:"from_web_seed"`
	// Uploaded is what this node served to other peers.
	Uploaded int64 `json:"uploaded"`
	// PeersServed counts distinct peers (not the server) that sent
	// useful data.
	PeersServed int `json:"peers_served"`
	// HashFailures counts pieces that failed their hash check; the peers
	// that sent them are banned (BannedPeers).
	HashFailures int64    `json:"hash_failures"`
	BannedPeers  []string `json:"banned_peers,omitempty"`
	// Stalled is set when the fetch stalled at some point.
	Stalled bool `json:"stalled"`
	// Download is the time to the whole stream verified and extracted;
	// Seed the time spent seeding afterwards.
	Download time.Duration `json:"download_ns"`
	Seed     time.Duration `json:"seed_ns"`
}

// PeerShare is the fraction of received bytes that came from other
// nodes rather than the server.
func (r *Result) PeerShare() float64 {
	if t := r.FromPeers + r.FromServer; t > 0 {
		return float64(r.FromPeers) / float64(t)
	}
	return 0
}

// fetcher is one fetch in progress.
type fetcher struct {
	cfg  FetchConfig
	log  *slog.Logger
	http *http.Client

	fromPeers, fromServer, fromWebSeed atomic.Int64
	mu                                 sync.Mutex
	senders                            map[string]bool
}

// Fetch gets a version's torrent from the server, joins its swarm,
// extracts the stream into cfg.Target as it arrives, verifies it against
// the manifest (and the signature when PublicKey is set), and seeds until
// the wave ends or SeedTime passes.
func Fetch(ctx context.Context, cfg FetchConfig) (*Result, error) {
	f := &fetcher{cfg: cfg, log: cfg.Logger, http: cfg.HTTPClient, senders: map[string]bool{}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.http == nil {
		f.http = &http.Client{}
	}
	if f.cfg.StallAfter <= 0 {
		f.cfg.StallAfter = 10 * time.Second
	}
	if f.cfg.ProgressInterval <= 0 {
		f.cfg.ProgressInterval = time.Second
	}
	if f.cfg.WebSeedAfter <= 0 {
		f.cfg.WebSeedAfter = 3 * time.Second
	}
	if cfg.Target == "" {
		return nil, errors.New("torrent fetch: no target directory")
	}
	if err := f.checkServer(); err != nil {
		return nil, err
	}
	mi, ref, digest, err := f.getTorrent(ctx)
	if err != nil {
		return nil, err
	}
	return f.run(ctx, mi, ref, digest)
}

func (f *fetcher) apiURL(path string) string {
	return strings.TrimRight(f.cfg.ServerURL, "/") + "/api/v1" + path
}

func (f *fetcher) authorize(h http.Header) {
	if f.cfg.Token != "" {
		h.Set(TokenHeader, f.cfg.Token)
	}
	if f.cfg.NodeToken != "" {
		h.Set(NodeHeader, f.cfg.Node)
		h.Set(NodeTokenHeader, f.cfg.NodeToken)
	}
}

// checkServer checks the server URL.
func (f *fetcher) checkServer() error {
	u, err := url.Parse(f.cfg.ServerURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("torrent fetch: server URL %q: not an http(s) URL", f.cfg.ServerURL)
	}
	return nil
}

// getTorrent downloads the version's .torrent.
func (f *fetcher) getTorrent(ctx context.Context) (*metainfo.MetaInfo, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.apiURL("/images/"+url.PathEscape(f.cfg.Ref)+"/torrent"), nil)
	if err != nil {
		return nil, "", "", fmt.Errorf("torrent of %s: %w", f.cfg.Ref, err)
	}
	f.authorize(req.Header)
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, "", "", fmt.Errorf("torrent of %s: %w", f.cfg.Ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, "", "", fmt.Errorf("torrent of %s: server answered %s: %s", f.cfg.Ref, resp.Status, strings.TrimSpace(string(b)))
	}
	mi, err := metainfo.Load(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, "", "", fmt.Errorf("torrent of %s: %w", f.cfg.Ref, err)
	}
	ref := resp.Header.Get("X-Goldcast-Version")
	if ref == "" {
		ref = f.cfg.Ref
	}
	return mi, ref, resp.Header.Get("X-Goldcast-Manifest-Digest"), nil
}

// headerTransport adds goldcast's credentials to the library's tracker
// and web seed requests.
type headerTransport struct {
	base http.RoundTripper
	f    *fetcher
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	h.f.authorize(r.Header)
	return h.base.RoundTrip(r)
}

// received attributes useful bytes to the server or to another peer.
func (f *fetcher) received(ev torrent.ReceivedUsefulDataEvent) {
	n := int64(len(ev.Message.Piece))
	p := ev.Peer
	if p.Network == "http" {
		f.fromWebSeed.Add(n)
		f.fromServer.Add(n)
		return
	}
	addr := p.RemoteAddr.String()
	if pc, ok := p.TryAsPeerConn(); ok && strings.HasPrefix(string(pc.PeerID[:]), ServerPeerIDPrefix) {
		f.fromServer.Add(n)
		return
	}
	f.fromPeers.Add(n)
	f.mu.Lock()
	f.senders[addr] = true
	f.mu.Unlock()
}

func (f *fetcher) run(ctx context.Context, mi *metainfo.MetaInfo, ref, digest string) (*Result, error) {
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	stageDir := f.cfg.StageDir
	if stageDir == "" {
		if stageDir, err = os.MkdirTemp("", "goldcast-torrent-"); err != nil {
			return nil, fmt.Errorf("torrent fetch: %w", err)
		}
		defer os.RemoveAll(stageDir)
	} else if err := os.MkdirAll(stageDir, 0o755); err != nil {
		return nil, fmt.Errorf("torrent fetch: stage directory: %w", err)
	} else {
		// A stream left by an earlier fetch would be taken as complete
		// without a hash check: start afresh.
		for _, name := range []string{info.Name, info.Name + ".part"} {
			if err := os.Remove(filepath.Join(stageDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("torrent fetch: clear stage directory: %w", err)
			}
		}
	}
	cc, err := lockedConfig(f.cfg.ListenAddr, NodePeerIDPrefix, f.log)
	if err != nil {
		return nil, err
	}
	if f.cfg.RateLimit > 0 {
		cc.UploadRateLimiter = rate.NewLimiter(rate.Limit(f.cfg.RateLimit), 1<<20)
		cc.DownloadRateLimiter = rate.NewLimiter(rate.Limit(f.cfg.RateLimit), 1<<20)
	}
	// The library otherwise considers only the first 64 MiB of wanted
	// pieces (lowest availability, then lowest index): every node would
	// fetch the same pieces from the server at once. Unlimited, it picks
	// among all of them, rarest first, in an order of its own.
	cc.MaxUnverifiedBytes = 0
	// A short queue of requests at the server's seeder, so a node asks
	// the server only for pieces it needs next and takes the rest from
	// the nodes that got them meanwhile; with the usual 1,024 queued
	// requests each node would reserve a quarter of the stream at the
	// server before any node had a piece to trade.
	cc.Callbacks.ReadExtendedHandshake = func(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
		if strings.HasPrefix(string(pc.PeerID[:]), ServerPeerIDPrefix) {
			m.Reqq = ServerRequestQueue
		}
	}
	cc.HttpRequestDirector = func(r *http.Request) error { f.authorize(r.Header); return nil }
	cc.WebTransport = headerTransport{base: &http.Transport{MaxConnsPerHost: 10}, f: f}
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, f.received)
	st := storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   stageDir,
		UsePartFiles:    g.Some(true),
		PieceCompletion: storage.NewMapPieceCompletion(),
		Logger:          f.log,
	})
	defer st.Close()
	cc.DefaultStorage = st
	cl, err := torrent.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("torrent fetch: start peer on %q: %w", f.cfg.ListenAddr, err)
	}
	defer cl.Close()

	spec, err := torrent.TorrentSpecFromMetaInfoErr(mi)
	if err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	// Requests of 64 KiB instead of BitTorrent's usual 16 KiB: a quarter
	// of the messages for the same bytes, which matters on small CPUs
	// (goldcast peers and the library serve requests of any size).
	spec.ChunkSize = ChunkSize
	webSeeds := spec.Webseeds
	spec.Webseeds = nil // a fallback: see NoWebSeed
	if f.cfg.NoWebSeed {
		webSeeds = nil
	}
	t, _, err := cl.AddTorrentSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	res := &Result{Ref: ref, ManifestDigest: digest, InfoHash: t.InfoHash().HexString(), Size: info.TotalLength()}
	f.log.Info("joining swarm", "image", ref, "info_hash", res.InfoHash, "size", res.Size, "pieces", info.NumPieces(), "listen", cl.ListenAddrs())
	start := time.Now()
	t.DownloadAll()

	// Watch progress (and stalls) while the stream is read.
	watchCtx, stopWatch := context.WithCancel(ctx)
	stalledErr := make(chan error, 1)
	var watchDone sync.WaitGroup
	watchDone.Add(1)
	go func() {
		defer watchDone.Done()
		stalledErr <- f.watch(watchCtx, t, ref, res, webSeeds)
	}()
	extractCtx, cancelExtract := context.WithCancel(ctx)
	defer cancelExtract()
	go func() {
		select {
		case err := <-stalledErr:
			if err != nil {
				stalledErr <- err
				cancelExtract()
			}
		case <-extractCtx.Done():
		}
	}()
	if f.cfg.Staged {
		select {
		case <-t.Complete().On():
		case <-extractCtx.Done():
		}
	}
	xres, xerr := f.extract(extractCtx, t, info, digest)
	if xerr == nil {
		// The tar's end may come before the stream's last bytes: wait
		// for every piece (this node seeds them all).
		select {
		case <-t.Complete().On():
		case <-extractCtx.Done():
			xerr = extractCtx.Err()
		}
	}
	stopWatch()
	watchDone.Wait()
	if xerr != nil {
		select {
		case err := <-stalledErr:
			if err != nil {
				xerr = err
			}
		default:
		}
		return nil, fmt.Errorf("torrent fetch of %s into %q: %w", ref, f.cfg.Target, xerr)
	}
	res.Entries = len(xres.Manifest.Entries)
	if digest == "" {
		res.ManifestDigest = xres.Digest
	}
	res.Download = time.Since(start)
	f.fill(t, cl, res)
	f.report(t, ref, StageComplete, "verified and extracted", res)
	f.log.Info("fetched", "image", ref, "took", res.Download.Round(time.Millisecond), "from_peers", res.FromPeers, "from_server", res.FromServer)

	seedStart := time.Now()
	f.seed(ctx, t, ref, res)
	res.Seed = time.Since(seedStart)
	f.fill(t, cl, res)
	f.report(t, ref, StageDone, "", res)
	return res, nil
}

// extract reads the torrent in order, each piece once it is verified,
// and extracts it, verifying the manifest against the digest the server
// announced and the signature against PublicKey.
func (f *fetcher) extract(ctx context.Context, t *torrent.Torrent, info metainfo.Info, digest string) (*stream.Result, error) {
	r := &verifiedReader{ctx: ctx, t: t, size: info.TotalLength(), pieceLength: info.PieceLength}
	return stream.Extract(ctx, r, f.cfg.Target, stream.ExtractOptions{
		MountedTarget: f.cfg.MountedTarget,
		Verify: func(d string, sig []byte) error {
			if digest != "" && d != digest {
				return fmt.Errorf("the stream's manifest is %s, the server announced %s", d, digest)
			}
			if f.cfg.PublicKey == nil {
				return nil
			}
			var s *signing.Signature
			if sig != nil {
				var err error
				if s, err = signing.Unmarshal(sig); err != nil {
					return err
				}
			}
			return signing.Verify(f.cfg.PublicKey, d, s)
		},
		Materialize: materialize.Options{Unprivileged: os.Geteuid() != 0},
		Logger:      f.log,
	})
}

// watch reports progress and stalls until ctx ends; it returns an error
// when a stall outlasts StallTimeout.
func (f *fetcher) watch(ctx context.Context, t *torrent.Torrent, ref string, res *Result, webSeeds []string) error {
	tick := time.NewTicker(f.cfg.ProgressInterval)
	defer tick.Stop()
	last, lastChange := int64(-1), time.Now()
	stalled := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		done := t.BytesCompleted()
		if done != last {
			last, lastChange = done, time.Now()
			if stalled {
				stalled = false
				f.log.Info("fetch resumed", "image", ref)
				f.report(t, ref, StageResumed, "data arrives again", res)
				continue
			}
		}
		if t.Complete().Bool() {
			continue
		}
		quiet := time.Since(lastChange)
		if len(webSeeds) > 0 && quiet >= f.cfg.WebSeedAfter {
			f.log.Info("no piece for a while: asking the server's web seed too", "image", ref, "quiet", quiet.Round(time.Millisecond), "web_seeds", webSeeds)
			t.AddWebSeeds(webSeeds)
			webSeeds = nil
		}
		if !stalled && quiet >= f.cfg.StallAfter {
			stalled = true
			res.Stalled = true
			msg := f.stallMessage(t, quiet)
			f.log.Warn("fetch stalled", "image", ref, "why", msg)
			f.report(t, ref, StageStalled, msg, res)
			continue
		}
		if stalled && f.cfg.StallTimeout > 0 && quiet >= f.cfg.StallTimeout {
			return fmt.Errorf("stalled for %s: %s", quiet.Round(time.Second), f.stallMessage(t, quiet))
		}
		if !stalled {
			f.report(t, ref, StageFetching, "", res)
		}
	}
}

func (f *fetcher) stallMessage(t *torrent.Torrent, quiet time.Duration) string {
	missing := 0
	for i := range t.NumPieces() {
		if !t.PieceState(i).Complete {
			missing++
		}
	}
	s := t.Stats()
	return fmt.Sprintf("no data for %s: %d of %d pieces missing, %d peers connected and none of them has them; the server is unreachable or does not serve this version; waiting for it or for a peer that holds them",
		quiet.Round(time.Second), missing, t.NumPieces(), s.ActivePeers)
}

// seed serves the other peers until the wave ends (the tracker reports
// no peer still fetching), SeedTime passes or ctx ends.
func (f *fetcher) seed(ctx context.Context, t *torrent.Torrent, ref string, res *Result) {
	if f.cfg.SeedTime <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.SeedTime)
	defer cancel()
	f.report(t, ref, StageSeeding, fmt.Sprintf("seeding for up to %s or until no peer is still fetching", f.cfg.SeedTime), res)
	tick := time.NewTicker(f.cfg.ProgressInterval)
	defer tick.Stop()
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f.report(t, ref, StageSeeding, "", res)
		if f.cfg.SeedFull {
			continue
		}
		sw, err := f.swarm(ctx, res.InfoHash)
		if err != nil {
			idle = 0
			continue // the server is away: keep serving the others
		}
		if sw.Leechers == 0 {
			// Twice in a row, so a peer that joins between announces
			// is not left without us.
			if idle++; idle >= 2 {
				f.log.Info("wave over: no peer is still fetching; stop seeding", "image", ref)
				return
			}
		} else {
			idle = 0
		}
	}
}

// TorrentStatus is the body of GET /api/v1/torrents/{infohash}.
type TorrentStatus struct {
	Entry
	Swarm Swarm `json:"swarm"`
	// ServerUploaded is what the server's seeder has sent.
	ServerUploaded int64 `json:"server_uploaded"`
}

func (f *fetcher) swarm(ctx context.Context, ih string) (Swarm, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.apiURL("/torrents/"+ih), nil)
	if err != nil {
		return Swarm{}, err
	}
	f.authorize(req.Header)
	resp, err := f.http.Do(req)
	if err != nil {
		return Swarm{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Swarm{}, fmt.Errorf("torrent status: %s", resp.Status)
	}
	var st TorrentStatus
	if err := decodeJSON(resp.Body, &st); err != nil {
		return Swarm{}, err
	}
	return st.Swarm, nil
}

func (f *fetcher) fill(t *torrent.Torrent, cl *torrent.Client, res *Result) {
	s := t.Stats()
	res.FromPeers, res.FromServer, res.FromWebSeed = f.fromPeers.Load(), f.fromServer.Load(), f.fromWebSeed.Load()
	res.Uploaded = s.BytesWrittenData.Int64()
	res.HashFailures = s.PiecesDirtiedBad.Int64()
	res.BannedPeers = cl.BadPeerIPs()
	f.mu.Lock()
	res.PeersServed = len(f.senders)
	f.mu.Unlock()
}

func (f *fetcher) report(t *torrent.Torrent, ref, stage, msg string, res *Result) {
	if f.cfg.Progress == nil {
		return
	}
	s := t.Stats()
	f.cfg.Progress(Progress{
		Stage: stage, Ref: ref, Bytes: t.BytesCompleted(), Total: res.Size,
		Peers: s.ActivePeers, Seeders: s.ConnectedSeeders,
		FromPeers: f.fromPeers.Load(), FromServer: f.fromServer.Load(),
		Uploaded: s.BytesWrittenData.Int64(), Message: msg,
	})
}

// ListConfig says which server to list the torrents of, and how to
// authenticate (the fields mean what FetchConfig's do).
type ListConfig struct {
	ServerURL       string
	Token           string
	Node, NodeToken string
	HTTPClient      *http.Client
}

// List asks the server for the torrents it serves and their swarms.
func List(ctx context.Context, cfg ListConfig) ([]TorrentStatus, error) {
	f := &fetcher{cfg: FetchConfig{ServerURL: cfg.ServerURL, Token: cfg.Token, Node: cfg.Node, NodeToken: cfg.NodeToken}, http: cfg.HTTPClient}
	if f.http == nil {
		f.http = &http.Client{}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.apiURL("/torrents"), nil)
	if err != nil {
		return nil, fmt.Errorf("list torrents: %w", err)
	}
	f.authorize(req.Header)
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list torrents: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("list torrents: server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out []TorrentStatus
	if err := decodeJSON(resp.Body, &out); err != nil {
		return nil, fmt.Errorf("list torrents: %w", err)
	}
	return out, nil
}

// verifiedReader reads a torrent's stream in order, each piece once the
// library has verified it, without changing which pieces the library
// fetches first (a torrent.Reader makes the pieces at its position
// urgent).
type verifiedReader struct {
	ctx         context.Context
	t           *torrent.Torrent
	size        int64
	pieceLength int64
	pos         int64
}

func (r *verifiedReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	i := int(r.pos / r.pieceLength)
	if err := r.waitPiece(i); err != nil {
		return 0, err
	}
	end := min(int64(i+1)*r.pieceLength, r.size)
	n := int(min(int64(len(p)), end-r.pos))
	got, err := r.t.Piece(i).Storage().ReadAt(p[:n], r.pos-int64(i)*r.pieceLength)
	r.pos += int64(got)
	if got == n {
		return got, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return got, fmt.Errorf("read verified piece %d: %w", i, err)
}

// waitPiece waits until piece i is verified, or ctx ends.
func (r *verifiedReader) waitPiece(i int) error {
	if r.t.PieceState(i).Complete {
		return nil
	}
	sub := r.t.SubscribePieceStateChanges()
	defer sub.Close()
	// Poll as well: a change between the check above and the
	// subscription would otherwise be missed.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !r.t.PieceState(i).Complete {
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-sub.Values:
		case <-tick.C:
		}
	}
	return nil
}
