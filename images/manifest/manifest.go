// Package manifest describes an image version file by file.
//
// A manifest is one entry per path, in canonical order, carrying everything
// an OS root needs besides file content: type, full mode bits, numeric
// owner, size, mtime in nanoseconds, the sha256 of content, symlink targets,
// device numbers, extended attributes and hard-link groups. Its canonical
// text encoding is deterministic, and the sha256 of that encoding is the
// version's identity (see Digest). The package also builds manifests from a
// live tree (Scan, HashContent), compares two manifests (Compare) and
// computes a digest per directory (DirDigests) so two sides can find what
// changed without exchanging whole manifests.
package manifest

import (
	"fmt"
	"slices"
	"strings"
)

// Type is the kind of a filesystem entry. Its value is the letter used in
// the manifest encoding.
type Type byte

// The entry types a manifest carries. Sockets are never recorded.
const (
	TypeRegular  Type = 'f'
	TypeDir      Type = 'd'
	TypeSymlink  Type = 'l'
	TypeCharDev  Type = 'c'
	TypeBlockDev Type = 'b'
	TypeFIFO     Type = 'p'
)

// String names the type for people.
func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "file"
	case TypeDir:
		return "directory"
	case TypeSymlink:
		return "symlink"
	case TypeCharDev:
		return "char device"
	case TypeBlockDev:
		return "block device"
	case TypeFIFO:
		return "fifo"
	}
	return fmt.Sprintf("type(%q)", byte(t))
}

// MarshalText renders the type's name in JSON.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

func (t Type) valid() bool {
	switch t {
	case TypeRegular, TypeDir, TypeSymlink, TypeCharDev, TypeBlockDev, TypeFIFO:
		return true
	}
	return false
}

// ModeMask selects the mode bits a manifest keeps: permissions plus
// setuid, setgid and sticky.
const ModeMask = 0o7777

// Xattr is one extended attribute. Values are raw bytes: POSIX ACLs
// (system.posix_acl_*) and file capabilities (security.capability) travel
// in their kernel binary form.
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is one path of an image.
type Entry struct {
	// Path is slash-separated and relative to the image root; the root
	// itself is ".".
	Path string
	Type Type
	// Mode holds the permission bits plus setuid, setgid and sticky.
	Mode uint32
	UID  uint32
	GID  uint32
	// Size is the content length of regular files, zero otherwise.
	Size int64
	// MtimeNS is the modification time in nanoseconds since the epoch.
	MtimeNS int64
	// SHA256 is the hex digest of a regular file's content.
	SHA256 string
	// Target is a symlink's target, stored verbatim.
	Target string
	// LinkTo names the first path (in manifest order) of the hard-link
	// group this regular file belongs to; empty for the first member and
	// for files that are not hard-linked.
	LinkTo   string
	DevMajor uint32
	DevMinor uint32
	// Xattrs are sorted by name.
	Xattrs []Xattr
}

// Manifest is the ordered entry list of one image version.
type Manifest struct {
	Entries []Entry
}

// Name returns the last element of the entry's path.
func (e *Entry) Name() string {
	if i := strings.LastIndexByte(e.Path, '/'); i >= 0 {
		return e.Path[i+1:]
	}
	return e.Path
}

// Parent returns the path of the directory holding the entry ("." for
// top-level entries, "" for the root).
func Parent(p string) string {
	if p == "." {
		return ""
	}
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

// Join appends a name to a manifest path.
func Join(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// Less reports whether path a sorts before path b in manifest order: the
// root first, then component by component, so every directory's subtree is
// contiguous and follows the directory itself.
func Less(a, b string) bool { return ComparePaths(a, b) < 0 }

// ComparePaths orders two manifest paths (see Less): -1, 0 or +1.
func ComparePaths(a, b string) int {
	if a == b {
		return 0
	}
	if a == "." {
		return -1
	}
	if b == "." {
		return 1
	}
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	if len(a) < len(b) {
		return -1
	}
	return 1
}

// Sort puts the entries in manifest order and each entry's xattrs in name
// order.
func (m *Manifest) Sort() {
	slices.SortFunc(m.Entries, func(a, b Entry) int { return ComparePaths(a.Path, b.Path) })
	for i := range m.Entries {
		slices.SortFunc(m.Entries[i].Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
	}
}

// Index maps each path to its position in Entries.
func (m *Manifest) Index() map[string]int {
	idx := make(map[string]int, len(m.Entries))
	for i := range m.Entries {
		idx[m.Entries[i].Path] = i
	}
	return idx
}

// Totals sums what a manifest describes.
type Totals struct {
	Entries int   `json:"entries"`
	Files   int   `json:"files"`
	Dirs    int   `json:"dirs"`
	Bytes   int64 `json:"bytes"`
}

// Totals counts entries, regular files, directories and content bytes
// (each hard-link group counted once).
func (m *Manifest) Totals() Totals {
	var t Totals
	for i := range m.Entries {
		e := &m.Entries[i]
		t.Entries++
		switch e.Type {
		case TypeRegular:
			t.Files++
			if e.LinkTo == "" {
				t.Bytes += e.Size
			}
		case TypeDir:
			t.Dirs++
		}
	}
	return t
}

// SameMetadata reports whether two entries agree on everything but the
// path: type, mode, owner, size, mtime, content digest, target, device
// numbers and xattrs. Hard-link membership is not compared.
func SameMetadata(a, b *Entry) bool {
	return a.Type == b.Type && a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID &&
		a.Size == b.Size && a.MtimeNS == b.MtimeNS && a.SHA256 == b.SHA256 &&
		a.Target == b.Target && a.DevMajor == b.DevMajor && a.DevMinor == b.DevMinor &&
		sameXattrs(a.Xattrs, b.Xattrs)
}

func sameXattrs(a, b []Xattr) bool {
	return slices.EqualFunc(a, b, func(x, y Xattr) bool {
		return x.Name == y.Name && string(x.Value) == string(y.Value)
	})
}

// HardLinked returns the set of paths that belong to a hard-link group
// (leaders and members).
func (m *Manifest) HardLinked() map[string]bool {
	g := map[string]bool{}
	for i := range m.Entries {
		if l := m.Entries[i].LinkTo; l != "" {
			g[l] = true
			g[m.Entries[i].Path] = true
		}
	}
	return g
}

// Patch returns a new manifest: m without the removed paths (and
// everything below them), with each upsert replacing or adding the entry
// at its path. The result is sorted and validated.
func (m *Manifest) Patch(upserts []Entry, removes []string) (*Manifest, error) {
	gone := make(map[string]bool, len(removes))
	for _, p := range removes {
		if !ValidPath(p) || p == "." {
			return nil, fmt.Errorf("patch manifest: cannot remove %q", p)
		}
		gone[p] = true
	}
	repl := make(map[string]*Entry, len(upserts))
	for i := range upserts {
		if _, dup := repl[upserts[i].Path]; dup {
			return nil, fmt.Errorf("patch manifest: %q given twice", upserts[i].Path)
		}
		repl[upserts[i].Path] = &upserts[i]
	}
	removed := func(p string) bool {
		for q := p; q != ""; q = Parent(q) {
			if gone[q] {
				return true
			}
		}
		return false
	}
	out := &Manifest{Entries: make([]Entry, 0, len(m.Entries)+len(upserts))}
	for i := range m.Entries {
		e := &m.Entries[i]
		if _, ok := repl[e.Path]; ok || removed(e.Path) {
			continue
		}
		out.Entries = append(out.Entries, *e)
	}
	for _, e := range upserts {
		out.Entries = append(out.Entries, e)
	}
	out.Sort()
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("patch manifest: %w", err)
	}
	return out, nil
}

// EntriesUnder returns the entries at p and below it, in manifest order.
func (m *Manifest) EntriesUnder(p string) []Entry {
	var out []Entry
	prefix := p + "/"
	for i := range m.Entries {
		q := m.Entries[i].Path
		if q == p || p == "." || strings.HasPrefix(q, prefix) {
			out = append(out, m.Entries[i])
		}
	}
	return out
}

// ParseLine decodes one canonical manifest line (see Encode).
func ParseLine(line string) (Entry, error) {
	e, err := parseLine(line)
	if err != nil {
		return e, err
	}
	if canon := e.appendLine(nil); string(canon) != line {
		return e, fmt.Errorf("manifest line not in canonical form (want %q)", canon)
	}
	return e, nil
}
