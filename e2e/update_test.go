package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/internal/testtree"
)

// copyTree makes a private, writable copy of a tree (cp -a keeps
// everything the oracle checks).
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "golden")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

// keepDirTimes runs edit and then restores the mtimes of the given
// directories, so only the intended entries change.
func keepDirTimes(t *testing.T, root string, dirs []string, edit func()) {
	t.Helper()
	times := map[string]unix.Timespec{}
	for _, d := range dirs {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, d), &st); err != nil {
			t.Fatal(err)
		}
		times[d] = st.Mtim
	}
	edit()
	for d, ts := range times {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, d), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
}

func run0(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// fiveChanges edits a Debian root the way the issue describes: one
// file's content, one new file, one deleted, one chmod, one setcap, one
// xattr. It returns the paths touched.
func fiveChanges(t *testing.T, root string) []string {
	t.Helper()
	keepDirTimes(t, root, []string{"etc", "usr/bin", "usr/share/doc/bash"}, func() {
		f, err := os.OpenFile(filepath.Join(root, "etc/bash.bashrc"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("\n# tuned by goldcast e2e\n")
		f.Close()
		os.WriteFile(filepath.Join(root, "etc/goldcast-e2e.conf"), []byte("added=1\n"), 0o644)
		if err := os.Remove(filepath.Join(root, "usr/share/doc/bash/INTRO.gz")); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(root, "usr/bin/env"), 0o700)
		run0(t, "setcap", "cap_net_bind_service+ep", filepath.Join(root, "usr/bin/cat"))
		if err := unix.Lsetxattr(filepath.Join(root, "usr/bin/ls"), "user.goldcast.e2e", []byte("v2"), 0); err != nil {
			t.Fatal(err)
		}
	})
	return []string{"etc/bash.bashrc", "etc/goldcast-e2e.conf", "usr/bin/cat", "usr/bin/env", "usr/bin/ls", "usr/share/doc/bash/INTRO.gz"}
}

// TestIncrementalCaptureAndUpdate is the incremental case on a
// real Debian root: after the edit, the recapture moves a small fraction
// of the tree, image diff shows exactly the edit, and update applies
// exactly that to a deployed node.
func TestIncrementalCaptureAndUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	golden := copyTree(t, testtree.Debootstrap(t))
	// One xattr exists before, so "change one xattr" changes a value.
	if err := unix.Lsetxattr(filepath.Join(golden, "usr/bin/ls"), "user.goldcast.e2e", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "", 0)
	ok(t, s.args("capture", "--image", "deb", "--root", golden, "--no-layout")...)
	node := filepath.Join(t.TempDir(), "node")
	ok(t, s.args("deploy", "--image", "deb", "--target", node)...)

	touched := fiveChanges(t, golden)
	c, err := client.New(client.Options{URL: s.url, Token: readToken(t, s.tokenFile)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Capture(context.Background(), client.CaptureOptions{Image: "deb", Root: golden, SkipLayout: true})
	if err != nil {
		t.Fatal(err)
	}
	sent, recvd := c.WireBytes()
	treeBytes := res.Bytes
	t.Logf("incremental capture: %d bytes sent, %d received on the wire for a %d-byte tree (%.3f%%)", sent, recvd, treeBytes, 100*float64(sent+recvd)/float64(treeBytes))
	if res.Published.Version != 2 {
		t.Fatalf("recapture published version %d", res.Published.Version)
	}
	if frac := float64(sent+recvd) / float64(treeBytes); frac >= 0.02 {
		t.Errorf("incremental capture moved %d bytes, %.2f%% of the tree; want < 2%%", sent+recvd, 100*frac)
	}
	r := ok(t, "--data", s.data, "image", "diff", "deb@1", "deb@2")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		got = append(got, line[strings.LastIndex(line, " ")+1:])
	}
	sort.Strings(got)
	if diff := cmp.Diff(touched, got); diff != "" {
		t.Errorf("image diff deb@1 deb@2 paths (-want +got):\n%s\nfull output:\n%s", diff, r.stdout)
	}

	// Node-local files under excluded paths survive an update with delete.
	os.MkdirAll(filepath.Join(node, "home/alice"), 0o755)
	os.WriteFile(filepath.Join(node, "home/alice/thesis.tex"), []byte("precious"), 0o644)
	os.WriteFile(filepath.Join(node, "var/log/node.log"), []byte("log"), 0o644)
	os.WriteFile(filepath.Join(node, "etc/hostname"), []byte("node07\n"), 0o644)
	dry := ok(t, s.args("update", "--image", "deb", "--root", node, "--dry-run")...)
	for _, p := range touched {
		if !strings.Contains(dry.stdout, p) {
			t.Errorf("update --dry-run does not list %s:\n%s", p, dry.stdout)
		}
	}
	if strings.Contains(dry.stdout, "alice") || strings.Contains(dry.stdout, "hostname") {
		t.Errorf("update --dry-run lists excluded paths:\n%s", dry.stdout)
	}
	ok(t, s.args("update", "--image", "deb", "--root", node)...)
	excluded := append(captureDefaults(), "home/alice", "var/log/node.log", "etc/hostname", "etc/goldcast")
	testtree.Oracle(t, golden, node, excluded...)
	for p, want := range map[string]string{"home/alice/thesis.tex": "precious", "var/log/node.log": "log", "etc/hostname": "node07\n"} {
		if b, err := os.ReadFile(filepath.Join(node, p)); err != nil || string(b) != want {
			t.Errorf("update touched the excluded %s: %q, %v", p, b, err)
		}
	}
	var ls client.LastSync
	b, _ := os.ReadFile(filepath.Join(node, "etc/goldcast/last-sync"))
	if err := json.Unmarshal(b, &ls); err != nil || ls.Image != "deb" || ls.Version != 2 {
		t.Errorf("last-sync = %s (%v)", b, err)
	}
	// A second update finds nothing to do.
	if r := ok(t, s.args("update", "--root", node)...); !strings.Contains(r.stdout, ": 0 changes") {
		t.Errorf("second update:\n%s", r.stdout)
	}
	// --no-delete keeps extras the image lacks.
	keepDirTimes(t, node, []string{"usr/local"}, func() {
		os.WriteFile(filepath.Join(node, "usr/local/extra"), []byte("x"), 0o644)
	})
	if r := ok(t, s.args("update", "--root", node, "--no-delete")...); !strings.Contains(r.stdout, ": 0 changes") {
		t.Errorf("update --no-delete counts the file it keeps as a change:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(node, "usr/local/extra")); err != nil {
		t.Errorf("update --no-delete removed an extra file: %v", err)
	}
	ok(t, s.args("update", "--root", node)...)
	if _, err := os.Stat(filepath.Join(node, "usr/local/extra")); err == nil {
		t.Error("update did not delete an extra file")
	}
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	tok, err := client.ReadToken(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestConcurrentCapturesAreRefused holds a capture session open and
// checks that a second capture of the same image is refused, another
// image is not, and the image is free again once the session ends.
func TestConcurrentCapturesAreRefused(t *testing.T) {
	s := startServer(t, "", 2*time.Second)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	tok := readToken(t, s.tokenFile)
	body, _ := json.Marshal(api.CaptureRequest{Image: "img", Host: "other-golden"})
	req, _ := http.NewRequest(http.MethodPost, s.url+api.Prefix+"/captures", bytes.NewReader(body))
	req.Header.Set(api.TokenHeader, tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("open a session: %v %v", err, resp)
	}
	resp.Body.Close()
	r := run(t, s.args("capture", "--image", "img", "--root", src, "--no-layout")...)
	if r.code == 0 || !strings.Contains(r.stderr, "409 Conflict") || !strings.Contains(r.stderr, "other-golden") {
		t.Fatalf("second capture: exit %d\n%s", r.code, r.stderr)
	}
	ok(t, s.args("capture", "--image", "another", "--root", src, "--no-layout")...)
	// The silent session expires (2 s here) and the image is free.
	time.Sleep(2500 * time.Millisecond)
	ok(t, s.args("capture", "--image", "img", "--root", src, "--no-layout")...)
}

// TestKilledCaptureLeavesNoVersion kills a capture mid-upload: no version
// appears, and the next capture works at once.
func TestKilledCaptureLeavesNoVersion(t *testing.T) {
	s := startServer(t, "", 0)
	src := t.TempDir()
	big := make([]byte, 4<<20)
	for i := 0; i < 40; i++ {
		for j := range big {
			big[j] = byte(i*31 + j*7)
		}
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), big, 0o644)
	}
	c := exec.Command(goldcast.path, s.args("capture", "--image", "big", "--root", src, "--no-layout")...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once the server is receiving (its staging area exists).
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(filepath.Join(s.data, ".staging"))
		if len(ents) > 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	time.Sleep(200 * time.Millisecond)
	if r := run(t, "--data", s.data, "image", "versions", "big"); r.code == 0 {
		t.Fatalf("a killed capture left a version:\n%s", r.stdout)
	}
	ok(t, s.args("capture", "--image", "big", "--root", src, "--no-layout")...)
	ok(t, "--data", s.data, "image", "verify", "big")
}

// TestLyingUploadsAreRefused sends content that does not match the
// manifest patch: the server refuses it and publishes nothing.
func TestLyingUploadsAreRefused(t *testing.T) {
	s := startServer(t, "", 0)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("first"), 0o644)
	ok(t, s.args("capture", "--image", "img", "--root", src, "--no-layout")...)
	tok := readToken(t, s.tokenFile)
	call := func(method, path string, body io.Reader, out any) int {
		req, _ := http.NewRequest(method, s.url+api.Prefix+path, body)
		req.Header.Set(api.TokenHeader, tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var sess api.CaptureSession
	b, _ := json.Marshal(api.CaptureRequest{Image: "img", Host: "liar"})
	if code := call(http.MethodPost, "/captures", bytes.NewReader(b), &sess); code != http.StatusCreated {
		t.Fatalf("begin: %d", code)
	}
	// The patch claims f holds "second"; the upload sends something else.
	line := fmt.Sprintf("f f 0644 0 0 1600000000000000000 size=6 sha256=%s", sha256Hex("second"))
	var digestOf = func() string {
		// The server computes the digest of the patched manifest; ask it
		// by sending a wrong one first and reading the answer.
		p, _ := json.Marshal(api.ManifestPatch{Digest: "x", Upserts: []string{line}})
		var e api.Error
		call(http.MethodPost, "/captures/"+sess.ID+"/manifest", bytes.NewReader(p), &e)
		_, after, _ := strings.Cut(e.Error, "has digest ")
		d, _, _ := strings.Cut(after, ",")
		return d
	}
	p, _ := json.Marshal(api.ManifestPatch{Digest: digestOf(), Upserts: []string{line}})
	var pr api.PatchResult
	if code := call(http.MethodPost, "/captures/"+sess.ID+"/manifest", bytes.NewReader(p), &pr); code != http.StatusOK || len(pr.Need) != 1 {
		t.Fatalf("manifest patch: %d %+v", code, pr)
	}
	var frames bytes.Buffer
	fw := api.NewFrameWriter(&frames)
	w, _ := fw.Begin(api.KindFull, "f")
	io.WriteString(w, "evil!!")
	w.Close()
	fw.Close()
	var e api.Error
	if code := call(http.MethodPost, "/captures/"+sess.ID+"/content", &frames, &e); code != http.StatusUnprocessableEntity || !strings.Contains(e.Error, "manifest says") {
		t.Fatalf("lying upload: %d %q", code, e.Error)
	}
	if r := run(t, "--data", s.data, "image", "info", "img@2"); r.code == 0 {
		t.Fatal("a lying upload published a version")
	}
	ok(t, "--data", s.data, "image", "verify", "img")
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestFullServerDisk fills the server's filesystem during a capture: the
// capture fails with a clear error and the earlier version is intact.
func TestFullServerDisk(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	if err := unix.Mount("tmpfs", data, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(data, unix.MNT_DETACH) })
	s := startServer(t, data, 0)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "small"), []byte("small"), 0o644)
	ok(t, s.args("capture", "--image", "img", "--root", src, "--no-layout")...)
	noise := make([]byte, 12<<20)
	for i := range noise {
		noise[i] = byte(i * 2654435761 >> 13)
	}
	os.WriteFile(filepath.Join(src, "big"), noise, 0o644)
	r := run(t, s.args("capture", "--image", "img", "--root", src, "--no-layout")...)
	if r.code == 0 || !strings.Contains(r.stderr, "no space left") {
		t.Fatalf("capture onto a full disk: exit %d\n%s", r.code, r.stderr)
	}
	ok(t, "--data", data, "image", "verify", "img@1")
	if r := run(t, "--data", data, "image", "info", "img@2"); r.code == 0 {
		t.Fatal("a failed capture published a version")
	}
	if ents, _ := os.ReadDir(filepath.Join(data, ".staging")); len(ents) != 0 {
		t.Errorf("staging area holds %d entries after the failure", len(ents))
	}
}

// TestStockRsyncAgainstServer lists and pulls with a stock rsync client.
func TestStockRsyncAgainstServer(t *testing.T) {
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	// With an empty server.allow_networks the daemon serves nobody.
	closed := startServerAllowing(t, "", 0, "")
	if out, err := exec.Command("rsync", "rsync://"+closed.rsyncAddr+"/").CombinedOutput(); err == nil || !strings.Contains(string(out), "access denied") {
		t.Fatalf("rsync listing without allow_networks: %v\n%s", err, out)
	}
	s := startServer(t, "", 0) // unset allow_networks: loopback may read
	ok(t, s.args("capture", "--image", "torture", "--root", tt.Root, "--no-layout")...)
	out, err := exec.Command("rsync", "rsync://"+s.rsyncAddr+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "torture@1") {
		t.Fatalf("rsync module listing: %v\n%s", err, out)
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	if out, err := exec.Command("rsync", "-a", "rsync://"+s.rsyncAddr+"/torture/", dst+"/").CombinedOutput(); err != nil {
		t.Fatalf("stock rsync pull: %v\n%s", err, out)
	}
	// Protocol 27 carries names, content and link targets; compare those.
	out, err = exec.Command("rsync", "-rlnc", "--itemize-changes", "--exclude=/"+tt.Socket, tt.Root+"/", dst+"/").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, ".d") && !strings.HasPrefix(line, "skipping non-regular") {
			t.Errorf("stock rsync pull differs in content or names: %s", line)
		}
	}
}

// TestKilledUpdateLeavesNoHalfFile kills an update while it receives a
// large file: the file in place is still the old one, whole, and the next
// update completes.
func TestKilledUpdateLeavesNoHalfFile(t *testing.T) {
	s := startServer(t, "", 0)
	golden := t.TempDir()
	big := make([]byte, 64<<20)
	fill := func(seed byte) {
		x := uint32(seed) + 1
		for i := range big {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			big[i] = byte(x)
		}
		if err := os.WriteFile(filepath.Join(golden, "big"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fill(1)
	oldSum := sha256Hex(string(big))
	ok(t, s.args("capture", "--image", "img", "--root", golden, "--no-layout")...)
	node := filepath.Join(t.TempDir(), "node")
	ok(t, s.args("deploy", "--image", "img", "--target", node)...)
	fill(2)
	ok(t, s.args("capture", "--image", "img", "--root", golden, "--no-layout")...)

	c := exec.Command(goldcast.path, s.args("update", "--image", "img", "--root", node)...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		tmps, _ := filepath.Glob(filepath.Join(node, ".goldcast-tmp-*"))
		if len(tmps) > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	b, err := os.ReadFile(filepath.Join(node, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Hex(string(b)); got != oldSum && got != sha256Hex(string(big)) {
		t.Fatalf("after a killed update big is neither the old nor the new file (sha256 %s)", got)
	}
	ok(t, s.args("update", "--image", "img", "--root", node)...)
	testtree.Oracle(t, golden, node, "etc/goldcast", "etc")
	if tmps, _ := filepath.Glob(filepath.Join(node, ".goldcast-tmp-*")); len(tmps) != 0 {
		t.Errorf("temporary files left after the second update: %v", tmps)
	}
}

// TestUpdateLeavesForeignMountsAndPins checks that an update never touches
// the directory of another filesystem mounted in the root (a live /run),
// and that a pinned version stays pinned for the next update.
func TestUpdateLeavesForeignMountsAndPins(t *testing.T) {
	s := startServer(t, "", 0)
	golden := t.TempDir()
	os.MkdirAll(filepath.Join(golden, "run"), 0o755)
	os.WriteFile(filepath.Join(golden, "f"), []byte("v1"), 0o644)
	ok(t, s.args("capture", "--image", "img", "--root", golden, "--no-layout")...)
	os.WriteFile(filepath.Join(golden, "f"), []byte("v2"), 0o644)
	ok(t, s.args("capture", "--image", "img", "--root", golden, "--no-layout")...)
	node := filepath.Join(t.TempDir(), "node")
	ok(t, s.args("deploy", "--image", "img@1", "--target", node)...)
	if err := unix.Mount("tmpfs", filepath.Join(node, "run"), "tmpfs", 0, "mode=1777,size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(node, "run"), unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(node, "run/live.pid"), []byte("1"), 0o644)
	dry := ok(t, s.args("update", "--image", "img@1", "--root", node, "--dry-run")...)
	if strings.Contains(dry.stdout, "run") {
		t.Errorf("update --dry-run wants to change the mounted /run:\n%s", dry.stdout)
	}
	ok(t, s.args("update", "--image", "img@1", "--root", node)...)
	var st unix.Stat_t
	unix.Stat(filepath.Join(node, "run"), &st)
	if st.Mode&0o7777 != 0o1777 {
		t.Errorf("update changed the mode of the mounted /run to %o", st.Mode&0o7777)
	}
	if _, err := os.Stat(filepath.Join(node, "run/live.pid")); err != nil {
		t.Errorf("update touched the mounted /run: %v", err)
	}
	// The node asked for img@1; a plain update keeps it there.
	ok(t, s.args("update", "--root", node)...)
	if b, _ := os.ReadFile(filepath.Join(node, "f")); string(b) != "v1" {
		t.Errorf("a plain update after --image img@1 moved the node to %q", b)
	}
}
