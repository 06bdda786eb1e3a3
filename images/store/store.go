// Package store keeps images: named sequences of immutable, numbered
// versions under a data directory. A version is a real tree an admin can
// chroot into, its manifest and its image.json; unchanged files are shared
// between versions by hard links. Versions are built in a staging area and
// published by one rename, so a crash never leaves a half version visible,
// and the next Open removes what an interrupted import left behind.
//
// Layout under the data directory:
//
//	images/NAME/sequence            last version number handed out
//	images/NAME/versions/N/tree/    the version's root
//	images/NAME/versions/N/manifest canonical manifest (its sha256 is the identity)
//	images/NAME/versions/N/image.json
//	images/NAME/versions/N/signature (when signed)
//	.staging/ID/                    versions being built (flock-held)
//	.lock                           serialises publishing and renames
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/ref"
	"github.com/goldcast/goldcast/images/signing"
	"github.com/goldcast/goldcast/internal/durable"
)

// Store is an image store rooted at a data directory.
type Store struct {
	root string
	log  *slog.Logger
	// unprivileged is set when not running as root: trees then cannot
	// hold foreign owners or device nodes, and the manifest alone
	// records them.
	unprivileged bool
}

// Info is a version's image.json.
type Info struct {
	// Image and Version identify the version; they come from where it is
	// stored, not from the file, so a renamed image stays consistent.
	Image   string `json:"image,omitempty"`
	Version int    `json:"version,omitempty"`
	// Created is when the version was published.
	Created time.Time `json:"created"`
	// CapturedAt is when its content was read from the source.
	CapturedAt time.Time `json:"captured_at"`
	// SourceHost and SourcePath say where the content came from.
	SourceHost string `json:"source_host,omitempty"`
	SourcePath string `json:"source_path,omitempty"`
	// Parent is the version this one was derived from (0 for none).
	Parent int `json:"parent,omitempty"`
	// Comment is free text from the admin.
	Comment string `json:"comment,omitempty"`
	// ManifestDigest is the sha256 of the manifest: the version identity.
	ManifestDigest string `json:"manifest_digest"`
	// Totals count the manifest's entries and content bytes.
	Totals manifest.Totals `json:"totals"`
	// Kernels lists the kernels found under boot/.
	Kernels []string `json:"kernels,omitempty"`
	// Excludes are the patterns the import skipped.
	Excludes []string `json:"excludes,omitempty"`
	// TreeExact is true when the tree itself carries every owner and
	// device node (it was written as root); otherwise only the manifest
	// does.
	TreeExact bool `json:"tree_exact"`
	// DiskLayout is the golden client's disk layout, when captured.
	DiskLayout json.RawMessage `json:"disk_layout,omitempty"`
	// Signed is filled on read: whether a signature is stored.
	Signed bool `json:"signed,omitempty"`
	// Path is filled on read: the version's tree.
	Path string `json:"path,omitempty"`
}

// Version is one published version on disk.
type Version struct {
	Info Info
	// Dir is the version directory (holding tree/, manifest, image.json).
	Dir string
}

// TreePath is the version's root directory.
func (v *Version) TreePath() string { return filepath.Join(v.Dir, "tree") }

// ManifestPath is the version's manifest file.
func (v *Version) ManifestPath() string { return filepath.Join(v.Dir, "manifest") }

// Ref renders NAME@VERSION.
func (v *Version) Ref() string { return fmt.Sprintf("%s@%d", v.Info.Image, v.Info.Version) }

// Manifest reads and validates the version's manifest, returning it with
// its raw encoding. A manifest whose digest differs from image.json is an
// error: the version was modified after publishing.
func (v *Version) Manifest() (*manifest.Manifest, []byte, error) {
	raw, err := os.ReadFile(v.ManifestPath())
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest of %s: %w", v.Ref(), err)
	}
	if d := manifest.DigestBytes(raw); d != v.Info.ManifestDigest {
		return nil, nil, fmt.Errorf("manifest of %s has digest %s, image.json records %s: modified after publishing", v.Ref(), d, v.Info.ManifestDigest)
	}
	m, err := manifest.Decode(strings.NewReader(string(raw)))
	if err != nil {
		return nil, nil, fmt.Errorf("manifest of %s: %w", v.Ref(), err)
	}
	return m, raw, nil
}

// Signature returns the stored signature, or nil when unsigned.
func (v *Version) Signature() (*signing.Signature, []byte, error) {
	raw, err := os.ReadFile(filepath.Join(v.Dir, "signature"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read signature of %s: %w", v.Ref(), err)
	}
	sig, err := signing.Unmarshal(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("signature of %s: %w", v.Ref(), err)
	}
	return sig, raw, nil
}

// ImageJSON returns the stored image.json bytes.
func (v *Version) ImageJSON() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(v.Dir, "image.json"))
	if err != nil {
		return nil, fmt.Errorf("read image.json of %s: %w", v.Ref(), err)
	}
	return b, nil
}

// Errors callers can test for.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// ValidName checks an image name (see ref.ValidName).
func ValidName(name string) error { return ref.ValidName(name) }

// ParseRef splits "NAME", "NAME@VERSION" or "NAME@latest"; version 0
// means latest (see ref.Parse).
func ParseRef(r string) (string, int, error) { return ref.Parse(r) }

// Open opens (creating if needed) the store at dir and removes staging
// areas left by interrupted imports, logging each one it removes.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", dir, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, "images"), filepath.Join(abs, ".staging")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open store %q: %w", dir, err)
		}
	}
	s := &Store{root: abs, log: log, unprivileged: os.Geteuid() != 0}
	if err := s.cleanStaging(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root is the data directory.
func (s *Store) Root() string { return s.root }

func (s *Store) imageDir(name string) string { return filepath.Join(s.root, "images", name) }

func (s *Store) versionDir(name string, v int) string {
	return filepath.Join(s.imageDir(name), "versions", strconv.Itoa(v))
}

// lock takes the store-wide lock for publishing, renames and removals.
func (s *Store) lock() (func(), error) {
	return durable.Lock(filepath.Join(s.root, ".lock"))
}

// ImageSummary describes an image for listings.
type ImageSummary struct {
	Name     string    `json:"name"`
	Versions int       `json:"versions"`
	Latest   int       `json:"latest"`
	Created  time.Time `json:"created"`
	Bytes    int64     `json:"bytes"`
	Files    int       `json:"files"`
	Digest   string    `json:"manifest_digest"`
}

// Images lists images that have at least one version, by name.
func (s *Store) Images() ([]ImageSummary, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []ImageSummary
	for _, d := range ents {
		if !d.IsDir() || ValidName(d.Name()) != nil {
			continue
		}
		vs, err := s.Versions(d.Name())
		if err != nil {
			return nil, err
		}
		if len(vs) == 0 {
			continue
		}
		l := vs[len(vs)-1].Info
		out = append(out, ImageSummary{Name: d.Name(), Versions: len(vs), Latest: l.Version,
			Created: l.Created, Bytes: l.Totals.Bytes, Files: l.Totals.Files, Digest: l.ManifestDigest})
	}
	return out, nil
}

// Versions lists an image's versions, oldest first. An unknown image has
// none.
func (s *Store) Versions(name string) ([]*Version, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(s.imageDir(name), "versions"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of %q: %w", name, err)
	}
	var nums []int
	for _, d := range ents {
		if n, err := strconv.Atoi(d.Name()); err == nil && n > 0 && d.IsDir() {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := make([]*Version, 0, len(nums))
	for _, n := range nums {
		v, err := s.load(name, n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Store) load(name string, n int) (*Version, error) {
	dir := s.versionDir(name, n)
	raw, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, fmt.Errorf("read %s@%d: %w", name, n, err)
	}
	var info Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("read %s@%d image.json: %w", name, n, err)
	}
	info.Image, info.Version = name, n
	info.Path = filepath.Join(dir, "tree")
	_, statErr := os.Stat(filepath.Join(dir, "signature"))
	info.Signed = statErr == nil
	return &Version{Info: info, Dir: dir}, nil
}

// Resolve finds the version a reference names ("NAME" means latest).
func (s *Store) Resolve(ref string) (*Version, error) {
	name, n, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		vs, err := s.Versions(name)
		if err != nil {
			return nil, err
		}
		if len(vs) == 0 {
			return nil, fmt.Errorf("image %q: %w", name, ErrNotFound)
		}
		return vs[len(vs)-1], nil
	}
	v, err := s.load(name, n)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("image %s@%d: %w", name, n, ErrNotFound)
	}
	return v, err
}

// Latest returns an image's newest version, or nil when it has none.
func (s *Store) Latest(name string) (*Version, error) {
	vs, err := s.Versions(name)
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	return vs[len(vs)-1], nil
}
