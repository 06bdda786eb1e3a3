package store

import (
	"bytes"
	"context"
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
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/durable"
)

// build lays the entries of m into dst (an existing empty directory):
// directories and special files in order, regular files in parallel,
// hard-link members after their leaders, directory metadata last. For each
// regular leader it asks reuse for an identical existing file to link, and
// otherwise copies content from open; a file with no digest yet gets the
// one computed while copying, and one with a digest must match it.
type builder struct {
	m        *manifest.Manifest
	dst      string
	open     func(e *manifest.Entry) (*os.File, error)
	reuse    func(e *manifest.Entry) string
	mopts    materialize.Options
	workers  int
	progress manifest.Progress
	reused   int
}

func (b *builder) run(ctx context.Context) error {
	var leaders []int
	for i := range b.m.Entries {
		e := &b.m.Entries[i]
		switch {
		case e.Type == manifest.TypeDir:
			if err := materialize.CreateDir(b.dst, e); err != nil {
				return err
			}
		case e.Type == manifest.TypeRegular:
			if e.LinkTo == "" {
				leaders = append(leaders, i)
			}
		default:
			if err := materialize.CreateSpecial(b.dst, e, b.mopts); err != nil && !errors.Is(err, materialize.ErrSkipped) {
				return err
			}
		}
	}
	var mu sync.Mutex
	err := manifest.ParallelEach(ctx, len(leaders), b.workers, func(j int) error {
		e := &b.m.Entries[leaders[j]]
		if b.reuse != nil {
			if src := b.reuse(e); src != "" {
				if err := materialize.LinkExisting(src, b.dst, e); err != nil {
					return err
				}
				mu.Lock()
				b.reused++
				mu.Unlock()
				b.report(e.Size)
				return nil
			}
		}
		f, err := b.open(e)
		if err != nil {
			return err
		}
		defer f.Close()
		sum, n, err := materialize.WriteFile(b.dst, e, f, b.mopts)
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("%q changed while it was read: %d bytes, %d when scanned", e.Path, n, e.Size)
		}
		if e.SHA256 == "" {
			e.SHA256 = sum
		} else if e.SHA256 != sum {
			return fmt.Errorf("%q: content sha256 %s, manifest says %s", e.Path, sum, e.SHA256)
		}
		b.report(n)
		return nil
	})
	if err != nil {
		return err
	}
	idx := b.m.Index()
	for i := range b.m.Entries {
		e := &b.m.Entries[i]
		if e.Type == manifest.TypeRegular && e.LinkTo != "" {
			e.SHA256 = b.m.Entries[idx[e.LinkTo]].SHA256
			if err := materialize.Link(b.dst, e); err != nil {
				return err
			}
		}
	}
	for i := len(b.m.Entries) - 1; i >= 0; i-- {
		if e := &b.m.Entries[i]; e.Type == manifest.TypeDir {
			if err := materialize.FinishDir(b.dst, e, b.mopts); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *builder) report(n int64) {
	if b.progress != nil {
		b.progress(1, n)
	}
}

// openUnder opens a regular file below root without following a final
// symlink.
func openUnder(root string) func(e *manifest.Entry) (*os.File, error) {
	return func(e *manifest.Entry) (*os.File, error) {
		f, err := os.OpenFile(materialize.Path(root, e.Path), os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", e.Path, err)
		}
		return f, nil
	}
}

// reusable indexes a version's lone regular files (not in a hard-link
// group), whose inodes a new version may share.
type reusable struct {
	tree    string
	entries map[string]*manifest.Entry
}

func (s *Store) reusableFrom(v *Version) (*reusable, error) {
	if v == nil {
		return nil, nil
	}
	m, _, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	grouped := m.HardLinked()
	r := &reusable{tree: v.TreePath(), entries: map[string]*manifest.Entry{}}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == manifest.TypeRegular && !grouped[e.Path] {
			r.entries[e.Path] = e
		}
	}
	return r, nil
}

// candidate reports whether e (not yet hashed) matches an old lone file
// in everything but content.
func (r *reusable) candidate(e *manifest.Entry, grouped bool) bool {
	if r == nil || grouped || e.SHA256 != "" {
		return false
	}
	old, ok := r.entries[e.Path]
	if !ok {
		return false
	}
	probe := *e
	probe.SHA256 = old.SHA256
	return manifest.SameMetadata(old, &probe)
}

// match returns the old file to link for e, or "". With quick set, a
// file whose size, mtime, mode, owner and xattrs match is trusted to
// have the same content (rsync's quick check) and its digest is copied.
func (r *reusable) match(e *manifest.Entry, grouped bool, quick bool) string {
	if r == nil || grouped {
		return ""
	}
	old, ok := r.entries[e.Path]
	if !ok {
		return ""
	}
	if e.SHA256 == "" {
		if !quick {
			return ""
		}
		probe := *e
		probe.SHA256 = old.SHA256
		if !manifest.SameMetadata(old, &probe) {
			return ""
		}
		e.SHA256 = old.SHA256
	} else if !manifest.SameMetadata(old, e) {
		return ""
	}
	return materialize.Path(r.tree, e.Path)
}

// ImportOptions tune ImportDir.
type ImportOptions struct {
	// Exclude drops matching paths.
	Exclude *manifest.Excluder
	// CrossFilesystems descends into other filesystems mounted below the
	// source (off by default: one filesystem).
	CrossFilesystems bool
	// Checksum re-reads every file instead of trusting size and mtime
	// against the previous version.
	Checksum bool
	// SourceHost, Comment and DiskLayout are recorded in image.json.
	SourceHost string
	Comment    string
	DiskLayout []byte
	// Parent overrides the version new files are shared with (default:
	// the image's latest).
	Parent *Version
	// PublishUnchanged publishes a version even when the tree equals the
	// parent's; by default an identical tree publishes nothing.
	PublishUnchanged bool
	// SourcePath overrides the recorded source path; Excludes are
	// recorded in addition to Exclude's patterns (carried over from a
	// parent version).
	SourcePath string
	Excludes   []string
	// Workers bounds parallel file copies (0: one per CPU).
	Workers int
	// Progress is told of each file and its bytes as they are stored.
	Progress manifest.Progress
}

// ImportResult reports what an import did.
type ImportResult struct {
	Version *Version
	// Reused counts files shared with the previous version.
	Reused int
	// Unchanged is set when the tree equals the parent version; no new
	// version was published and Version is the parent.
	Unchanged bool
}

// ImportDir stores the tree at src as a new version of image name. Files
// unchanged since the image's latest version share its inodes. A tree
// identical to the parent version publishes nothing unless
// PublishUnchanged is set.
func (s *Store) ImportDir(ctx context.Context, src, name string, opts ImportOptions) (*ImportResult, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	absSrc, err := filepath.Abs(src)
	if err == nil {
		// A symlink naming the tree (or a trailing "/") is followed once.
		absSrc, err = filepath.EvalSymlinks(absSrc)
	}
	if err != nil {
		return nil, fmt.Errorf("import %q: %w", src, err)
	}
	if rel, err := filepath.Rel(absSrc, s.root); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
		// The store lives inside the source: never import it into itself.
		if opts.Exclude == nil {
			opts.Exclude = &manifest.Excluder{}
		}
		if err := opts.Exclude.Add("/" + filepath.ToSlash(rel) + "/"); err != nil {
			return nil, err
		}
	}
	started := time.Now().UTC()
	m, err := manifest.Scan(ctx, absSrc, manifest.ScanOptions{OneFileSystem: !opts.CrossFilesystems, Exclude: opts.Exclude, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("import %q: %w", src, err)
	}
	parent := opts.Parent
	if parent == nil {
		if parent, err = s.Latest(name); err != nil {
			return nil, err
		}
	}
	reuse, err := s.reusableFrom(parent)
	if err != nil {
		return nil, err
	}
	st, err := s.newStaging(name, "import of "+src)
	if err != nil {
		return nil, err
	}
	defer func() {
		if st != nil {
			st.discard()
		}
	}()
	grouped := m.HardLinked()
	b := &builder{
		m: m, dst: st.tree(), open: openUnder(absSrc), mopts: s.mopts(),
		workers: opts.Workers, progress: opts.Progress,
		reuse: func(e *manifest.Entry) string {
			if opts.Checksum && reuse.candidate(e, grouped[e.Path]) {
				// Read the file now; reuse only if the content matches.
				sum, _, err := manifest.HashFile(materialize.Path(absSrc, e.Path))
				if err == nil {
					e.SHA256 = sum
				}
			}
			return reuse.match(e, grouped[e.Path], !opts.Checksum)
		},
	}
	if err := b.run(ctx); err != nil {
		return nil, fmt.Errorf("import %q: %w", src, err)
	}
	if !opts.PublishUnchanged && parent != nil && m.Digest() == parent.Info.ManifestDigest {
		return &ImportResult{Version: parent, Unchanged: true}, nil
	}
	info := &Info{
		CapturedAt: started, SourceHost: opts.SourceHost, SourcePath: absSrc, Comment: opts.Comment,
		Excludes: append(opts.Excludes, opts.Exclude.Patterns()...), DiskLayout: opts.DiskLayout,
	}
	if opts.SourcePath != "" {
		info.SourcePath = opts.SourcePath
	}
	if parent != nil {
		info.Parent = parent.Info.Version
	}
	v, err := s.finish(st, name, m, nil, info)
	if err != nil {
		return nil, err
	}
	st = nil
	return &ImportResult{Version: v, Reused: b.reused}, nil
}

func (s *Store) mopts() materialize.Options {
	return materialize.Options{Unprivileged: s.unprivileged}
}

// finish writes the manifest, signature and image.json into the staging
// area and publishes it.
func (s *Store) finish(st *staging, name string, m *manifest.Manifest, signature []byte, info *Info) (*Version, error) {
	raw := m.Bytes()
	if err := durable.WriteFile(filepath.Join(st.versionDir(), "manifest"), raw, 0o644); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if signature != nil {
		if err := durable.WriteFile(filepath.Join(st.versionDir(), "signature"), signature, 0o644); err != nil {
			return nil, fmt.Errorf("write signature: %w", err)
		}
	}
	info.ManifestDigest = manifest.DigestBytes(raw)
	info.Totals = m.Totals()
	info.Kernels = findKernels(m)
	info.TreeExact = !s.unprivileged
	return s.publish(st, name, info)
}

func findKernels(m *manifest.Manifest) []string {
	var out []string
	for i := range m.Entries {
		p := m.Entries[i].Path
		if strings.HasPrefix(p, "boot/vmlinuz-") && !strings.Contains(p[len("boot/"):], "/") {
			out = append(out, strings.TrimPrefix(p, "boot/vmlinuz-"))
		}
	}
	return out
}

// StreamImportOptions tune ImportStream.
type StreamImportOptions struct {
	// Verify checks the stream's signature (see stream.ExtractOptions).
	Verify func(digest string, signature []byte) error
	// Progress is told of each entry as it lands.
	Progress manifest.Progress
	// PublishUnchanged publishes even when the stream holds the latest
	// version's manifest; by default that publishes nothing.
	PublishUnchanged bool
	// Info, when set, is the provenance to record (a capture session
	// knows it); otherwise the stream's image.json supplies it.
	Info *Info
}

// ImportStream stores a version stream as a new version of image name,
// keeping its signature and the provenance its image.json records.
// Content identical to the latest version's shares its inodes.
func (s *Store) ImportStream(ctx context.Context, r io.Reader, name string, opts StreamImportOptions) (*ImportResult, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	parent, err := s.Latest(name)
	if err != nil {
		return nil, err
	}
	reuse, err := s.reusableFrom(parent)
	if err != nil {
		return nil, err
	}
	st, err := s.newStaging(name, "stream import")
	if err != nil {
		return nil, err
	}
	defer func() {
		if st != nil {
			st.discard()
		}
	}()
	res, err := stream.Extract(ctx, r, st.tree(), stream.ExtractOptions{
		Verify: func(digest string, sig []byte) error {
			if opts.Verify != nil {
				return opts.Verify(digest, sig)
			}
			return nil
		},
		Reuse: func(e *manifest.Entry) string {
			return reuse.match(e, false, false)
		},
		Materialize: s.mopts(),
		Progress:    opts.Progress,
		Logger:      s.log,
		KeepPartial: true, // the staging area is discarded as a whole
	})
	if err != nil {
		return nil, fmt.Errorf("import stream into %q: %w", name, err)
	}
	if !bytes.Equal(res.Manifest.Bytes(), res.Meta.Manifest) {
		return nil, fmt.Errorf("import stream into %q: manifest is not in canonical form", name)
	}
	if !opts.PublishUnchanged && parent != nil && res.Digest == parent.Info.ManifestDigest {
		return &ImportResult{Version: parent, Unchanged: true}, nil
	}
	info := &Info{CapturedAt: time.Now().UTC()}
	if opts.Info != nil {
		provenance := *opts.Info
		info = &provenance
	} else if res.Meta.ImageJSON != nil {
		var src Info
		if err := json.Unmarshal(res.Meta.ImageJSON, &src); err != nil {
			return nil, fmt.Errorf("import stream into %q: image.json: %w", name, err)
		}
		info.CapturedAt, info.SourceHost, info.SourcePath = src.CapturedAt, src.SourceHost, src.SourcePath
		info.Comment, info.DiskLayout, info.Excludes = src.Comment, src.DiskLayout, src.Excludes
	}
	if parent != nil {
		info.Parent = parent.Info.Version
	}
	v, err := s.finish(st, name, res.Manifest, res.Meta.Signature, info)
	if err != nil {
		return nil, err
	}
	st = nil
	return &ImportResult{Version: v, Reused: res.Reused}, nil
}

// Scratch is a private directory in the staging area for data that is
// not a version yet (uploaded content of a capture). It is removed by
// Discard, or by the next Open after a crash.
type Scratch struct {
	// Dir is the directory to write into.
	Dir string
	st  *staging
}

// NewScratch makes a scratch directory; purpose is reported if it has to
// be cleaned up after a crash.
func (s *Store) NewScratch(image, purpose string) (*Scratch, error) {
	st, err := s.newStaging(image, purpose)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(st.dir, "scratch")
	if err := os.Mkdir(dir, 0o700); err != nil {
		st.discard()
		return nil, fmt.Errorf("create scratch directory: %w", err)
	}
	return &Scratch{Dir: dir, st: st}, nil
}

// Discard removes the scratch directory.
func (sc *Scratch) Discard() {
	if sc.st != nil {
		sc.st.discard()
		sc.st = nil
	}
}

// AssembleOptions tell Assemble where content comes from and what to
// record.
type AssembleOptions struct {
	// Base is the version the new one is derived from: its unchanged
	// files are shared, and any of its files may supply content by
	// digest.
	Base *Version
	// Uploaded names a file holding e's content, or "" when none was
	// uploaded.
	Uploaded func(e *manifest.Entry) string
	// Info carries provenance (source host and path, capture time,
	// comment, excludes, disk layout); the rest is filled in.
	Info Info
	// Progress is told of each file stored.
	Progress manifest.Progress
}

// Assemble publishes the version m describes as the next version of image
// name, taking each file's content from the base version (shared when
// identical, copied when only the digest matches) or from an uploaded
// file. Every written file is hashed and must match m. A manifest equal
// to the base's publishes nothing (Unchanged).
func (s *Store) Assemble(ctx context.Context, name string, m *manifest.Manifest, opts AssembleOptions) (*ImportResult, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if opts.Base != nil && m.Digest() == opts.Base.Info.ManifestDigest {
		return &ImportResult{Version: opts.Base, Unchanged: true}, nil
	}
	reuse, err := s.reusableFrom(opts.Base)
	if err != nil {
		return nil, err
	}
	bySum := map[string]string{}
	if opts.Base != nil {
		bm, _, err := opts.Base.Manifest()
		if err != nil {
			return nil, err
		}
		for i := range bm.Entries {
			if e := &bm.Entries[i]; e.Type == manifest.TypeRegular && e.LinkTo == "" {
				bySum[e.SHA256] = materialize.Path(opts.Base.TreePath(), e.Path)
			}
		}
	}
	st, err := s.newStaging(name, "capture")
	if err != nil {
		return nil, err
	}
	defer func() {
		if st != nil {
			st.discard()
		}
	}()
	grouped := m.HardLinked()
	b := &builder{
		m: m, dst: st.tree(), mopts: s.mopts(), progress: opts.Progress,
		reuse: func(e *manifest.Entry) string { return reuse.match(e, grouped[e.Path], false) },
		open: func(e *manifest.Entry) (*os.File, error) {
			src := ""
			if opts.Uploaded != nil {
				src = opts.Uploaded(e)
			}
			if src == "" {
				src = bySum[e.SHA256]
			}
			if src == "" && e.Size == 0 {
				return os.Open(os.DevNull)
			}
			if src == "" {
				return nil, fmt.Errorf("no content for %q (sha256 %s): neither uploaded nor in the base version", e.Path, e.SHA256)
			}
			f, err := os.Open(src)
			if err != nil {
				return nil, fmt.Errorf("content of %q: %w", e.Path, err)
			}
			return f, nil
		},
	}
	if err := b.run(ctx); err != nil {
		return nil, fmt.Errorf("assemble %q: %w", name, err)
	}
	info := opts.Info
	if opts.Base != nil {
		info.Parent = opts.Base.Info.Version
	}
	v, err := s.finish(st, name, m, nil, &info)
	if err != nil {
		return nil, err
	}
	st = nil
	return &ImportResult{Version: v, Reused: b.reused}, nil
}
