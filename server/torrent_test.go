package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/transport/torrent"
)

// torrentServer runs the server on loopback over a store holding image
// "web" (one version of a few MB of incompressible files).
type torrentServer struct {
	url   string
	data  string
	store *store.Store
	stop  func()
}

func startTorrentServer(t *testing.T, cfg TorrentConfig) *torrentServer {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	st, err := store.Open(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 4 {
		b := make([]byte, 1<<20+i*4099)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ImportDir(context.Background(), src, "web", store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DataDir: data, HTTPAddr: "127.0.0.1:0", Torrent: cfg, Ready: func(r Ready) { ready <- r }})
	}()
	var r Ready
	select {
	case r = <-ready:
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("server did not start")
	}
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	}
	t.Cleanup(stop)
	return &torrentServer{url: r.URL, data: data, store: st, stop: stop}
}

func (s *torrentServer) get(t *testing.T, path string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestTorrentFileTrackerWebSeed checks what the server publishes for a
// version: a private torrent whose only tracker is the server's and whose
// web seed serves the cached stream with ranges; the tracker refuses
// unknown info hashes; removing the version removes its torrent.
func TestTorrentFileTrackerWebSeed(t *testing.T) {
	s := startTorrentServer(t, TorrentConfig{})
	resp, body := s.get(t, "/api/v1/images/web@1/torrent", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET torrent: %s: %s", resp.Status, body)
	}
	mi, err := metainfo.Load(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	ih := mi.HashInfoBytes().HexString()
	if info.Private == nil || !*info.Private {
		t.Error("the torrent is not private")
	}
	got := map[string]any{
		"announce": mi.Announce, "announce-list": len(mi.AnnounceList), "url-list": []string(mi.UrlList),
		"name": info.Name, "header version": resp.Header.Get("X-Goldcast-Version"),
		"piece length": info.PieceLength,
	}
	want := map[string]any{
		"announce": s.url + "/api/v1/torrent/announce", "announce-list": 0,
		"url-list": []string{s.url + "/api/v1/torrent/" + ih + "/data"}, "name": "web@1.tar.zst",
		"header version": "web@1", "piece length": int64(torrent.MinPieceLength),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("torrent (-want +got):\n%s", d)
	}

	// The web seed serves exactly the stream the pieces describe.
	cached := filepath.Join(s.data, "streams", "web", "1.tar.zst")
	stream, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(stream)) != info.Length {
		t.Fatalf("cached stream is %d bytes, the torrent says %d", len(stream), info.Length)
	}
	for i := range info.NumPieces() {
		p := info.Piece(i)
		sum := metainfo.HashBytes(stream[p.Offset() : p.Offset()+p.Length()])
		if !bytes.Equal(sum[:], info.Pieces[i*20:i*20+20]) {
			t.Fatalf("piece %d of the cached stream does not match the torrent", i)
		}
	}
	resp, part := s.get(t, "/api/v1/torrent/"+ih+"/data", map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, stream[1000:2000]) {
		t.Errorf("web seed range: %s, %d bytes, want 206 and the stream's bytes 1000-1999", resp.Status, len(part))
	}

	// Tracker: unknown info hashes are refused; a known one lists the
	// server's seeder.
	announce := func(h metainfo.Hash) (int, map[string]any) {
		q := url.Values{"info_hash": {string(h[:])}, "peer_id": {"-XX0001-abcdefghijkl"}, "port": {"6999"}, "left": {"100"}, "compact": {"1"}}
		resp, b := s.get(t, "/api/v1/torrent/announce?"+q.Encode(), nil)
		var m map[string]any
		if err := bencode.Unmarshal(b, &m); err != nil {
			t.Fatalf("tracker answer %q: %v", b, err)
		}
		return resp.StatusCode, m
	}
	code, m := announce(metainfo.HashBytes([]byte("not ours")))
	if code != http.StatusNotFound || !strings.Contains(fmt.Sprint(m["failure reason"]), "unknown torrent") {
		t.Errorf("announce of an unknown torrent: %d %v, want 404 with a failure reason", code, m)
	}
	code, m = announce(mi.HashInfoBytes())
	peers, _ := m["peers"].(string)
	if code != http.StatusOK || len(peers) != 6 {
		t.Errorf("announce: %d %v, want the server's seeder as the one peer", code, m)
	}
	resp, body = s.get(t, "/api/v1/torrents/"+ih, nil)
	var st torrent.TorrentStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("torrent status %s: %v", body, err)
	}
	if d := cmp.Diff(torrent.Swarm{Leechers: 1}, st.Swarm); d != "" {
		t.Errorf("swarm after one leecher's announce (-want +got):\n%s", d)
	}
	sum := sha256.Sum256(stream)
	if st.StreamSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("status stream_sha256 %s, want %x", st.StreamSHA256, sum)
	}

	// Removed with the version: gone from the API, the tracker and disk.
	if err := s.store.RemoveVersion("web", 1); err != nil {
		t.Fatal(err)
	}
	if resp, _ := s.get(t, "/api/v1/torrent/"+ih+"/data", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("web seed of a removed version: %s, want 404", resp.Status)
	}
	if code, _ := announce(mi.HashInfoBytes()); code != http.StatusNotFound {
		t.Errorf("announce of a removed version: %d, want 404", code)
	}
	if resp, _ := s.get(t, "/api/v1/images/web@1/torrent", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("torrent of a removed version: %s, want 404", resp.Status)
	}
	if _, err := os.Stat(cached); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cached stream of a removed version: %v, want it deleted", err)
	}
}

// TestTorrentBadPeer puts a peer that serves a corrupted copy of the
// stream into the swarm: the fetch detects its pieces by their hashes,
// bans it, gets them again from the server, and the result verifies.
func TestTorrentBadPeer(t *testing.T) {
	// The server serves by web seed only (two requests at a time), so
	// the bad peer is sure to be asked for pieces.
	s := startTorrentServer(t, TorrentConfig{PeerAddr: "off"})
	resp, body := s.get(t, "/api/v1/images/web/torrent", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET torrent: %s: %s", resp.Status, body)
	}
	mi, err := metainfo.Load(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// The bad peer seeds a copy with every byte of every second piece
	// flipped, from 127.0.0.2, announced from there.
	stream, err := os.ReadFile(filepath.Join(s.data, "streams", "web", "1.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := mi.UnmarshalInfo()
	for i := 0; i < info.NumPieces(); i += 2 {
		p := info.Piece(i)
		for j := p.Offset(); j < p.Offset()+p.Length(); j++ {
			stream[j] ^= 0xff
		}
	}
	badFile := filepath.Join(t.TempDir(), "bad.tar.zst")
	if err := os.WriteFile(badFile, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	bad, err := torrent.NewSeeder(torrent.SeederConfig{ListenAddr: "127.0.0.2:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Seed(mi.InfoBytes, badFile); err != nil {
		t.Fatal(err)
	}
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	ih := mi.HashInfoBytes()
	q := url.Values{"info_hash": {string(ih[:])}, "peer_id": {"-XX0001-badbadbadbad"}, "port": {fmt.Sprint(bad.Port())}, "left": {"0"}}
	aresp, err := from2.Get(s.url + "/api/v1/torrent/announce?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	aresp.Body.Close()
	if aresp.StatusCode != http.StatusOK {
		t.Fatalf("bad peer's announce: %s", aresp.Status)
	}

	target := filepath.Join(t.TempDir(), "root")
	res, err := torrent.Fetch(context.Background(), torrent.FetchConfig{
		ServerURL: s.url, Ref: "web", Target: target, ListenAddr: "127.0.0.3:0",
		StallAfter: 3 * time.Second, StallTimeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.HashFailures == 0 {
		t.Errorf("no piece failed its hash check; the bad peer was never used (result %+v)", res)
	}
	if !contains(res.BannedPeers, "127.0.0.2") {
		t.Errorf("banned peers %v, want the bad peer 127.0.0.2", res.BannedPeers)
	}
	v, err := s.store.Resolve("web@1")
	if err != nil {
		t.Fatal(err)
	}
	if res.ManifestDigest != v.Info.ManifestDigest {
		t.Errorf("fetched manifest %s, want %s", res.ManifestDigest, v.Info.ManifestDigest)
	}
	for i := range 4 {
		want, _ := os.ReadFile(filepath.Join(v.TreePath(), fmt.Sprintf("f%d", i)))
		got, err := os.ReadFile(filepath.Join(target, fmt.Sprintf("f%d", i)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("f%d differs from the image (%v)", i, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
