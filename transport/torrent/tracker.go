package torrent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/tracker"
	httpTrackerServer "github.com/anacrolix/torrent/tracker/http/server"
	trackerServer "github.com/anacrolix/torrent/tracker/server"
	"github.com/anacrolix/torrent/tracker/udp"
)

// ErrUnknownTorrent is returned for announces of info hashes the tracker
// does not serve: goldcast's tracker only tracks its own versions.
var ErrUnknownTorrent = errors.New("unknown torrent: this tracker serves only the goldcast server's image versions")

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	// Interval is the announce interval handed to peers (default 15 s:
	// deploy waves are short, and a peer that lost the server finds it
	// again within one interval).
	Interval time.Duration
	// Known reports whether an info hash belongs to a served version;
	// announces of anything else are refused.
	Known func(ih metainfo.Hash) bool
	// SelfPort, when it returns a port, adds the server's own seeder to
	// every peer list, at the address the announcing peer used to reach
	// the tracker.
	SelfPort func(ih metainfo.Hash) (port uint16, ok bool)
}

// Tracker is an in-memory BitTorrent tracker for goldcast's torrents. It
// implements the library's trackerServer.AnnounceTracker; Handler puts it
// behind the library's HTTP tracker server.
type Tracker struct {
	cfg TrackerConfig

	mu     sync.Mutex
	swarms map[metainfo.Hash]map[netip.AddrPort]*trackedPeer
}

type trackedPeer struct {
	id   [20]byte
	left int64
	seen time.Time
}

// NewTracker makes an empty tracker.
func NewTracker(cfg TrackerConfig) *Tracker {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	return &Tracker{cfg: cfg, swarms: map[metainfo.Hash]map[netip.AddrPort]*trackedPeer{}}
}

func (t *Tracker) known(ih metainfo.Hash) bool { return t.cfg.Known == nil || t.cfg.Known(ih) }

// expiry is how long a peer stays listed without announcing again.
func (t *Tracker) expiry() time.Duration { return 3*t.cfg.Interval + 10*time.Second }

// TrackAnnounce records an announce (trackerServer.AnnounceTracker).
func (t *Tracker) TrackAnnounce(_ context.Context, req udp.AnnounceRequest, addr trackerServer.AnnounceAddr) error {
	ih := metainfo.Hash(req.InfoHash)
	if !t.known(ih) {
		return fmt.Errorf("announce of %s: %w", ih.HexString(), ErrUnknownTorrent)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sw := t.swarms[ih]
	if req.Event == tracker.Stopped {
		delete(sw, addr)
		return nil
	}
	if sw == nil {
		sw = map[netip.AddrPort]*trackedPeer{}
		t.swarms[ih] = sw
	}
	sw[addr] = &trackedPeer{id: req.PeerId, left: req.Left, seen: time.Now()}
	return nil
}

// Scrape answers scrapes (trackerServer.AnnounceTracker).
func (t *Tracker) Scrape(_ context.Context, ihs []trackerServer.InfoHash) ([]udp.ScrapeInfohashResult, error) {
	out := make([]udp.ScrapeInfohashResult, len(ihs))
	for i, ih := range ihs {
		s := t.Swarm(metainfo.Hash(ih))
		out[i] = udp.ScrapeInfohashResult{Seeders: int32(s.Seeders), Leechers: int32(s.Leechers)}
	}
	return out, nil
}

// GetPeers lists a swarm's peers for an announcing peer
// (trackerServer.AnnounceTracker): the others first, then the server's
// own seeder.
func (t *Tracker) GetPeers(ctx context.Context, ih trackerServer.InfoHash, opts trackerServer.GetPeersOpts, remote trackerServer.AnnounceAddr) trackerServer.ServerAnnounceResult {
	h := metainfo.Hash(ih)
	if !t.known(h) {
		return trackerServer.ServerAnnounceResult{Err: ErrUnknownTorrent}
	}
	max := opts.MaxCount.UnwrapOr(200)
	var res trackerServer.ServerAnnounceResult
	var seeders, leechers int32
	t.mu.Lock()
	t.expireLocked(h)
	addrs := make([]netip.AddrPort, 0, len(t.swarms[h]))
	for a, p := range t.swarms[h] {
		if p.left == 0 {
			seeders++
		} else {
			leechers++
		}
		if a != remote {
			addrs = append(addrs, a)
		}
	}
	t.mu.Unlock()
	// A stable order (by address) keeps logs and tests readable; the
	// server's seeder comes last, so peers fill their connection slots
	// with each other first.
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].String() < addrs[j].String() })
	if self, ok := t.selfAddr(ctx, h); ok && self != remote {
		addrs = append(addrs, self)
		seeders++
	}
	for _, a := range addrs {
		if uint(len(res.Peers)) >= max {
			break
		}
		res.Peers = append(res.Peers, trackerServer.PeerInfo{AnnounceAddr: a})
	}
	res.Interval = generics.Some(int32(t.cfg.Interval / time.Second))
	res.Seeders = generics.Some(seeders)
	res.Leechers = generics.Some(leechers)
	return res
}

// selfAddr is the server's seeder as the announcing peer can reach it:
// the local address of the tracker request, with the seeder's port.
func (t *Tracker) selfAddr(ctx context.Context, ih metainfo.Hash) (netip.AddrPort, bool) {
	if t.cfg.SelfPort == nil {
		return netip.AddrPort{}, false
	}
	port, ok := t.cfg.SelfPort(ih)
	if !ok {
		return netip.AddrPort{}, false
	}
	la, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	ta, _ := la.(*net.TCPAddr)
	if ta == nil {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), port), true
}

func (t *Tracker) expireLocked(ih metainfo.Hash) {
	cut := time.Now().Add(-t.expiry())
	for a, p := range t.swarms[ih] {
		if p.seen.Before(cut) {
			delete(t.swarms[ih], a)
		}
	}
}

// Forget drops a torrent's swarm (its version was removed).
func (t *Tracker) Forget(ih metainfo.Hash) {
	t.mu.Lock()
	delete(t.swarms, ih)
	t.mu.Unlock()
}

// Swarm counts a torrent's peers as the tracker knows them (the
// server's own seeder not included).
type Swarm struct {
	// Seeders have the whole stream; Leechers are still fetching it.
	Seeders  int `json:"seeders"`
	Leechers int `json:"leechers"`
}

// Swarm reports who is in a torrent's swarm.
func (t *Tracker) Swarm(ih metainfo.Hash) Swarm {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(ih)
	var s Swarm
	for _, p := range t.swarms[ih] {
		if p.left == 0 {
			s.Seeders++
		} else {
			s.Leechers++
		}
	}
	return s
}

// Handler serves announces over HTTP (BEP 3, compact peer lists).
// Announces for unknown info hashes are refused with a failure reason
// before they reach the library's handler.
func (t *Tracker) Handler() http.Handler {
	lib := httpTrackerServer.Handler{Announce: &trackerServer.AnnounceHandler{AnnounceTracker: t}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.Query().Get("info_hash")
		if len(raw) != 20 {
			failure(w, http.StatusBadRequest, "info_hash must be 20 bytes")
			return
		}
		var ih metainfo.Hash
		copy(ih[:], raw)
		if !t.known(ih) {
			failure(w, http.StatusNotFound, ErrUnknownTorrent.Error())
			return
		}
		lib.ServeHTTP(w, r)
	})
}

// failure answers a tracker request with a BEP 3 failure reason.
func failure(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	b, _ := bencode.Marshal(map[string]string{"failure reason": reason})
	w.Write(b)
}
