package torrent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/durable"
)

// A version's stream is fixed bytes only once written: signing a version
// later adds a signature entry, and zstd's output is not promised stable
// across library versions. So each version's stream is exported once into
// DIR/NAME/V.tar.zst (atomically) with its torrent info beside it, and
// the torrent always describes that file. A cached stream whose manifest
// or signature no longer matches the version is rebuilt (a new info hash).

// CatalogConfig configures a Catalog.
type CatalogConfig struct {
	// Store is the image store whose versions get torrents.
	Store *store.Store
	// Dir holds the cached streams (e.g. DATA/streams).
	Dir string
	// Seeder serves the streams to peers (nil: web seed only).
	Seeder *Seeder
	// Tracker is told when a torrent goes away.
	Tracker *Tracker
	// Logger receives progress notes (default: discard).
	Logger *slog.Logger
}

// Catalog keeps one torrent per image version: it creates them on
// publish (Sync) or on first request (Ensure) and removes them with the
// version.
type Catalog struct {
	cfg CatalogConfig
	log *slog.Logger

	mu       sync.Mutex
	byRef    map[string]*Entry
	byHash   map[metainfo.Hash]*Entry
	building map[string]*sync.Mutex
}

// Entry is one version's torrent.
type Entry struct {
	Image   string `json:"image"`
	Version int    `json:"version"`
	// Ref is NAME@V.
	Ref string `json:"ref"`
	// ManifestDigest identifies the version; SignatureDigest is the
	// sha256 of its signature file when the stream was made ("" unsigned).
	ManifestDigest  string `json:"manifest_digest"`
	SignatureDigest string `json:"signature_digest,omitempty"`
	InfoHash        string `json:"info_hash"`
	// Size is the stream's length; PieceLength and Pieces its pieces.
	Size        int64 `json:"size"`
	PieceLength int64 `json:"piece_length"`
	Pieces      int   `json:"pieces"`
	// StreamSHA256 is the sha256 of the whole stream file.
	StreamSHA256 string    `json:"stream_sha256"`
	Created      time.Time `json:"created"`
	// Path is the cached stream file.
	Path string `json:"-"`
	// InfoBytes is the bencoded info dictionary.
	InfoBytes []byte `json:"-"`
}

// Hash is the entry's info hash.
func (e *Entry) Hash() metainfo.Hash { return metainfo.HashBytes(e.InfoBytes) }

// NewCatalog opens the stream cache.
func NewCatalog(cfg CatalogConfig) (*Catalog, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create torrent stream cache %q: %w", cfg.Dir, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Catalog{cfg: cfg, log: log, byRef: map[string]*Entry{}, byHash: map[metainfo.Hash]*Entry{}, building: map[string]*sync.Mutex{}}, nil
}

// Lookup finds a served torrent by info hash.
func (c *Catalog) Lookup(ih metainfo.Hash) (*Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byHash[ih]
	return e, ok
}

// List returns the served torrents by image and version.
func (c *Catalog) List() []*Entry {
	c.mu.Lock()
	out := make([]*Entry, 0, len(c.byRef))
	for _, e := range c.byRef {
		out = append(out, e)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Image != out[j].Image {
			return out[i].Image < out[j].Image
		}
		return out[i].Version < out[j].Version
	})
	return out
}

func signatureDigest(v *store.Version) (string, error) {
	_, raw, err := v.Signature()
	if err != nil || raw == nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// current reports whether e still describes v as it is now.
func current(e *Entry, v *store.Version, sig string) bool {
	return e.ManifestDigest == v.Info.ManifestDigest && e.SignatureDigest == sig
}

// Ensure returns the version's torrent, exporting and hashing its stream
// the first time (or again when the version was signed since).
func (c *Catalog) Ensure(ctx context.Context, v *store.Version) (*Entry, error) {
	ref := v.Ref()
	sig, err := signatureDigest(v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if e, ok := c.byRef[ref]; ok && current(e, v, sig) {
		c.mu.Unlock()
		return e, nil
	}
	lock := c.building[ref]
	if lock == nil {
		lock = &sync.Mutex{}
		c.building[ref] = lock
	}
	c.mu.Unlock()

	lock.Lock()
	defer lock.Unlock()
	c.mu.Lock()
	if e, ok := c.byRef[ref]; ok && current(e, v, sig) {
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()

	e, err := c.load(v, sig)
	if err != nil {
		c.log.Info("making the torrent of a version", "image", ref, "reason", err)
		if e, err = c.build(ctx, v, sig); err != nil {
			return nil, err
		}
	}
	if c.cfg.Seeder != nil {
		if err := c.cfg.Seeder.Seed(e.InfoBytes, e.Path); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if old, ok := c.byRef[ref]; ok && old.InfoHash != e.InfoHash {
		c.dropLocked(old)
	}
	c.byRef[ref] = e
	c.byHash[e.Hash()] = e
	c.mu.Unlock()
	return e, nil
}

func (c *Catalog) paths(image string, version int) (streamPath, metaPath string) {
	base := filepath.Join(c.cfg.Dir, image, strconv.Itoa(version))
	return base + ".tar.zst", base + ".json"
}

// cachedMeta is DIR/NAME/V.json: the entry with its info bytes.
type cachedMeta struct {
	Entry
	Info []byte `json:"info"`
}

// load reuses a cached stream that still matches the version.
func (c *Catalog) load(v *store.Version, sig string) (*Entry, error) {
	sp, mp := c.paths(v.Info.Image, v.Info.Version)
	b, err := os.ReadFile(mp)
	if err != nil {
		return nil, errors.New("no cached stream")
	}
	var cm cachedMeta
	if err := json.Unmarshal(b, &cm); err != nil {
		return nil, fmt.Errorf("cached torrent %q: %w", mp, err)
	}
	e := cm.Entry
	e.InfoBytes, e.Path = cm.Info, sp
	if !current(&e, v, sig) {
		return nil, errors.New("the cached stream is of an older state of the version (signed since)")
	}
	st, err := os.Stat(sp)
	if err != nil || st.Size() != e.Size {
		return nil, errors.New("the cached stream file is missing or has the wrong size")
	}
	if e.Hash().HexString() != e.InfoHash {
		return nil, errors.New("the cached torrent info does not match its hash")
	}
	return &e, nil
}

// build exports the version's stream into the cache and hashes it.
func (c *Catalog) build(ctx context.Context, v *store.Version, sig string) (*Entry, error) {
	ref := v.Ref()
	sp, mp := c.paths(v.Info.Image, v.Info.Version)
	if err := os.MkdirAll(filepath.Dir(sp), 0o755); err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	start := time.Now()
	tmp, err := os.CreateTemp(filepath.Dir(sp), "."+strconv.Itoa(v.Info.Version)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := c.cfg.Store.Export(ctx, ref, tmp, stream.WriteOptions{}); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("torrent of %s: flush stream: %w", ref, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	info, infoBytes, sum, err := BuildInfo(tmp.Name(), streamName(ref))
	if err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	// A stream of an earlier state may be served right now: the new one
	// replaces it by rename, and the old torrent is dropped by Ensure.
	if c.cfg.Seeder != nil {
		c.mu.Lock()
		if old, ok := c.byRef[ref]; ok {
			c.dropLocked(old)
		}
		c.mu.Unlock()
	}
	if err := os.Rename(tmp.Name(), sp); err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	e := &Entry{
		Image: v.Info.Image, Version: v.Info.Version, Ref: ref,
		ManifestDigest: v.Info.ManifestDigest, SignatureDigest: sig,
		Size: info.Length, PieceLength: info.PieceLength, Pieces: info.NumPieces(),
		StreamSHA256: sum, Created: time.Now().UTC(), Path: sp, InfoBytes: infoBytes,
	}
	e.InfoHash = e.Hash().HexString()
	b, err := json.MarshalIndent(cachedMeta{Entry: *e, Info: infoBytes}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(mp, b, 0o644); err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	if err := durable.SyncDir(filepath.Dir(sp)); err != nil {
		return nil, fmt.Errorf("torrent of %s: %w", ref, err)
	}
	c.log.Info("torrent ready", "image", ref, "info_hash", e.InfoHash, "size", e.Size, "piece_length", e.PieceLength, "took", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// dropLocked stops serving e (c.mu held).
func (c *Catalog) dropLocked(e *Entry) {
	ih := e.Hash()
	delete(c.byHash, ih)
	if c.byRef[e.Ref] == e {
		delete(c.byRef, e.Ref)
	}
	if c.cfg.Seeder != nil {
		c.cfg.Seeder.Stop(ih)
	}
	if c.cfg.Tracker != nil {
		c.cfg.Tracker.Forget(ih)
	}
}

// Sync makes the torrents of the versions refs name (NAME for the
// latest version, so publishing a version creates its torrent; NAME@N)
// and removes the torrents and cached streams of versions that no longer
// exist. Other versions get their torrent on first request (Ensure).
func (c *Catalog) Sync(ctx context.Context, refs []string) error {
	for _, ref := range refs {
		v, err := c.cfg.Store.Resolve(ref)
		if err != nil {
			continue // not published yet, or removed meanwhile
		}
		if _, err := c.Ensure(ctx, v); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.log.Warn("cannot make the torrent of a version", "image", v.Ref(), "err", err)
		}
	}
	// Forget served versions that are gone.
	c.mu.Lock()
	var gone []*Entry
	for _, e := range c.byRef {
		if !c.exists(e.Image, e.Version) {
			gone = append(gone, e)
		}
	}
	for _, e := range gone {
		c.log.Info("version removed: its torrent is gone", "image", e.Ref, "info_hash", e.InfoHash)
		c.dropLocked(e)
	}
	c.mu.Unlock()
	return c.sweep()
}

// Remove drops the torrent of image@version now and deletes its cached
// stream (the server calls it when it removes a version itself).
func (c *Catalog) Remove(image string, version int) {
	c.mu.Lock()
	if e, ok := c.byRef[fmt.Sprintf("%s@%d", image, version)]; ok {
		c.dropLocked(e)
	}
	c.mu.Unlock()
	sp, mp := c.paths(image, version)
	os.Remove(sp)
	os.Remove(mp)
}

func (c *Catalog) exists(image string, version int) bool {
	_, err := c.cfg.Store.Resolve(fmt.Sprintf("%s@%d", image, version))
	return err == nil
}

// sweep deletes cached streams of versions that no longer exist.
func (c *Catalog) sweep() error {
	imgs, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("list torrent stream cache: %w", err)
	}
	for _, img := range imgs {
		if !img.IsDir() {
			continue
		}
		dir := filepath.Join(c.cfg.Dir, img.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		left := 0
		for _, f := range files {
			name := f.Name()
			num, _, _ := strings.Cut(name, ".")
			n, err := strconv.Atoi(num)
			if err != nil || strings.HasPrefix(name, ".") {
				left++ // temporary files of builds in progress
				continue
			}
			c.mu.Lock()
			served := c.byRef[fmt.Sprintf("%s@%d", img.Name(), n)] != nil
			c.mu.Unlock()
			if !served && !c.exists(img.Name(), n) {
				os.Remove(filepath.Join(dir, name))
				continue
			}
			left++
		}
		if left == 0 {
			os.Remove(dir)
		}
	}
	return nil
}

// LoadCached serves again the torrents whose streams are cached from an
// earlier run and still match their versions, so peers and web seed
// requests of a wave in progress carry on across a server restart.
func (c *Catalog) LoadCached(ctx context.Context) {
	imgs, _ := os.ReadDir(c.cfg.Dir)
	for _, img := range imgs {
		files, _ := os.ReadDir(filepath.Join(c.cfg.Dir, img.Name()))
		for _, f := range files {
			num, ok := strings.CutSuffix(f.Name(), ".json")
			if !ok || strings.HasPrefix(num, ".") {
				continue
			}
			v, err := c.cfg.Store.Resolve(img.Name() + "@" + num)
			if err != nil {
				continue // sweep removes it
			}
			sig, err := signatureDigest(v)
			if err != nil {
				continue
			}
			if _, err := c.load(v, sig); err != nil {
				continue // rebuilt on demand
			}
			if _, err := c.Ensure(ctx, v); err != nil {
				c.log.Warn("cannot serve a cached torrent again", "image", v.Ref(), "err", err)
			}
		}
	}
}

// Run serves the cached torrents again, then calls Sync with the refs
// wanted at once and every interval until ctx ends.
func (c *Catalog) Run(ctx context.Context, interval time.Duration, wanted func() []string) error {
	c.LoadCached(ctx)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := c.Sync(ctx, wanted()); err != nil && ctx.Err() == nil {
			c.log.Warn("torrent catalog sync", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Alive reports whether ih is served and its version still exists; a
// torrent whose version was removed is dropped on the spot.
func (c *Catalog) Alive(ih metainfo.Hash) (*Entry, bool) {
	e, ok := c.Lookup(ih)
	if !ok {
		return nil, false
	}
	if !c.exists(e.Image, e.Version) {
		c.Remove(e.Image, e.Version)
		return nil, false
	}
	return e, true
}
