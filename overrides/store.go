// Package overrides keeps override trees and lays them over an image.
//
// An override is a named directory tree of files (configuration, keys,
// scripts) that is copied over a node's image when the node is installed
// or updated, as SystemImager's overrides were. Overrides live under the
// data directory, one per name:
//
//	overrides/NAME/tree/          the files, with their full metadata
//	overrides/NAME/override.json  name, private flag, creation time, comment
//	overrides/.tmp-*              overrides being created or removed
//	overrides/.lock               serialises creating and removing
//
// Overrides are not versioned: an admin edits an override's tree in place
// (Override.Dir), and the next plan computed for a node sees the edit.
//
// Compute works out what one node receives: its image version with the
// global, group, host, node and extra overrides layered over it in order
// of precedence, files ending in ".tmpl" rendered as Go templates with the
// node's data, and whiteout markers (".wh.NAME") removing paths of lower
// layers. The result, a Plan, is an ordinary manifest plus where each
// path's content comes from; Plan.Render lays it into an empty directory.
package overrides

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/ref"
	"github.com/goldcast/goldcast/internal/durable"
)

// Errors callers can test for with errors.Is.
var (
	// ErrNotFound: the override (or the node a plan is asked for) does
	// not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an override of that name already exists.
	ErrExists = errors.New("already exists")
)

// tmpPrefix starts the names of directories being created or removed;
// no override name can start with ".".
const tmpPrefix = ".tmp-"

// infoFile is the name of an override's metadata file.
const infoFile = "override.json"

// Store is the set of overrides under a data directory.
type Store struct {
	// root is DATA/overrides.
	root string
}

// Info is an override's override.json.
type Info struct {
	// Name identifies the override; it comes from where the override is
	// stored, so a directory renamed by hand stays consistent.
	Name string `json:"name"`
	// Private overrides hold secrets: their content is served only to
	// the node being installed, authenticated with that node's
	// credentials.
	Private bool `json:"private"`
	// Created is when the override was created.
	Created time.Time `json:"created"`
	// Comment is free text from the admin.
	Comment string `json:"comment,omitempty"`
}

// Override is one stored override.
type Override struct {
	Info
	// Dir is the root of the override's tree: the directory an admin
	// edits.
	Dir string

	mu       sync.Mutex
	manifest *manifest.Manifest
}

// Manifest scans the override's tree (content digests included) the first
// time it is called and returns the same manifest afterwards. The caller
// must not modify it.
func (o *Override) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.manifest != nil {
		return o.manifest, nil
	}
	m, err := scanTree(ctx, o.Dir, "")
	if err != nil {
		return nil, fmt.Errorf("override %q: %w", o.Name, err)
	}
	o.manifest = m
	return m, nil
}

// scanTree returns the manifest of the tree at root with content digests,
// staying on one filesystem and leaving out exclude (an absolute path
// inside root, or "").
func scanTree(ctx context.Context, root, exclude string) (*manifest.Manifest, error) {
	opts := manifest.ScanOptions{OneFileSystem: true}
	if exclude != "" {
		if rel, err := filepath.Rel(root, exclude); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			x := &manifest.Excluder{}
			if err := x.Add("/" + filepath.ToSlash(rel) + "/"); err != nil {
				return nil, fmt.Errorf("scan %q: %w", root, err)
			}
			opts.Exclude = x
		}
	}
	m, err := manifest.Scan(ctx, root, opts)
	if err != nil {
		return nil, err
	}
	if err := m.HashContent(ctx, root, 0, nil); err != nil {
		return nil, fmt.Errorf("scan %q: %w", root, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("scan %q: %w", root, err)
	}
	return m, nil
}

// Open opens (creating if needed) the override store under dataDir and
// removes what interrupted creations and removals left behind.
func Open(dataDir string) (*Store, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("open override store in %q: %w", dataDir, err)
	}
	s := &Store{root: filepath.Join(abs, "overrides")}
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("open override store in %q: %w", dataDir, err)
	}
	if err := s.cleanTemp(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root is the directory holding the overrides (DATA/overrides).
func (s *Store) Root() string { return s.root }

func (s *Store) dir(name string) string { return filepath.Join(s.root, name) }

// CreateOptions tune Create.
type CreateOptions struct {
	// Private marks the override as holding secrets (see Info.Private).
	Private bool
	// Comment is recorded in override.json.
	Comment string
}

// Create stores a copy of the tree at fromDir as the override name,
// keeping every file type, mode, owner, xattr, nanosecond mtime, symlink
// and hard link. An empty fromDir creates an override with an empty tree,
// to be filled in place. The override is built in a temporary directory
// and appears by one rename, so it is never seen half copied; a name
// that exists already is refused with ErrExists.
func (s *Store) Create(ctx context.Context, name, fromDir string, opts CreateOptions) (err error) {
	if err := ref.CheckName("override", name); err != nil {
		return err
	}
	if _, err := os.Lstat(s.dir(name)); err == nil {
		return fmt.Errorf("create override %q: %w", name, ErrExists)
	}
	var m *manifest.Manifest
	var src string
	if fromDir != "" {
		if src, err = filepath.Abs(fromDir); err == nil {
			src, err = filepath.EvalSymlinks(src)
		}
		if err != nil {
			return fmt.Errorf("create override %q from %q: %w", name, fromDir, err)
		}
		if m, err = scanTree(ctx, src, s.root); err != nil {
			return fmt.Errorf("create override %q: %w", name, err)
		}
	}
	tmp, err := s.newTemp()
	if err != nil {
		return fmt.Errorf("create override %q: %w", name, err)
	}
	defer func() {
		if tmp != nil {
			tmp.discard()
		}
	}()
	tree := filepath.Join(tmp.dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return fmt.Errorf("create override %q: %w", name, err)
	}
	if m != nil {
		if err := copyTree(ctx, m, src, tree); err != nil {
			return fmt.Errorf("create override %q from %q: %w", name, fromDir, err)
		}
	}
	info := Info{Name: name, Private: opts.Private, Created: time.Now().UTC(), Comment: opts.Comment}
	raw, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("create override %q: encode %s: %w", name, infoFile, err)
	}
	if err := durable.WriteFile(filepath.Join(tmp.dir, infoFile), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("create override %q: write %s: %w", name, infoFile, err)
	}
	// A private override's directory is closed to everyone but root.
	mode := os.FileMode(0o755)
	if opts.Private {
		mode = 0o700
	}
	if err := os.Chmod(tmp.dir, mode); err != nil {
		return fmt.Errorf("create override %q: %w", name, err)
	}
	if err := durable.SyncFS(tmp.dir); err != nil {
		return fmt.Errorf("create override %q: flush: %w", name, err)
	}
	if err := s.publish(tmp, name); err != nil {
		return fmt.Errorf("create override %q: %w", name, err)
	}
	tmp = nil
	return nil
}

// copyTree lays the scanned tree at src into dst, an existing empty
// directory, and checks every file's content against m as it is copied.
func copyTree(ctx context.Context, m *manifest.Manifest, src, dst string) error {
	mopts := materialize.Options{Unprivileged: os.Geteuid() != 0}
	var leaders []int
	for i := range m.Entries {
		e := &m.Entries[i]
		switch {
		case e.Type == manifest.TypeDir:
			if err := materialize.CreateDir(dst, e); err != nil {
				return err
			}
		case e.Type == manifest.TypeRegular:
			if e.LinkTo == "" {
				leaders = append(leaders, i)
			}
		default:
			if err := materialize.CreateSpecial(dst, e, mopts); errors.Is(err, materialize.ErrSkipped) {
				return fmt.Errorf("%s %q: copying it needs root", e.Type, e.Path)
			} else if err != nil {
				return err
			}
		}
	}
	err := manifest.ParallelEach(ctx, len(leaders), 0, func(j int) error {
		e := &m.Entries[leaders[j]]
		f, err := os.OpenFile(materialize.Path(src, e.Path), os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("read %q: %w", e.Path, err)
		}
		defer f.Close()
		return writeChecked(dst, e, f, mopts)
	})
	if err != nil {
		return err
	}
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == manifest.TypeRegular && e.LinkTo != "" {
			if err := materialize.Link(dst, e); err != nil {
				return err
			}
		}
	}
	for i := len(m.Entries) - 1; i >= 0; i-- {
		if e := &m.Entries[i]; e.Type == manifest.TypeDir {
			if err := materialize.FinishDir(dst, e, mopts); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeChecked writes a regular file from r and checks that what was
// written has the size and sha256 the entry records.
func writeChecked(root string, e *manifest.Entry, r io.Reader, mopts materialize.Options) error {
	sum, n, err := materialize.WriteFile(root, e, r, mopts)
	if err != nil {
		return err
	}
	if n != e.Size || sum != e.SHA256 {
		return fmt.Errorf("%q changed since it was scanned: wrote %d bytes with sha256 %s, the manifest says %d bytes with sha256 %s",
			e.Path, n, sum, e.Size, e.SHA256)
	}
	return nil
}

// List returns the stored overrides, by name.
func (s *Store) List() ([]Info, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list overrides: %w", err)
	}
	var out []Info
	for _, d := range ents {
		if !d.IsDir() || ref.CheckName("override", d.Name()) != nil {
			continue
		}
		info, err := s.readInfo(d.Name())
		if errors.Is(err, ErrNotFound) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("list overrides: %w", err)
		}
		out = append(out, info)
	}
	return out, nil
}

// Get returns the override called name; an unknown name is ErrNotFound.
func (s *Store) Get(name string) (*Override, error) {
	if err := ref.CheckName("override", name); err != nil {
		return nil, err
	}
	info, err := s.readInfo(name)
	if err != nil {
		return nil, err
	}
	return &Override{Info: info, Dir: filepath.Join(s.dir(name), "tree")}, nil
}

// readInfo reads the override.json of the override called name.
func (s *Store) readInfo(name string) (Info, error) {
	raw, err := os.ReadFile(filepath.Join(s.dir(name), infoFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Lstat(s.dir(name)); errors.Is(statErr, os.ErrNotExist) {
			return Info{}, fmt.Errorf("override %q: %w", name, ErrNotFound)
		}
	}
	if err != nil {
		return Info{}, fmt.Errorf("override %q: read %s: %w", name, infoFile, err)
	}
	var info Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return Info{}, fmt.Errorf("override %q: read %s: %w", name, infoFile, err)
	}
	info.Name = name
	return info, nil
}

// Remove deletes the override called name. It disappears by one rename
// before its files are deleted, so no reader sees it half removed.
func (s *Store) Remove(name string) error {
	if err := ref.CheckName("override", name); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return fmt.Errorf("remove override %q: %w", name, err)
	}
	if _, err := os.Lstat(s.dir(name)); errors.Is(err, os.ErrNotExist) {
		unlock()
		return fmt.Errorf("remove override %q: %w", name, ErrNotFound)
	}
	gone := filepath.Join(s.root, tmpPrefix+randomID()+"-removed-"+name)
	err = os.Rename(s.dir(name), gone)
	unlock()
	if err != nil {
		return fmt.Errorf("remove override %q: %w", name, err)
	}
	if err := durable.RemoveTree(gone); err != nil {
		return fmt.Errorf("remove override %q: %w", name, err)
	}
	return nil
}

// temp is a private directory where one override is built, flock-held
// through its lock file for as long as the builder lives.
type temp struct {
	dir  string
	lock *os.File
}

func randomID() string {
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(id[:])
}

func (s *Store) newTemp() (*temp, error) {
	dir := filepath.Join(s.root, tmpPrefix+randomID())
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lock temporary directory: %w", err)
	}
	return &temp{dir: dir, lock: f}, nil
}

// discard removes the temporary directory and releases its lock.
func (t *temp) discard() {
	durable.RemoveTree(t.dir)
	t.lock.Close()
}

// publish renames the finished temporary directory to the override's
// name, refusing a name taken in the meantime.
func (s *Store) publish(t *temp, name string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(s.dir(name)); err == nil {
		return ErrExists
	}
	// The lock file must not become part of the override; the held
	// descriptor keeps the flock until the rename is done.
	if err := os.Remove(filepath.Join(t.dir, "lock")); err != nil {
		return err
	}
	if err := os.Rename(t.dir, s.dir(name)); err != nil {
		return err
	}
	t.lock.Close()
	return durable.SyncDir(s.root)
}

// lock takes the store-wide lock for creating and removing.
func (s *Store) lock() (func(), error) {
	return durable.Lock(filepath.Join(s.root, ".lock"))
}

// cleanTemp removes temporary directories whose builder died: their lock
// can be taken, or they have none and are more than a minute old (a
// builder that just made its directory, or just gave up its lock file to
// publish, holds a young one).
func (s *Store) cleanTemp() error {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("open override store: %w", err)
	}
	for _, d := range ents {
		if !strings.HasPrefix(d.Name(), tmpPrefix) {
			continue
		}
		dir := filepath.Join(s.root, d.Name())
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if err != nil {
			if fi, serr := os.Lstat(dir); serr != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		} else if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // a live builder holds it
			continue
		}
		rmErr := durable.RemoveTree(dir)
		if f != nil {
			f.Close()
		}
		if rmErr != nil {
			return fmt.Errorf("remove interrupted override directory %q: %w", dir, rmErr)
		}
	}
	return nil
}
