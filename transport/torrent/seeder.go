package torrent

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"
)

// SeederConfig configures the server's seeder.
type SeederConfig struct {
	// ListenAddr is where peers connect, HOST:PORT (port 0 picks one;
	// the tracker tells peers which).
	ListenAddr string
	// UploadRate limits what the seeder sends, in bytes per second (0:
	// unlimited).
	UploadRate int64
	// Logger receives the library's logs (default: discard).
	Logger *slog.Logger
}

// Seeder serves stream files to peers from where they lie: each torrent's
// storage is the cached stream file itself, opened read-only in place.
type Seeder struct {
	cl  *torrent.Client
	log *slog.Logger

	mu       sync.Mutex
	torrents map[metainfo.Hash]*seeded
}

type seeded struct {
	t       *torrent.Torrent
	storage storage.ClientImplCloser
}

// NewSeeder starts the seeder's peer listener.
func NewSeeder(cfg SeederConfig) (*Seeder, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cc, err := lockedConfig(cfg.ListenAddr, ServerPeerIDPrefix, log)
	if err != nil {
		return nil, err
	}
	// Nothing to download: the seeder only ever serves complete files.
	cc.NoUpload = false
	cc.DialForPeerConns = false
	if cfg.UploadRate > 0 {
		cc.UploadRateLimiter = rate.NewLimiter(rate.Limit(cfg.UploadRate), 1<<20)
	}
	cc.DefaultStorage = storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   "/nonexistent-goldcast-seeder",
		PieceCompletion: storage.NewMapPieceCompletion(),
		Logger:          log,
	})
	cl, err := torrent.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("start the torrent seeder on %q: %w", cfg.ListenAddr, err)
	}
	return &Seeder{cl: cl, log: log, torrents: map[metainfo.Hash]*seeded{}}, nil
}

// Port is the seeder's peer port.
func (s *Seeder) Port() int { return s.cl.LocalPort() }

// Addrs lists the seeder's listen addresses.
func (s *Seeder) Addrs() []net.Addr { return s.cl.ListenAddrs() }

// Seed starts serving the stream file at path under the torrent whose
// bencoded info is infoBytes. The file must be complete; it is never
// written to.
func (s *Seeder) Seed(infoBytes []byte, path string) error {
	mi := metainfo.MetaInfo{InfoBytes: infoBytes}
	ih := mi.HashInfoBytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.torrents[ih]; ok {
		return nil
	}
	dir, file := filepath.Split(path)
	st := storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   dir,
		TorrentDirMaker: func(string, *metainfo.Info, metainfo.Hash) string { return filepath.Clean(dir) },
		FilePathMaker:   func(storage.FilePathMakerOpts) string { return file },
		// Complete files carry no .part suffix, so every piece starts
		// complete without re-hashing the stream.
		UsePartFiles:    g.Some(true),
		PieceCompletion: storage.NewMapPieceCompletion(),
		Logger:          s.log,
	})
	t, _ := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: infoBytes, Storage: st})
	if t.Info() == nil {
		t.Drop()
		st.Close()
		return fmt.Errorf("seed %q: the library did not take the torrent's info", path)
	}
	if !t.Complete().Bool() {
		// The file is shorter or longer than the torrent says.
		t.Drop()
		st.Close()
		return fmt.Errorf("seed %q: the stream file does not match its torrent", path)
	}
	s.torrents[ih] = &seeded{t: t, storage: st}
	s.log.Debug("seeding", "file", path, "info_hash", ih.HexString())
	return nil
}

// Seeding reports whether the seeder serves ih.
func (s *Seeder) Seeding(ih metainfo.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.torrents[ih]
	return ok
}

// Uploaded is how many payload bytes the seeder sent for ih.
func (s *Seeder) Uploaded(ih metainfo.Hash) int64 {
	s.mu.Lock()
	sd := s.torrents[ih]
	s.mu.Unlock()
	if sd == nil {
		return 0
	}
	st := sd.t.Stats()
	return st.BytesWrittenData.Int64()
}

// Stop stops serving ih (its version was removed) and closes its file.
func (s *Seeder) Stop(ih metainfo.Hash) {
	s.mu.Lock()
	sd := s.torrents[ih]
	delete(s.torrents, ih)
	s.mu.Unlock()
	if sd != nil {
		sd.t.Drop()
		sd.storage.Close()
	}
}

// Close stops the seeder.
func (s *Seeder) Close() error {
	s.mu.Lock()
	all := s.torrents
	s.torrents = map[metainfo.Hash]*seeded{}
	s.mu.Unlock()
	for _, sd := range all {
		sd.t.Drop()
		sd.storage.Close()
	}
	if errs := s.cl.Close(); len(errs) > 0 {
		return fmt.Errorf("stop the torrent seeder: %w", errs[0])
	}
	return nil
}
