package manifest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/manifest"
)

func diffBase() *manifest.Manifest {
	return &manifest.Manifest{Entries: []manifest.Entry{
		root(),
		dir("d"),
		file("d/f"),
		{Path: "dev", Type: manifest.TypeCharDev, Mode: 0o600, DevMajor: 1, DevMinor: 3},
		file("f"),
		file("h"),
		symlink("l", "d/f"),
		{Path: "p", Type: manifest.TypeFIFO, Mode: 0o600},
	}}
}

// entry returns a pointer to the entry at path p, failing the test if absent.
func entry(t *testing.T, m *manifest.Manifest, p string) *manifest.Entry {
	t.Helper()
	i, ok := m.Index()[p]
	if !ok {
		t.Fatalf("no entry %q", p)
	}
	return &m.Entries[i]
}

func TestDiffItemize(t *testing.T) {
	tests := []struct {
		name   string
		opts   manifest.DiffOptions
		mutate func(t *testing.T, m *manifest.Manifest) // applied to the new side
		want   []string
	}{
		{name: "identical", mutate: func(t *testing.T, m *manifest.Manifest) {}, want: nil},
		{name: "added file", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = append(m.Entries, file("g"))
		}, want: []string{">f+++++++++ g"}},
		{name: "added dir", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = append(m.Entries, dir("e"), file("e/x"))
		}, want: []string{"cd+++++++++ e/", ">f+++++++++ e/x"}},
		{name: "added symlink, device, fifo", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = append(m.Entries, symlink("m", "x"),
				manifest.Entry{Path: "n", Type: manifest.TypeBlockDev, DevMajor: 8},
				manifest.Entry{Path: "o", Type: manifest.TypeFIFO})
		}, want: []string{"cL+++++++++ m", "cD+++++++++ n", "cS+++++++++ o"}},
		{name: "removed file", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = slices.DeleteFunc(m.Entries, func(e manifest.Entry) bool { return e.Path == "f" })
		}, want: []string{"*deleting   f"}},
		{name: "removed dir", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = slices.DeleteFunc(m.Entries, func(e manifest.Entry) bool { return strings.HasPrefix(e.Path, "d") && e.Path != "dev" })
		}, want: []string{"*deleting   d/", "*deleting   d/f"}},
		{name: "removed last entries", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = m.Entries[:len(m.Entries)-2]
		}, want: []string{"*deleting   l", "*deleting   p"}},
		{name: "content, size and time", mutate: func(t *testing.T, m *manifest.Manifest) {
			e := entry(t, m, "f")
			e.SHA256, e.Size, e.MtimeNS = shaB, 6, 99
		}, want: []string{">fcst...... f"}},
		{name: "content only", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "d/f").SHA256 = shaB
		}, want: []string{">fc........ d/f"}},
		{name: "time only", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").MtimeNS = 99
		}, want: []string{".f..t...... f"}},
		{name: "mode only", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").Mode = 0o600
		}, want: []string{".f...p..... f"}},
		{name: "owner", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").UID = 1000
		}, want: []string{".f....o.... f"}},
		{name: "group", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").GID = 1000
		}, want: []string{".f.....g... f"}},
		{name: "owner ignored", opts: manifest.DiffOptions{IgnoreOwner: true}, mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").UID = 1000
			entry(t, m, "f").GID = 1000
		}, want: nil},
		{name: "owner ignored, mode kept", opts: manifest.DiffOptions{IgnoreOwner: true}, mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").UID = 1000
			entry(t, m, "f").Mode = 0o4755
		}, want: []string{".f...p..... f"}},
		{name: "xattr", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").Xattrs = []manifest.Xattr{{Name: "user.x", Value: []byte{0}}}
		}, want: []string{".f........x f"}},
		{name: "acl", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").Xattrs = []manifest.Xattr{{Name: "system.posix_acl_access", Value: []byte{2, 0, 0, 0}}}
		}, want: []string{".f.......a. f"}},
		{name: "default acl on dir", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "d").Xattrs = []manifest.Xattr{{Name: "system.posix_acl_default", Value: []byte{2, 0, 0, 0}}}
		}, want: []string{".d.......a. d/"}},
		{name: "acl and xattr", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "f").Xattrs = []manifest.Xattr{
				{Name: "system.posix_acl_access", Value: []byte{2}},
				{Name: "user.x", Value: []byte{1}},
			}
		}, want: []string{".f.......ax f"}},
		{name: "symlink target", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "l").Target = "elsewhere"
		}, want: []string{"cLc........ l"}},
		{name: "device numbers", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "dev").DevMinor = 5
		}, want: []string{"cDc........ dev"}},
		{name: "fifo mode", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "p").Mode = 0o644
		}, want: []string{".S...p..... p"}},
		{name: "hard link", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "h").LinkTo = "f"
		}, want: []string{"hf......... h"}},
		{name: "dir mode", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "d").Mode = 0o700
		}, want: []string{".d...p..... d/"}},
		{name: "root time", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, ".").MtimeNS = 42
		}, want: []string{".d..t...... ./"}},
		{name: "file becomes dir", mutate: func(t *testing.T, m *manifest.Manifest) {
			*entry(t, m, "f") = dir("f")
		}, want: []string{"*deleting   f", "cd+++++++++ f/"}},
		{name: "dir becomes symlink", mutate: func(t *testing.T, m *manifest.Manifest) {
			m.Entries = slices.DeleteFunc(m.Entries, func(e manifest.Entry) bool { return e.Path == "d/f" })
			*entry(t, m, "d") = symlink("d", "/tmp")
		}, want: []string{"*deleting   d/", "cL+++++++++ d", "*deleting   d/f"}},
		{name: "several in order", mutate: func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "d/f").Mode = 0o600
			m.Entries = slices.DeleteFunc(m.Entries, func(e manifest.Entry) bool { return e.Path == "h" })
			m.Entries = append(m.Entries, file("z"))
			m.Sort()
			m.Entries = slices.Insert(m.Entries, 1, file("a"))
		}, want: []string{">f+++++++++ a", ".f...p..... d/f", "*deleting   h", ">f+++++++++ z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := diffBase(), diffBase()
			tt.mutate(t, new)
			var got []string
			for _, c := range manifest.Diff(old, new, tt.opts) {
				got = append(got, c.Itemize())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("itemized diff (-want +got):\n%s", d)
			}
		})
	}
}

func TestDiffChanges(t *testing.T) {
	old, new := diffBase(), diffBase()
	f := entry(t, new, "f")
	f.SHA256, f.Size, f.Mode = shaB, 7, 0o600
	f.Xattrs = []manifest.Xattr{{Name: "user.a", Value: []byte("v")}}
	new.Entries = append(new.Entries, dir("q"))
	new.Entries = slices.DeleteFunc(new.Entries, func(e manifest.Entry) bool { return e.Path == "l" })

	got := manifest.Diff(old, new, manifest.DiffOptions{})
	want := []manifest.Change{
		{Path: "f", Kind: manifest.Modified, Type: manifest.TypeRegular, Fields: []manifest.FieldDiff{
			{Field: "sha256", Old: shaA, New: shaB},
			{Field: "size", Old: "5", New: "7"},
			{Field: "mode", Old: "0644", New: "0600"},
			// sha256("v") = 4c94485e0c21ae6c41ce1dfe7b6bfaceea5ab68e40a2476f50208e526f506080
			{Field: "xattrs", Old: "", New: "user.a:4c94485e0c21"},
		}},
		{Path: "l", Kind: manifest.Removed, Type: manifest.TypeSymlink},
		{Path: "q", Kind: manifest.Added, Type: manifest.TypeDir},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Diff (-want +got):\n%s", d)
	}
	if !got[0].Has("mode") || got[0].Has("uid") {
		t.Errorf("Has: mode=%v uid=%v, want true false", got[0].Has("mode"), got[0].Has("uid"))
	}
	descs := []string{got[0].Describe(), got[1].Describe(), got[2].Describe()}
	wantDescs := []string{
		`f: sha256 "` + shaA + `" -> "` + shaB + `", size "5" -> "7", mode "0644" -> "0600", xattrs "" -> "user.a:4c94485e0c21"`,
		"l: symlink removed",
		"q: directory added",
	}
	if d := cmp.Diff(wantDescs, descs); d != "" {
		t.Errorf("Describe (-want +got):\n%s", d)
	}
}

func TestDirDigests(t *testing.T) {
	base := func() *manifest.Manifest {
		return &manifest.Manifest{Entries: []manifest.Entry{
			root(),
			dir("a"),
			dir("a/b"),
			dir("a/b/c"),
			file("a/b/c/f"),
			file("a/b/g"),
			dir("a/e"),
			file("top"),
			dir("x"),
			file("x/f"),
		}}
	}
	dirs := []string{".", "a", "a/b", "a/b/c", "a/e", "x"}
	ref := base().DirDigests()
	var keys []string
	for k, v := range ref {
		keys = append(keys, k)
		if len(v) != 64 {
			t.Errorf("digest of %q = %q, not 64 hex digits", k, v)
		}
	}
	slices.Sort(keys)
	if d := cmp.Diff(dirs, keys); d != "" {
		t.Fatalf("DirDigests keys (-want +got):\n%s", d)
	}
	if ref["a/e"] == ref["a/b"] || ref["a/e"] == ref["x"] {
		t.Errorf("different directories share a digest")
	}
	// An empty directory digests like any other empty directory.
	empty := (&manifest.Manifest{Entries: []manifest.Entry{root()}}).DirDigests()["."]
	if ref["a/e"] != empty {
		t.Errorf("empty dir digest %s != empty root digest %s", ref["a/e"], empty)
	}

	tests := []struct {
		name    string
		mutate  func(t *testing.T, m *manifest.Manifest)
		changed []string
	}{
		{"nothing", func(t *testing.T, m *manifest.Manifest) {}, nil},
		{"deep file content", func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "a/b/c/f").SHA256 = shaB
		}, []string{".", "a", "a/b", "a/b/c"}},
		{"deep file xattr", func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "a/b/c/f").Xattrs = []manifest.Xattr{{Name: "user.a"}}
		}, []string{".", "a", "a/b", "a/b/c"}},
		{"deep dir's own mode", func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "a/b/c").Mode = 0o700
		}, []string{".", "a", "a/b"}},
		{"file added to empty dir", func(t *testing.T, m *manifest.Manifest) {
			m.Entries = slices.Insert(m.Entries, 7, file("a/e/new"))
		}, []string{".", "a", "a/e"}},
		{"sibling dir file", func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "x/f").MtimeNS = 9
		}, []string{".", "x"}},
		{"top-level file", func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, "top").UID = 1
		}, []string{"."}},
		{"root's own mode", func(t *testing.T, m *manifest.Manifest) {
			entry(t, m, ".").Mode = 0o700
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.mutate(t, m)
			if err := m.Validate(); err != nil {
				t.Fatalf("mutated manifest invalid: %v", err)
			}
			got := m.DirDigests()
			var changed []string
			for _, d := range dirs {
				if got[d] != ref[d] {
					changed = append(changed, d)
				}
			}
			if d := cmp.Diff(tt.changed, changed); d != "" {
				t.Errorf("changed directory digests (-want +got):\n%s", d)
			}
		})
	}
}
