package manifest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/images/manifest"
)

const (
	treeMtime = int64(1_600_000_000_123_456_789)
	regMtime  = int64(1_700_000_000_987_654_321)
)

// Contents of the regular files of testTree, by path.
var treeFiles = map[string]string{
	"dir/sub/file.txt": "hello\n",
	"reg":              "content",
	"zz":               "linked content",
	"suid":             "#!/bin/sh\n",
	"new\nline":        "",
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, chown, mount)")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testTree builds a tree holding every type Scan knows, a socket, a
// three-member hard-link group, xattrs and fixed ns mtimes.
func testTree(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	r := t.TempDir()
	p := func(rel string) string { return filepath.Join(r, rel) }
	for _, d := range []string{"dir", "dir/sub", "aa"} {
		must(t, os.Mkdir(p(d), 0o755))
	}
	for rel, content := range treeFiles {
		must(t, os.WriteFile(p(rel), []byte(content), 0o644))
	}
	must(t, os.Link(p("zz"), p("aa/h")))
	must(t, os.Link(p("zz"), p("mm")))
	must(t, os.Symlink("target with space", p("link")))
	must(t, unix.Mkfifo(p("fifo"), 0o600))
	must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(p("sock"), unix.S_IFSOCK|0o644, 0))

	must(t, os.Chown(p("reg"), 1234, 5678))
	must(t, unix.Lsetxattr(p("reg"), "user.test", []byte("\x00bin\x00"), 0))
	must(t, unix.Lsetxattr(p("reg"), "user.a.empty", nil, 0))
	must(t, unix.Lsetxattr(p("dir"), "user.dir", []byte("d"), 0))

	modes := map[string]os.FileMode{
		".": 0o755, "dir": 0o750, "dir/sub": 0o700 | os.ModeSticky, "aa": 0o755,
		"reg": 0o640, "zz": 0o444, "suid": 0o755 | os.ModeSetuid | os.ModeSetgid,
		"new\nline": 0o600, "fifo": 0o620, "null": 0o666, "dir/sub/file.txt": 0o644,
	}
	for rel, mode := range modes {
		must(t, os.Chmod(p(rel), mode))
	}
	// Times last: nothing is created or renamed afterwards.
	for _, rel := range []string{".", "dir", "dir/sub", "dir/sub/file.txt", "aa", "zz", "suid",
		"new\nline", "link", "fifo", "null", "sock"} {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p(rel),
			[]unix.Timespec{unix.NsecToTimespec(treeMtime), unix.NsecToTimespec(treeMtime)}, unix.AT_SYMLINK_NOFOLLOW))
	}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p("reg"),
		[]unix.Timespec{unix.NsecToTimespec(0), unix.NsecToTimespec(regMtime)}, unix.AT_SYMLINK_NOFOLLOW))
	return r
}

func wantTree() []manifest.Entry {
	reg := func(p string, mode uint32) manifest.Entry {
		return manifest.Entry{Path: p, Type: manifest.TypeRegular, Mode: mode, MtimeNS: treeMtime, Size: int64(len(treeFiles[p]))}
	}
	d := func(p string, mode uint32) manifest.Entry {
		return manifest.Entry{Path: p, Type: manifest.TypeDir, Mode: mode, MtimeNS: treeMtime}
	}
	linked := func(p, to string) manifest.Entry {
		e := reg("zz", 0o444)
		e.Path, e.LinkTo = p, to
		return e
	}
	return []manifest.Entry{
		d(".", 0o755),
		d("aa", 0o755),
		linked("aa/h", ""),
		with(d("dir", 0o750), func(e *manifest.Entry) {
			e.Xattrs = []manifest.Xattr{{Name: "user.dir", Value: []byte("d")}}
		}),
		d("dir/sub", 0o1700),
		reg("dir/sub/file.txt", 0o644),
		{Path: "fifo", Type: manifest.TypeFIFO, Mode: 0o620, MtimeNS: treeMtime},
		{Path: "link", Type: manifest.TypeSymlink, Mode: 0o777, MtimeNS: treeMtime, Target: "target with space"},
		linked("mm", "aa/h"),
		reg("new\nline", 0o600),
		{Path: "null", Type: manifest.TypeCharDev, Mode: 0o666, MtimeNS: treeMtime, DevMajor: 1, DevMinor: 3},
		with(reg("reg", 0o640), func(e *manifest.Entry) {
			e.UID, e.GID, e.MtimeNS = 1234, 5678, regMtime
			e.Xattrs = []manifest.Xattr{{Name: "user.a.empty", Value: []byte{}}, {Name: "user.test", Value: []byte("\x00bin\x00")}}
		}),
		reg("suid", 0o6755),
		linked("zz", "aa/h"),
	}
}

// userXattrsOnly drops xattrs the filesystem or a security module may add
// on its own (security.selinux and the like).
func userXattrsOnly(m *manifest.Manifest) {
	for i := range m.Entries {
		m.Entries[i].Xattrs = slices.DeleteFunc(m.Entries[i].Xattrs, func(x manifest.Xattr) bool {
			return !strings.HasPrefix(x.Name, "user.")
		})
	}
}

func paths(m *manifest.Manifest) []string {
	var out []string
	for _, e := range m.Entries {
		out = append(out, e.Path)
	}
	return out
}

func TestScan(t *testing.T) {
	r := testTree(t)
	var logs bytes.Buffer
	m, err := manifest.Scan(context.Background(), r, manifest.ScanOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	userXattrsOnly(m)
	if d := cmp.Diff(wantTree(), m.Entries, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("Scan (-want +got):\n%s", d)
	}
	if !strings.Contains(logs.String(), "skipping socket") || !strings.Contains(logs.String(), "sock") {
		t.Errorf("no warning about the socket in the log: %q", logs.String())
	}
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "without sha256") {
		t.Errorf("Validate before HashContent = %v, want missing sha256 error", err)
	}

	var files atomic.Int64
	var total atomic.Int64
	progress := func(n int, b int64) { files.Add(int64(n)); total.Add(b) }
	if err := m.HashContent(context.Background(), r, 2, progress); err != nil {
		t.Fatalf("HashContent: %v", err)
	}
	want := map[string]string{}
	var wantBytes int64
	for p, c := range treeFiles {
		s := sha256.Sum256([]byte(c))
		want[p] = hex.EncodeToString(s[:])
		wantBytes += int64(len(c))
	}
	want["aa/h"], want["mm"] = want["zz"], want["zz"]
	got := map[string]string{}
	for _, e := range m.Entries {
		if e.Type == manifest.TypeRegular {
			got[e.Path] = e.SHA256
		} else if e.SHA256 != "" {
			t.Errorf("%s %q got a sha256", e.Type, e.Path)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("sha256 by path (-want +got):\n%s", d)
	}
	// Each hard-link group is read once: "zz" counts for the whole group.
	if files.Load() != 5 || total.Load() != wantBytes {
		t.Errorf("progress reported %d files, %d bytes; want 5, %d", files.Load(), total.Load(), wantBytes)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate after HashContent: %v", err)
	}
	back, err := manifest.Decode(bytes.NewReader(m.Bytes()))
	if err != nil {
		t.Fatalf("Decode(Scan result): %v", err)
	}
	if back.Digest() != m.Digest() {
		t.Errorf("scanned manifest does not survive a round trip")
	}
}

func TestScanExclude(t *testing.T) {
	r := testTree(t)
	tests := []struct {
		name     string
		patterns []string
		want     []string
	}{
		{"none", nil, []string{".", "aa", "aa/h", "dir", "dir/sub", "dir/sub/file.txt", "fifo", "link", "mm", "new\nline", "null", "reg", "suid", "zz"}},
		{"subtree pruned", []string{"/dir/sub"}, []string{".", "aa", "aa/h", "dir", "fifo", "link", "mm", "new\nline", "null", "reg", "suid", "zz"}},
		{"contents only", []string{"/dir/*"}, []string{".", "aa", "aa/h", "dir", "fifo", "link", "mm", "new\nline", "null", "reg", "suid", "zz"}},
		{"basename at depth", []string{"*.txt", "fifo"}, []string{".", "aa", "aa/h", "dir", "dir/sub", "link", "mm", "new\nline", "null", "reg", "suid", "zz"}},
		{"dir-only skips files of that name", []string{"sub/", "reg/", "zz/"}, []string{".", "aa", "aa/h", "dir", "fifo", "link", "mm", "new\nline", "null", "reg", "suid", "zz"}},
		{"everything", []string{"*"}, []string{"."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := manifest.NewExcluder(tt.patterns)
			must(t, err)
			m, err := manifest.Scan(context.Background(), r, manifest.ScanOptions{Exclude: x})
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if d := cmp.Diff(tt.want, paths(m)); d != "" {
				t.Errorf("scanned paths (-want +got):\n%s", d)
			}
		})
	}
}

func TestScanHardLinkLeaderAfterExclude(t *testing.T) {
	r := testTree(t)
	x, err := manifest.NewExcluder([]string{"/aa"})
	must(t, err)
	m, err := manifest.Scan(context.Background(), r, manifest.ScanOptions{Exclude: x})
	must(t, err)
	must(t, m.HashContent(context.Background(), r, 0, nil))
	links := map[string]string{}
	for _, e := range m.Entries {
		if e.Type == manifest.TypeRegular {
			links[e.Path] = e.LinkTo
		}
	}
	want := map[string]string{"dir/sub/file.txt": "", "mm": "", "new\nline": "", "reg": "", "suid": "", "zz": "mm"}
	if d := cmp.Diff(want, links); d != "" {
		t.Errorf("LinkTo by path (-want +got):\n%s", d)
	}
	must(t, m.Validate())
}

func TestScanOneFileSystem(t *testing.T) {
	requireRoot(t)
	r := t.TempDir()
	mnt := filepath.Join(r, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	must(t, os.WriteFile(filepath.Join(r, "before"), []byte("x"), 0o644))
	if err := unix.Mount("goldcast-test", mnt, "tmpfs", 0, "size=1m,mode=0711"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	must(t, os.MkdirAll(filepath.Join(mnt, "inside/deeper"), 0o755))
	must(t, os.WriteFile(filepath.Join(mnt, "inside/file"), []byte("y"), 0o644))

	tests := []struct {
		oneFS bool
		want  []string
	}{
		{true, []string{".", "before", "mnt"}},
		{false, []string{".", "before", "mnt", "mnt/inside", "mnt/inside/deeper", "mnt/inside/file"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("OneFileSystem=%v", tt.oneFS), func(t *testing.T) {
			m, err := manifest.Scan(context.Background(), r, manifest.ScanOptions{OneFileSystem: tt.oneFS})
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if d := cmp.Diff(tt.want, paths(m)); d != "" {
				t.Errorf("scanned paths (-want +got):\n%s", d)
			}
			// The mount point is recorded as a directory (the mounted root).
			if e := m.Entries[2]; e.Type != manifest.TypeDir || e.Mode != 0o711 {
				t.Errorf("mount point entry = %s %04o, want directory 0711", e.Type, e.Mode)
			}
		})
	}
}

func TestScanErrors(t *testing.T) {
	r := t.TempDir()
	f := filepath.Join(r, "file")
	must(t, os.WriteFile(f, nil, 0o644))
	must(t, os.Symlink(".", filepath.Join(r, "selflink")))
	tests := []struct {
		name string
		ctx  func() context.Context
		root string
		want string
	}{
		{"missing root", context.Background, filepath.Join(r, "nope"), "no such file"},
		{"root is a file", context.Background, f, "not a directory"},
		{"root is a symlink", context.Background, filepath.Join(r, "selflink"), "not a directory"},
		{"canceled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, r, context.Canceled.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manifest.Scan(tt.ctx(), tt.root, manifest.ScanOptions{})
			if err == nil {
				t.Fatalf("Scan succeeded: %v", paths(m))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestHashContentSizeChanged(t *testing.T) {
	r := t.TempDir()
	must(t, os.WriteFile(filepath.Join(r, "grows"), []byte("abc"), 0o644))
	m, err := manifest.Scan(context.Background(), r, manifest.ScanOptions{})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(r, "grows"), []byte("abcdef"), 0o644))
	err = m.HashContent(context.Background(), r, 1, nil)
	if err == nil || !strings.Contains(err.Error(), `hash "grows": size changed from 3 to 6`) {
		t.Errorf("HashContent = %v, want size change error", err)
	}
}

func TestHashFile(t *testing.T) {
	r := t.TempDir()
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	f := filepath.Join(r, "f")
	must(t, os.WriteFile(f, data, 0o644))
	must(t, os.Symlink("f", filepath.Join(r, "l")))
	sum, n, err := manifest.HashFile(f)
	must(t, err)
	want := sha256.Sum256(data)
	if sum != hex.EncodeToString(want[:]) || n != int64(len(data)) {
		t.Errorf("HashFile = %s, %d; want %x, %d", sum, n, want, len(data))
	}
	if _, _, err := manifest.HashFile(filepath.Join(r, "l")); !errors.Is(err, unix.ELOOP) {
		t.Errorf("HashFile(symlink) = %v, want ELOOP (final symlink not followed)", err)
	}
}

func TestReadXattrs(t *testing.T) {
	r := t.TempDir()
	f := filepath.Join(r, "f")
	must(t, os.WriteFile(f, nil, 0o644))
	big := bytes.Repeat([]byte{0, 0xff}, 1000) // beyond the first read buffer
	for _, x := range []manifest.Xattr{{"user.zeta", []byte("z")}, {"user.alpha", big}, {"user.mid", []byte{0}}} {
		if err := unix.Lsetxattr(f, x.Name, x.Value, 0); err != nil {
			t.Skipf("filesystem without user xattrs: %v", err)
		}
	}
	xs, err := manifest.ReadXattrs(f)
	must(t, err)
	m := &manifest.Manifest{Entries: []manifest.Entry{{Xattrs: xs}}}
	userXattrsOnly(m)
	want := []manifest.Xattr{{"user.alpha", big}, {"user.mid", []byte{0}}, {"user.zeta", []byte("z")}}
	if d := cmp.Diff(want, m.Entries[0].Xattrs); d != "" {
		t.Errorf("ReadXattrs (-want +got):\n%s", d)
	}
}

func TestParallelEach(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		n       int
		workers int
		failAt  int // -1: never
		ctx     func() context.Context
		wantErr error
	}{
		{"all run", 100, 4, -1, context.Background, nil},
		{"default workers", 10, 0, -1, context.Background, nil},
		{"nothing to do", 0, 4, -1, context.Background, nil},
		{"error stops", 1000, 1, 3, context.Background, boom},
		{"canceled", 10, 2, -1, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[int]int{}
			err := manifest.ParallelEach(tt.ctx(), tt.n, tt.workers, func(i int) error {
				mu.Lock()
				seen[i]++
				mu.Unlock()
				if i == tt.failAt {
					return boom
				}
				return nil
			})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ParallelEach = %v, want %v", err, tt.wantErr)
			}
			for i, c := range seen {
				if c != 1 {
					t.Errorf("fn(%d) called %d times", i, c)
				}
			}
			switch {
			case tt.wantErr == nil && len(seen) != tt.n:
				t.Errorf("fn called for %d indexes, want %d", len(seen), tt.n)
			case tt.failAt >= 0 && len(seen) != tt.failAt+1:
				// One worker: nothing after the failing index starts.
				t.Errorf("fn called for %d indexes after failing at %d", len(seen), tt.failAt)
			case errors.Is(tt.wantErr, context.Canceled) && len(seen) != 0:
				t.Errorf("fn called %d times under a canceled context", len(seen))
			}
		})
	}
}
