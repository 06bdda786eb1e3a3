package stream

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/signing"
	"github.com/goldcast/goldcast/internal/testtree"
)

// scanned returns the full manifest of a tree.
func scanned(t *testing.T, root string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Scan(context.Background(), root, manifest.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.HashContent(context.Background(), root, 0, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

// encode writes the tree at root as a stream.
func encode(t *testing.T, root string, m *manifest.Manifest, sig []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := Write(context.Background(), &buf, m, Meta{Manifest: m.Bytes(), Signature: sig},
		func(e *manifest.Entry) (io.ReadCloser, error) { return os.Open(filepath.Join(root, e.Path)) }, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func privileged() materialize.Options { return materialize.Options{Unprivileged: os.Geteuid() != 0} }

func TestRoundTripTortureTree(t *testing.T) {
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	m := scanned(t, tt.Root)
	data := encode(t, tt.Root, m, nil)
	dst := filepath.Join(t.TempDir(), "dst")
	res, err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{Materialize: privileged()})
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	if res.Digest != m.Digest() {
		t.Errorf("digest %s, want %s", res.Digest, m.Digest())
	}
	testtree.Oracle(t, tt.Root, dst, tt.Socket)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, tt.Sparse), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("sparse file %s uses %d bytes on disk after extraction; holes were filled", tt.Sparse, st.Blocks*512)
	}
	// The extracted tree scans to the very same manifest.
	if got := scanned(t, dst).Digest(); got != m.Digest() {
		t.Errorf("extracted tree scans to %s, want %s", got, m.Digest())
	}
}

// hostileFixture is a target directory beside a sentinel directory that
// no extraction may touch.
type hostileFixture struct {
	parent, target, outside string
}

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	parent := t.TempDir()
	f := &hostileFixture{parent: parent, target: filepath.Join(parent, "target"), outside: filepath.Join(parent, "outside")}
	if err := os.Mkdir(f.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.outside, "victim"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// check asserts nothing outside the target changed and the target holds
// nothing (a failed extraction takes back what it wrote).
func (f *hostileFixture) check(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(f.parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "outside" && e.Name() != "target" {
			t.Errorf("extraction created %q outside the target", e.Name())
		}
	}
	outs, _ := os.ReadDir(f.outside)
	if len(outs) != 1 {
		t.Errorf("outside directory holds %d entries, want only the victim", len(outs))
	}
	if b, _ := os.ReadFile(filepath.Join(f.outside, "victim")); string(b) != "original" {
		t.Errorf("victim file changed to %q", b)
	}
	if ents, err := os.ReadDir(f.target); err == nil && len(ents) > 0 {
		t.Errorf("target still holds %d entries after a failed extraction", len(ents))
	}
}

// rawStream builds a stream by hand: a manifest entry (any bytes) then
// the given tar entries, so tests can lie in every way.
type rawEntry struct {
	hdr  *tar.Header
	body []byte
}

func rawStream(t *testing.T, manifestText string, sig []byte, entries []rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := writeMeta(tw, Meta{Manifest: []byte(manifestText), Signature: sig}); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		e.hdr.Format = tar.FormatPAX
		e.hdr.Size = int64(len(e.body))
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const sumHello = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" // sha256("hello\n")

func TestHostileStreams(t *testing.T) {
	mtime := time.Unix(1600000000, 0)
	dirHdr := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime}
	}
	fileHdr := func(name string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: mtime}
	}
	root := ". d 0755 0 0 1600000000000000000\n"
	hello := " f 0644 0 0 1600000000000000000 size=6 sha256=" + sumHello + "\n"
	tests := []struct {
		name     string
		manifest string
		entries  func(f *hostileFixture) []rawEntry
		want     []error
	}{
		{
			name:     "dot-dot path in manifest",
			manifest: manifest.Header + "\n" + root + "../escape" + hello,
			entries: func(*hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil}, {fileHdr("../escape"), []byte("hello\n")}}
			},
			want: []error{manifest.ErrUnsafePath},
		},
		{
			name:     "absolute path in manifest",
			manifest: manifest.Header + "\n" + root + "/etc/escape" + hello,
			entries: func(*hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil}, {fileHdr("/etc/escape"), []byte("hello\n")}}
			},
			want: []error{manifest.ErrUnsafePath},
		},
		{
			name: "symlink then write through it",
			manifest: manifest.Header + "\n" + root +
				"link l 0777 0 0 1600000000000000000 target=OUTSIDE\n" +
				"link/victim" + hello,
			entries: func(f *hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil},
					{&tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: f.outside, ModTime: mtime, Mode: 0o777}, nil},
					{fileHdr("link/victim"), []byte("hello\n")}}
			},
			want: []error{manifest.ErrUnsafePath},
		},
		{
			name:     "tar says symlink where the manifest says directory",
			manifest: manifest.Header + "\n" + root + "d d 0755 0 0 1600000000000000000\n" + "d/victim" + hello,
			entries: func(f *hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil},
					{&tar.Header{Typeflag: tar.TypeSymlink, Name: "d/", Linkname: f.outside, ModTime: mtime, Mode: 0o777}, nil},
					{fileHdr("d/victim"), []byte("hello\n")}}
			},
			want: []error{ErrMismatch},
		},
		{
			name:     "tar entry escapes where the manifest is honest",
			manifest: manifest.Header + "\n" + root + "x" + hello,
			entries: func(*hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil}, {fileHdr("../outside/victim"), []byte("hello\n")}}
			},
			want: []error{ErrMismatch, manifest.ErrUnsafePath},
		},
		{
			name:     "content differs from its digest",
			manifest: manifest.Header + "\n" + root + "x" + hello,
			entries: func(*hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil}, {fileHdr("x"), []byte("HELLO\n")}}
			},
			want: []error{ErrMismatch},
		},
		{
			name:     "entry not in the manifest",
			manifest: manifest.Header + "\n" + root + "x" + hello,
			entries: func(*hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil}, {fileHdr("x"), []byte("hello\n")}, {fileHdr("y"), []byte("hello\n")}}
			},
			want: []error{ErrMismatch},
		},
		{
			name:     "mode differs from the manifest",
			manifest: manifest.Header + "\n" + root + "x" + hello,
			entries: func(*hostileFixture) []rawEntry {
				h := fileHdr("x")
				h.Mode = 0o4755
				return []rawEntry{{dirHdr("./"), nil}, {h, []byte("hello\n")}}
			},
			want: []error{ErrMismatch},
		},
		{
			name:     "stream ends before the manifest does",
			manifest: manifest.Header + "\n" + root + "x" + hello + "y" + hello,
			entries: func(*hostileFixture) []rawEntry {
				return []rawEntry{{dirHdr("./"), nil}, {fileHdr("x"), []byte("hello\n")}}
			},
			want: []error{ErrTruncated},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newHostileFixture(t)
			text := strings.ReplaceAll(tc.manifest, "OUTSIDE", f.outside)
			data := rawStream(t, text, nil, tc.entries(f))
			_, err := Extract(context.Background(), bytes.NewReader(data), f.target, ExtractOptions{Materialize: privileged()})
			if err == nil {
				t.Fatal("hostile stream was accepted")
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q is not %q", err, w)
				}
			}
			f.check(t)
		})
	}
}

func TestNoManifest(t *testing.T) {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	zw.Close()
	f := newHostileFixture(t)
	_, err := Extract(context.Background(), &buf, f.target, ExtractOptions{})
	if !errors.Is(err, ErrNoManifest) {
		t.Fatalf("error %v, want ErrNoManifest", err)
	}
	f.check(t)
}

// smallTree makes a tree with enough content that truncation and
// corruption land inside file data.
func smallTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"a", "a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []string{"a/one", "a/b/two", "c/three", "four"} {
		data := make([]byte, 200_000+i)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(root, p), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestTruncatedAndCorruptStreams(t *testing.T) {
	src := smallTree(t)
	m := scanned(t, src)
	data := encode(t, src, m, nil)
	for _, cut := range []int{20, len(data) / 3, len(data) / 2, len(data) - 10} {
		f := newHostileFixture(t)
		_, err := Extract(context.Background(), bytes.NewReader(data[:cut]), f.target, ExtractOptions{})
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("cut at %d of %d: error %v, want truncated or corrupt", cut, len(data), err)
		}
		f.check(t)
	}
	for _, at := range []int{len(data) / 4, len(data) / 2, len(data) * 3 / 4} {
		bad := bytes.Clone(data)
		for i := at; i < at+16; i++ {
			bad[i] ^= 0x5a
		}
		f := newHostileFixture(t)
		_, err := Extract(context.Background(), bytes.NewReader(bad), f.target, ExtractOptions{})
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMismatch) {
			t.Errorf("corrupted at %d: error %v, want corrupt or mismatch", at, err)
		}
		f.check(t)
	}
}

func TestSignatures(t *testing.T) {
	src := smallTree(t)
	m := scanned(t, src)
	dir := t.TempDir()
	if _, err := signing.GenerateKey(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.GenerateKey(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	privA, _ := signing.LoadPrivateKey(filepath.Join(dir, "a"))
	pubA, _ := signing.LoadPublicKey(filepath.Join(dir, "a.pub"))
	pubB, _ := signing.LoadPublicKey(filepath.Join(dir, "b.pub"))
	sig, err := signing.Sign(privA, m.Digest())
	if err != nil {
		t.Fatal(err)
	}
	signed := encode(t, src, m, sig.Marshal())
	unsigned := encode(t, src, m, nil)
	verify := func(pub ed25519.PublicKey) func(string, []byte) error {
		return func(d string, raw []byte) error {
			if raw == nil {
				return signing.Verify(pub, d, nil)
			}
			s, err := signing.Unmarshal(raw)
			if err != nil {
				return err
			}
			return signing.Verify(pub, d, s)
		}
	}
	tests := []struct {
		name string
		data []byte
		pub  ed25519.PublicKey
		ok   bool
	}{
		{"right key", signed, pubA, true},
		{"wrong key", signed, pubB, false},
		{"unsigned", unsigned, pubA, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newHostileFixture(t)
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), f.target, ExtractOptions{Verify: verify(tc.pub)})
			if tc.ok {
				if err != nil {
					t.Fatalf("extract: %v", err)
				}
				return
			}
			if !errors.Is(err, signing.ErrBadSignature) {
				t.Fatalf("error %v, want a bad signature", err)
			}
			f.check(t)
		})
	}
	// A manifest modified after signing no longer matches its signature.
	m.Entries[1].Mode ^= 0o1
	f := newHostileFixture(t)
	_, err = Extract(context.Background(), bytes.NewReader(encode(t, src, m, sig.Marshal())), f.target, ExtractOptions{Verify: verify(pubA)})
	if !errors.Is(err, signing.ErrBadSignature) || !strings.Contains(err.Error(), "modified after signing") {
		t.Fatalf("modified manifest: error %v", err)
	}
	f.check(t)
}

func TestTargetMustBeEmpty(t *testing.T) {
	src := smallTree(t)
	data := encode(t, src, scanned(t, src), nil)
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Extract(context.Background(), bytes.NewReader(data), target, ExtractOptions{})
	if !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("error %v, want ErrTargetNotEmpty", err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "keep")); string(b) != "mine" {
		t.Fatal("a file in the non-empty target was touched")
	}
	// lost+found alone (a fresh filesystem) is fine.
	fresh := t.TempDir()
	os.Mkdir(filepath.Join(fresh, "lost+found"), 0o700)
	if _, err := Extract(context.Background(), bytes.NewReader(data), fresh, ExtractOptions{}); err != nil {
		t.Fatalf("extract next to lost+found: %v", err)
	}
}

func TestReuseLinksIdenticalFiles(t *testing.T) {
	src := smallTree(t)
	m := scanned(t, src)
	data := encode(t, src, m, nil)
	dst := filepath.Join(t.TempDir(), "dst")
	res, err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{
		Reuse: func(e *manifest.Entry) string {
			if e.Path == "four" {
				return filepath.Join(src, "four")
			}
			return ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused != 1 {
		t.Errorf("reused %d files, want 1", res.Reused)
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(src, "four"), &a)
	unix.Stat(filepath.Join(dst, "four"), &b)
	if a.Ino != b.Ino {
		t.Error("reused file does not share the source inode")
	}
}

func TestFullDiskIsALocalError(t *testing.T) {
	src := smallTree(t) // ~800 KB of random data
	data := encode(t, src, scanned(t, src), nil)
	target := t.TempDir()
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	os.Mkdir(filepath.Join(target, "lost+found"), 0o700)
	_, err := Extract(context.Background(), bytes.NewReader(data), target, ExtractOptions{})
	if err == nil {
		t.Fatal("extraction into a full filesystem succeeded")
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated) || !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("full disk reported as %v; want a local ENOSPC error, not a stream problem", err)
	}
	ents, _ := os.ReadDir(target)
	if len(ents) != 1 || ents[0].Name() != "lost+found" {
		t.Errorf("after the failure the target holds %v; want only the pre-existing lost+found", ents)
	}
}

// TestMountedTarget extracts into an installer-style target: a/b is the
// mount point of another filesystem (a tmpfs here), a leads to it. The
// files under a/b land on that filesystem; stray files or plain empty
// directories still make the target not empty.
func TestMountedTarget(t *testing.T) {
	src := smallTree(t)
	data := encode(t, src, scanned(t, src), nil)
	target := t.TempDir()
	mp := filepath.Join(target, "a", "b")
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mp, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mp, unix.MNT_DETACH) })
	os.Mkdir(filepath.Join(mp, "lost+found"), 0o700)

	if _, err := Extract(context.Background(), bytes.NewReader(data), target, ExtractOptions{}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("without MountedTarget: %v, want ErrTargetNotEmpty", err)
	}
	if _, err := Extract(context.Background(), bytes.NewReader(data), target, ExtractOptions{MountedTarget: true, Materialize: privileged()}); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(mp, "two"), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("a/b/two is not on the mounted tmpfs (statfs %v, type %x)", err, st.Type)
	}
	oracleTree(t, src, target, "a/b/lost+found")

	for name, setup := range map[string]func(dir string){
		"stray file":      func(dir string) { os.WriteFile(filepath.Join(dir, "stray"), nil, 0o644) },
		"plain empty dir": func(dir string) { os.Mkdir(filepath.Join(dir, "nothing-mounted"), 0o755) },
	} {
		dir := t.TempDir()
		setup(dir)
		if _, err := Extract(context.Background(), bytes.NewReader(data), dir, ExtractOptions{MountedTarget: true}); !errors.Is(err, ErrTargetNotEmpty) {
			t.Errorf("%s: %v, want ErrTargetNotEmpty", name, err)
		}
	}
}

// oracleTree compares two trees with rsync's itemized dry run, skipping
// the named paths of dst.
func oracleTree(t *testing.T, src, dst string, skip ...string) {
	t.Helper()
	args := []string{"-aHAXn", "--numeric-ids", "-c", "--delete", "-i"}
	for _, s := range skip {
		args = append(args, "--exclude=/"+s)
	}
	out, err := exec.Command("rsync", append(args, src+"/", dst+"/")...).CombinedOutput()
	if err != nil {
		t.Skipf("rsync: %v %s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("trees differ:\n%s", out)
	}
}

// brokenPipe is a writer whose reader goes away after limit bytes.
type brokenPipe struct{ limit int }

var errReaderGone = errors.New("reader went away")

func (b *brokenPipe) Write(p []byte) (int, error) {
	if len(p) > b.limit {
		n := b.limit
		b.limit = 0
		return n, errReaderGone
	}
	b.limit -= len(p)
	return len(p), nil
}

// TestWriteToAVanishedReader: a stream whose reader goes away mid-file
// fails with the writer's error, not as a file changed on disk.
func TestWriteToAVanishedReader(t *testing.T) {
	root := smallTree(t) // files of ~200 KB
	m := scanned(t, root)
	err := Write(context.Background(), &brokenPipe{limit: 300_000}, m, Meta{Manifest: m.Bytes()},
		func(e *manifest.Entry) (io.ReadCloser, error) { return os.Open(filepath.Join(root, e.Path)) }, WriteOptions{})
	if !errors.Is(err, errReaderGone) || strings.Contains(fmt.Sprint(err), "changed since") {
		t.Fatalf("error %v; want the writer's error", err)
	}
}
