package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/transport/delta"
	"github.com/goldcast/goldcast/transport/treesync"
)

// UpdateOptions describe one update of a root to an image version.
type UpdateOptions struct {
	// Image is NAME (latest) or NAME@N; or Node names a node whose plan
	// (its image with its overrides) is laid down instead.
	Image string
	Node  string
	// Root is the tree to bring up to date ("/" on an installed node).
	Root string
	// Excludes and ExcludeFile add to the default excludes; ExcludeFile
	// defaults to ROOT/etc/goldcast/update.exclude when it exists.
	Excludes    []string
	ExcludeFile string
	// NoDefaultExcludes drops DefaultUpdateExcludes (a deploy lays down
	// everything).
	NoDefaultExcludes bool
	// DryRun prints the itemized changes and changes nothing.
	DryRun bool
	// NoDelete keeps local files the image does not have.
	NoDelete bool
	// NoRecord skips writing ROOT/etc/goldcast/last-sync.
	NoRecord bool
	Log      *slog.Logger
	Progress manifest.Progress
	// Out receives the dry-run listing.
	Out io.Writer
}

// SyncResult reports an update.
type SyncResult struct {
	// Version is the NAME@N the root now matches.
	Version string
	// Changes lists what differed, as itemized changes.
	Changes []manifest.Change
	// Fetched counts files whose content came from the server;
	// LiteralBytes of it travelled as is, the rest was rebuilt from the
	// local copy by rsync delta.
	Fetched      int
	LiteralBytes int64
	// Deleted counts local paths removed.
	Deleted int
}

// LastSync is written to ROOT/etc/goldcast/last-sync after an update.
type LastSync struct {
	// Ref is the reference the update was asked for (NAME, or NAME@N to
	// stay on a pinned version); the next update without --image uses it.
	Ref string `json:"ref,omitempty"`
	// Node is set when the update laid down a node's plan; the next
	// update without --image or --node uses it.
	Node    string    `json:"node,omitempty"`
	Image   string    `json:"image"`
	Version int       `json:"version"`
	Digest  string    `json:"manifest_digest"`
	Time    time.Time `json:"time"`
	Server  string    `json:"server"`
}

// Update brings the tree at o.Root to the image version: it finds what
// differs by directory digests, fetches changed content as rsync deltas
// against the local files, writes each file to a temporary name and
// renames it into place, applies every piece of metadata from the
// manifest, deletes what the image lacks (unless NoDelete), never touches
// excluded paths, and checks the result against the version again.
func (c *Client) Update(ctx context.Context, o UpdateOptions) (*SyncResult, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Root == "" {
		o.Root = "/"
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	src := Source{Image: o.Image, Node: o.Node}
	info, err := c.Info(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("update to %s: %w", src, err)
	}
	ref := fmt.Sprintf("%s@%d", info.Image, info.Version)
	base := src.pinned(info)
	defaults := DefaultUpdateExcludes()
	if o.NoDefaultExcludes {
		defaults = []string{"/lost+found/"} // a fresh filesystem's own
	}
	// The node's own exclude file always applies; --exclude-from adds.
	ex, err := excluder(defaults, o.Excludes, filepath.Join(root, "etc/goldcast/update.exclude"), true)
	if err != nil {
		return nil, err
	}
	if o.ExcludeFile != "" {
		if err := ex.AddFile(o.ExcludeFile); err != nil {
			return nil, err
		}
	}
	local, foreign, err := scanRoot(ctx, root, ex, log, o.Progress)
	if err != nil {
		return nil, fmt.Errorf("update %q: %w", root, err)
	}
	// Mount points of other filesystems (/proc, /run on a live root) are
	// left alone: their directories belong to what is mounted there.
	skip := func(p string, isDir bool) bool { return foreign[p] || excludedPath(ex, p, isDir) }
	diff, err := treesync.Compare(ctx, local, info.TreeDigest, c.lister(base), skip)
	if err != nil {
		return nil, fmt.Errorf("compare with %s: %w", ref, err)
	}
	res := &SyncResult{Version: ref}
	if diff.Empty() {
		return res, c.recordSync(root, info, o)
	}
	s := &syncer{c: c, root: root, base: base, local: local, localIdx: local.Index(), log: log, progress: o.Progress}
	if err := s.fetchRemote(ctx, diff, ex); err != nil {
		return nil, err
	}
	for _, ch := range s.changes(diff) {
		if o.NoDelete && ch.Kind == manifest.Removed && !strings.HasPrefix(path.Base(ch.Path), tmpPrefix) && !removedForType(diff, ch.Path) {
			continue // kept: --no-delete
		}
		res.Changes = append(res.Changes, ch)
	}
	if o.DryRun {
		for _, ch := range res.Changes {
			fmt.Fprintln(o.Out, ch.Itemize())
		}
		return res, nil
	}
	if err := s.apply(ctx, diff, o.NoDelete, res); err != nil {
		return nil, fmt.Errorf("update %q to %s: %w", root, ref, err)
	}
	// Check the result the same way the differences were found.
	after, _, err := scanRoot(ctx, root, ex, log, nil)
	if err != nil {
		return nil, err
	}
	left, err := treesync.Compare(ctx, after, info.TreeDigest, c.lister(base), skip)
	if err != nil {
		return nil, err
	}
	if o.NoDelete {
		left.LocalOnly = nil
	}
	var extra []string
	for _, p := range left.LocalOnly {
		if !s.kept[p] {
			extra = append(extra, p)
		}
	}
	left.LocalOnly = extra
	if !left.Empty() {
		return nil, fmt.Errorf("update %q to %s: still differs after applying changes: changed %v, extra %v, missing %v", root, ref, left.Changed, left.LocalOnly, left.RemoteOnly)
	}
	return res, c.recordSync(root, info, o)
}

// removedForType reports whether p is removed only to be replaced by an
// entry of another type (which --no-delete does not prevent).
func removedForType(diff *treesync.Result, p string) bool {
	for _, q := range diff.RemoteOnly {
		if q == p || strings.HasPrefix(p, q+"/") {
			return true
		}
	}
	return false
}

func (c *Client) recordSync(root string, info *ImageInfo, o UpdateOptions) error {
	if o.DryRun || o.NoRecord {
		return nil
	}
	dir := filepath.Join(root, "etc/goldcast")
	// Creating directories must not make their parent look changed to
	// the next update: keep the time of the deepest existing ancestor.
	for anc := dir; anc != root && anc != "/"; anc = filepath.Dir(anc) {
		if _, err := os.Lstat(anc); err == nil {
			break
		} else if _, perr := os.Lstat(filepath.Dir(anc)); perr == nil {
			var st unix.Stat_t
			if unix.Lstat(filepath.Dir(anc), &st) == nil {
				defer setMtime(filepath.Dir(anc), st.Mtim.Nano())
			}
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("record last sync: %w", err)
	}
	b, _ := json.MarshalIndent(LastSync{Ref: o.Image, Node: o.Node, Image: info.Image, Version: info.Version, Digest: info.ManifestDigest, Time: time.Now().UTC(), Server: c.base}, "", "  ")
	tmp := filepath.Join(dir, ".goldcast-tmp-last-sync")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record last sync: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "last-sync"))
}

// excludedPath reports whether p or any directory above it is excluded.
func excludedPath(ex *manifest.Excluder, p string, isDir bool) bool {
	if ex.Match(p, isDir) {
		return true
	}
	for q := manifest.Parent(p); q != "" && q != "."; q = manifest.Parent(q) {
		if ex.Match(q, true) {
			return true
		}
	}
	return false
}

// syncer applies one update.
type syncer struct {
	c    *Client
	root string
	// base is the API path of the tree being laid down.
	base     string
	local    *manifest.Manifest
	localIdx map[string]int
	log      *slog.Logger
	progress manifest.Progress
	// remote holds the version's entries for every changed or missing
	// path, in manifest order.
	remote    *manifest.Manifest
	remoteIdx map[string]int
	// touched are directories whose mtime the update disturbed by
	// creating, renaming or removing entries in them.
	touched map[string]bool
	// kept are directories the version lacks but that hold excluded
	// paths, so they stay.
	kept map[string]bool
}

// touch records that p's parent directory changed.
func (s *syncer) touch(p string) {
	if s.touched == nil {
		s.touched = map[string]bool{}
	}
	s.touched[manifest.Parent(p)] = true
}

func (s *syncer) fetchRemote(ctx context.Context, diff *treesync.Result, ex *manifest.Excluder) error {
	changed, err := s.c.entries(ctx, s.base, diff.Changed, false)
	if err != nil {
		return fmt.Errorf("fetch changed entries: %w", err)
	}
	added, err := s.c.entries(ctx, s.base, diff.RemoteOnly, true)
	if err != nil {
		return fmt.Errorf("fetch missing entries: %w", err)
	}
	s.remote = &manifest.Manifest{}
	for _, e := range append(changed, added...) {
		if !excludedPath(ex, e.Path, e.Type == manifest.TypeDir) {
			s.remote.Entries = append(s.remote.Entries, e)
		}
	}
	s.remote.Sort()
	s.remoteIdx = s.remote.Index()
	return nil
}

// changes itemizes the update, from the local tree (old) to the version.
func (s *syncer) changes(diff *treesync.Result) []manifest.Change {
	old := &manifest.Manifest{}
	for _, p := range diff.Changed {
		old.Entries = append(old.Entries, s.local.Entries[s.localIdx[p]])
	}
	for _, p := range diff.LocalOnly {
		old.Entries = append(old.Entries, s.local.EntriesUnder(p)...)
	}
	old.Sort()
	return manifest.Diff(old, s.remote, manifest.DiffOptions{})
}

func (s *syncer) localEntry(p string) *manifest.Entry {
	if i, ok := s.localIdx[p]; ok {
		return &s.local.Entries[i]
	}
	return nil
}

// apply makes the changes: deletions first, then every remote entry in
// manifest order, content fetched in one delta exchange, hard links after
// their leaders, directory metadata last.
func (s *syncer) apply(ctx context.Context, diff *treesync.Result, noDelete bool, res *SyncResult) error {
	replaced := map[string]bool{}
	for _, p := range diff.RemoteOnly {
		replaced[p] = true
	}
	for i := len(diff.LocalOnly) - 1; i >= 0; i-- {
		p := diff.LocalOnly[i]
		// Leftovers of an interrupted update go even with --no-delete.
		leftover := strings.HasPrefix(path.Base(p), tmpPrefix)
		if noDelete && !replaced[p] && !leftover {
			continue
		}
		if err := s.remove(p); err != nil {
			return err
		}
		s.touch(p)
		res.Deleted++
	}
	var fetch []*manifest.Entry
	var links []*manifest.Entry
	for i := range s.remote.Entries {
		e := &s.remote.Entries[i]
		le := s.localEntry(e.Path)
		if le != nil && replaced[e.Path] {
			le = nil // removed above: a type change
		}
		switch {
		case e.Type == manifest.TypeDir:
			if le == nil || le.Type != manifest.TypeDir {
				s.touch(e.Path)
			}
			if le == nil {
				if err := materialize.CreateDir(s.root, e); err != nil {
					return err
				}
			} else if le.Type != manifest.TypeDir {
				if err := removeAll(materialize.Path(s.root, e.Path)); err != nil {
					return err
				}
				if err := materialize.CreateDir(s.root, e); err != nil {
					return err
				}
			}
		case e.Type == manifest.TypeRegular && e.LinkTo != "":
			links = append(links, e)
		case e.Type == manifest.TypeRegular:
			if le != nil && le.Type == manifest.TypeRegular && le.SHA256 == e.SHA256 && le.LinkTo == "" {
				if err := materialize.Reconcile(s.root, e, materialize.Options{}); err != nil {
					return err
				}
				continue
			}
			fetch = append(fetch, e)
		default:
			if le != nil && le.Type == e.Type && le.Target == e.Target && le.DevMajor == e.DevMajor && le.DevMinor == e.DevMinor {
				if err := materialize.Reconcile(s.root, e, materialize.Options{}); err != nil {
					return err
				}
				continue
			}
			if err := s.replaceSpecial(e); err != nil {
				return err
			}
		}
	}
	if err := s.fetch(ctx, fetch, res); err != nil {
		return err
	}
	for _, e := range links {
		if err := s.replaceWith(e, func(tmp string) error {
			return os.Link(materialize.Path(s.root, e.LinkTo), tmp)
		}); err != nil {
			return err
		}
	}
	for i := len(s.remote.Entries) - 1; i >= 0; i-- {
		if e := &s.remote.Entries[i]; e.Type == manifest.TypeDir {
			if err := materialize.Reconcile(s.root, e, materialize.Options{}); err != nil {
				return err
			}
			delete(s.touched, e.Path)
		}
	}
	// Directories the version leaves unchanged still had entries renamed
	// into them: give them back their recorded times, deepest first.
	var rest []string
	for p := range s.touched {
		rest = append(rest, p)
	}
	sort.Slice(rest, func(i, j int) bool { return manifest.Less(rest[j], rest[i]) })
	for _, p := range rest {
		if le := s.localEntry(p); le != nil && le.Type == manifest.TypeDir {
			if err := setMtime(materialize.Path(s.root, p), le.MtimeNS); err != nil {
				return err
			}
		}
	}
	return nil
}

func setMtime(p string, ns int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime on %q: %w", p, err)
	}
	return nil
}

// tmpPrefix starts the names of files an update is still writing.
const tmpPrefix = ".goldcast-tmp-"

// tmpName is a temporary name beside p; capture and update exclude the
// pattern, and an update deletes leftovers of an interrupted run.
func tmpName(p string) string {
	var b [6]byte
	rand.Read(b[:])
	return manifest.Join(manifest.Parent(p), tmpPrefix+hex.EncodeToString(b[:]))
}

// replaceWith creates the entry under a temporary name with make, then
// renames it over the destination (removing a directory there first).
func (s *syncer) replaceWith(e *manifest.Entry, make func(tmp string) error) error {
	tmp := materialize.Path(s.root, tmpName(e.Path))
	if err := make(tmp); err != nil {
		return fmt.Errorf("create %q: %w", e.Path, err)
	}
	return s.rename(tmp, e.Path)
}

func (s *syncer) rename(tmp, p string) error {
	dst := materialize.Path(s.root, p)
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		if err := removeAll(dst); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %q in place: %w", p, err)
	}
	s.touch(p)
	return nil
}

func (s *syncer) replaceSpecial(e *manifest.Entry) error {
	t := *e
	t.Path = tmpName(e.Path)
	if err := materialize.CreateSpecial(s.root, &t, materialize.Options{}); err != nil {
		return err
	}
	return s.rename(materialize.Path(s.root, t.Path), e.Path)
}

// fetch asks the server for the content of entries in one exchange:
// a signature of each local file at the same path (none when there is
// no such file) goes up, a delta or the whole file comes back.
func (s *syncer) fetch(ctx context.Context, entries []*manifest.Entry, res *SyncResult) error {
	if len(entries) == 0 {
		return nil
	}
	byPath := map[string]*manifest.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	body, err := s.c.postStream(ctx, http.MethodPost, s.base+"/delta", func(w io.Writer) error {
		fw := api.NewFrameWriter(w)
		for _, e := range entries {
			pw, err := fw.Begin(api.KindSignature, e.Path)
			if err != nil {
				return err
			}
			if le := s.localEntry(e.Path); le != nil && le.Type == manifest.TypeRegular && le.Size > 0 {
				f, err := os.Open(materialize.Path(s.root, e.Path))
				if err != nil {
					return err
				}
				sig, err := delta.Sign(ctx, f, le.Size, delta.BlockSizeFor(le.Size))
				f.Close()
				if err == nil {
					// 8 bytes of strong sum per block: the whole file's
					// sha256 is checked after the rebuild anyway.
					err = sig.Shorten(min(8, sig.StrongLen))
				}
				if err != nil {
					return fmt.Errorf("sign %q: %w", e.Path, err)
				}
				if err := delta.EncodeSignature(pw, sig); err != nil {
					return err
				}
			}
			if err := pw.Close(); err != nil {
				return err
			}
		}
		return fw.Close()
	})
	if err != nil {
		return fmt.Errorf("fetch content: %w", err)
	}
	defer body.Close()
	fr := api.NewFrameReader(body)
	for {
		kind, p, payload, err := fr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read content: %w", err)
		}
		e, ok := byPath[p]
		if !ok {
			return fmt.Errorf("server sent %q, which was not asked for", p)
		}
		delete(byPath, p)
		lit, err := s.receive(ctx, e, kind, payload)
		if err != nil {
			return err
		}
		res.Fetched++
		res.LiteralBytes += lit
		if s.progress != nil {
			s.progress(1, e.Size)
		}
	}
	if len(byPath) > 0 {
		return fmt.Errorf("server did not send %d of the files asked for", len(byPath))
	}
	return nil
}

// receive writes one file from a frame into a temporary name, checks
// size and sha256 against the manifest, applies the metadata and renames
// it into place. It returns the payload bytes for full frames.
func (s *syncer) receive(ctx context.Context, e *manifest.Entry, kind byte, payload io.Reader) (int64, error) {
	var src io.Reader
	var literal int64
	switch kind {
	case api.KindFull:
		src = payload
	case api.KindDelta:
		le := s.localEntry(e.Path)
		if le == nil {
			return 0, fmt.Errorf("server sent a delta for %q, which has no local copy", e.Path)
		}
		basis, err := os.Open(materialize.Path(s.root, e.Path))
		if err != nil {
			return 0, err
		}
		defer basis.Close()
		pr, pw := io.Pipe()
		go func() {
			dr := delta.NewDeltaReader(payload)
			_, err := delta.Apply(ctx, basis, le.Size, delta.BlockSizeFor(le.Size), dr.Next, pw)
			pw.CloseWithError(err)
		}()
		defer pr.Close()
		src = pr
	default:
		return 0, fmt.Errorf("server sent %q as frame kind %q", e.Path, kind)
	}
	t := *e
	t.Path = tmpName(e.Path)
	sum, n, err := materialize.WriteFile(s.root, &t, io.LimitReader(src, e.Size+1), materialize.Options{})
	if err != nil {
		os.Remove(materialize.Path(s.root, t.Path))
		return 0, fmt.Errorf("receive %q: %w", e.Path, err)
	}
	if n != e.Size || sum != e.SHA256 {
		os.Remove(materialize.Path(s.root, t.Path))
		return 0, fmt.Errorf("received %q is %d bytes with sha256 %s; the manifest says %d bytes with %s", e.Path, n, sum, e.Size, e.SHA256)
	}
	if kind == api.KindFull {
		literal = n
	}
	return literal, s.rename(materialize.Path(s.root, t.Path), e.Path)
}

// remove deletes a local path the version lacks, entry by entry from the
// local manifest, deepest first. A directory that still holds something
// the scan did not see (an excluded path such as /home/alice, a mount)
// is kept: an update never touches excluded paths.
func (s *syncer) remove(p string) error {
	entries := s.local.EntriesUnder(p)
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		full := materialize.Path(s.root, e.Path)
		err := os.Remove(full)
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist):
		case e.Type == manifest.TypeDir && (errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST)):
			s.log.Info("kept a directory the version lacks: it holds excluded paths", "path", e.Path)
			if s.kept == nil {
				s.kept = map[string]bool{}
			}
			s.kept[e.Path] = true
		case e.Type == manifest.TypeDir && errors.Is(err, os.ErrPermission):
			// A read-only parent: make it writable and try once more.
			if err := removeAll(full); err != nil {
				return err
			}
		default:
			return fmt.Errorf("remove %q: %w", e.Path, err)
		}
	}
	return nil
}

// removeAll deletes a path, making read-only directories writable first.
func removeAll(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := materialize.RemoveContents(p); err != nil {
			return fmt.Errorf("remove %q: %w", p, err)
		}
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	return nil
}
