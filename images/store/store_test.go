package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/signing"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/testtree"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func importDir(t *testing.T, s *Store, src, name string) *ImportResult {
	t.Helper()
	res, err := s.ImportDir(context.Background(), src, name, ImportOptions{})
	if err != nil {
		t.Fatalf("import %s: %v", src, err)
	}
	return res
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestTortureRoundTrip is the main oracle: import -> export ->
// import-stream -> extract keeps everything an OS root holds.
func TestTortureRoundTrip(t *testing.T) {
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	s := openStore(t)
	v1 := importDir(t, s, tt.Root, "torture").Version
	testtree.Oracle(t, tt.Root, v1.TreePath(), tt.Socket)

	var buf bytes.Buffer
	if _, err := s.Export(context.Background(), "torture", &buf, stream.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.ImportStream(context.Background(), bytes.NewReader(buf.Bytes()), "again", StreamImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version.Info.ManifestDigest != v1.Info.ManifestDigest {
		t.Errorf("stream import digest %s, want %s", res.Version.Info.ManifestDigest, v1.Info.ManifestDigest)
	}
	testtree.Oracle(t, tt.Root, res.Version.TreePath(), tt.Socket)

	buf.Reset()
	if _, err := s.Export(context.Background(), "again", &buf, stream.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := stream.Extract(context.Background(), &buf, dst, stream.ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	testtree.Oracle(t, tt.Root, dst, tt.Socket)

	for _, ref := range []string{"torture", "again@1"} {
		vr, err := s.Verify(context.Background(), ref, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(vr.Changes) != 0 {
			t.Errorf("verify %s: %v", ref, vr.Changes)
		}
	}
}

// TestDebootstrapRoundTrip runs the same chain on a real Debian root.
func TestDebootstrapRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("debootstrap round trip skipped in -short mode")
	}
	root := testtree.Debootstrap(t)
	s := openStore(t)
	v := importDir(t, s, root, "debian").Version
	testtree.Oracle(t, root, v.TreePath())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Export(context.Background(), "debian", pw, stream.WriteOptions{})
		pw.CloseWithError(err)
		errc <- err
	}()
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := stream.Extract(context.Background(), pr, dst, stream.ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	testtree.Oracle(t, root, dst)
}

func TestVersionsShareUnchangedFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "same"), "same", 0o644)
	writeFile(t, filepath.Join(src, "content"), "old", 0o644)
	writeFile(t, filepath.Join(src, "mode"), "mode", 0o644)
	writeFile(t, filepath.Join(src, "gone"), "gone", 0o644)
	writeFile(t, filepath.Join(src, "grp1"), "grp", 0o644)
	if err := os.Link(filepath.Join(src, "grp1"), filepath.Join(src, "grp2")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	v1 := importDir(t, s, src, "img").Version

	writeFile(t, filepath.Join(src, "content"), "new content", 0o644)
	if err := os.Chmod(filepath.Join(src, "mode"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "gone"))
	res := importDir(t, s, src, "img")
	v2 := res.Version
	if v2.Info.Version != 2 || v2.Info.Parent != 1 {
		t.Fatalf("second import is version %d (parent %d), want 2 (parent 1)", v2.Info.Version, v2.Info.Parent)
	}
	p1, p2 := v1.TreePath(), v2.TreePath()
	if inode(t, p1+"/same") != inode(t, p2+"/same") {
		t.Error("unchanged file was not shared between versions")
	}
	if inode(t, p1+"/content") == inode(t, p2+"/content") {
		t.Error("changed file shares its old inode")
	}
	if inode(t, p1+"/mode") == inode(t, p2+"/mode") {
		t.Error("file whose mode alone changed shares its old inode")
	}
	if inode(t, p2+"/grp1") != inode(t, p2+"/grp2") || inode(t, p1+"/grp1") == inode(t, p2+"/grp1") {
		t.Error("hard-link group must share an inode within a version and get its own per version")
	}
	if res.Reused != 1 {
		t.Errorf("reused %d files, want 1", res.Reused)
	}
	// The old version is untouched.
	if b, _ := os.ReadFile(p1 + "/content"); string(b) != "old" {
		t.Errorf("version 1 content changed to %q", b)
	}
	if fi, _ := os.Stat(p1 + "/mode"); fi.Mode().Perm() != 0o644 {
		t.Errorf("version 1 mode changed to %v", fi.Mode())
	}
	for _, ref := range []string{"img@1", "img@2"} {
		vr, err := s.Verify(context.Background(), ref, VerifyOptions{})
		if err != nil || len(vr.Changes) != 0 {
			t.Errorf("verify %s: %v %v", ref, err, vr.Changes)
		}
	}
	changes, err := s.Diff("img@1", "img@2")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Itemize())
	}
	want := []string{"*deleting   gone", ">fcst...... content", ".f...p..... mode", ".d..t...... ./"}
	if diff := cmp.Diff(sortedCopy(want), sortedCopy(got)); diff != "" {
		t.Errorf("diff img@1 img@2 (-want +got):\n%s", diff)
	}
	// The same tree again publishes nothing.
	if again := importDir(t, s, src, "img"); !again.Unchanged || again.Version.Info.Version != 2 {
		t.Errorf("re-import of an unchanged tree: unchanged=%v version=%d", again.Unchanged, again.Version.Info.Version)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func TestVerifyReportsEachDifference(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "content"), "abc", 0o644)
	writeFile(t, filepath.Join(src, "mode"), "x", 0o644)
	writeFile(t, filepath.Join(src, "gone"), "x", 0o644)
	writeFile(t, filepath.Join(src, "dir/xattr"), "x", 0o644)
	s := openStore(t)
	v := importDir(t, s, src, "img").Version
	tree := v.TreePath()
	// Tamper with the published tree behind the store's back.
	writeFile(t, tree+"/content", "abd", 0o644)
	os.Chtimes(tree+"/content", time.Unix(0, mustEntry(t, v, "content").MtimeNS), time.Unix(0, mustEntry(t, v, "content").MtimeNS))
	os.Chmod(tree+"/mode", 0o4755)
	os.Remove(tree + "/gone")
	writeFile(t, tree+"/added", "x", 0o644)
	if err := unix.Lsetxattr(tree+"/dir/xattr", "user.evil", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	vr, err := s.Verify(context.Background(), "img", VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, c := range vr.Changes {
		var fields []string
		for _, f := range c.Fields {
			fields = append(fields, f.Field)
		}
		got[c.Path] = append(fields, string(c.Kind))
	}
	want := map[string][]string{
		"content":   {"sha256", "modified"},
		"mode":      {"mode", "modified"},
		"gone":      {"removed"},
		"added":     {"added"},
		"dir/xattr": {"xattrs", "modified"},
		".":         {"mtime", "modified"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verify differences (-want +got):\n%s", diff)
	}
}

func mustEntry(t *testing.T, v *Version, p string) *manifest.Entry {
	t.Helper()
	m, _, err := v.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	i, ok := m.Index()[p]
	if !ok {
		t.Fatalf("%s not in manifest", p)
	}
	return &m.Entries[i]
}

func TestSignVerifyAndTamperedManifest(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "f"), "x", 0o644)
	s := openStore(t)
	v := importDir(t, s, src, "img").Version
	keys := t.TempDir()
	signing.GenerateKey(keys + "/a")
	signing.GenerateKey(keys + "/b")
	privA, _ := signing.LoadPrivateKey(keys + "/a")
	pubA, _ := signing.LoadPublicKey(keys + "/a.pub")
	pubB, _ := signing.LoadPublicKey(keys + "/b.pub")
	if _, err := s.Verify(context.Background(), "img", VerifyOptions{PublicKey: pubA}); !errors.Is(err, signing.ErrBadSignature) {
		t.Fatalf("unsigned version verified with a key: %v", err)
	}
	if _, _, err := s.Sign("img", privA); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(context.Background(), "img", VerifyOptions{PublicKey: pubA}); err != nil {
		t.Fatalf("verify with the signing key: %v", err)
	}
	if _, err := s.Verify(context.Background(), "img", VerifyOptions{PublicKey: pubB}); !errors.Is(err, signing.ErrBadSignature) {
		t.Fatalf("verify with the wrong key: %v", err)
	}
	// A signed export carries the signature into a stream import.
	var buf bytes.Buffer
	if _, err := s.Export(context.Background(), "img", &buf, stream.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.ImportStream(context.Background(), &buf, "copy", StreamImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Version.Info.Signed {
		t.Error("stream import dropped the signature")
	}
	// Editing the manifest after publishing is caught.
	raw, _ := os.ReadFile(v.ManifestPath())
	os.WriteFile(v.ManifestPath(), bytes.Replace(raw, []byte(" 0644 "), []byte(" 0666 "), 1), 0o644)
	if _, err := s.Verify(context.Background(), "img", VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "modified after publishing") {
		t.Fatalf("tampered manifest: %v", err)
	}
}

func TestCopyRenameRemovePrune(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	s := openStore(t)
	for i := 1; i <= 4; i++ {
		writeFile(t, filepath.Join(src, "v"), fmt.Sprint(i), 0o644)
		importDir(t, s, src, "img")
	}
	cp, err := s.Copy(context.Background(), "img@2", "other")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cp.TreePath() + "/v"); string(b) != "2" || cp.Info.Version != 1 {
		t.Fatalf("copy holds %q as version %d", b, cp.Info.Version)
	}
	if err := s.Rename("other", "img"); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto an existing image: %v", err)
	}
	if err := s.Rename("other", "renamed"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Resolve("renamed"); err != nil || v.Info.Image != "renamed" {
		t.Fatalf("resolve renamed image: %v %+v", err, v)
	}
	removed, err := s.Prune("img", 2, map[int]bool{1: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{2}, removed); diff != "" {
		t.Errorf("pruned (-want +got):\n%s", diff)
	}
	vs, _ := s.Versions("img")
	var left []int
	for _, v := range vs {
		left = append(left, v.Info.Version)
	}
	if diff := cmp.Diff([]int{1, 3, 4}, left); diff != "" {
		t.Errorf("versions left (-want +got):\n%s", diff)
	}
	// Version numbers are never handed out twice.
	if err := s.RemoveVersion("img", 4); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "v"), "5", 0o644)
	if v := importDir(t, s, src, "img").Version; v.Info.Version != 5 {
		t.Errorf("new version after removing the latest is %d, want 5", v.Info.Version)
	}
	if err := s.Remove("img"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("img"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed image still resolves: %v", err)
	}
	imgs, _ := s.Images()
	if len(imgs) != 1 || imgs[0].Name != "renamed" {
		t.Errorf("images left: %+v", imgs)
	}
}

func TestWorkingCopyPublish(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "etc/motd"), "hello", 0o644)
	s := openStore(t)
	v1 := importDir(t, s, src, "img").Version
	wc, err := s.NewWorkingCopy(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	if inode(t, wc.Root+"/etc/motd") == inode(t, v1.TreePath()+"/etc/motd") {
		t.Fatal("working copy shares an inode with the store")
	}
	writeFile(t, wc.Root+"/etc/motd", "edited", 0o644)
	res, err := wc.Publish(context.Background(), "edit")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version.Info.Version != 2 {
		t.Fatalf("published version %d", res.Version.Info.Version)
	}
	if b, _ := os.ReadFile(v1.TreePath() + "/etc/motd"); string(b) != "hello" {
		t.Errorf("editing the working copy changed version 1: %q", b)
	}
	wc2, err := s.NewWorkingCopy(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := wc2.Publish(context.Background(), ""); err != nil || !res.Unchanged {
		t.Errorf("unchanged working copy: %v unchanged=%v", err, res != nil && res.Unchanged)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), ".staging")); len(ents) != 0 {
		t.Errorf("staging area not cleaned: %d entries", len(ents))
	}
}

// TestKilledImport kills an import with SIGKILL half way: no version may
// appear, and the next Open removes the staging area and says so.
func TestKilledImport(t *testing.T) {
	if os.Getenv("GOLDCAST_TEST_SLOW_IMPORT") != "" {
		slowImportHelper()
		return
	}
	src := filepath.Join(t.TempDir(), "src")
	for i := 0; i < 400; i++ {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%02d/f%03d", i%20, i)), strings.Repeat("x", 1000+i), 0o644)
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledImport$")
	cmd.Env = append(os.Environ(), "GOLDCAST_TEST_SLOW_IMPORT=1", "SRC="+src, "DATA="+data)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the helper has written some files into staging.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		filepath.Walk(filepath.Join(data, ".staging"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && strings.Contains(p, "/tree/") {
				n++
			}
			return nil
		})
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("helper never started importing:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	var logBuf bytes.Buffer
	s, err := Open(data, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logBuf.String(), "interrupted") || !strings.Contains(logBuf.String(), "image=big") {
		t.Errorf("Open did not report the interrupted import; log:\n%s", logBuf.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(data, ".staging")); len(ents) != 0 {
		t.Errorf("staging area still holds %d entries", len(ents))
	}
	if vs, err := s.Versions("big"); err != nil || len(vs) != 0 {
		t.Fatalf("a killed import left versions %v (err %v)", vs, err)
	}
	if imgs, _ := s.Images(); len(imgs) != 0 {
		t.Fatalf("a killed import left images %+v", imgs)
	}
	res := importDir(t, s, src, "big")
	if res.Version.Info.Version != 1 {
		t.Errorf("import after the kill published version %d, want 1", res.Version.Info.Version)
	}
}

// slowImportHelper runs in a child process: an import slowed down so the
// parent can kill it half way.
func slowImportHelper() {
	s, err := Open(os.Getenv("DATA"), nil)
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	_, err = s.ImportDir(context.Background(), os.Getenv("SRC"), "big", ImportOptions{
		Workers:  1,
		Progress: func(int, int64) { time.Sleep(20 * time.Millisecond) },
	})
	fmt.Println("helper finished unexpectedly:", err)
	os.Exit(3)
}

func TestExcludesAndOneFileSystem(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "keep"), "x", 0o644)
	writeFile(t, filepath.Join(src, "var/cache/apt/pkg.deb"), "x", 0o644)
	writeFile(t, filepath.Join(src, "var/log/syslog.log"), "x", 0o644)
	writeFile(t, filepath.Join(src, "mnt/other/file"), "x", 0o644)
	if err := unix.Mount("tmpfs", filepath.Join(src, "mnt/other"), "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs to test one-filesystem walks: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(src, "mnt/other"), unix.MNT_DETACH) })
	writeFile(t, filepath.Join(src, "mnt/other/on-tmpfs"), "x", 0o644)
	ex, err := manifest.NewExcluder([]string{"/var/cache/*", "*.log"})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	res, err := s.ImportDir(context.Background(), src, "img", ImportOptions{Exclude: ex})
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := res.Version.Manifest()
	var paths []string
	for _, e := range m.Entries {
		paths = append(paths, e.Path)
	}
	want := []string{".", "keep", "mnt", "mnt/other", "var", "var/cache", "var/log"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("imported paths (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/var/cache/*", "*.log"}, res.Version.Info.Excludes); diff != "" {
		t.Errorf("recorded excludes (-want +got):\n%s", diff)
	}
}

func TestRefsAndErrors(t *testing.T) {
	s := openStore(t)
	for _, ref := range []string{"nope", "nope@3"} {
		if _, err := s.Resolve(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("resolve %s: %v", ref, err)
		}
	}
	for _, ref := range []string{"../etc", "a/b", "img@0", "img@x"} {
		if _, err := s.Resolve(ref); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("resolve %q: want a syntax error, got %v", ref, err)
		}
	}
	if _, err := s.ImportDir(context.Background(), "/nonexistent", "img", ImportOptions{}); err == nil {
		t.Error("import of a missing directory succeeded")
	}
}
