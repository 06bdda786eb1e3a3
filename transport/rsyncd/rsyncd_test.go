package rsyncd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	grsyncd "github.com/gokrazy/rsync/rsyncd"

	"github.com/goldcast/goldcast/images/store"
)

// The tests drive the daemon with Debian's stock rsync client, as golden
// clients and admins will. gokrazy/rsync speaks protocol 27: the client
// receives names, contents, symbolic link targets, permission bits without
// setuid/setgid/sticky and mtimes in whole seconds, but no hard links,
// ACLs, xattrs or sub-second times. So the trees are compared on names,
// types, contents, link targets, permission bits and whole-second mtimes
// of regular files; the special mode bits are only logged.

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func requireRsync(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("stock rsync client not installed")
	}
}

// srcMtime has a sub-second part, which protocol 27 cannot carry.
var srcMtime = time.Unix(1_700_000_000, 123_456_789)

// makeTree writes the test tree: nested directories, relative and absolute
// symbolic links (one to a directory outside the tree), a 1 MiB file,
// small files, an empty directory, a setuid file and dir/{a,b,c,d} for the
// exclude tests.
func makeTree(t *testing.T, root string) {
	t.Helper()
	write := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, srcMtime, srcMtime); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/hostname", "golden\n", 0o644)
	if os.Getenv("ZZMETA") != "" {
		write("own", "x", 0o644)
		os.Lchown(filepath.Join(root, "own"), 1234, 5678)
		exec.Command("setfattr", "-n", "user.foo", "-v", "bar", filepath.Join(root, "own")).Run()
		write("hl1", "hardlinked", 0o644)
		os.Link(filepath.Join(root, "hl1"), filepath.Join(root, "hl2"))
		exec.Command("mknod", filepath.Join(root, "dev"), "c", "1", "3").Run()
	}
	write("etc/deep/nested/dir/leaf.conf", "leaf=1\n", 0o600)
	write("bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	write("bin/suid-tool", "#!/bin/sh\necho suid\n", 0o4755)
	for i := range 5 {
		write(fmt.Sprintf("small/f%d", i), strings.Repeat(fmt.Sprint(i), 100*i), 0o644)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		write("dir/"+n, "content of "+n+"\n", 0o644)
	}
	big := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	write("data/big.bin", string(big), 0o644)
	if err := os.Mkdir(filepath.Join(root, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link-rel": "etc/hostname",
		"link-abs": "/etc/passwd",
		"escape":   "/etc",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
}

type fixture struct {
	store *store.Store
	src   string
	url   string // rsync://127.0.0.1:PORT/
}

// startServer imports a tree as image "golden" and serves the store.
func startServer(t *testing.T, cfg Config) *fixture {
	t.Helper()
	requireRsync(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	if _, err := st.ImportDir(context.Background(), src, "golden", store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg.Source = StoreModules(st)
	if cfg.AllowNetworks == nil {
		cfg.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	addr := serve(t, New(cfg))
	return &fixture{store: st, src: src, url: "rsync://" + addr + "/"}
}

// serve runs srv on a loopback listener until the test ends and checks
// that Serve returns.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// rsyncCmd runs the stock rsync client in dir and returns its combined
// output and exit code.
func rsyncCmd(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rsync", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run rsync %q: %v", args, err)
	}
	t.Logf("rsync %s: exit %d\n%s", strings.Join(args, " "), code, out)
	return string(out), code
}

// entry describes a tree entry for comparison.
type entry struct {
	kind    string // "dir", "file", "link"
	content string // file contents or link target
	perm    fs.FileMode
	mtime   int64 // regular files: whole seconds
}

func scan(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out[rel] = entry{kind: "dir"}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = entry{kind: "link", content: target}
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = entry{kind: "file", content: string(b), perm: fi.Mode().Perm(), mtime: fi.ModTime().Unix()}
		default:
			out[rel] = entry{kind: fi.Mode().Type().String()}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	w, g := scan(t, want), scan(t, got)
	for p, we := range w {
		ge, ok := g[p]
		switch {
		case !ok:
			t.Errorf("%s: missing from the copy", p)
		case we.kind != ge.kind:
			t.Errorf("%s: %s in source, %s in copy", p, we.kind, ge.kind)
		case we.content != ge.content:
			t.Errorf("%s: content or link target differs (%d bytes in source, %d in copy)", p, len(we.content), len(ge.content))
		case we.perm != ge.perm:
			t.Errorf("%s: permissions %v in source, %v in copy", p, we.perm, ge.perm)
		case we.mtime != ge.mtime:
			t.Errorf("%s: mtime %d in source, %d in copy", p, we.mtime, ge.mtime)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: in the copy but not in the source", p)
		}
	}
}

func TestListModules(t *testing.T) {
	f := startServer(t, Config{})
	out, code := rsyncCmd(t, t.TempDir(), f.url)
	if code != 0 {
		t.Fatalf("listing failed with exit %d", code)
	}
	names := listed(out)
	if want := "golden golden@1"; strings.Join(names, " ") != want {
		t.Errorf("modules %q, want %q", names, want)
	}
	if !strings.Contains(out, "goldcast image golden version 1 (sha256:") {
		t.Errorf("listing lacks the version comment:\n%s", out)
	}

	// A second version appears without restarting the server.
	if err := os.WriteFile(filepath.Join(f.src, "etc/hostname"), []byte("golden v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.ImportDir(context.Background(), f.src, "golden", store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	out, code = rsyncCmd(t, t.TempDir(), f.url)
	if code != 0 {
		t.Fatalf("listing failed with exit %d", code)
	}
	if got, want := strings.Join(listed(out), " "), "golden golden@1 golden@2"; got != want {
		t.Errorf("modules %q, want %q", got, want)
	}
	if !strings.Contains(out, "latest: version 2") {
		t.Errorf("listing does not call version 2 the latest:\n%s", out)
	}
	// "golden" now serves version 2, "golden@1" still version 1.
	dir := t.TempDir()
	for _, m := range []string{"golden", "golden@1"} {
		if _, code := rsyncCmd(t, dir, "-a", f.url+m+"/etc/hostname", m+".hostname"); code != 0 {
			t.Fatalf("pull from %s failed with exit %d", m, code)
		}
	}
	for m, want := range map[string]string{"golden": "golden v2\n", "golden@1": "golden\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, m+".hostname")); err != nil || string(b) != want {
			t.Errorf("%s/etc/hostname = %q, %v; want %q", m, b, err, want)
		}
	}
}

// listed returns the module names of an rsync listing.
func listed(out string) []string {
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestPullVersion(t *testing.T) {
	f := startServer(t, Config{})
	dir := t.TempDir()
	if _, code := rsyncCmd(t, dir, "-a", f.url+"golden@1/", "dst/"); code != 0 {
		t.Fatalf("pull failed with exit %d", code)
	}
	dst := filepath.Join(dir, "dst")
	compareTrees(t, f.src, dst)

	// Protocol 27 carries only the permission bits: the setuid bit is lost
	// (goldcast's manifest restores it).
	fi, err := os.Stat(filepath.Join(dst, "bin/suid-tool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bin/suid-tool: source mode -rwsr-xr-x, copy mode %v", fi.Mode())
	// The copy's mtimes lost their sub-second part.
	fi, err = os.Stat(filepath.Join(dst, "etc/hostname"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etc/hostname: source mtime %v, copy mtime %v", srcMtime.UTC(), fi.ModTime().UTC())

	// Pulling again moves no file data and changes nothing.
	if _, code := rsyncCmd(t, dir, "-a", "--delete", f.url+"golden@1/", "dst/"); code != 0 {
		t.Fatalf("second pull failed with exit %d", code)
	}
	compareTrees(t, f.src, dst)
}

// fill copies dir/{a,b,c,d} of the source to dst/dir and adds dst/dir/extra.
func fill(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dst, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		b, err := os.ReadFile(filepath.Join(src, "dir", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, "dir", n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "dir", "extra"), []byte("extra\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dirNames lists dst/dir.
func dirNames(t *testing.T, dst string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dst, "dir"))
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// TestExcludeNeverLosesSiblings covers the gokrazy/rsync exclude bug
// (see TestLibraryExcludeBug): the daemon refuses every client filter
// rule before the library sees it, so a pull with --exclude fails instead
// of silently missing, or with --delete deleting, the excluded file's later
// siblings; a pull without rules, the way goldcast pulls, gets every file.
func TestExcludeNeverLosesSiblings(t *testing.T) {
	f := startServer(t, Config{})
	module := f.url + "golden@1/"

	for _, rule := range []string{"--exclude=/dir/b", "--exclude=b", "--exclude=*.o", "--include=dir/b", "--filter=- b"} {
		t.Run(rule, func(t *testing.T) {
			dir := t.TempDir()
			out, code := rsyncCmd(t, dir, "-a", rule, module, "dst/")
			if code == 0 {
				t.Fatalf("pull with %s succeeded; want it refused", rule)
			}
			if !strings.Contains(out, "client filter rule") {
				t.Errorf("rsync output does not say the filter rule was refused:\n%s", out)
			}
			if got := dirNames(t, filepath.Join(dir, "dst")); got != "" {
				t.Errorf("refused pull wrote dst/dir: %s", got)
			}
		})
	}

	t.Run("delete with exclude deletes nothing", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "dst")
		fill(t, f.src, dst)
		if _, code := rsyncCmd(t, dir, "-a", "--delete", "--exclude=b", module, "dst/"); code == 0 {
			t.Fatal("pull with --delete --exclude=b succeeded; want it refused")
		}
		if got, want := dirNames(t, dst), "a b c d extra"; got != want {
			t.Errorf("dst/dir holds %q after the refused pull, want %q", got, want)
		}
	})

	t.Run("delete without rules keeps every sibling", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "dst")
		fill(t, f.src, dst)
		if _, code := rsyncCmd(t, dir, "-a", "--delete", module, "dst/"); code != 0 {
			t.Fatalf("pull failed with exit %d", code)
		}
		if got, want := dirNames(t, dst), "a b c d"; got != want {
			t.Errorf("dst/dir holds %q, want %q (extra deleted, the rest kept)", got, want)
		}
		compareTrees(t, f.src, dst)
	})

	t.Run("named paths instead of an exclude", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "dst"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, code := rsyncCmd(t, dir, "-a", module+"dir/a", module+"dir/c", module+"dir/d", "dst/dir/"); code != 0 {
			t.Fatalf("pull failed with exit %d", code)
		}
		if got, want := dirNames(t, filepath.Join(dir, "dst")), "a c d"; got != want {
			t.Errorf("dst/dir holds %q, want %q", got, want)
		}
	})

	// The wildcard rule did not take the daemon down.
	if _, code := rsyncCmd(t, t.TempDir(), f.url); code != 0 {
		t.Errorf("listing after the refused rules failed with exit %d", code)
	}
}

// TestLibraryExcludeBug shows, with gokrazy/rsync serving directly and no
// guard, the bug the guard exists for: excluding dir/b also drops dir/c
// and dir/d, and with --delete the client deletes them. It skips, saying
// so, once the library no longer does that.
func TestLibraryExcludeBug(t *testing.T) {
	requireRsync(t)
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	srv, err := grsyncd.NewServer([]grsyncd.Module{{Name: "raw", Path: src}},
		grsyncd.WithLogger(gokrazyLogger{log: testLogger(t)}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				srv.HandleDaemonConn(context.Background(), conn, conn.RemoteAddr())
			})
		}
	})
	module := "rsync://" + ln.Addr().String() + "/raw/"

	dir := t.TempDir()
	if _, code := rsyncCmd(t, dir, "-a", "--exclude=b", module, "dst/"); code != 0 {
		t.Fatalf("pull failed with exit %d", code)
	}
	plain := dirNames(t, filepath.Join(dir, "dst"))

	dir = t.TempDir()
	fill(t, src, filepath.Join(dir, "dst"))
	if _, code := rsyncCmd(t, dir, "-a", "--delete", "--exclude=b", module, "dst/"); code != 0 {
		t.Fatalf("pull failed with exit %d", code)
	}
	deleted := dirNames(t, filepath.Join(dir, "dst"))

	t.Logf("gokrazy/rsync with --exclude=b: dst/dir holds %q (want \"a c d\"); with --delete over a b c d extra: %q (want \"a b c d\")", plain, deleted)
	if plain == "a c d" && deleted == "a b c d" {
		t.Skip("gokrazy/rsync no longer drops the excluded file's later siblings; the filter-rule guard could be revisited")
	}
	if plain != "a" || deleted != "a b" {
		t.Errorf("gokrazy/rsync behaves differently than recorded: %q and %q", plain, deleted)
	}
}

func TestPathOutsideModuleRefused(t *testing.T) {
	f := startServer(t, Config{})
	for _, p := range []string{
		"golden@1/../../../../../../../../etc/hostname",
		"golden@1/etc/../../../../../../../../etc/hostname",
		"golden@1/escape/hostname", // escape -> /etc
		"golden@1/escape/",
	} {
		dir := t.TempDir()
		out, code := rsyncCmd(t, dir, "-a", f.url+p, "dst")
		if code == 0 {
			t.Errorf("pull of %s succeeded; want it refused", p)
		}
		if !strings.Contains(out, "goldcast rsync daemon:") {
			t.Errorf("pull of %s: output does not give the daemon's reason:\n%s", p, out)
		}
		if _, err := os.Lstat(filepath.Join(dir, "dst")); err == nil {
			t.Errorf("pull of %s created dst", p)
		}
	}

	// A link at the end of the path is sent as the link itself.
	dir := t.TempDir()
	if _, code := rsyncCmd(t, dir, "-a", f.url+"golden@1/escape", "dst"); code != 0 {
		t.Fatalf("pull of the escape link failed with exit %d", code)
	}
	if target, err := os.Readlink(filepath.Join(dir, "dst")); err != nil || target != "/etc" {
		t.Errorf("pulled escape link: %q, %v; want a link to /etc", target, err)
	}
}

// TestUnsupportedOptionsRefused: without the guard these options make
// the stock client misread gokrazy/rsync's stream (-z and --numeric-ids
// then hang for 30 s); with it they fail at once, saying why.
func TestUnsupportedOptionsRefused(t *testing.T) {
	f := startServer(t, Config{})
	for _, opts := range [][]string{{"-aH"}, {"-az"}, {"-a", "--compress-level=1"}, {"-a", "--numeric-ids"}, {"-a", "--checksum-choice=md5"}} {
		dir := t.TempDir()
		start := time.Now()
		out, code := rsyncCmd(t, dir, append(opts, f.url+"golden@1/", "dst/")...)
		if code == 0 {
			t.Errorf("pull with %q succeeded; want it refused", opts)
		}
		if !strings.Contains(out, "not supported by this daemon") {
			t.Errorf("pull with %q: output does not give the daemon's reason", opts)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("pull with %q took %v to fail", opts, d)
		}
		if got := dirNames(t, filepath.Join(dir, "dst")); got != "" {
			t.Errorf("refused pull with %q wrote dst/dir: %s", opts, got)
		}
	}
	// Options the library implements still work.
	dir := t.TempDir()
	if _, code := rsyncCmd(t, dir, "-avcS", f.url+"golden@1/", "dst/"); code != 0 {
		t.Fatalf("pull with -avcS failed with exit %d", code)
	}
	compareTrees(t, f.src, filepath.Join(dir, "dst"))
}

func TestUploadRefused(t *testing.T) {
	f := startServer(t, Config{})
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "planted"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := rsyncCmd(t, other, "-a", "./", f.url+"golden@1/")
	if code == 0 {
		t.Fatal("upload succeeded; want it refused")
	}
	if !strings.Contains(out, "read-only") {
		t.Errorf("upload refusal does not say read-only:\n%s", out)
	}
	v, err := f.store.Resolve("golden@1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(v.TreePath(), "planted")); err == nil {
		t.Error("upload wrote into the version tree")
	}
}

func TestDisallowedNetworkRefused(t *testing.T) {
	var logs syncBuffer
	f := startServer(t, Config{
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for _, args := range [][]string{{f.url}, {"-a", f.url + "golden@1/", "dst/"}} {
		dir := t.TempDir()
		out, code := rsyncCmd(t, dir, args...)
		if code == 0 {
			t.Errorf("rsync %q from 127.0.0.1 succeeded; want it refused", args)
		}
		if !strings.Contains(out, "access denied") {
			t.Errorf("rsync output does not say access denied:\n%s", out)
		}
		if _, err := os.Lstat(filepath.Join(dir, "dst")); err == nil {
			t.Error("refused pull created dst")
		}
	}
	if !strings.Contains(logs.String(), "outside the allowed networks") {
		t.Errorf("no log line for the refusal; log:\n%s", logs.String())
	}

	// The loopback network, when allowed, gets in.
	g := startServer(t, Config{AllowNetworks: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}})
	if _, code := rsyncCmd(t, t.TempDir(), g.url); code != 0 {
		t.Errorf("listing from an allowed network failed with exit %d", code)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestMaxConns(t *testing.T) {
	f := startServer(t, Config{MaxConns: 1})
	conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(f.url, "rsync://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	// Reading the greeting shows the connection holds the only slot.
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "@RSYNCD: ") {
		t.Fatalf("greeting %q, %v", line, err)
	}
	out, code := rsyncCmd(t, t.TempDir(), f.url)
	if code == 0 || !strings.Contains(out, "max connections (1) reached") {
		t.Errorf("second connection: exit %d, want a refusal naming max connections", code)
	}
	conn.Close()
	// The slot is freed once the first connection ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, code := rsyncCmd(t, t.TempDir(), f.url)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listing still refused after the first connection closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServeReturnsOnCancel(t *testing.T) {
	srv := New(Config{
		Source:        func(context.Context) ([]Module, error) { return nil, nil },
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:        testLogger(t),
		DrainTimeout:  300 * time.Millisecond,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	// A client that stalls in the handshake holds a connection open.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Serve returned after %v, before the drain timeout", d)
	}
	// The stalled connection was closed, and the listener too.
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("stalled connection: read returned %v, want EOF", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServeWithoutConnections(t *testing.T) {
	srv := New(Config{Source: func(context.Context) ([]Module, error) { return nil, nil }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return promptly after cancel")
	}
}

func TestCheckPath(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "d/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(root, "d/up")); err != nil {
		t.Fatal(err)
	}
	m := Module{Name: "m", Path: root}
	for arg, ok := range map[string]bool{
		"--server": true, "--sender": true, "-logDtpr": true, ".": true,
		"m/": true, "m": true, "m/d/e/": true, "m/d/up": true, "m/d/up/": false, "m/d/up/.": false, "m/d/e/.": true, "m//d/e": true,
		"m/missing/x/y": true, "m/d/e/../x": false, "m/..": false, "..": false,
		"m/d/up/etc": false, "m/d/up/etc/passwd": false, "d/up/etc": false, "-/../x": false,
	} {
		if err := checkPath(m, arg); (err == nil) != ok {
			t.Errorf("checkPath(%q) = %v, want ok=%v", arg, err, ok)
		}
	}
}

func TestUnsupportedOption(t *testing.T) {
	for arg, refused := range map[string]bool{
		"-logDtpr": false, "-lHogDtpr": true, "-logDtprz": true,
		"-e.iLsfxCIvu": false, "-B2048": false, "--numeric-ids": true, "--compress-level=1": true,
		"--checksum-choice=md5": true, "--server": false, "--sender": false, ".": false,
		"golden@1/Hz": false, "--inplace": false,
	} {
		if got := unsupportedOption(arg) != ""; got != refused {
			t.Errorf("unsupportedOption(%q) refuses=%v, want %v", arg, got, refused)
		}
	}
}
