package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// ChangeKind says whether a path was added, removed or modified.
type ChangeKind string

// The kinds of change Diff reports.
const (
	Added    ChangeKind = "added"
	Removed  ChangeKind = "removed"
	Modified ChangeKind = "modified"
)

// FieldDiff is one field that differs between two entries.
type FieldDiff struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// Change is one path that differs between two manifests.
type Change struct {
	Path   string      `json:"path"`
	Kind   ChangeKind  `json:"kind"`
	Type   Type        `json:"type"`
	Fields []FieldDiff `json:"fields,omitempty"`
}

// DiffOptions relax Diff.
type DiffOptions struct {
	// IgnoreOwner skips uid/gid (trees written without root cannot hold
	// foreign owners).
	IgnoreOwner bool
}

// Diff lists what changed from old to new, in manifest order. Both
// manifests must be sorted.
func Diff(old, new *Manifest, opts DiffOptions) []Change {
	var out []Change
	i, j := 0, 0
	for i < len(old.Entries) || j < len(new.Entries) {
		var c int
		switch {
		case i == len(old.Entries):
			c = 1
		case j == len(new.Entries):
			c = -1
		default:
			c = ComparePaths(old.Entries[i].Path, new.Entries[j].Path)
		}
		switch {
		case c < 0:
			out = append(out, Change{Path: old.Entries[i].Path, Kind: Removed, Type: old.Entries[i].Type})
			i++
		case c > 0:
			out = append(out, Change{Path: new.Entries[j].Path, Kind: Added, Type: new.Entries[j].Type})
			j++
		default:
			a, b := &old.Entries[i], &new.Entries[j]
			if a.Type != b.Type {
				out = append(out, Change{Path: a.Path, Kind: Removed, Type: a.Type},
					Change{Path: b.Path, Kind: Added, Type: b.Type})
			} else if f := fieldDiffs(a, b, opts); len(f) > 0 {
				out = append(out, Change{Path: a.Path, Kind: Modified, Type: a.Type, Fields: f})
			}
			i++
			j++
		}
	}
	return out
}

func fieldDiffs(a, b *Entry, opts DiffOptions) []FieldDiff {
	var f []FieldDiff
	add := func(name string, differ bool, old, new string) {
		if differ {
			f = append(f, FieldDiff{Field: name, Old: old, New: new})
		}
	}
	add("sha256", a.SHA256 != b.SHA256, a.SHA256, b.SHA256)
	add("size", a.Size != b.Size, fmt.Sprint(a.Size), fmt.Sprint(b.Size))
	add("mtime", a.MtimeNS != b.MtimeNS, fmt.Sprint(a.MtimeNS), fmt.Sprint(b.MtimeNS))
	add("mode", a.Mode != b.Mode, fmt.Sprintf("%04o", a.Mode), fmt.Sprintf("%04o", b.Mode))
	if !opts.IgnoreOwner {
		add("uid", a.UID != b.UID, fmt.Sprint(a.UID), fmt.Sprint(b.UID))
		add("gid", a.GID != b.GID, fmt.Sprint(a.GID), fmt.Sprint(b.GID))
	}
	add("target", a.Target != b.Target, a.Target, b.Target)
	add("device", a.DevMajor != b.DevMajor || a.DevMinor != b.DevMinor,
		fmt.Sprintf("%d,%d", a.DevMajor, a.DevMinor), fmt.Sprintf("%d,%d", b.DevMajor, b.DevMinor))
	add("hardlink", a.LinkTo != b.LinkTo, a.LinkTo, b.LinkTo)
	acl := func(x Xattr) bool { return strings.HasPrefix(x.Name, "system.posix_acl_") }
	other := func(x Xattr) bool { return !acl(x) }
	add("acl", xattrSummary(a.Xattrs, acl) != xattrSummary(b.Xattrs, acl),
		xattrSummary(a.Xattrs, acl), xattrSummary(b.Xattrs, acl))
	add("xattrs", xattrSummary(a.Xattrs, other) != xattrSummary(b.Xattrs, other),
		xattrSummary(a.Xattrs, other), xattrSummary(b.Xattrs, other))
	return f
}

// xattrSummary renders the selected xattrs as "name:sha256-prefix" pairs,
// short enough to print and exact enough to compare.
func xattrSummary(xs []Xattr, keep func(Xattr) bool) string {
	var parts []string
	for _, x := range xs {
		if keep(x) {
			s := sha256.Sum256(x.Value)
			parts = append(parts, x.Name+":"+hex.EncodeToString(s[:6]))
		}
	}
	return strings.Join(parts, ",")
}

// Has reports whether the change touches the named field.
func (c *Change) Has(field string) bool {
	for _, f := range c.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// Itemize renders the change the way `rsync --itemize-changes` does:
// an 11-character code (YXcstpoguax) and the path, with "/" after
// directories, or "*deleting" for removals.
func (c *Change) Itemize() string {
	name := c.Path
	if c.Type == TypeDir && name != "." {
		name += "/"
	} else if c.Type == TypeDir {
		name = "./"
	}
	if c.Kind == Removed {
		return "*deleting   " + name
	}
	x := byte('f')
	switch c.Type {
	case TypeDir:
		x = 'd'
	case TypeSymlink:
		x = 'L'
	case TypeCharDev, TypeBlockDev:
		x = 'D'
	case TypeFIFO:
		x = 'S'
	}
	y := byte('.')
	if c.Kind == Added {
		if c.Type == TypeRegular {
			y = '>'
		} else {
			y = 'c'
		}
		return string([]byte{y, x}) + "+++++++++ " + name
	}
	flag := func(field string, letter byte) byte {
		if c.Has(field) {
			return letter
		}
		return '.'
	}
	code := []byte{y, x,
		flag("sha256", 'c'), flag("size", 's'), flag("mtime", 't'), flag("mode", 'p'),
		flag("uid", 'o'), flag("gid", 'g'), '.', flag("acl", 'a'), flag("xattrs", 'x')}
	switch {
	case c.Has("sha256") || c.Has("size"):
		code[0] = '>'
	case c.Has("target") || c.Has("device"):
		code[0] = 'c'
		code[2] = 'c'
	case c.Has("hardlink"):
		code[0] = 'h'
	}
	return string(code) + " " + name
}

// Describe renders each differing field as "field: old -> new".
func (c *Change) Describe() string {
	if c.Kind != Modified {
		return fmt.Sprintf("%s: %s %s", c.Path, c.Type, c.Kind)
	}
	parts := make([]string, len(c.Fields))
	for i, f := range c.Fields {
		parts[i] = fmt.Sprintf("%s %q -> %q", f.Field, f.Old, f.New)
	}
	return c.Path + ": " + strings.Join(parts, ", ")
}
