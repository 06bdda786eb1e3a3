package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// torrentLAN is a bridgeLAN whose host 0 (the server) is 10.88.0.1 and
// host i 10.88.0.(1+i), on bridge ports p0, p1, ...
type torrentLAN struct{ *bridgeLAN }

func newTorrentLAN(t *testing.T, hosts int) *torrentLAN {
	t.Helper()
	var ports, addrs []string
	for i := range hosts {
		ports = append(ports, fmt.Sprintf("p%d", i))
		addrs = append(addrs, fmt.Sprintf("10.88.0.%d", i+1))
	}
	return &torrentLAN{newBridgeLAN(t, "gt", ports, addrs)}
}

// limit caps host i's link at rate both ways (tc tbf on its eth0 and on
// the bridge port toward it).
func (l *torrentLAN) limit(t *testing.T, i int, rate string) {
	t.Helper()
	for _, dev := range [][2]string{{l.hosts[i], "eth0"}, {l.sw, l.ports[i]}} {
		if out, err := exec.Command("ip", "netns", "exec", dev[0], "tc", "qdisc", "replace", "dev", dev[1], "root",
			"tbf", "rate", rate, "burst", "256kb", "latency", "50ms").CombinedOutput(); err != nil {
			t.Fatalf("tc on %s/%s: %v\n%s", dev[0], dev[1], err, out)
		}
	}
}

const torrentServerURL = "http://10.88.0.1:8080"

// torrentServerProc is `goldcast server` in the LAN's host 0.
type torrentServerProc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

// startTorrentServer runs the server on 10.88.0.1 and waits until host 1
// reaches it.
func startTorrentServer(t *testing.T, l *torrentLAN, data string, extra ...string) *torrentServerProc {
	t.Helper()
	p := &torrentServerProc{out: &syncBuffer{}}
	args := append([]string{"netns", "exec", l.hosts[0], goldcast.path, "--data", data, "server",
		"--http", "10.88.0.1:8080", "--rsync", ""}, extra...)
	p.cmd = exec.Command("ip", args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if exec.Command("ip", "netns", "exec", l.hosts[1], "curl", "-sf", "-o", "/dev/null", torrentServerURL+"/healthz").Run() == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up:\n%s", p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop kills the server (by its PID) and waits for it.
func (p *torrentServerProc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// torrentImage imports an image "web" of size bytes of incompressible
// files (a seeded PRNG) into a fresh data directory allowing the LAN to
// read, and returns the data directory and the source tree.
func torrentImage(t *testing.T, size int) (data, src string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	dir := t.TempDir()
	data, src = filepath.Join(dir, "data"), filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	rng := mrand.New(mrand.NewPCG(uint64(size), 1))
	const fileSize = 4 << 20
	for i := 0; i*fileSize < size; i++ {
		n := min(fileSize, size-i*fileSize)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, "sub", fmt.Sprintf("blob%03d", i)), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(src, "hello"), []byte("hello\n"), 0o644)
	os.Symlink("sub/blob000", filepath.Join(src, "link"))
	ok(t, "--data", data, "image", "import", src, "--image", "web")
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte("server:\n  allow_networks: [10.88.0.0/24]\n"), 0o644)
	return data, src
}

// torrentClient is one `goldcast torrent fetch` in a LAN host.
type torrentClient struct {
	host           string
	target         string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

func startTorrentClient(t *testing.T, host, target string, extra ...string) *torrentClient {
	t.Helper()
	c := &torrentClient{host: host, target: target, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	args := append([]string{"netns", "exec", host, goldcast.path, "torrent", "fetch", "web",
		"--server", torrentServerURL, "--target", target, "--json"}, extra...)
	c.cmd = exec.Command("ip", args...)
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// progress is one JSON progress line of a fetch.
type torrentProgress struct {
	Stage   string `json:"stage"`
	Bytes   int64  `json:"bytes"`
	Total   int64  `json:"total"`
	Message string `json:"message"`
}

// lines returns the client's progress lines so far.
func (c *torrentClient) lines() []torrentProgress {
	var out []torrentProgress
	sc := bufio.NewScanner(strings.NewReader(c.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var p torrentProgress
		if json.Unmarshal(sc.Bytes(), &p) == nil && p.Stage != "" {
			out = append(out, p)
		}
	}
	return out
}

// fraction is how much of the stream the client holds.
func (c *torrentClient) fraction() float64 {
	ls := c.lines()
	if len(ls) == 0 || ls[len(ls)-1].Total == 0 {
		return 0
	}
	return float64(ls[len(ls)-1].Bytes) / float64(ls[len(ls)-1].Total)
}

func (c *torrentClient) saw(stage string) (torrentProgress, bool) {
	for _, p := range c.lines() {
		if p.Stage == stage {
			return p, true
		}
	}
	return torrentProgress{}, false
}

// fetchResult is the JSON result of a fetch.
type fetchResult struct {
	Ref            string   `json:"ref"`
	ManifestDigest string   `json:"manifest_digest"`
	FromPeers      int64    `json:"from_peers"`
	FromServer     int64    `json:"from_server"`
	Uploaded       int64    `json:"uploaded"`
	HashFailures   int64    `json:"hash_failures"`
	BannedPeers    []string `json:"banned_peers"`
	Stalled        bool     `json:"stalled"`
	DownloadNS     int64    `json:"download_ns"`
}

// wait waits for the client to exit 0 and returns its result.
func (c *torrentClient) wait(t *testing.T, timeout time.Duration) fetchResult {
	t.Helper()
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("fetch in %s: %v\nstderr:\n%s", c.host, err, tail(c.stderr.String(), 3000))
		}
	case <-time.After(timeout):
		t.Fatalf("fetch in %s did not finish within %s\nstderr:\n%s", c.host, timeout, tail(c.stderr.String(), 3000))
	}
	var r fetchResult
	if err := json.Unmarshal([]byte(c.stdout.String()), &r); err != nil {
		t.Fatalf("fetch result %q: %v", c.stdout.String(), err)
	}
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestTorrentSwarm: a server and six nodes on a bridge, every link capped
// at 100 Mbit/s so the nodes have reason to trade, a 96 MB image (more
// than the library's default window of wanted pieces). Every node
// completes and verifies, the nodes served each other a measurable share
// of the bytes (as the library's per-peer statistics attribute them), and
// the server sent few copies of the stream: at most 1.4 (1.15-1.35 here;
// nodes that ask the server for the same pieces made it 1.5-1.6).
func TestTorrentSwarm(t *testing.T) {
	const clients = 6
	const maxServerCopies = 1.4
	l := newTorrentLAN(t, clients+1)
	data, src := torrentImage(t, 96<<20)
	for i := range l.hosts {
		l.limit(t, i, "100mbit")
	}
	startTorrentServer(t, l, data)
	digest := info(t, data, "web").ManifestDigest
	dir := t.TempDir()
	var cs []*torrentClient
	for i := 1; i <= clients; i++ {
		cs = append(cs, startTorrentClient(t, l.hosts[i], filepath.Join(dir, fmt.Sprint(i)), "--seed-time", "60s"))
	}
	var fromPeers, fromServer, total int64
	for _, c := range cs {
		r := c.wait(t, 90*time.Second)
		if r.ManifestDigest != digest || r.Ref != "web@1" {
			t.Errorf("%s fetched %s %s, want web@1 %s", c.host, r.Ref, r.ManifestDigest, digest)
		}
		fromPeers += r.FromPeers
		fromServer += r.FromServer
		total += r.FromPeers + r.FromServer
		t.Logf("%s: %d bytes from peers, %d from the server, sent %d", c.host, r.FromPeers, r.FromServer, r.Uploaded)
		oracle(t, src, c.target)
	}
	share := float64(fromPeers) / float64(total)
	fi, err := os.Stat(filepath.Join(data, "streams", "web", "1.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	copies := float64(fromServer) / float64(fi.Size())
	t.Logf("peers served %.0f%% of the bytes; the server sent %.2f copies of the stream", 100*share, copies)
	if share < 0.10 {
		t.Errorf("nodes served each other %.1f%% of the bytes, want at least 10%%", 100*share)
	}
	// Each node fetching the same pieces from the server (in stream
	// order, or the same first pieces at once) costs a copy per node.
	if copies > maxServerCopies {
		t.Errorf("the server sent %.2f copies of the stream to %d nodes, want at most %.1f: the nodes fetch the same pieces from it instead of from each other", copies, clients, maxServerCopies)
	}
}

// TestTorrentServerStops stops the server once the nodes hold about 30%
// of the stream. Nodes that hold every piece among them complete from
// each other; the others report that they are stalled, and resume when
// the server returns.
func TestTorrentServerStops(t *testing.T) {
	const clients = 6
	t.Run("pieces held among the nodes", func(t *testing.T) {
		l := newTorrentLAN(t, clients+1)
		data, src := torrentImage(t, 16<<20)
		l.limit(t, 0, "40mbit")
		srv := startTorrentServer(t, l, data)
		dir := t.TempDir()
		// One node fetches first and stays to seed the wave.
		first := startTorrentClient(t, l.hosts[1], filepath.Join(dir, "1"), "--seed-time", "120s", "--seed-full")
		waitStage(t, first, "complete", 60*time.Second)
		// The others' links are slow enough to stop the server early on.
		for i := 2; i <= clients; i++ {
			l.limit(t, i, "20mbit")
		}
		var cs []*torrentClient
		for i := 2; i <= clients; i++ {
			cs = append(cs, startTorrentClient(t, l.hosts[i], filepath.Join(dir, fmt.Sprint(i)), "--seed-time", "5s", "--stall-after", "3s"))
		}
		stopAt(t, srv, cs, 0.30)
		for _, c := range cs {
			c.wait(t, 60*time.Second)
			oracle(t, src, c.target)
		}
		oracle(t, src, first.target)
	})
	t.Run("pieces missing", func(t *testing.T) {
		l := newTorrentLAN(t, clients+1)
		data, src := torrentImage(t, 32<<20)
		l.limit(t, 0, "40mbit")
		srv := startTorrentServer(t, l, data)
		dir := t.TempDir()
		var cs []*torrentClient
		for i := 1; i <= clients; i++ {
			cs = append(cs, startTorrentClient(t, l.hosts[i], filepath.Join(dir, fmt.Sprint(i)),
				"--seed-time", "120s", "--stall-after", "3s"))
		}
		stopAt(t, srv, cs, 0.30)
		// Every node either completes without the server (when the
		// pieces the server had sent cover the stream) or says it is
		// stalled.
		completed := map[*torrentClient]bool{}
		wait := time.Now().Add(30 * time.Second)
		for time.Now().Before(wait) {
			settled := 0
			for _, c := range cs {
				if _, ok := c.saw("complete"); ok {
					completed[c] = true
					settled++
				} else if _, ok := c.saw("stalled"); ok {
					settled++
				}
			}
			if settled == clients {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		var stalled int
		for _, c := range cs {
			if completed[c] {
				continue
			}
			p, ok := c.saw("stalled")
			if !ok {
				t.Fatalf("%s neither completed nor reported a stall 30 s after the server stopped, at %.0f%%\n%s", c.host, 100*c.fraction(), tail(c.stderr.String(), 2000))
			}
			if !strings.Contains(p.Message, "pieces missing") {
				t.Errorf("%s stall message %q does not say what is missing", c.host, p.Message)
			}
			stalled++
		}
		t.Logf("without the server: %d nodes completed from each other, %d stalled", len(completed), stalled)
		startTorrentServer(t, l, data)
		for _, c := range cs {
			r := c.wait(t, 150*time.Second)
			if !completed[c] {
				if _, ok := c.saw("resumed"); !ok {
					t.Errorf("%s was stalled but never reported resuming", c.host)
				}
				if !r.Stalled {
					t.Errorf("%s result does not record the stall", c.host)
				}
			}
			oracle(t, src, c.target)
		}
	})
}

// waitStage waits for a client to report stage.
func waitStage(t *testing.T, c *torrentClient, stage string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, ok := c.saw(stage); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %q within %s\n%s", c.host, stage, timeout, tail(c.stderr.String(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAt kills the server once the clients hold frac of the stream on
// average.
func stopAt(t *testing.T, srv *torrentServerProc, cs []*torrentClient, frac float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sum := 0.0
		for _, c := range cs {
			sum += c.fraction()
		}
		if sum/float64(len(cs)) >= frac {
			t.Logf("stopping the server at %.0f%%", 100*sum/float64(len(cs)))
			srv.stop()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes did not reach %.0f%% within 60 s", 100*frac)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTorrentAria2c: a stock client (aria2c from Debian) downloads a
// version's stream with goldcast's .torrent, tracker, seeder and web
// seed; the file is the published stream byte for byte, and it extracts
// to the image.
func TestTorrentAria2c(t *testing.T) {
	if _, err := exec.LookPath("aria2c"); err != nil {
		t.Skip("aria2c is not installed (Debian package aria2)")
	}
	l := newTorrentLAN(t, 2)
	data, src := torrentImage(t, 6<<20)
	startTorrentServer(t, l, data)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.hosts[1], "aria2c", "-d", dir,
		"--seed-time=0", "--enable-dht=false", "--enable-dht6=false", "--enable-peer-exchange=false",
		"--bt-enable-lpd=false", "--summary-interval=0", "--console-log-level=warn",
		torrentServerURL+"/api/v1/images/web/torrent").CombinedOutput()
	if err != nil {
		t.Fatalf("aria2c: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "web@1.tar.zst"))
	if err != nil {
		t.Fatalf("aria2c output: %v\n%s", err, out)
	}
	ls := exec.Command("ip", "netns", "exec", l.hosts[1], goldcast.path, "torrent", "ls", "--server", torrentServerURL, "--json")
	lsOut, err := ls.Output()
	if err != nil {
		t.Fatalf("torrent ls: %v", err)
	}
	var listed []struct {
		Ref          string `json:"ref"`
		StreamSHA256 string `json:"stream_sha256"`
		Size         int64  `json:"size"`
	}
	if err := json.Unmarshal(lsOut, &listed); err != nil || len(listed) != 1 {
		t.Fatalf("torrent ls: %v\n%s", err, lsOut)
	}
	sum := sha256.Sum256(got)
	if listed[0].Ref != "web@1" || hex.EncodeToString(sum[:]) != listed[0].StreamSHA256 || int64(len(got)) != listed[0].Size {
		t.Fatalf("aria2c's file: %d bytes, sha256 %x; the server publishes %+v", len(got), sum, listed[0])
	}
	// The published stream is the version: extracting it verifies every
	// file against the manifest, and the tree matches the source.
	target := filepath.Join(t.TempDir(), "root")
	ok(t, "image", "extract", filepath.Join(dir, "web@1.tar.zst"), "--target", target)
	oracle(t, src, target)
}
