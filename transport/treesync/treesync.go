// Package treesync finds what differs between a local tree and a remote
// image version without moving whole manifests: both sides hold a
// manifest, the remote side answers for any directory with a short hash of
// each child's manifest line and, for subdirectories, of their subtree
// digest (manifest.DirDigests); the local side descends only into
// directories whose digests differ. A changed file costs one listing per
// directory level above it, not a file list of the whole image.
package treesync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/goldcast/goldcast/images/manifest"
)

// HashLen is how many bytes of sha256 a listing carries per child: enough
// to make an accidental match of a changed entry vanishingly unlikely
// (2^-64), short enough to keep listings small.
const HashLen = 8

// Child is one entry of a directory listing.
type Child struct {
	// Name is the entry's last path element.
	Name manifest.WirePath `json:"n"`
	// Line is the hex HashLen-byte prefix of sha256 over the entry's
	// canonical manifest line.
	Line string `json:"l"`
	// Tree is, for directories, the hex HashLen-byte prefix of the
	// directory's subtree digest.
	Tree string `json:"t,omitempty"`
}

// Listing is the remote answer for one directory.
type Listing struct {
	Path manifest.WirePath `json:"path"`
	// Missing is set when the path is not a directory of the remote tree.
	Missing bool `json:"missing,omitempty"`
	// Self is the line hash of the directory itself (its parent's listing
	// carries it too; the root has no parent).
	Self     string  `json:"self,omitempty"`
	Children []Child `json:"children,omitempty"`
}

// Index answers listings for one manifest; build it once per version.
type Index struct {
	m        *manifest.Manifest
	digests  map[string]string
	children map[string][]int
	index    map[string]int
}

// NewIndex prepares listings for m (which must be valid).
func NewIndex(m *manifest.Manifest) *Index {
	ix := &Index{m: m, digests: m.DirDigests(), children: map[string][]int{}, index: m.Index()}
	for i := 1; i < len(m.Entries); i++ {
		p := manifest.Parent(m.Entries[i].Path)
		ix.children[p] = append(ix.children[p], i)
	}
	return ix
}

// RootDigest is the digest of the whole tree: the root directory's own
// manifest line and its subtree digest.
func (ix *Index) RootDigest() string {
	s := sha256.Sum256([]byte(ix.m.Entries[0].Line() + "\n" + ix.digests["."]))
	return hex.EncodeToString(s[:])
}

// List answers for the given directory paths.
func (ix *Index) List(paths []string) []Listing {
	out := make([]Listing, 0, len(paths))
	for _, p := range paths {
		out = append(out, ix.list(p))
	}
	return out
}

func (ix *Index) list(p string) Listing {
	if _, ok := ix.digests[p]; !ok {
		return Listing{Path: manifest.WirePath(p), Missing: true}
	}
	l := Listing{Path: manifest.WirePath(p), Self: lineHash(&ix.m.Entries[ix.index[p]])}
	for _, i := range ix.children[p] {
		e := &ix.m.Entries[i]
		c := Child{Name: manifest.WirePath(e.Name()), Line: lineHash(e)}
		if e.Type == manifest.TypeDir {
			c.Tree = short(ix.digests[e.Path])
		}
		l.Children = append(l.Children, c)
	}
	return l
}

func lineHash(e *manifest.Entry) string {
	s := sha256.Sum256([]byte(e.Line()))
	return hex.EncodeToString(s[:HashLen])
}

func short(digest string) string {
	if len(digest) > 2*HashLen {
		return digest[:2*HashLen]
	}
	return digest
}

// Lister fetches listings of remote directories (one round trip per call).
type Lister func(ctx context.Context, paths []string) ([]Listing, error)

// Result is what differs between the local and the remote tree.
type Result struct {
	// Changed are local paths whose entry differs from the remote one
	// (metadata or content), in manifest order.
	Changed []string
	// LocalOnly are local paths the remote tree lacks (subtrees listed by
	// their top path only), in manifest order.
	LocalOnly []string
	// RemoteOnly are remote paths the local tree lacks (subtrees by their
	// top path only), in manifest order.
	RemoteOnly []string
	// Rounds counts listing round trips.
	Rounds int
}

// Empty reports whether the trees are identical.
func (r *Result) Empty() bool {
	return len(r.Changed) == 0 && len(r.LocalOnly) == 0 && len(r.RemoteOnly) == 0
}

// Compare walks the remote tree through list, descending only where the
// digests of local differ, and reports the differences. skip, when set,
// hides paths on both sides (excluded paths of an update).
func Compare(ctx context.Context, local *manifest.Manifest, remoteRoot string, list Lister, skip func(path string, isDir bool) bool) (*Result, error) {
	ix := NewIndex(local)
	res := &Result{}
	if remoteRoot != "" && ix.RootDigest() == remoteRoot {
		return res, nil
	}
	pending := []string{"."}
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		listings, err := list(ctx, pending)
		res.Rounds++
		if err != nil {
			return nil, fmt.Errorf("list remote directories: %w", err)
		}
		if len(listings) != len(pending) {
			return nil, fmt.Errorf("list remote directories: asked for %d, got %d", len(pending), len(listings))
		}
		var next []string
		for k, rl := range listings {
			if string(rl.Path) != pending[k] {
				return nil, fmt.Errorf("list remote directories: asked for %q, got %q", pending[k], rl.Path)
			}
			if rl.Missing {
				return nil, fmt.Errorf("remote tree has no directory %q", rl.Path)
			}
			loc := ix.list(pending[k])
			if pending[k] == "." && loc.Self != rl.Self {
				res.Changed = append(res.Changed, ".")
			}
			next = append(next, diffListing(pending[k], loc.Children, rl.Children, res, skip)...)
		}
		pending = next
	}
	sortPaths(res.Changed)
	sortPaths(res.LocalOnly)
	sortPaths(res.RemoteOnly)
	return res, nil
}

// diffListing compares one directory's children and returns the
// subdirectories to descend into.
func diffListing(dir string, local, remote []Child, res *Result, skip func(string, bool) bool) []string {
	rem := make(map[manifest.WirePath]Child, len(remote))
	for _, c := range remote {
		if c.Name == "." || !manifest.ValidPath(string(c.Name)) || strings.Contains(string(c.Name), "/") {
			continue // a hostile listing cannot name paths elsewhere
		}
		rem[c.Name] = c
	}
	var descend []string
	seen := make(map[manifest.WirePath]bool, len(local))
	for _, lc := range local {
		p := manifest.Join(dir, string(lc.Name))
		seen[lc.Name] = true
		if skip != nil && skip(p, lc.Tree != "") {
			continue
		}
		rc, ok := rem[lc.Name]
		switch {
		case !ok:
			res.LocalOnly = append(res.LocalOnly, p)
		case (lc.Tree != "") != (rc.Tree != ""):
			// A directory became a file or the reverse.
			res.LocalOnly = append(res.LocalOnly, p)
			res.RemoteOnly = append(res.RemoteOnly, p)
		default:
			if lc.Line != rc.Line {
				res.Changed = append(res.Changed, p)
			}
			if lc.Tree != "" && lc.Tree != rc.Tree {
				descend = append(descend, p)
			}
		}
	}
	for _, rc := range rem {
		p := manifest.Join(dir, string(rc.Name))
		if seen[rc.Name] || (skip != nil && skip(p, rc.Tree != "")) {
			continue
		}
		res.RemoteOnly = append(res.RemoteOnly, p)
	}
	return descend
}

func sortPaths(p []string) {
	sort.Slice(p, func(i, j int) bool { return manifest.Less(p[i], p[j]) })
}
