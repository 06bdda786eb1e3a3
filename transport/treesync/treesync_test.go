package treesync

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/manifest"
)

// tree builds a manifest from "path type [content]" specs; content
// changes the digest of regular files.
func tree(t *testing.T, specs ...string) *manifest.Manifest {
	t.Helper()
	m := &manifest.Manifest{Entries: []manifest.Entry{{Path: ".", Type: manifest.TypeDir, Mode: 0o755}}}
	for _, s := range specs {
		f := strings.Fields(s)
		e := manifest.Entry{Path: f[0], Mode: 0o644, MtimeNS: 1}
		switch f[1] {
		case "d":
			e.Type, e.Mode = manifest.TypeDir, 0o755
		case "f":
			e.Type = manifest.TypeRegular
			content := ""
			if len(f) > 2 {
				content = f[2]
			}
			e.SHA256 = fmt.Sprintf("%064x", len(content)*7919+int(content[0]))
			e.Size = int64(len(content))
		}
		m.Entries = append(m.Entries, e)
	}
	m.Sort()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func lister(t *testing.T, remote *manifest.Manifest, wire *int) Lister {
	ix := NewIndex(remote)
	return func(_ context.Context, paths []string) ([]Listing, error) {
		ls := ix.List(paths)
		b, _ := json.Marshal(ls)
		*wire += len(b)
		return ls, nil
	}
}

func TestCompare(t *testing.T) {
	base := []string{"a d", "a/b d", "a/b/c d", "a/b/c/deep f x", "a/b/c/other f y", "etc d", "etc/hosts f h", "etc/motd f m", "home d", "home/alice f z", "x d", "x/y f q"}
	tests := []struct {
		name      string
		local     []string
		skip      func(string, bool) bool
		want      Result
		maxRounds int
	}{
		{name: "identical", local: base, want: Result{}, maxRounds: 0},
		{
			name:  "deep change",
			local: replace(base, "a/b/c/deep f x", "a/b/c/deep f xx"),
			want:  Result{Changed: []string{"a/b/c/deep"}}, maxRounds: 4,
		},
		{
			name:  "added, removed, changed",
			local: append(replace(base, "etc/motd f m", "etc/motd f mm"), "etc/new f n", "newdir d", "newdir/f f 1")[0:],
			want:  Result{Changed: []string{"etc/motd"}, LocalOnly: []string{"etc/new", "newdir"}},
		},
		{
			name:  "removed subtree",
			local: remove(base, "x d", "x/y f q"),
			want:  Result{RemoteOnly: []string{"x"}},
		},
		{
			name:  "file became directory",
			local: append(remove(base, "etc/hosts f h"), "etc/hosts d"),
			want:  Result{LocalOnly: []string{"etc/hosts"}, RemoteOnly: []string{"etc/hosts"}},
		},
		{
			name:  "excluded paths are invisible on both sides",
			local: append(remove(base, "home/alice f z"), "home/bob f b"),
			skip:  func(p string, _ bool) bool { return strings.HasPrefix(p, "home/") },
			want:  Result{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			remote := tree(t, base...)
			local := tree(t, tc.local...)
			var wire int
			got, err := Compare(context.Background(), local, NewIndex(remote).RootDigest(), lister(t, remote, &wire), tc.skip)
			if err != nil {
				t.Fatal(err)
			}
			if tc.maxRounds > 0 && got.Rounds > tc.maxRounds {
				t.Errorf("%d rounds, want at most %d", got.Rounds, tc.maxRounds)
			}
			if tc.maxRounds == 0 && tc.name == "identical" && got.Rounds != 0 {
				t.Errorf("identical trees took %d rounds", got.Rounds)
			}
			got.Rounds = 0
			if diff := cmp.Diff(&tc.want, got, cmp.Comparer(func(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") })); diff != "" {
				t.Errorf("Compare (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRootMetadataChange(t *testing.T) {
	remote := tree(t, "f f a")
	local := tree(t, "f f a")
	local.Entries[0].Mode = 0o700
	got, err := Compare(context.Background(), local, NewIndex(remote).RootDigest(), lister(t, remote, new(int)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"."}, got.Changed); diff != "" {
		t.Errorf("changed (-want +got):\n%s", diff)
	}
}

func replace(s []string, old, new string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		if out[i] == old {
			out[i] = new
		}
	}
	return out
}

func remove(s []string, drop ...string) []string {
	var out []string
	for _, x := range s {
		keep := true
		for _, d := range drop {
			if x == d {
				keep = false
			}
		}
		if keep {
			out = append(out, x)
		}
	}
	return out
}
