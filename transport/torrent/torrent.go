// Package torrent moves image version streams by BitTorrent: the server
// builds one private torrent per version's tar.zst stream, runs the
// tracker (the anacrolix tracker server package over goldcast's own
// in-memory announce tracker), seeds the stream file from its cache
// without copying it, and serves it as a BEP 19 web seed; nodes fetch the
// stream from the server and from each other, extract it while it
// arrives, verify it against the signed manifest, and keep seeding until
// the deploy wave ends.
//
// Every client this package makes is locked down: no DHT, no PEX, no UPnP,
// no uTP, no WebTorrent, no IPv6, and no tracker but the goldcast server's.
// The torrents carry the private flag, so stock clients (aria2c) behave
// the same way.
package torrent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Piece sizes: a power of two between MinPieceLength and MaxPieceLength,
// chosen so a stream has at most about 512 pieces; multi-GB streams get
// 4-16 MiB pieces, small ones 256 KiB.
const (
	MinPieceLength = 256 << 10
	MaxPieceLength = 16 << 20
	targetPieces   = 512
)

// ChunkSize is the size of the blocks a goldcast node requests.
const ChunkSize = 64 << 10

// ServerRequestQueue is how many requests a goldcast node keeps queued at
// the server's seeder (1 MiB of chunks: enough to keep a fast link to
// the server busy).
const ServerRequestQueue = 16

// PieceLength chooses the piece size for a stream of size bytes.
func PieceLength(size int64) int64 {
	l := int64(MinPieceLength)
	for l < MaxPieceLength && size/l > targetPieces {
		l <<= 1
	}
	return l
}

// BuildInfo hashes the stream file at path into a private single-file
// info dictionary named name, returning it with its bencoded bytes (whose
// sha1 is the info hash) and the whole file's sha256.
func BuildInfo(path, name string) (*metainfo.Info, []byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, "", fmt.Errorf("open stream %q: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, "", fmt.Errorf("stat stream %q: %w", path, err)
	}
	private := true
	info := &metainfo.Info{
		Name:        name,
		Length:      st.Size(),
		PieceLength: PieceLength(st.Size()),
		Private:     &private,
		Source:      "goldcast",
	}
	whole := sha256.New()
	info.Pieces, err = metainfo.GeneratePieces(io.TeeReader(io.LimitReader(f, st.Size()), whole), info.PieceLength, nil)
	if err != nil {
		return nil, nil, "", fmt.Errorf("hash pieces of %q: %w", path, err)
	}
	infoBytes, err := encodeInfo(info)
	if err != nil {
		return nil, nil, "", err
	}
	return info, infoBytes, hex.EncodeToString(whole.Sum(nil)), nil
}

// MetaInfo assembles a .torrent: the info bytes, goldcast's tracker as
// the only announce URL, and the server's web seed.
func MetaInfo(infoBytes []byte, announce, webSeed string) *metainfo.MetaInfo {
	mi := &metainfo.MetaInfo{
		InfoBytes:    infoBytes,
		Announce:     announce,
		CreatedBy:    "goldcast",
		CreationDate: 0,
	}
	if webSeed != "" {
		mi.UrlList = []string{webSeed}
	}
	return mi
}

// Peer ID prefixes (BEP 20): the server's seeder and goldcast nodes.
// A node tells the server's bytes from its peers' by the prefix.
const (
	ServerPeerIDPrefix = "-GC0S01-"
	NodePeerIDPrefix   = "-GC0N01-"
)

// lockedConfig is the library client configuration every goldcast peer
// uses: TCP on listen only, nothing that finds or announces peers
// anywhere but goldcast's tracker.
func lockedConfig(listen, peerIDPrefix string, log *slog.Logger) (*torrent.ClientConfig, error) {
	host, port, err := splitListen(listen)
	if err != nil {
		return nil, err
	}
	cfg := torrent.NewDefaultClientConfig()
	cfg.ListenHost = func(string) string { return host }
	cfg.ListenPort = port
	cfg.NoDHT = true
	cfg.PeriodicallyAnnounceTorrentsToDht = false
	cfg.DhtStartingNodes = nil
	cfg.DisablePEX = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableWebtorrent = true
	cfg.DisableUTP = true
	cfg.DisableIPv6 = true
	cfg.Seed = true
	cfg.Bep20 = peerIDPrefix
	// Plain BitTorrent handshakes: the links are the admin's own network
	// and two CPU cores are better spent on zstd and hashing.
	cfg.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: false}
	cfg.Slogger = log
	return cfg, nil
}

// splitListen parses HOST:PORT (HOST may be empty, PORT 0 picks one).
func splitListen(listen string) (string, int, error) {
	if listen == "" {
		listen = ":0"
	}
	host, ps, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("peer listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("peer listen address %q: bad port", listen)
	}
	return host, port, nil
}

// encodeInfo bencodes an info dictionary.
func encodeInfo(info *metainfo.Info) ([]byte, error) {
	b, err := bencode.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode torrent info %q: %w", info.Name, err)
	}
	return b, nil
}

// streamName is the file name a version's stream has inside its torrent.
func streamName(ref string) string { return ref + ".tar.zst" }

// decodeJSON decodes one JSON value from r.
func decodeJSON(r io.Reader, v any) error {
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(v); err != nil {
		return fmt.Errorf("decode server answer: %w", err)
	}
	return nil
}
