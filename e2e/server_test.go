package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/internal/testtree"
	"github.com/goldcast/goldcast/server"
)

// testServer is a goldcast server started in-process on loopback.
type testServer struct {
	url, rsyncAddr, data, tokenFile string
}

// startServer runs a server on 127.0.0.1 with ephemeral ports until the
// test ends.
func startServer(t *testing.T, data string, captureTimeout time.Duration) *testServer {
	return startServerConfigured(t, data, captureTimeout, nil)
}

// startServerAllowing writes server.allow_networks: [allow] (e.g.
// "10.0.0.0/8"; "" for an empty list, which lets nobody read without a
// token) before starting; startServer leaves it unset (loopback may read).
func startServerAllowing(t *testing.T, data string, captureTimeout time.Duration, allow string) *testServer {
	return startServerConfigured(t, data, captureTimeout, &allow)
}

func startServerConfigured(t *testing.T, data string, captureTimeout time.Duration, allow *string) *testServer {
	t.Helper()
	if data == "" {
		data = filepath.Join(t.TempDir(), "data")
	}
	if allow != nil {
		os.MkdirAll(data, 0o755)
		cfg := "server:\n  allow_networks: [" + *allow + "]\n"
		if err := os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan server.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Config{
			DataDir: data, HTTPAddr: "127.0.0.1:0", RsyncAddr: "127.0.0.1:0",
			CaptureTimeout: captureTimeout, Ready: func(r server.Ready) { ready <- r },
		})
	}()
	var r server.Ready
	select {
	case r = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("server did not start within 20 s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	})
	return &testServer{url: r.URL, rsyncAddr: r.RsyncAddr, data: data, tokenFile: r.TokenPath}
}

// args prefixes the flags that reach this server.
func (s *testServer) args(args ...string) []string {
	return append(args, "--server", s.url, "--token-file", s.tokenFile)
}

func TestServerCaptureDeployTorture(t *testing.T) {
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	s := startServer(t, "", 0)
	r := ok(t, s.args("capture", "--image", "torture", "--root", tt.Root, "--no-layout")...)
	if !strings.Contains(r.stdout, "published torture@1") || !strings.Contains(r.stdout, "full stream") {
		t.Fatalf("capture:\n%s", r.stdout)
	}
	for _, transport := range []string{"http", "rsync"} {
		t.Run(transport, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "root")
			ok(t, s.args("deploy", "--image", "torture", "--target", dst, "--transport", transport)...)
			oracle(t, tt.Root, dst, tt.Skipped()...)
		})
	}
	// A deploy never lands on a non-empty root by accident.
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "precious"), []byte("x"), 0o644)
	if r := run(t, s.args("deploy", "--image", "torture", "--target", busy)...); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("deploy into a non-empty target: exit %d %s", r.code, r.stderr)
	}
}

func TestServerCaptureDeployDebian(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	root := testtree.Debootstrap(t)
	s := startServer(t, "", 0)
	ok(t, s.args("capture", "--image", "deb", "--root", root, "--no-layout")...)
	dst := filepath.Join(t.TempDir(), "root")
	ok(t, s.args("deploy", "--image", "deb", "--target", dst)...)
	// What captures skip by default (/dev and /run contents, apt's
	// package cache...) is not expected on the deployed root.
	oracle(t, root, dst, captureDefaults()...)
	// Capturing the same tree again publishes nothing.
	if r := ok(t, s.args("capture", "--image", "deb", "--root", root, "--no-layout")...); !strings.Contains(r.stdout, "nothing published") {
		t.Fatalf("recapture of an unchanged tree:\n%s", r.stdout)
	}
}

func TestServerAuthAndErrors(t *testing.T) {
	s := startServerAllowing(t, "", 0, "10.0.0.0/8")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	bad := filepath.Join(t.TempDir(), "bad.token")
	os.WriteFile(bad, []byte(strings.Repeat("0", 64)), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"wrong token", []string{"capture", "--server", s.url, "--token-file", bad, "--image", "a", "--root", src, "--no-layout"}, "401 Unauthorized"},
		{"no token", []string{"capture", "--server", s.url, "--image", "a", "--root", src, "--no-layout"}, "missing admin token"},
		{"read without token from a network not allowed", []string{"deploy", "--server", s.url, "--image", "a", "--target", filepath.Join(t.TempDir(), "x")}, "403 Forbidden"},
		{"unknown image", s.args("deploy", "--image", "nope", "--target", filepath.Join(t.TempDir(), "x")), `image "nope": not found`},
		{"bad image name", s.args("capture", "--image", "../etc", "--root", src, "--no-layout"), "image name"},
		{"no server", []string{"deploy", "--image", "a", "--target", "/tmp/x"}, "--server URL is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant it to mention %q", r.code, r.stderr, tc.want)
			}
		})
	}
	out, err := exec.Command("curl", "-s", s.url+"/healthz").Output()
	if err == nil && strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("/healthz = %q", out)
	}
	if out, err := exec.Command("curl", "-s", s.url+"/metrics").Output(); err == nil && !strings.Contains(string(out), "goldcast_http_requests_total") {
		t.Errorf("/metrics lacks goldcast_http_requests_total")
	}
}

// oracle wraps the fidelity oracle; /etc/goldcast on a node is its own.
func oracle(t *testing.T, src, dst string, skip ...string) {
	t.Helper()
	testtree.Oracle(t, src, dst, append(skip, "etc/goldcast")...)
}

// captureDefaults returns the default capture excludes anchored at the
// root, in the form the oracle takes.
func captureDefaults() []string {
	var out []string
	for _, p := range client.DefaultCaptureExcludes() {
		if strings.HasPrefix(p, "/") {
			out = append(out, strings.TrimPrefix(p, "/"))
		}
	}
	return out
}

// TestServerBinaryTLSEventsAndShutdown runs `goldcast server` as users do:
// a self-signed certificate pinned by clients, the event log, and a
// graceful stop on SIGTERM.
func TestServerBinaryTLSEventsAndShutdown(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	srv := exec.Command(goldcast.path, "--data", data, "server", "--http", "127.0.0.1:0", "--rsync", "127.0.0.1:0", "--tls-self-signed")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	var url, fingerprint string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && (url == "" || fingerprint == "") {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "API:"); ok {
			url = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "TLS certificate sha256: "); ok {
			fingerprint, _, _ = strings.Cut(v, " ")
		}
	}
	go io.Copy(io.Discard, stdout)
	if !strings.HasPrefix(url, "https://") || len(fingerprint) != 64 {
		t.Fatalf("server announced url %q fingerprint %q", url, fingerprint)
	}
	token := filepath.Join(data, "admin.token")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	base := []string{"capture", "--server", url, "--token-file", token, "--image", "img", "--root", src, "--no-layout"}
	if r := run(t, base...); r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("capture without the pin: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, append(base, "--tls-fingerprint", strings.Repeat("ab", 32))...); r.code == 0 || !strings.Contains(r.stderr, "does not match the pinned") {
		t.Fatalf("capture with a wrong pin: exit %d %s", r.code, r.stderr)
	}
	ok(t, append(base, "--tls-fingerprint", fingerprint)...)
	out, err := exec.Command("curl", "-sk", "-H", "X-Goldcast-Token: "+readToken(t, token), url+"/api/v1/events").Output()
	if err != nil || !strings.Contains(string(out), `"published img@1"`) {
		t.Errorf("event log: %v\n%s", err, out)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("server exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop within 15 s of SIGTERM")
	}
}

// TestCaptureRecordsProvenanceAndLayout checks what a capture writes into
// image.json: source host and path, capture time, and the disk layout.
func TestCaptureRecordsProvenanceAndLayout(t *testing.T) {
	s := startServer(t, "", 0)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	before := time.Now().Add(-time.Second)
	ok(t, s.args("capture", "--image", "img", "--root", src, "--comment", "first")...)
	var info struct {
		SourceHost string          `json:"source_host"`
		SourcePath string          `json:"source_path"`
		CapturedAt time.Time       `json:"captured_at"`
		Comment    string          `json:"comment"`
		Layout     json.RawMessage `json:"disk_layout"`
	}
	r := ok(t, "--data", s.data, "image", "info", "img", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if info.SourceHost != host || info.SourcePath != src || info.Comment != "first" || info.CapturedAt.Before(before) {
		t.Errorf("provenance: %+v", info)
	}
	if !strings.Contains(string(info.Layout), `"filesystems"`) {
		t.Errorf("disk layout not recorded: %s", info.Layout)
	}
}

// TestAcceptanceInterface runs the spellings the issue names, without a
// token for the reads: a server with no configuration lets loopback read.
func TestAcceptanceInterface(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, 0)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	ok(t, "capture", "--server", s.url, "--token-file", filepath.Join(data, "admin.token"), "--image", "img", "--root", src)
	dst := filepath.Join(t.TempDir(), "dst")
	ok(t, "deploy", "--server", s.url, "--image", "img", "--target", dst)
	testtree.Oracle(t, src, dst)
	ok(t, "update", "--server", s.url, "--image", "img", "--root", dst, "--dry-run")
	ok(t, "update", "--server", s.url, "--image", "img", "--root", dst, "--no-delete")
}

// TestConfigReload edits goldcast.yaml under a running server: a valid
// change takes effect without a restart, an invalid one is refused and
// the running configuration stays.
func TestConfigReload(t *testing.T) {
	s := startServerAllowing(t, "", 0, "10.0.0.0/8")
	read := func() int {
		resp, err := http.Get(s.url + "/api/v1/images")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for read() != want {
			if time.Now().After(deadline) {
				t.Fatalf("reads still answer %d, want %d", read(), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if got := read(); got != http.StatusForbidden {
		t.Fatalf("read from loopback with 10.0.0.0/8 allowed: %d", got)
	}
	cfgPath := filepath.Join(s.data, "goldcast.yaml")
	os.WriteFile(cfgPath, []byte("# now loopback may read\nserver:\n  allow_networks: [127.0.0.0/8]\n"), 0o644)
	waitFor(http.StatusOK)
	os.WriteFile(cfgPath, []byte("server:\n  allow_networks: [not-a-network]\n"), 0o644)
	time.Sleep(3 * time.Second) // two polls
	if got := read(); got != http.StatusOK {
		t.Fatalf("an invalid file replaced the running configuration: reads answer %d", got)
	}
}

// TestSIGHUPReloads edits goldcast.yaml under a server that does not poll
// and reloads it with SIGHUP.
func TestSIGHUPReloads(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	cfgPath := filepath.Join(data, "goldcast.yaml")
	os.WriteFile(cfgPath, []byte("server:\n  allow_networks: [10.0.0.0/8]\n"), 0o644)
	srv := exec.Command(goldcast.path, "--data", data, "server", "--http", "127.0.0.1:0", "--rsync", "", "--config-poll", "1h")
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	var url string
	sc := bufio.NewScanner(stdout)
	for url == "" && sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "API:"); ok {
			url = strings.TrimSpace(v)
		}
	}
	go io.Copy(io.Discard, stdout)
	read := func() int {
		resp, err := http.Get(url + "/api/v1/images")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := read(); got != http.StatusForbidden {
		t.Fatalf("before the edit reads answer %d", got)
	}
	os.WriteFile(cfgPath, []byte("server:\n  allow_networks: [127.0.0.0/8]\n"), 0o644)
	time.Sleep(200 * time.Millisecond)
	if got := read(); got != http.StatusForbidden {
		t.Fatalf("the server reloaded without SIGHUP (poll is 1h): %d", got)
	}
	srv.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for read() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the configuration")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
