package torrent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/tracker"
	trackerServer "github.com/anacrolix/torrent/tracker/server"
	"github.com/anacrolix/torrent/tracker/udp"
	"github.com/google/go-cmp/cmp"
)

func TestPieceLength(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		size int64
		want int64
	}{
		{0, 256 << 10},
		{5 * MiB, 256 << 10},
		{128 * MiB, 256 << 10},
		{200 * MiB, 512 << 10},
		{2048 * MiB, 4 * MiB},
		{4096 * MiB, 8 * MiB},
		{8192 * MiB, 16 * MiB},
		{64 << 30, 16 * MiB},
	}
	for _, tc := range tests {
		if got := PieceLength(tc.size); got != tc.want {
			t.Errorf("PieceLength(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	data := bytes.Repeat([]byte("goldcast stream "), 50000) // 800,000 bytes: 4 pieces
	path := filepath.Join(t.TempDir(), "s.tar.zst")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	info, infoBytes, sum, err := BuildInfo(path, "web@1.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if sum != hex.EncodeToString(want[:]) {
		t.Errorf("sha256 %s, want %x", sum, want)
	}
	mi := metainfo.MetaInfo{InfoBytes: infoBytes}
	decoded, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{"name": decoded.Name, "length": decoded.Length, "pieces": decoded.NumPieces(),
		"private": decoded.Private != nil && *decoded.Private, "piece length": decoded.PieceLength}
	if d := cmp.Diff(map[string]any{"name": "web@1.tar.zst", "length": int64(len(data)), "pieces": 4, "private": true,
		"piece length": int64(MinPieceLength)}, got); d != "" {
		t.Errorf("info (-want +got):\n%s", d)
	}
	for i := range info.NumPieces() {
		p := info.Piece(i)
		h := metainfo.HashBytes(data[p.Offset() : p.Offset()+p.Length()])
		if !bytes.Equal(h[:], decoded.Pieces[20*i:20*i+20]) {
			t.Errorf("piece %d hash does not match the file", i)
		}
	}
}

func TestTracker(t *testing.T) {
	ours := metainfo.HashBytes([]byte("ours"))
	other := metainfo.HashBytes([]byte("other"))
	tr := NewTracker(TrackerConfig{
		Known:    func(ih metainfo.Hash) bool { return ih == ours },
		SelfPort: func(ih metainfo.Hash) (uint16, bool) { return 6881, true },
	})
	// The tracker's HTTP handler puts the request's local address into
	// the context; the server's seeder is listed there.
	ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, net.Addr(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8080}))
	a := netip.MustParseAddrPort("10.0.0.2:6000")
	b := netip.MustParseAddrPort("10.0.0.3:6000")
	c := netip.MustParseAddrPort("10.0.0.4:6000")
	self := netip.MustParseAddrPort("10.0.0.1:6881")
	announce := func(addr netip.AddrPort, left int64, ev tracker.AnnounceEvent) error {
		return tr.TrackAnnounce(ctx, udp.AnnounceRequest{InfoHash: ours, Left: left, Event: ev}, addr)
	}
	peers := func(from netip.AddrPort, max uint) []netip.AddrPort {
		res := tr.GetPeers(ctx, ours, trackerServer.GetPeersOpts{MaxCount: generics.Some(max)}, from)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		var out []netip.AddrPort
		for _, p := range res.Peers {
			out = append(out, p.AnnounceAddr)
		}
		return out
	}
	type step struct {
		name      string
		do        func() error
		from      netip.AddrPort
		max       uint
		wantPeers []netip.AddrPort
		wantSwarm Swarm
	}
	steps := []step{
		{name: "first leecher sees only the server", do: func() error { return announce(a, 100, tracker.Started) },
			from: a, max: 50, wantPeers: []netip.AddrPort{self}, wantSwarm: Swarm{Leechers: 1}},
		{name: "second leecher sees the first, then the server", do: func() error { return announce(b, 100, tracker.Started) },
			from: b, max: 50, wantPeers: []netip.AddrPort{a, self}, wantSwarm: Swarm{Leechers: 2}},
		{name: "a completed peer counts as a seeder", do: func() error { return announce(a, 0, tracker.Completed) },
			from: c, max: 50, wantPeers: []netip.AddrPort{a, b, self}, wantSwarm: Swarm{Seeders: 1, Leechers: 1}},
		{name: "num_want caps the list", do: func() error { return nil },
			from: c, max: 1, wantPeers: []netip.AddrPort{a}, wantSwarm: Swarm{Seeders: 1, Leechers: 1}},
		{name: "a stopped peer leaves", do: func() error { return announce(b, 100, tracker.Stopped) },
			from: c, max: 50, wantPeers: []netip.AddrPort{a, self}, wantSwarm: Swarm{Seeders: 1}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if d := cmp.Diff(s.wantPeers, peers(s.from, s.max), cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); d != "" {
			t.Errorf("%s: peers (-want +got):\n%s", s.name, d)
		}
		if d := cmp.Diff(s.wantSwarm, tr.Swarm(ours)); d != "" {
			t.Errorf("%s: swarm (-want +got):\n%s", s.name, d)
		}
	}
	if err := tr.TrackAnnounce(ctx, udp.AnnounceRequest{InfoHash: other}, a); !errors.Is(err, ErrUnknownTorrent) {
		t.Errorf("announce of an unknown torrent: %v, want ErrUnknownTorrent", err)
	}
	if res := tr.GetPeers(ctx, other, trackerServer.GetPeersOpts{}, a); !errors.Is(res.Err, ErrUnknownTorrent) {
		t.Errorf("peers of an unknown torrent: %v, want ErrUnknownTorrent", res.Err)
	}
	tr.Forget(ours)
	if d := cmp.Diff(Swarm{}, tr.Swarm(ours)); d != "" {
		t.Errorf("swarm after Forget (-want +got):\n%s", d)
	}
}
