package store

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/signing"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/durable"
)

// Copy publishes the version ref names as a new version of image dst
// (which may be a new image). Every file shares its inode with the
// source; the signature carries over because the manifest is identical.
func (s *Store) Copy(ctx context.Context, ref, dst string) (*Version, error) {
	if err := ValidName(dst); err != nil {
		return nil, err
	}
	src, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	m, _, err := src.Manifest()
	if err != nil {
		return nil, err
	}
	_, sig, err := src.Signature()
	if err != nil {
		return nil, err
	}
	st, err := s.newStaging(dst, "copy of "+src.Ref())
	if err != nil {
		return nil, err
	}
	b := &builder{m: m, dst: st.tree(), open: openUnder(src.TreePath()), mopts: s.mopts(),
		reuse: func(e *manifest.Entry) string { return materialize.Path(src.TreePath(), e.Path) }}
	if err := b.run(ctx); err != nil {
		st.discard()
		return nil, fmt.Errorf("copy %s to %q: %w", src.Ref(), dst, err)
	}
	info := src.Info
	info.Parent = 0
	info.Comment = fmt.Sprintf("copied from %s", src.Ref())
	if src.Info.Comment != "" {
		info.Comment += ": " + src.Info.Comment
	}
	v, err := s.finish(st, dst, m, sig, &info)
	if err != nil {
		st.discard()
		return nil, err
	}
	return v, nil
}

// Rename gives an image a new name with all its versions.
func (s *Store) Rename(old, new string) error {
	if err := ValidName(old); err != nil {
		return err
	}
	if err := ValidName(new); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(s.imageDir(old)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rename image %q: %w", old, ErrNotFound)
	}
	if _, err := os.Stat(s.imageDir(new)); err == nil {
		return fmt.Errorf("rename image %q to %q: %q %w", old, new, new, ErrExists)
	}
	if err := os.Rename(s.imageDir(old), s.imageDir(new)); err != nil {
		return fmt.Errorf("rename image %q to %q: %w", old, new, err)
	}
	return durable.SyncDir(filepath.Join(s.root, "images"))
}

// Remove deletes an image and all its versions. The image directory is
// first renamed into the staging area, so the image vanishes at once and
// an interrupted removal is finished by the next Open.
func (s *Store) Remove(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	dir := s.imageDir(name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		unlock()
		return fmt.Errorf("remove image %q: %w", name, ErrNotFound)
	}
	st, err := s.newStaging(name, "removal")
	if err != nil {
		unlock()
		return err
	}
	err = os.Rename(dir, filepath.Join(st.dir, "removed"))
	unlock()
	if err != nil {
		st.discard()
		return fmt.Errorf("remove image %q: %w", name, err)
	}
	st.discard()
	return nil
}

// RemoveVersion deletes one version.
func (s *Store) RemoveVersion(name string, version int) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	dir := s.versionDir(name, version)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		unlock()
		return fmt.Errorf("remove %s@%d: %w", name, version, ErrNotFound)
	}
	st, err := s.newStaging(name, "removal")
	if err != nil {
		unlock()
		return err
	}
	err = os.Rename(dir, filepath.Join(st.dir, "removed"))
	unlock()
	st.discard()
	if err != nil {
		return fmt.Errorf("remove %s@%d: %w", name, version, err)
	}
	return nil
}

// Prune removes all but the newest keep versions of image name, sparing
// the versions in pinned. It returns the versions removed.
func (s *Store) Prune(name string, keep int, pinned map[int]bool) ([]int, error) {
	if keep < 1 {
		return nil, fmt.Errorf("prune %q: must keep at least 1 version, not %d", name, keep)
	}
	vs, err := s.Versions(name)
	if err != nil {
		return nil, err
	}
	var removed []int
	for i := 0; i < len(vs)-keep; i++ {
		n := vs[i].Info.Version
		if pinned[n] {
			continue
		}
		if err := s.RemoveVersion(name, n); err != nil {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// PublicKey, when set, requires a valid signature by that key.
	PublicKey ed25519.PublicKey
	// Workers bounds parallel hashing.
	Workers int
	// Progress is told of each file hashed.
	Progress manifest.Progress
}

// VerifyResult lists what differs between a version's tree and its
// manifest.
type VerifyResult struct {
	Version *Version
	Changes []manifest.Change
	// SignatureChecked is set when a signature was verified.
	SignatureChecked bool
}

// Verify re-reads the version's tree, hashes every file and compares
// every field with the manifest. The manifest's own digest is checked
// against image.json, and with a public key the signature too; those
// failures are errors, tree differences are listed in the result.
func (s *Store) Verify(ctx context.Context, ref string, opts VerifyOptions) (*VerifyResult, error) {
	v, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	want, _, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Version: v}
	if opts.PublicKey != nil {
		sig, _, err := v.Signature()
		if err != nil {
			return nil, err
		}
		if err := signing.Verify(opts.PublicKey, v.Info.ManifestDigest, sig); err != nil {
			return nil, fmt.Errorf("verify %s: %w", v.Ref(), err)
		}
		res.SignatureChecked = true
	}
	got, err := manifest.Scan(ctx, v.TreePath(), manifest.ScanOptions{Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", v.Ref(), err)
	}
	if err := got.HashContent(ctx, v.TreePath(), opts.Workers, opts.Progress); err != nil {
		return nil, fmt.Errorf("verify %s: %w", v.Ref(), err)
	}
	if !v.Info.TreeExact {
		// Written without root: owners and device nodes live only in
		// the manifest.
		want = withoutDevices(want)
		got = withoutDevices(got)
	}
	res.Changes = manifest.Diff(want, got, manifest.DiffOptions{IgnoreOwner: !v.Info.TreeExact})
	return res, nil
}

// withoutDevices drops what a tree written without root cannot hold:
// device nodes and security.* / trusted.* xattrs.
func withoutDevices(m *manifest.Manifest) *manifest.Manifest {
	out := &manifest.Manifest{Entries: make([]manifest.Entry, 0, len(m.Entries))}
	for _, e := range m.Entries {
		if e.Type == manifest.TypeCharDev || e.Type == manifest.TypeBlockDev {
			continue
		}
		var xs []manifest.Xattr
		for _, x := range e.Xattrs {
			if !strings.HasPrefix(x.Name, "security.") && !strings.HasPrefix(x.Name, "trusted.") {
				xs = append(xs, x)
			}
		}
		e.Xattrs = xs
		out.Entries = append(out.Entries, e)
	}
	return out
}

// Sign stores a signature of the version's manifest by priv. Signing
// adds a file beside the manifest; the version itself is unchanged.
func (s *Store) Sign(ref string, priv ed25519.PrivateKey) (*Version, *signing.Signature, error) {
	v, err := s.Resolve(ref)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := v.Manifest(); err != nil {
		return nil, nil, err
	}
	sig, err := signing.Sign(priv, v.Info.ManifestDigest)
	if err != nil {
		return nil, nil, err
	}
	if err := durable.WriteFile(filepath.Join(v.Dir, "signature"), sig.Marshal(), 0o644); err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", v.Ref(), err)
	}
	return v, sig, nil
}

// Export writes the version as a stream (see package stream).
func (s *Store) Export(ctx context.Context, ref string, w io.Writer, opts stream.WriteOptions) (*Version, error) {
	v, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	m, raw, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	_, sig, err := v.Signature()
	if err != nil {
		return nil, err
	}
	ij, err := v.ImageJSON()
	if err != nil {
		return nil, err
	}
	open := openUnder(v.TreePath())
	err = stream.Write(ctx, w, m, stream.Meta{Manifest: raw, Signature: sig, ImageJSON: ij},
		func(e *manifest.Entry) (io.ReadCloser, error) { return open(e) }, opts)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", v.Ref(), err)
	}
	return v, nil
}

// WorkingCopy is a private, writable copy of a version (no inodes shared
// with the store), for editing and publishing as a new version.
type WorkingCopy struct {
	// Root is the copy's tree.
	Root   string
	Parent *Version
	st     *staging
	store  *Store
}

// NewWorkingCopy copies a version into the staging area.
func (s *Store) NewWorkingCopy(ctx context.Context, ref string) (*WorkingCopy, error) {
	v, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	m, _, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	st, err := s.newStaging(v.Info.Image, "working copy of "+v.Ref())
	if err != nil {
		return nil, err
	}
	b := &builder{m: m, dst: st.tree(), open: openUnder(v.TreePath()), mopts: s.mopts()}
	if err := b.run(ctx); err != nil {
		st.discard()
		return nil, fmt.Errorf("working copy of %s: %w", v.Ref(), err)
	}
	return &WorkingCopy{Root: st.tree(), Parent: v, st: st, store: s}, nil
}

// Publish stores the working copy as the next version of its image and
// discards it. An unchanged copy publishes nothing (Unchanged is set).
func (w *WorkingCopy) Publish(ctx context.Context, comment string) (*ImportResult, error) {
	defer w.Discard()
	host, _ := os.Hostname()
	return w.store.ImportDir(ctx, w.Root, w.Parent.Info.Image, ImportOptions{
		Parent: w.Parent, SourceHost: host, Comment: comment,
		DiskLayout: w.Parent.Info.DiskLayout, Checksum: true,
		SourcePath: "image shell of " + w.Parent.Ref(), Excludes: w.Parent.Info.Excludes,
	})
}

// Discard throws the working copy away.
func (w *WorkingCopy) Discard() {
	if w.st != nil {
		w.st.discard()
		w.st = nil
	}
}

// Diff lists the changes from version a to version b.
func (s *Store) Diff(a, b string) ([]manifest.Change, error) {
	va, err := s.Resolve(a)
	if err != nil {
		return nil, err
	}
	vb, err := s.Resolve(b)
	if err != nil {
		return nil, err
	}
	ma, _, err := va.Manifest()
	if err != nil {
		return nil, err
	}
	mb, _, err := vb.Manifest()
	if err != nil {
		return nil, err
	}
	return manifest.Diff(ma, mb, manifest.DiffOptions{}), nil
}
