package stream

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/klauspost/compress/zstd"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
)

// Errors that classify why a stream was refused; test with errors.Is.
var (
	// ErrNoManifest: the stream does not start with a manifest.
	ErrNoManifest = errors.New("stream has no manifest")
	// ErrTruncated: the stream ended before its manifest was complete.
	ErrTruncated = errors.New("stream is truncated")
	// ErrCorrupt: the compressed or tar framing is damaged.
	ErrCorrupt = errors.New("stream is corrupt")
	// ErrMismatch: an entry or its content differs from the manifest.
	ErrMismatch = errors.New("stream does not match its manifest")
	// ErrTargetNotEmpty: extraction needs an empty target.
	ErrTargetNotEmpty = errors.New("target is not empty")
)

// ExtractOptions tune Extract.
type ExtractOptions struct {
	// Verify, when set, is called with the manifest digest and the
	// encoded signature (nil when the stream is unsigned) before anything
	// is written; an error refuses the stream.
	Verify func(digest string, signature []byte) error
	// Reuse may name an existing file identical to a regular entry
	// (content and metadata) to hard-link instead of writing; the
	// stream's bytes are still hashed and checked. Return "" for none.
	// It is asked only about files outside hard-link groups, whose
	// inodes must stay the group's own.
	Reuse func(e *manifest.Entry) string
	// Materialize passes through to the materialize package.
	Materialize materialize.Options
	// KeepPartial leaves what was written after a failure (for
	// debugging); by default the target is emptied again.
	KeepPartial bool
	// Progress is told of every entry and its content bytes.
	Progress manifest.Progress
	// Logger receives notes (skipped device nodes). Nil discards.
	Logger *slog.Logger
	// MountedTarget allows a target that holds the empty mount points of
	// other filesystems (an installer's /target with /target/boot/efi
	// mounted): directories that are mount points, or lead to them, and
	// hold nothing else but lost+found. Those directories are kept and
	// get the manifest's metadata.
	MountedTarget bool
}

// mountSkeleton checks that target holds nothing but mount points of
// other filesystems, the directories leading to them and lost+found
// directories, and returns the directories it holds (manifest paths),
// or an error wrapping ErrTargetNotEmpty naming what else it found.
func mountSkeleton(target string) (map[string]bool, error) {
	dirs := map[string]bool{}
	var walk func(rel string, dev uint64) (mounts int, err error)
	walk = func(rel string, dev uint64) (int, error) {
		dir := filepath.Join(target, rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return 0, err
		}
		mounts := 0
		for _, e := range ents {
			child := filepath.Join(rel, e.Name())
			if e.Name() == "lost+found" && e.IsDir() {
				continue
			}
			if !e.IsDir() {
				return 0, fmt.Errorf("%w: it holds %s", ErrTargetNotEmpty, child)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(target, child), &st); err != nil {
				return 0, err
			}
			n, err := walk(child, st.Dev)
			if err != nil {
				return 0, err
			}
			if st.Dev != dev {
				n++ // a mount point
			}
			if n == 0 {
				return 0, fmt.Errorf("%w: it holds the directory %s, which is no mount point", ErrTargetNotEmpty, child)
			}
			dirs[filepath.ToSlash(child)] = true
			mounts += n
		}
		return mounts, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		return nil, err
	}
	if _, err := walk(".", st.Dev); err != nil {
		return nil, err
	}
	return dirs, nil
}

// Result is what an extraction learned from the stream.
type Result struct {
	Manifest *manifest.Manifest
	// Digest is the manifest's sha256: the version identity.
	Digest string
	Meta   Meta
	// Reused counts regular files hard-linked through ExtractOptions.Reuse.
	Reused int
}

// ReadMeta reads the metadata entries at the head of a tar stream and
// returns them with the first image entry's header (nil at end of
// stream).
func ReadMeta(tr *tar.Reader) (Meta, *tar.Header, error) {
	var meta Meta
	first := true
	for {
		h, err := tr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) && first {
				return meta, nil, ErrNoManifest
			}
			return meta, nil, classify(err, "read stream header")
		}
		if h.PAXRecords[MetaRecord] == "" {
			if meta.Manifest == nil {
				return meta, nil, fmt.Errorf("%w: first entry is %q", ErrNoManifest, h.Name)
			}
			return meta, h, nil
		}
		if first && h.Name != MetaManifest {
			return meta, nil, fmt.Errorf("%w: first entry is %q", ErrNoManifest, h.Name)
		}
		first = false
		if h.Size > manifest.MaxSize {
			return meta, nil, fmt.Errorf("%w: metadata entry %q is %d bytes", ErrCorrupt, h.Name, h.Size)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return meta, nil, classify(err, "read "+h.Name)
		}
		switch h.Name {
		case MetaManifest:
			meta.Manifest = data
		case MetaSignature:
			meta.Signature = data
		case MetaImageJSON:
			meta.ImageJSON = data
		default:
			return meta, nil, fmt.Errorf("%w: unknown metadata entry %q", ErrCorrupt, h.Name)
		}
	}
}

// classify maps a read error onto ErrTruncated or ErrCorrupt.
func classify(err error, what string) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: %v", ErrTruncated, what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
}

// Extract lays the stream from r into target, which must be empty (a
// fresh filesystem's lost+found is allowed) or not exist yet. Every entry
// is checked against the manifest as it lands; directory metadata is
// applied last. On any failure the error says what was wrong and the
// target is emptied again (unless KeepPartial), so a partial tree is never
// presented as complete.
func Extract(ctx context.Context, r io.Reader, target string, opts ExtractOptions) (res *Result, err error) {
	created := false
	var keep []string            // what the target held before (lost+found)
	var existing map[string]bool // MountedTarget's directories
	if _, statErr := os.Lstat(target); errors.Is(statErr, os.ErrNotExist) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return nil, fmt.Errorf("create target %q: %w", target, err)
		}
		created = true
	} else if opts.MountedTarget {
		dirs, err := mountSkeleton(target)
		if err != nil {
			return nil, fmt.Errorf("extract into %q: %w", target, err)
		}
		existing = dirs
		if _, err := os.Lstat(filepath.Join(target, "lost+found")); err == nil {
			keep = append(keep, "lost+found")
		}
	} else {
		empty, err := materialize.IsEmptyDir(target, true)
		if err != nil {
			return nil, fmt.Errorf("open target %q: %w", target, err)
		}
		if !empty {
			return nil, fmt.Errorf("extract into %q: %w", target, ErrTargetNotEmpty)
		}
		if _, err := os.Lstat(filepath.Join(target, "lost+found")); err == nil {
			keep = append(keep, "lost+found")
		}
	}
	defer func() {
		if err == nil || opts.KeepPartial {
			return
		}
		if created {
			if rmErr := materialize.RemoveContents(target); rmErr == nil {
				os.Remove(target)
			}
			return
		}
		materialize.RemoveContents(target, keep...)
	}()

	zr, err := zstd.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: start zstd: %v", ErrCorrupt, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	meta, first, err := ReadMeta(tr)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Decode(strings.NewReader(string(meta.Manifest)))
	if err != nil {
		return nil, fmt.Errorf("stream manifest: %w", err)
	}
	res = &Result{Manifest: m, Digest: manifest.DigestBytes(meta.Manifest), Meta: meta}
	if opts.Verify != nil {
		if err := opts.Verify(res.Digest, meta.Signature); err != nil {
			return nil, err
		}
	}
	x := &extractor{tr: tr, target: target, opts: opts, log: opts.Logger, grouped: m.HardLinked(), existing: existing}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	h := first
	for i := range m.Entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := &m.Entries[i]
		if h == nil {
			if h, err = tr.Next(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("%w: stream ended before entry %q (%d of %d)", ErrTruncated, e.Path, i+1, len(m.Entries))
				}
				return nil, classify(err, fmt.Sprintf("read entry %d (%q expected)", i+1, e.Path))
			}
		}
		if err := x.entry(e, h); err != nil {
			return nil, err
		}
		h = nil
	}
	if h, err := tr.Next(); err == nil {
		return nil, fmt.Errorf("%w: entry %q is not in the manifest", ErrMismatch, h.Name)
	} else if !errors.Is(err, io.EOF) {
		return nil, classify(err, "read end of stream")
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, classify(err, "read end of stream")
	}
	for i := len(m.Entries) - 1; i >= 0; i-- {
		if e := &m.Entries[i]; e.Type == manifest.TypeDir {
			if err := materialize.FinishDir(target, e, opts.Materialize); err != nil {
				return nil, err
			}
		}
	}
	res.Reused = x.reused
	return res, nil
}

type extractor struct {
	tr      *tar.Reader
	target  string
	opts    ExtractOptions
	log     *slog.Logger
	reused  int
	grouped map[string]bool
	// existing are directories the target held (MountedTarget).
	existing map[string]bool
}

func (x *extractor) entry(e *manifest.Entry, h *tar.Header) error {
	if err := Matches(e, h); err != nil {
		return err
	}
	var n int64
	switch {
	case e.Type == manifest.TypeDir:
		if x.existing[e.Path] {
			break // a mount point (or a directory leading to one)
		}
		if err := materialize.CreateDir(x.target, e); err != nil {
			return err
		}
	case e.Type == manifest.TypeRegular && e.LinkTo != "":
		if err := materialize.Link(x.target, e); err != nil {
			return err
		}
	case e.Type == manifest.TypeRegular:
		var err error
		if n, err = x.regular(e); err != nil {
			return err
		}
	default:
		err := materialize.CreateSpecial(x.target, e, x.opts.Materialize)
		if errors.Is(err, materialize.ErrSkipped) {
			x.log.Warn("device node not created without root; the manifest keeps it", "path", e.Path)
		} else if err != nil {
			return err
		}
	}
	if x.opts.Progress != nil {
		x.opts.Progress(1, n)
	}
	return nil
}

func (x *extractor) regular(e *manifest.Entry) (int64, error) {
	if x.opts.Reuse != nil && !x.grouped[e.Path] {
		if src := x.opts.Reuse(e); src != "" {
			sum, n, err := hashReader(x.tr)
			if err != nil {
				return n, classify(err, fmt.Sprintf("read content of %q", e.Path))
			}
			if err := checkContent(e, sum, n); err != nil {
				return n, err
			}
			if err := materialize.LinkExisting(src, x.target, e); err != nil {
				return n, err
			}
			x.reused++
			return n, nil
		}
	}
	src := &readTracker{r: x.tr}
	sum, n, err := materialize.WriteFile(x.target, e, src, x.opts.Materialize)
	if err != nil {
		if src.err != nil {
			// The stream failed under us; anything else is local (a
			// full disk, permissions) and says so itself.
			return n, classify(src.err, fmt.Sprintf("read content of %q", e.Path))
		}
		return n, err
	}
	return n, checkContent(e, sum, n)
}

func checkContent(e *manifest.Entry, sum string, n int64) error {
	if n != e.Size {
		return fmt.Errorf("%w: %q: %d content bytes, manifest says %d", ErrTruncated, e.Path, n, e.Size)
	}
	if sum != e.SHA256 {
		return fmt.Errorf("%w: %q: content sha256 %s, manifest says %s", ErrMismatch, e.Path, sum, e.SHA256)
	}
	return nil
}

// Matches checks that a tar header describes exactly the manifest entry:
// name, type, mode, owner, size, mtime, link target, device and xattrs.
func Matches(e *manifest.Entry, h *tar.Header) error {
	name := strings.TrimSuffix(h.Name, "/")
	if name == "" || name == "." {
		name = "."
	} else if !manifest.ValidPath(name) {
		return fmt.Errorf("%w: stream entry %q: %w", ErrMismatch, h.Name, manifest.ErrUnsafePath)
	}
	if h.Name != TarName(e) {
		return fmt.Errorf("%w: stream entry %q where the manifest has %q", ErrMismatch, h.Name, TarName(e))
	}
	want := Header(e)
	var bad []string
	check := func(field string, ok bool) {
		if !ok {
			bad = append(bad, field)
		}
	}
	check("type", h.Typeflag == want.Typeflag || (want.Typeflag == tar.TypeReg && h.Typeflag == tar.TypeRegA))
	check("mode", h.Mode&manifest.ModeMask == want.Mode)
	check("uid", h.Uid == want.Uid)
	check("gid", h.Gid == want.Gid)
	check("size", h.Size == want.Size)
	check("mtime", h.ModTime.UnixNano() == e.MtimeNS)
	check("link", h.Linkname == want.Linkname)
	check("device", h.Devmajor == want.Devmajor && h.Devminor == want.Devminor)
	var xattrs int
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			xattrs++
			if want.PAXRecords[k] != v {
				bad = append(bad, "xattr "+name)
			}
		}
	}
	check("xattrs", xattrs == len(e.Xattrs))
	if len(bad) > 0 {
		return fmt.Errorf("%w: stream entry %q differs in %s", ErrMismatch, h.Name, strings.Join(bad, ", "))
	}
	return nil
}

func hashReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// readTracker remembers the error its reader returned, so a failed write
// can tell a broken stream from a local problem.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}
