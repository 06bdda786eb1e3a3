package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"
)

// syncBuffer is a bytes.Buffer for log lines written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a server on 127.0.0.1 with its events and log.
type harness struct {
	root   string
	addr   string // host:port
	events chan Transfer
	logs   *syncBuffer
}

// startServer serves root on 127.0.0.1:0 until the test ends; mod, if not
// nil, adjusts the config first.
func startServer(t *testing.T, root string, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{root: root, events: make(chan Transfer, 64), logs: &syncBuffer{}}
	cfg := Config{
		Root:       root,
		Addr:       "127.0.0.1:0",
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnTransfer: func(tr Transfer) { h.events <- tr },
		Timeout:    time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("ListenAndServe: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("ListenAndServe did not return after cancel")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs)
		}
	})
	addrCtx, addrCancel := context.WithTimeout(ctx, 5*time.Second)
	defer addrCancel()
	addr, err := srv.Addr(addrCtx)
	if err != nil {
		t.Fatal(err)
	}
	h.addr = addr.String()
	return h
}

// next returns the next transfer event.
func (h *harness) next(t *testing.T) Transfer {
	t.Helper()
	select {
	case tr := <-h.events:
		return tr
	case <-time.After(10 * time.Second):
		t.Fatal("no transfer event within 10s")
		return Transfer{}
	}
}

// url is the tftp:// URL of name on the server; name is sent as is.
func (h *harness) url(name string) string {
	return "tftp://" + h.addr + "/" + name
}

func requireCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("stock curl client not installed")
	}
}

// curl runs curl with args and returns its stderr and exit error.
func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"--silent", "--show-error", "--path-as-is"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err
}

// writeRandom writes size pseudo-random bytes (seeded by name) to path.
func writeRandom(t *testing.T, path string, size int64) {
	t.Helper()
	var seed [32]byte
	copy(seed[:], path)
	src := rand.NewChaCha8(seed)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, src, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeSparse writes a file of size bytes that is mostly a hole, with
// random 4 KiB patches at the start, around the 65536th 512-byte block
// (where the block number wraps) and at the end.
func writeSparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	src := rand.NewChaCha8([32]byte{7})
	patch := make([]byte, 4096)
	for _, off := range []int64{0, 65535*512 - 1000, size / 2, size - 4096} {
		if _, err := src.Read(patch); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(patch, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestCurlDownload fetches files around the 512-byte block boundaries, and
// one large enough for the block number to wrap, with curl at the default
// and at a negotiated block size.
func TestCurlDownload(t *testing.T) {
	requireCurl(t)
	root := t.TempDir()
	files := []struct {
		name   string
		size   int64
		sparse bool
	}{
		{name: "empty", size: 0},
		{name: "b511", size: 511},
		{name: "b512", size: 512},
		{name: "b513", size: 513},
		{name: "ipxe.efi", size: 1<<20 + 7},
		{name: "big.img", size: 33 << 20, sparse: true},
	}
	sums := map[string]string{}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if f.sparse {
			writeSparse(t, p, f.size)
		} else {
			writeRandom(t, p, f.size)
		}
		sums[f.name] = sha256File(t, p)
	}
	h := startServer(t, root, nil)

	for _, blksize := range []int{0, 1468} {
		for _, f := range files {
			t.Run(fmt.Sprintf("%s/blksize=%d", f.name, blksize), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out")
				args := []string{"-o", out}
				if blksize != 0 {
					args = append(args, "--tftp-blksize", fmt.Sprint(blksize))
				}
				if stderr, err := curl(t, append(args, h.url(f.name))...); err != nil {
					t.Fatalf("curl: %v: %s", err, stderr)
				}
				got := h.next(t)
				if got.Err != nil || got.Duration <= 0 || !got.Remote.Addr().IsLoopback() {
					t.Errorf("event %+v: want no error, a duration and a loopback remote", got)
				}
				type summary struct {
					File   string
					Bytes  int64
					SHA256 string
				}
				if f.size == 0 {
					// curl creates no file for an empty download.
					if _, err := os.Stat(out); errors.Is(err, fs.ErrNotExist) {
						if err := os.WriteFile(out, nil, 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
				want := summary{File: f.name, Bytes: f.size, SHA256: sums[f.name]}
				gotSum := summary{File: got.File, Bytes: got.Bytes, SHA256: sha256File(t, out)}
				if diff := cmp.Diff(want, gotSum); diff != "" {
					t.Errorf("download (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestTraversalRefused asks curl for names that lead out of the boot
// directory: each is refused, and nothing outside is read.
func TestTraversalRefused(t *testing.T) {
	requireCurl(t)
	base := t.TempDir()
	root := filepath.Join(base, "boot")
	outside := filepath.Join(base, "outside")
	secret := "SECRET CONTENT OUTSIDE THE ROOT\n"
	for _, d := range []string{root, outside, filepath.Join(root, "a"), filepath.Join(root, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "x"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "inside"), []byte("inside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"escape-abs":     filepath.Join(outside, "x"),
		"escape-rel":     "../outside/x",
		"sub/escape-dir": "../../outside",
		"sub/ok":         "../inside", // stays inside: allowed
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	h := startServer(t, root, nil)

	tests := []struct {
		name string
		url  string // path part of the URL, as curl sends it
		file string // the name the server receives
		err  error  // what the event's error wraps; nil for success
	}{
		{name: "dotdot", url: "../etc/passwd", file: "../etc/passwd", err: ErrPathRefused},
		{name: "absolute", url: "/etc/passwd", file: "/etc/passwd", err: ErrPathRefused},
		{name: "dotdot inside", url: "a/../../outside/x", file: "a/../../outside/x", err: ErrPathRefused},
		{name: "dotdot x", url: "a/../../x", file: "a/../../x", err: ErrPathRefused},
		{name: "backslash dotdot", url: `..%5Coutside%5Cx`, file: `..\outside\x`, err: ErrPathRefused},
		{name: "backslash absolute", url: `%5Cetc%5Cpasswd`, file: `\etc\passwd`, err: ErrPathRefused},
		{name: "absolute symlink", url: "escape-abs", file: "escape-abs", err: ErrPathRefused},
		{name: "relative symlink", url: "escape-rel", file: "escape-rel", err: ErrPathRefused},
		{name: "symlinked directory", url: "sub/escape-dir/x", file: "sub/escape-dir/x", err: ErrPathRefused},
		{name: "directory", url: "sub", file: "sub", err: ErrNotRegular},
		{name: "missing", url: "nope", file: "nope", err: fs.ErrNotExist},
		{name: "symlink inside", url: "sub/ok", file: "sub/ok"},
		{name: "backslashes", url: `sub%5Cok`, file: `sub\ok`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			stderr, err := curl(t, "-o", out, h.url(tc.url))
			got := h.next(t)
			content, _ := os.ReadFile(out)

			type summary struct {
				File      string
				CurlFails bool
				Bytes     int64
				ErrIs     bool
			}
			want := summary{File: tc.file, CurlFails: tc.err != nil, ErrIs: true}
			if tc.err == nil {
				want.Bytes = int64(len("inside\n"))
			}
			gotSum := summary{
				File:      got.File,
				CurlFails: err != nil,
				Bytes:     got.Bytes,
				ErrIs:     errors.Is(got.Err, tc.err),
			}
			if diff := cmp.Diff(want, gotSum); diff != "" {
				t.Errorf("request %q (-want +got):\n%s\ncurl: %v %s\nevent error: %v", tc.url, diff, err, stderr, got.Err)
			}
			if bytes.Contains(content, []byte("SECRET")) {
				t.Errorf("curl received the file outside the root")
			}
			if tc.err != nil && !errors.Is(tc.err, fs.ErrNotExist) &&
				!strings.Contains(h.logs.String(), fmt.Sprintf("msg=\"tftp request refused\" remote=%s ", got.Remote)) {
				t.Errorf("no refusal log line for %q in:\n%s", tc.file, h.logs)
			}
		})
	}
	if strings.Contains(h.logs.String(), "SECRET") {
		t.Errorf("the log shows the secret")
	}
}

// TestWriteRefused uploads with curl: the request is refused and nothing
// is written.
func TestWriteRefused(t *testing.T) {
	requireCurl(t)
	root := t.TempDir()
	h := startServer(t, root, nil)
	src := filepath.Join(t.TempDir(), "upload.bin")
	writeRandom(t, src, 2000)

	stderr, err := curl(t, "-T", src, h.url("upload.bin"))
	if err == nil {
		t.Errorf("curl upload succeeded: %s", stderr)
	}
	got := h.next(t)
	if !errors.Is(got.Err, ErrWriteRefused) || got.File != "upload.bin" {
		t.Errorf("event %+v: want a refused write of upload.bin", got)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("the boot directory has %d entries after a refused upload", len(entries))
	}
	if !strings.Contains(h.logs.String(), `msg="tftp write request refused"`) {
		t.Errorf("no refusal log line in:\n%s", h.logs)
	}
}

// rrq packs a read request with options.
func rrq(name string, opts ...string) []byte {
	p := binary.BigEndian.AppendUint16(nil, 1)
	for _, s := range append([]string{name, "octet"}, opts...) {
		p = append(append(p, s...), 0)
	}
	return p
}

// TestSizeProbe acts like UEFI firmware: it asks for tsize, reads the size
// from the option acknowledgement and aborts with an error packet. The
// server reports a size probe and logs nothing above debug. (The library's
// client always acknowledges an OACK, so the probe is written out here.)
func TestSizeProbe(t *testing.T) {
	root := t.TempDir()
	const size = 1<<20 + 7
	writeRandom(t, filepath.Join(root, "ipxe.efi"), size)
	h := startServer(t, root, nil)

	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := net.ResolveUDPAddr("udp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteTo(rrq("ipxe.efi", "tsize", "0", "blksize", "1468"), srv); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, tid, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if op := binary.BigEndian.Uint16(buf); n < 2 || op != 6 {
		t.Fatalf("reply opcode %d (%q), want an OACK (6)", op, buf[:n])
	}
	opts := map[string]string{}
	fields := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
	for i := 0; i+1 < len(fields); i += 2 {
		opts[fields[i]] = fields[i+1]
	}
	if diff := cmp.Diff(map[string]string{"tsize": fmt.Sprint(size), "blksize": "1468"}, opts); diff != "" {
		t.Errorf("OACK options (-want +got):\n%s", diff)
	}
	abort := append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 5), 8), "size probe done\x00"...)
	if _, err := conn.WriteTo(abort, tid); err != nil {
		t.Fatal(err)
	}

	got := h.next(t)
	if diff := cmp.Diff(Transfer{File: "ipxe.efi", SizeProbe: true}, got, cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".Remote" || p.Last().String() == ".Duration"
	}, cmp.Ignore()), cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `level=DEBUG msg="size probe"`) {
		t.Errorf("no debug size probe line in:\n%s", logs)
	}
	for _, level := range []string{"level=WARN", "level=ERROR"} {
		if strings.Contains(logs, level) {
			t.Errorf("size probe logged at %s:\n%s", level, logs)
		}
	}
}

// TestLibraryClient downloads with pin/tftp's own client, which reports
// the tsize the server sent, and asks with backslashes.
func TestLibraryClient(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{"boot/zero": 0, "boot/one": 1, "boot/f513": 513, "boot/f70000": 70000}
	for name, size := range sizes {
		writeRandom(t, filepath.Join(root, name), size)
	}
	h := startServer(t, root, func(c *Config) { c.MaxBlockSize = 1024 })

	tests := []struct {
		request string
		file    string
		blksize int
		// tsize is the size reported; the library sends no tsize for an
		// empty file.
		tsize   int64
		tsizeOK bool
	}{
		{request: "boot/zero", file: "boot/zero", blksize: 1468},
		{request: "boot/one", file: "boot/one", tsize: 1, tsizeOK: true},
		{request: "boot/f513", file: "boot/f513", blksize: 600, tsize: 513, tsizeOK: true},
		{request: "boot/f70000", file: "boot/f70000", blksize: 1468, tsize: 70000, tsizeOK: true},
		{request: `boot\f70000`, file: "boot/f70000", blksize: 8192, tsize: 70000, tsizeOK: true},
		{request: `.\boot\\.\one`, file: "boot/one", tsize: 1, tsizeOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.request, func(t *testing.T) {
			c, err := tftp.NewClient(h.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetTimeout(2 * time.Second)
			c.RequestTSize(true)
			if tc.blksize != 0 {
				c.SetBlockSize(tc.blksize)
			}
			wt, err := c.Receive(tc.request, "octet")
			if err != nil {
				t.Fatal(err)
			}
			tsize, ok := wt.(tftp.IncomingTransfer).Size()
			var buf bytes.Buffer
			if _, err := wt.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(root, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			type summary struct {
				TSize   int64
				TSizeOK bool
				Same    bool
			}
			wantSum := summary{TSize: tc.tsize, TSizeOK: tc.tsizeOK, Same: true}
			gotSum := summary{TSize: tsize, TSizeOK: ok, Same: bytes.Equal(want, buf.Bytes())}
			if diff := cmp.Diff(wantSum, gotSum); diff != "" {
				t.Errorf("download (-want +got):\n%s", diff)
			}
			if ev := h.next(t); ev.Err != nil || ev.File != tc.request || ev.Bytes != int64(len(want)) {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// TestStop checks that the server reports its address, stops when its
// context ends and serves only once.
func TestStop(t *testing.T) {
	srv, err := New(Config{Root: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(ctx) }()
	addr, err := srv.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr.String(), "127.0.0.1:") || strings.HasSuffix(addr.String(), ":0") {
		t.Errorf("Addr = %s, want 127.0.0.1 and a port", addr)
	}
	if err := srv.ListenAndServe(ctx); err == nil {
		t.Errorf("second ListenAndServe succeeded")
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ListenAndServe after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
	// The port is free again.
	conn, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		t.Errorf("port not released: %v", err)
	} else {
		conn.Close()
	}
}

// TestNew checks the config validation.
func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; empty for success
	}{
		{name: "minimal", cfg: Config{Root: dir}},
		{name: "full", cfg: Config{Root: dir, Addr: ":6969", Timeout: time.Second, MaxBlockSize: 1468}},
		{name: "no root", cfg: Config{}, wantErr: "Root (the boot directory) is empty"},
		{name: "missing root", cfg: Config{Root: filepath.Join(dir, "nope")}, wantErr: "no such file or directory"},
		{name: "root is a file", cfg: Config{Root: file}, wantErr: "is not a directory"},
		{name: "negative timeout", cfg: Config{Root: dir, Timeout: -time.Second}, wantErr: "is negative"},
		{name: "block size 512", cfg: Config{Root: dir, MaxBlockSize: 512}, wantErr: "MaxBlockSize 512 is outside"},
		{name: "block size too large", cfg: Config{Root: dir, MaxBlockSize: 65465}, wantErr: "MaxBlockSize 65465 is outside"},
		{name: "block size largest", cfg: Config{Root: dir, MaxBlockSize: 65464}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			got := ""
			if err != nil {
				got = err.Error()
				if tc.wantErr != "" && strings.Contains(got, tc.wantErr) {
					got = tc.wantErr
				}
			}
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("New error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRequestPath checks the name sanitiser on its own.
func TestRequestPath(t *testing.T) {
	tests := []struct {
		name    string
		want    string
		refused bool
	}{
		{name: "ipxe.efi", want: "ipxe.efi"},
		{name: "pxelinux.cfg/01-aa-bb", want: "pxelinux.cfg/01-aa-bb"},
		{name: "./a//b/./c", want: "a/b/c"},
		{name: "dir/", want: "dir"},
		{name: `boot\x64\bootmgr.efi`, want: "boot/x64/bootmgr.efi"},
		{name: "...", want: "..."},
		{name: "..a/b..", want: "..a/b.."},
		{name: "", refused: true},
		{name: ".", refused: true},
		{name: "./", refused: true},
		{name: "..", refused: true},
		{name: "../etc/passwd", refused: true},
		{name: "a/../b", refused: true},
		{name: "a/../../x", refused: true},
		{name: "a/..", refused: true},
		{name: "/etc/passwd", refused: true},
		{name: "//etc/passwd", refused: true},
		{name: `\etc\passwd`, refused: true},
		{name: `..\x`, refused: true},
		{name: `a\..\..\x`, refused: true},
		{name: "a\x00b", refused: true},
		{name: "caf\xe9", refused: true},
		{name: "café", want: "café"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := requestPath(tc.name)
			if err != nil && !errors.Is(err, ErrPathRefused) {
				t.Errorf("error %v does not wrap ErrPathRefused", err)
			}
			type result struct {
				Path    string
				Refused bool
			}
			if diff := cmp.Diff(result{tc.want, tc.refused}, result{got, err != nil}); diff != "" {
				t.Errorf("requestPath(%q) (-want +got):\n%s (err %v)", tc.name, diff, err)
			}
		})
	}
}

// FuzzRequestPath checks that whatever the sanitiser accepts is a clean
// local path that stays under the root when joined to it, and that it is
// stable.
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{"ipxe.efi", "../etc/passwd", `a\..\b`, "/x", "a//./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := requestPath(name)
		if err != nil {
			if !errors.Is(err, ErrPathRefused) {
				t.Fatalf("requestPath(%q): error %v does not wrap ErrPathRefused", name, err)
			}
			return
		}
		if !filepath.IsLocal(p) || !fs.ValidPath(p) || strings.ContainsAny(p, "\\\x00") {
			t.Fatalf("requestPath(%q) = %q: not a clean local path", name, p)
		}
		for part := range strings.SplitSeq(p, "/") {
			if part == ".." || part == "." || part == "" {
				t.Fatalf("requestPath(%q) = %q: component %q", name, p, part)
			}
		}
		if j := filepath.Join("/srv/boot", p); !strings.HasPrefix(j, "/srv/boot/") {
			t.Fatalf("requestPath(%q) = %q joins to %q, outside the root", name, p, j)
		}
		if again, err := requestPath(p); err != nil || again != p {
			t.Fatalf("requestPath(%q) = %q, then %q, %v", name, p, again, err)
		}
		if slices.Contains(strings.Split(strings.ReplaceAll(name, `\`, "/"), "/"), "..") {
			t.Fatalf("requestPath(%q) = %q: accepted a name with a .. component", name, p)
		}
	})
}
