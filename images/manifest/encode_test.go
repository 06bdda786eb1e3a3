package manifest_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/goldcast/goldcast/images/manifest"
)

// Fake content digests.
var (
	shaA = strings.Repeat("a", 64)
	shaB = strings.Repeat("b", 64)
)

func root() manifest.Entry {
	return manifest.Entry{Path: ".", Type: manifest.TypeDir, Mode: 0o755, MtimeNS: 1}
}

func dir(p string) manifest.Entry {
	return manifest.Entry{Path: p, Type: manifest.TypeDir, Mode: 0o755, MtimeNS: 2}
}

func file(p string) manifest.Entry {
	return manifest.Entry{Path: p, Type: manifest.TypeRegular, Mode: 0o644, MtimeNS: 3, Size: 5, SHA256: shaA}
}

func symlink(p, target string) manifest.Entry {
	return manifest.Entry{Path: p, Type: manifest.TypeSymlink, Mode: 0o777, MtimeNS: 4, Target: target}
}

func with(e manifest.Entry, f func(*manifest.Entry)) manifest.Entry {
	f(&e)
	return e
}

// oddManifest holds every entry type, awkward paths and binary xattrs.
func oddManifest() *manifest.Manifest {
	m := &manifest.Manifest{Entries: []manifest.Entry{
		with(root(), func(e *manifest.Entry) {
			e.Xattrs = []manifest.Xattr{{Name: "system.posix_acl_default", Value: []byte{2, 0, 0, 0, 1, 0, 7, 0}}}
		}),
		dir("dir with space"),
		with(file("dir with space/new\nline"), func(e *manifest.Entry) { e.Size = 0; e.SHA256 = shaB }),
		file("pct%41file"),
		file("eq=sign"),
		file("bad\xff\xfeutf8"),
		file("ünïcödé ☃"),
		file("tab\tand\x7fdel"),
		with(file("caps"), func(e *manifest.Entry) {
			e.Mode = 0o4755
			e.UID, e.GID = 4294967295, 65534
			e.MtimeNS = -1_000_000_001 // before the epoch
			e.Xattrs = []manifest.Xattr{
				{Name: "security.capability", Value: []byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
				{Name: "user.bin", Value: []byte{0, 'a', 0, 0xff, 0}},
				{Name: "user.empty", Value: []byte{}},
				{Name: "user.odd name=%", Value: []byte("v a l=u%e\n")},
			}
		}),
		// Hard links: "hard 1" is the leader, "zz link" a member.
		with(file("hard 1"), func(e *manifest.Entry) { e.SHA256 = shaB; e.Size = 1 << 40 }),
		with(file("zz link"), func(e *manifest.Entry) { e.SHA256 = shaB; e.Size = 1 << 40; e.LinkTo = "hard 1" }),
		symlink("link", "target with spaces/../and=eq%25 ünï\n"),
		symlink("abs link", "/etc/passwd"),
		dir("dev"),
		{Path: "dev/null", Type: manifest.TypeCharDev, Mode: 0o666, DevMajor: 1, DevMinor: 3},
		{Path: "dev/sda1", Type: manifest.TypeBlockDev, Mode: 0o660, GID: 6, DevMajor: 8, DevMinor: 1},
		{Path: "dev/big", Type: manifest.TypeBlockDev, Mode: 0o600, DevMajor: 4095, DevMinor: 1048575},
		{Path: "fifo", Type: manifest.TypeFIFO, Mode: 0o1620, MtimeNS: 1_700_000_000_123_456_789},
		with(dir("sticky"), func(e *manifest.Entry) { e.Mode = 0o3777 }),
	}}
	m.Sort()
	return m
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	m := oddManifest()
	if err := m.Validate(); err != nil {
		t.Fatalf("test manifest invalid: %v", err)
	}
	enc := m.Bytes()

	// Every entry is exactly one line, no path byte leaks a separator.
	lines := strings.Split(strings.TrimSuffix(string(enc), "\n"), "\n")
	if len(lines) != len(m.Entries)+1 {
		t.Fatalf("encoding has %d lines, want %d:\n%s", len(lines), len(m.Entries)+1, enc)
	}
	if lines[0] != manifest.Header {
		t.Errorf("first line %q, want %q", lines[0], manifest.Header)
	}
	for i, l := range lines[1:] {
		if l != m.Entries[i].Line() {
			t.Errorf("line %d = %q, Entry.Line() = %q", i+2, l, m.Entries[i].Line())
		}
		for _, c := range []byte(l) {
			if c < 0x20 || c >= 0x7f {
				t.Errorf("line %d holds raw byte %#x: %q", i+2, c, l)
			}
		}
	}

	got, err := manifest.Decode(bytes.NewReader(enc))
	if err != nil {
		t.Fatalf("Decode: %v\n%s", err, enc)
	}
	if d := cmp.Diff(m, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", d)
	}
	if !bytes.Equal(got.Bytes(), enc) {
		t.Errorf("re-encoding differs:\n%s\nvs\n%s", got.Bytes(), enc)
	}
	if got.Digest() != m.Digest() {
		t.Errorf("digest changed over round trip")
	}
}

func TestEncodeGolden(t *testing.T) {
	xa := []manifest.Xattr{{Name: "user.k=v", Value: []byte{0, 1}}}
	m := &manifest.Manifest{Entries: []manifest.Entry{
		root(),
		with(file("a b"), func(e *manifest.Entry) { e.UID, e.GID, e.Xattrs = 10, 20, xa }),
		with(file("c%"), func(e *manifest.Entry) { e.UID, e.GID, e.Xattrs, e.LinkTo = 10, 20, xa, "a b" }),
		{Path: "d", Type: manifest.TypeCharDev, Mode: 0o666, DevMajor: 1, DevMinor: 3},
		{Path: "e", Type: manifest.TypeBlockDev, Mode: 0o660, DevMajor: 8, DevMinor: 17},
		{Path: "f", Type: manifest.TypeFIFO, Mode: 0o644},
		symlink("l", "x y"),
	}}
	want := "goldcast-manifest 1\n" +
		". d 0755 0 0 1\n" +
		"a%20b f 0644 10 20 3 size=5 sha256=" + shaA + " xattr.user.k%3Dv=AAE=\n" +
		"c%25 f 0644 10 20 3 size=5 sha256=" + shaA + " link=a%20b xattr.user.k%3Dv=AAE=\n" +
		"d c 0666 0 0 0 dev=1,3\n" +
		"e b 0660 0 0 0 dev=8,17\n" +
		"f p 0644 0 0 0\n" +
		"l l 0777 0 0 4 target=x%20y\n"
	if d := cmp.Diff(want, string(m.Bytes())); d != "" {
		t.Errorf("encoding (-want +got):\n%s", d)
	}
	if got := manifest.DigestBytes([]byte(want)); got != m.Digest() {
		t.Errorf("Digest() = %s, DigestBytes(encoding) = %s", m.Digest(), got)
	}
	got, err := manifest.Decode(strings.NewReader(want))
	if err != nil {
		t.Fatalf("Decode(golden): %v", err)
	}
	if d := cmp.Diff(m, got); d != "" {
		t.Errorf("Decode(golden) (-want +got):\n%s", d)
	}
}

func TestDigest(t *testing.T) {
	base := func() *manifest.Manifest {
		return &manifest.Manifest{Entries: []manifest.Entry{
			root(),
			dir("d"),
			with(file("d/f"), func(e *manifest.Entry) {
				e.Xattrs = []manifest.Xattr{{Name: "user.a", Value: []byte{0, 1, 2}}}
			}),
			with(file("d/g"), func(e *manifest.Entry) {
				e.LinkTo = "d/f"
				e.Xattrs = []manifest.Xattr{{Name: "user.a", Value: []byte{0, 1, 2}}}
			}),
			{Path: "dev", Type: manifest.TypeCharDev, Mode: 0o600, DevMajor: 1, DevMinor: 3},
			symlink("l", "d/f"),
		}}
	}
	const f, g, dev, l = 2, 3, 4, 5
	want := base().Digest()
	if len(want) != 64 {
		t.Fatalf("digest %q is not 64 hex digits", want)
	}
	if got := base().Digest(); got != want {
		t.Fatalf("digest not stable: %s then %s", want, got)
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base manifest invalid: %v", err)
	}

	tests := []struct {
		name   string
		mutate func(m *manifest.Manifest)
	}{
		{"mode", func(m *manifest.Manifest) { m.Entries[f].Mode = 0o600 }},
		{"setuid bit", func(m *manifest.Manifest) { m.Entries[f].Mode |= 0o4000 }},
		{"uid", func(m *manifest.Manifest) { m.Entries[f].UID = 1 }},
		{"gid", func(m *manifest.Manifest) { m.Entries[f].GID = 1 }},
		{"mtime by 1ns", func(m *manifest.Manifest) { m.Entries[f].MtimeNS++ }},
		{"size", func(m *manifest.Manifest) { m.Entries[f].Size = 6 }},
		{"sha256", func(m *manifest.Manifest) { m.Entries[f].SHA256 = shaB }},
		{"target", func(m *manifest.Manifest) { m.Entries[l].Target = "d/g" }},
		{"xattr value", func(m *manifest.Manifest) { m.Entries[f].Xattrs[0].Value = []byte{0, 1, 3} }},
		{"xattr name", func(m *manifest.Manifest) { m.Entries[f].Xattrs[0].Name = "user.b" }},
		{"xattr added", func(m *manifest.Manifest) {
			m.Entries[l].Xattrs = []manifest.Xattr{{Name: "user.x", Value: nil}}
		}},
		{"link", func(m *manifest.Manifest) { m.Entries[g].LinkTo = "" }},
		{"dev major", func(m *manifest.Manifest) { m.Entries[dev].DevMajor = 2 }},
		{"dev minor", func(m *manifest.Manifest) { m.Entries[dev].DevMinor = 4 }},
		{"type", func(m *manifest.Manifest) { m.Entries[dev].Type = manifest.TypeBlockDev }},
		{"path", func(m *manifest.Manifest) { m.Entries[l].Path = "m" }},
		{"entry removed", func(m *manifest.Manifest) { m.Entries = m.Entries[:l] }},
	}
	seen := map[string]string{want: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.mutate(m)
			got := m.Digest()
			if got == want {
				t.Errorf("digest unchanged after changing %s", tt.name)
			}
			if other, ok := seen[got]; ok {
				t.Errorf("digest equals the one of %q", other)
			}
			seen[got] = tt.name
			if d := manifest.DigestBytes(m.Bytes()); d != got {
				t.Errorf("Digest() %s != DigestBytes(Bytes()) %s", got, d)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	const hdr = manifest.Header + "\n"
	const rootLine = ". d 0755 0 0 0\n"
	fileLine := func(rest string) string { return "a f 0644 0 0 0 size=1 sha256=" + shaA + rest + "\n" }
	tests := []struct {
		name  string
		in    string
		wants []string // substrings of the error
	}{
		{"empty", "", []string{"manifest is empty"}},
		{"bad header", "goldcast-manifest 2\n" + rootLine, []string{"manifest line 1:", "header", "goldcast-manifest 2"}},
		{"header without newline", manifest.Header, []string{"manifest line 1:", "truncated"}},
		{"bad mode digit", hdr + ". d 0789 0 0 0\n", []string{"manifest line 2:", "bad mode", "0789"}},
		{"mode beyond 7777", hdr + rootLine + "a d 10755 0 0 0\n", []string{"manifest line 3:", "bad mode"}},
		{"unknown type", hdr + rootLine + "a q 0644 0 0 0\n", []string{"manifest line 3:", "unknown type", `"q"`}},
		{"socket type", hdr + rootLine + "a s 0644 0 0 0\n", []string{"manifest line 3:", "unknown type"}},
		{"two-letter type", hdr + rootLine + "a ff 0644 0 0 0\n", []string{"manifest line 3:", "unknown type"}},
		{"unknown field", hdr + rootLine + fileLine(" colour=red"), []string{"manifest line 3:", `unknown field "colour"`}},
		{"field without =", hdr + rootLine + fileLine(" oops"), []string{"manifest line 3:", "not key=value"}},
		{"trailing space", hdr + rootLine + fileLine(" "), []string{"manifest line 3:"}},
		{"truncated last line", hdr + rootLine + strings.TrimSuffix(fileLine(""), "\n"), []string{"manifest line 3:", "truncated (no newline)"}},
		{"bad escape", hdr + rootLine + "a%zz d 0755 0 0 0\n", []string{"manifest line 3:", "bad escape"}},
		{"truncated escape", hdr + rootLine + "a%4 d 0755 0 0 0\n", []string{"manifest line 3:", "truncated escape"}},
		{"bad escape in target", hdr + rootLine + "l l 0777 0 0 0 target=x%g1\n", []string{"manifest line 3:", "target", "bad escape"}},
		{"too few fields", hdr + rootLine + "a f 0644 0 0\n", []string{"manifest line 3:", "5 fields"}},
		{"bad uid", hdr + rootLine + "a d 0755 -1 0 0\n", []string{"manifest line 3:", "bad uid"}},
		{"uid overflow", hdr + rootLine + "a d 0755 4294967296 0 0\n", []string{"manifest line 3:", "bad uid"}},
		{"bad gid", hdr + rootLine + "a d 0755 0 x 0\n", []string{"manifest line 3:", "bad gid"}},
		{"bad mtime", hdr + rootLine + "a d 0755 0 0 1.5\n", []string{"manifest line 3:", "bad mtime"}},
		{"negative size", hdr + rootLine + "a f 0644 0 0 0 size=-1 sha256=" + shaA + "\n", []string{"manifest line 3:", "bad size"}},
		{"short sha256", hdr + rootLine + "a f 0644 0 0 0 size=1 sha256=" + shaA[1:] + "\n", []string{"manifest line 3:", "bad sha256"}},
		{"non-hex sha256", hdr + rootLine + "a f 0644 0 0 0 size=1 sha256=" + strings.Repeat("g", 64) + "\n", []string{"manifest line 3:", "bad sha256"}},
		{"bad dev", hdr + rootLine + "a c 0644 0 0 0 dev=1\n", []string{"manifest line 3:", "bad dev"}},
		{"bad xattr base64", hdr + rootLine + "a d 0755 0 0 0 xattr.user.a=!!\n", []string{"manifest line 3:", "xattr", "bad value"}},
		{"empty xattr name", hdr + rootLine + "a d 0755 0 0 0 xattr.=AA==\n", []string{"manifest line 3:", "bad xattr name"}},
		{"error on a later line", hdr + rootLine + "a d 0755 0 0 0\n" + "a/b d 0755 0 0 0\n" + "a/c x 0755 0 0 0\n", []string{"manifest line 5:"}},
		// Lines parse, the whole fails validation.
		{"no root", hdr + "a d 0755 0 0 0\n", []string{"root directory"}},
		{"header only", hdr, []string{"root directory"}},
		{"unsafe path", hdr + rootLine + "../etc d 0755 0 0 0\n", []string{"unsafe path"}},
		{"non-canonical escape", hdr + rootLine + "%61 d 0755 0 0 0\n", []string{"line 3", "not in canonical form"}},
		{"non-canonical mode", hdr + rootLine + "a d 755 0 0 0\n", []string{"line 3", "not in canonical form"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manifest.Decode(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", m)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		entries []manifest.Entry
		wantErr string // "" means valid
		unsafe  bool   // errors.Is(err, ErrUnsafePath)
	}{
		{name: "valid", entries: []manifest.Entry{root(), dir("a"), file("a/b"), with(file("a/c"), func(e *manifest.Entry) { e.LinkTo = "a/b" }), symlink("l", "/abs"), dir("z")}},
		{name: "root only", entries: []manifest.Entry{root()}},
		{name: "empty", entries: nil, wantErr: `first entry must be the root directory`},
		{name: "root missing", entries: []manifest.Entry{dir("a")}, wantErr: `first entry must be the root directory`},
		{name: "root not first", entries: []manifest.Entry{dir("a"), root()}, wantErr: `first entry must be the root directory`},
		{name: "root is a file", entries: []manifest.Entry{with(file("."), func(e *manifest.Entry) {})}, wantErr: `first entry must be the root directory`},
		{name: "dotdot", entries: []manifest.Entry{root(), dir("..")}, wantErr: `entry ".."`, unsafe: true},
		{name: "dotdot inside", entries: []manifest.Entry{root(), dir("a"), file("a/../../etc")}, wantErr: "not clean", unsafe: true},
		{name: "dot component", entries: []manifest.Entry{root(), dir("a"), file("a/./b")}, wantErr: "not clean", unsafe: true},
		{name: "absolute", entries: []manifest.Entry{root(), file("/etc")}, wantErr: `entry "/etc"`, unsafe: true},
		{name: "empty component", entries: []manifest.Entry{root(), dir("a"), file("a//b")}, wantErr: "not clean", unsafe: true},
		{name: "trailing slash", entries: []manifest.Entry{root(), dir("a/")}, wantErr: "not clean", unsafe: true},
		{name: "empty path", entries: []manifest.Entry{root(), file("")}, wantErr: "not clean", unsafe: true},
		{name: "NUL in name", entries: []manifest.Entry{root(), file("a\x00b")}, wantErr: "not clean", unsafe: true},
		{name: "name too long", entries: []manifest.Entry{root(), file(strings.Repeat("n", 256))}, wantErr: "not clean", unsafe: true},
		{name: "name 255 long", entries: []manifest.Entry{root(), file(strings.Repeat("n", 255))}},
		{name: "duplicate", entries: []manifest.Entry{root(), file("a"), file("a")}, wantErr: "out of order or duplicate"},
		{name: "duplicate root", entries: []manifest.Entry{root(), root()}, wantErr: "out of order or duplicate"},
		{name: "out of order", entries: []manifest.Entry{root(), file("b"), file("a")}, wantErr: `entry "a": out of order`},
		{name: "byte order instead of component order", entries: []manifest.Entry{root(), file("a-b"), dir("a"), file("a/b")}, wantErr: "out of order"},
		{name: "parent missing", entries: []manifest.Entry{root(), file("a/b")}, wantErr: `parent "a" is not listed`, unsafe: true},
		{name: "parent is a symlink", entries: []manifest.Entry{root(), symlink("etc", "/etc"), file("etc/passwd")}, wantErr: `parent "etc" is a symlink`, unsafe: true},
		{name: "parent is a file", entries: []manifest.Entry{root(), file("a"), file("a/b")}, wantErr: `parent "a" is a file`, unsafe: true},
		{name: "hard link to missing", entries: []manifest.Entry{root(), with(file("a"), func(e *manifest.Entry) { e.LinkTo = "nope" })}, wantErr: `hard link to "nope"`},
		{name: "hard link to later entry", entries: []manifest.Entry{root(), with(file("a"), func(e *manifest.Entry) { e.LinkTo = "b" }), file("b")}, wantErr: `hard link to "b"`},
		{name: "hard link to itself", entries: []manifest.Entry{root(), with(file("a"), func(e *manifest.Entry) { e.LinkTo = "a" })}, wantErr: `hard link to "a"`},
		{name: "hard link to a member", entries: []manifest.Entry{root(), file("a"), with(file("b"), func(e *manifest.Entry) { e.LinkTo = "a" }), with(file("c"), func(e *manifest.Entry) { e.LinkTo = "b" })}, wantErr: `entry "c": hard link to "b"`},
		{name: "hard link to a directory", entries: []manifest.Entry{root(), dir("a"), with(file("b"), func(e *manifest.Entry) { e.LinkTo = "a" })}, wantErr: `hard link to "a"`},
		{name: "hard link with other mode", entries: []manifest.Entry{root(), file("a"), with(file("b"), func(e *manifest.Entry) { e.LinkTo = "a"; e.Mode = 0o600 })}, wantErr: "different content or metadata"},
		{name: "hard link with other content", entries: []manifest.Entry{root(), file("a"), with(file("b"), func(e *manifest.Entry) { e.LinkTo = "a"; e.SHA256 = shaB })}, wantErr: "different content or metadata"},
		{name: "hard link with other mtime", entries: []manifest.Entry{root(), file("a"), with(file("b"), func(e *manifest.Entry) { e.LinkTo = "a"; e.MtimeNS++ })}, wantErr: "different content or metadata"},
		{name: "hard link with other xattrs", entries: []manifest.Entry{root(), file("a"), with(file("b"), func(e *manifest.Entry) {
			e.LinkTo = "a"
			e.Xattrs = []manifest.Xattr{{Name: "user.x", Value: []byte("1")}}
		})}, wantErr: "different content or metadata"},
		{name: "symlink without target", entries: []manifest.Entry{root(), symlink("l", "")}, wantErr: "symlink without target"},
		{name: "regular without sha256", entries: []manifest.Entry{root(), with(file("a"), func(e *manifest.Entry) { e.SHA256 = "" })}, wantErr: "regular file without sha256"},
		{name: "dir with size", entries: []manifest.Entry{root(), with(dir("a"), func(e *manifest.Entry) { e.Size = 1 })}, wantErr: "directory with size"},
		{name: "symlink with link", entries: []manifest.Entry{root(), file("a"), with(symlink("l", "a"), func(e *manifest.Entry) { e.LinkTo = "a" })}, wantErr: "symlink with size, digest or link"},
		{name: "target on a file", entries: []manifest.Entry{root(), with(file("a"), func(e *manifest.Entry) { e.Target = "x" })}, wantErr: "target on a file"},
		{name: "unknown type", entries: []manifest.Entry{root(), {Path: "s", Type: 's'}}, wantErr: "unknown type"},
		{name: "mode beyond mask", entries: []manifest.Entry{root(), with(dir("a"), func(e *manifest.Entry) { e.Mode = 0o40755 })}, wantErr: "bits outside"},
		{name: "xattrs unsorted", entries: []manifest.Entry{root(), with(dir("a"), func(e *manifest.Entry) {
			e.Xattrs = []manifest.Xattr{{Name: "user.b"}, {Name: "user.a"}}
		})}, wantErr: "xattrs not sorted"},
		{name: "xattrs duplicated", entries: []manifest.Entry{root(), with(dir("a"), func(e *manifest.Entry) {
			e.Xattrs = []manifest.Xattr{{Name: "user.a"}, {Name: "user.a"}}
		})}, wantErr: "xattrs not sorted or duplicated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &manifest.Manifest{Entries: tt.entries}
			err := m.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if got := errors.Is(err, manifest.ErrUnsafePath); got != tt.unsafe {
				t.Errorf("errors.Is(%q, ErrUnsafePath) = %v, want %v", err, got, tt.unsafe)
			}
		})
	}
}

func TestValidPath(t *testing.T) {
	tests := map[string]bool{
		".": true, "a": true, "a/b": true, "a b/c\n": true, "...": true, ".a/b.": true,
		"": false, "/": false, "/a": false, "a/": false, "a//b": false, "./a": false,
		"a/.": false, "..": false, "a/../b": false, "a\x00": false,
	}
	for p, want := range tests {
		if got := manifest.ValidPath(p); got != want {
			t.Errorf("ValidPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestComparePaths(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{".", ".", 0},
		{"a", "a", 0},
		{".", "a", -1},
		{"a", ".", 1},
		{".", "!", -1}, // root first even before bytes lower than '.'
		{"!", ".", 1},
		{"a", "a/b", -1},
		{"a/b", "a", 1},
		{"a/b", "a.b", -1}, // '/' ranks below every byte
		{"a.b", "a/b", 1},
		{"a/b", "a-b", -1}, // '-' < '/' as bytes, not as components
		{"a/z", "a!", -1},
		{"a/b/c", "a/bc", -1},
		{"a", "a!", -1},
		{"a", "b", -1},
		{"b", "a/z", 1},
		{"a/b", "a/c", -1},
		{"\xff", "a", 1},
		{"A", "a", -1},
	}
	for _, tt := range tests {
		if got := manifest.ComparePaths(tt.a, tt.b); got != tt.want {
			t.Errorf("ComparePaths(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got, want := manifest.Less(tt.a, tt.b), tt.want < 0; got != want {
			t.Errorf("Less(%q, %q) = %v, want %v", tt.a, tt.b, got, want)
		}
	}
}

func TestSortKeepsSubtreesContiguous(t *testing.T) {
	want := []string{
		".", "!", "a", "a/b", "a/b/c", "a/b/c/d", "a/b-c", "a/b.c", "a/z",
		"a!", "a-b", "a-b/x", "a.b", "a.b/x", "ab", "b", "b/a", "\xff",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		m := &manifest.Manifest{}
		for _, p := range want {
			m.Entries = append(m.Entries, manifest.Entry{Path: p,
				Xattrs: []manifest.Xattr{{Name: "user.z"}, {Name: "user.a"}, {Name: "security.x"}}})
		}
		r.Shuffle(len(m.Entries), func(i, j int) { m.Entries[i], m.Entries[j] = m.Entries[j], m.Entries[i] })
		m.Sort()
		var got []string
		for _, e := range m.Entries {
			got = append(got, e.Path)
			var names []string
			for _, x := range e.Xattrs {
				names = append(names, x.Name)
			}
			if d := cmp.Diff([]string{"security.x", "user.a", "user.z"}, names); d != "" {
				t.Fatalf("xattrs of %q not sorted (-want +got):\n%s", e.Path, d)
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("round %d: Sort (-want +got):\n%s", round, d)
		}
		// Every directory's descendants directly follow it.
		for i, p := range got {
			prefix := p + "/"
			if p == "." {
				continue
			}
			j := i + 1
			for j < len(got) && strings.HasPrefix(got[j], prefix) {
				j++
			}
			for _, q := range got[j:] {
				if strings.HasPrefix(q, prefix) {
					t.Errorf("%q is separated from its ancestor %q", q, p)
				}
			}
		}
	}
}

func TestHelpers(t *testing.T) {
	parents := map[string]string{".": "", "a": ".", "a/b": "a", "a/b/c d": "a/b"}
	for p, want := range parents {
		if got := manifest.Parent(p); got != want {
			t.Errorf("Parent(%q) = %q, want %q", p, got, want)
		}
	}
	joins := []struct{ dir, name, want string }{{".", "a", "a"}, {"", "a", "a"}, {"a", "b", "a/b"}, {"a/b", "c", "a/b/c"}}
	for _, j := range joins {
		if got := manifest.Join(j.dir, j.name); got != j.want {
			t.Errorf("Join(%q, %q) = %q, want %q", j.dir, j.name, got, j.want)
		}
	}
	names := map[string]string{".": ".", "a": "a", "a/b c": "b c"}
	for p, want := range names {
		e := manifest.Entry{Path: p}
		if got := e.Name(); got != want {
			t.Errorf("Entry{%q}.Name() = %q, want %q", p, got, want)
		}
	}

	m := oddManifest()
	if d := cmp.Diff(manifest.Totals{Entries: 19, Files: 9, Dirs: 4, Bytes: 6*5 + 1<<40}, m.Totals()); d != "" {
		t.Errorf("Totals (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]bool{"hard 1": true, "zz link": true}, m.HardLinked()); d != "" {
		t.Errorf("HardLinked (-want +got):\n%s", d)
	}
	idx := m.Index()
	if len(idx) != len(m.Entries) {
		t.Errorf("Index has %d paths, want %d", len(idx), len(m.Entries))
	}
	for i, e := range m.Entries {
		if idx[e.Path] != i {
			t.Errorf("Index[%q] = %d, want %d", e.Path, idx[e.Path], i)
		}
	}

	a, b := file("x"), file("y")
	if !manifest.SameMetadata(&a, &b) {
		t.Errorf("SameMetadata of entries differing by path only = false")
	}
	b.LinkTo = "x"
	if !manifest.SameMetadata(&a, &b) {
		t.Errorf("SameMetadata compares hard-link membership")
	}
	b.Xattrs = []manifest.Xattr{{Name: "user.a", Value: []byte{0}}}
	a.Xattrs = []manifest.Xattr{{Name: "user.a", Value: []byte{1}}}
	if manifest.SameMetadata(&a, &b) {
		t.Errorf("SameMetadata ignores xattr values")
	}

	types := map[manifest.Type]string{manifest.TypeRegular: "file", manifest.TypeDir: "directory",
		manifest.TypeSymlink: "symlink", manifest.TypeCharDev: "char device",
		manifest.TypeBlockDev: "block device", manifest.TypeFIFO: "fifo", 's': `type('s')`}
	for ty, want := range types {
		if got := ty.String(); got != want {
			t.Errorf("Type(%q).String() = %q, want %q", byte(ty), got, want)
		}
	}
}

// Every manifest Validate accepts should encode to text that Decode
// accepts and that decodes back to the same manifest; otherwise Digest
// ignores a field Diff reports, or a stored manifest cannot be read back.
func TestValidateAcceptsOnlyEncodableManifests(t *testing.T) {
	tests := []struct {
		name  string
		entry manifest.Entry
	}{
		{"dev numbers on a file", with(file("f"), func(e *manifest.Entry) { e.DevMajor, e.DevMinor = 1, 3 })},
		{"dev numbers on a fifo", manifest.Entry{Path: "p", Type: manifest.TypeFIFO, DevMinor: 7}},
		{"non-hex sha256", with(file("f"), func(e *manifest.Entry) { e.SHA256 = strings.Repeat("z", 64) })},
		{"sha256 with a space", with(file("f"), func(e *manifest.Entry) { e.SHA256 = strings.Repeat("a", 63) + " " })},
		{"empty xattr name", with(dir("d"), func(e *manifest.Entry) { e.Xattrs = []manifest.Xattr{{Name: "", Value: []byte("v")}} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &manifest.Manifest{Entries: []manifest.Entry{root(), tt.entry}}
			if m.Validate() != nil {
				return // rejected up front: fine
			}
			got, err := manifest.Decode(bytes.NewReader(m.Bytes()))
			if err != nil {
				t.Fatalf("Validate accepted the manifest but Decode(Bytes()) fails: %v", err)
			}
			if d := cmp.Diff(m, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Validate accepted a manifest its encoding does not preserve (-want +got):\n%s", d)
			}
		})
	}
}
