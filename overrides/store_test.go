package overrides

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/goldcast/goldcast/internal/testtree"
)

func TestStore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	src := e.src(tree{"etc/motd": "hi", "etc/link": "->motd", "etc/hard": "=>etc/motd"})
	if err := e.ovs.Create(ctx, "web", src, CreateOptions{Comment: "web servers"}); err != nil {
		t.Fatal(err)
	}
	if err := e.ovs.Create(ctx, "keys", src, CreateOptions{Private: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.ovs.Create(ctx, "blank", "", CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		op      func() error
		wantErr error
		errText string
	}{
		{"exists", func() error { return e.ovs.Create(ctx, "web", src, CreateOptions{}) }, ErrExists, `create override "web"`},
		{"bad-name", func() error { return e.ovs.Create(ctx, ".hidden", src, CreateOptions{}) }, nil, `override name ".hidden" starts with '.'`},
		{"missing-source", func() error { return e.ovs.Create(ctx, "x", filepath.Join(src, "nope"), CreateOptions{}) }, os.ErrNotExist, `create override "x"`},
		{"get-missing", func() error { _, err := e.ovs.Get("nope"); return err }, ErrNotFound, `override "nope"`},
		{"remove-missing", func() error { return e.ovs.Remove("nope") }, ErrNotFound, `remove override "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("err = %v, want %v containing %q", err, tc.wantErr, tc.errText)
			}
		})
	}

	infos, err := e.ovs.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{{Name: "blank"}, {Name: "keys", Private: true}, {Name: "web", Comment: "web servers"}}
	if diff := cmp.Diff(want, infos, cmpopts.IgnoreFields(Info{}, "Created")); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	for _, i := range infos {
		if time.Since(i.Created) > time.Minute {
			t.Errorf("%s: created %v", i.Name, i.Created)
		}
	}

	o, err := e.ovs.Get("web")
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "web" || o.Private || o.Dir != filepath.Join(e.data, "overrides", "web", "tree") {
		t.Errorf("Get(web) = %+v", o)
	}
	m, err := o.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, en := range m.Entries {
		paths = append(paths, en.Path+" "+en.LinkTo)
	}
	if diff := cmp.Diff([]string{". ", "etc ", "etc/hard ", "etc/link ", "etc/motd etc/hard"}, paths); diff != "" {
		t.Errorf("manifest of web (-want +got):\n%s", diff)
	}
	// Overrides are edited in place: a new Get sees the edit.
	if err := os.WriteFile(filepath.Join(o.Dir, "etc", "new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	o2, _ := e.ovs.Get("web")
	m2, err := o2.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Entries) != len(m.Entries)+1 {
		t.Errorf("edited override has %d entries, want %d", len(m2.Entries), len(m.Entries)+1)
	}

	if err := e.ovs.Remove("web"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ovs.Get("web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: err = %v, want ErrNotFound", err)
	}
	names, _ := os.ReadDir(e.ovs.Root())
	var left []string
	for _, n := range names {
		left = append(left, n.Name())
	}
	if diff := cmp.Diff([]string{".lock", "blank", "keys"}, left); diff != "" {
		t.Errorf("store directory (-want +got):\n%s", diff)
	}
}

// TestCreateKeepsEverything copies the torture tree (every file type,
// owner, mode bit, xattr, capability, ACL, hard link, sparse file and
// nanosecond mtime) into an override and compares it with rsync.
func TestCreateKeepsEverything(t *testing.T) {
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	e := newEnv(t)
	if err := e.ovs.Create(context.Background(), "torture", tt.Root, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := e.ovs.Get("torture")
	if err != nil {
		t.Fatal(err)
	}
	testtree.Oracle(t, tt.Root, o.Dir, tt.Skipped()...)
	want, err := scanTree(context.Background(), tt.Root, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := o.Manifest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("override manifest differs from the source (-want +got):\n%s", diff)
	}
}

func TestOpenCleansInterrupted(t *testing.T) {
	data := t.TempDir()
	s, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(s.Root(), ".tmp-dead")
	young := filepath.Join(s.Root(), ".tmp-young")
	writeTree(t, stale, tree{"tree/etc/x": "x", "tree/ro/": ""})
	writeTree(t, young, tree{"tree/etc/x": "x"})
	if err := os.Chmod(filepath.Join(stale, "tree", "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	// A live builder holds its lock.
	live, err := s.newTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer live.discard()
	if err := os.Chtimes(live.dir, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(data); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{stale: false, young: true, live.dir: true} {
		_, err := os.Lstat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", dir, got, want)
		}
	}
}

func TestCreateRefusesChangedFile(t *testing.T) {
	// A file that changes between the scan and the copy fails Create.
	e := newEnv(t)
	src := e.src(tree{"a": "one"})
	m, err := scanTree(context.Background(), src, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	err = copyTree(context.Background(), m, src, dst)
	if err == nil || !strings.Contains(err.Error(), `"a" changed since it was scanned`) {
		t.Errorf("err = %v", err)
	}
}
