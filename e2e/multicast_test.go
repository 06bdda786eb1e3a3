package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/internal/testtree"
)

// mcastNet is one sender namespace and N receiver namespaces on a
// bridgeLAN (hub): the sender is 10.79.0.1 on bridge port s0, receiver i
// 10.79.0.(10+i) on port ri.
type mcastNet struct {
	hub, sender string
	receivers   []string
}

func newMcastNet(t *testing.T, n int) *mcastNet {
	t.Helper()
	ports, addrs := []string{"s0"}, []string{"10.79.0.1"}
	for i := range n {
		ports = append(ports, fmt.Sprintf("r%d", i))
		addrs = append(addrs, fmt.Sprintf("10.79.0.%d", 10+i))
	}
	l := newBridgeLAN(t, "gcm", ports, addrs)
	m := &mcastNet{hub: l.sw, sender: l.hosts[0], receivers: l.hosts[1:]}
	// The sender batches packets with UDP GSO. Have its veth cut the
	// batches into frames, as a NIC does on the wire: otherwise a whole
	// batch would cross the bridge as one buffer, and the nftables loss
	// rule would drop batches instead of packets.
	ipCmd(t, "-n", m.sender, "link", "set", "eth0", "gso_max_segs", "1")
	return m
}

// lossy drops pct% of UDP packets arriving in namespace ns (this kernel
// has no netem).
func lossy(t *testing.T, ns string, pct int) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft (Debian package nftables) is not installed: packet loss needs it")
	}
	rule := fmt.Sprintf(`add table inet loss
add chain inet loss in { type filter hook input priority 0; }
add rule inet loss in meta l4proto udp numgen random mod 100 < %d drop
`, pct)
	c := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	c.Stdin = strings.NewReader(rule)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

// proc is a goldcast started in a namespace.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	code           int
}

func startIn(t *testing.T, ns string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, goldcast.path}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process, failing the test after d.
func (p *proc) wait(t *testing.T, d time.Duration, what string) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not finish within %s\nstdout:\n%s\nstderr:\n%s", what, d, p.stdout.String(), p.stderr.String())
		return -1
	}
}

// sendReport is the part of the sender's final --json line the tests read.
type sendReport struct {
	Receivers []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"receivers"`
	Repairs int64 `json:"repairs"`
	Passes  int   `json:"passes"`
}

func (p *proc) report(t *testing.T) (sendReport, map[string]string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
	var r sendReport
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("sender report: %v\n%s", err, p.stdout.String())
	}
	states := map[string]string{}
	for _, x := range r.Receivers {
		states[x.Name] = x.State
	}
	return r, states
}

// bulkTree writes files of seeded random bytes (incompressible) under
// dir, about total bytes in all.
func bulkTree(t *testing.T, dir string, total int) {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(uint64(total), 42))
	os.MkdirAll(dir, 0o755)
	for i := 0; total > 0; i++ {
		n := min(total, 256<<10+rng.IntN(512<<10))
		b := make([]byte, n)
		for j := 0; j+8 <= n; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("blob%04d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		total -= n
	}
}

// mcastImage imports a tree of about size random bytes as image web in a
// fresh store and returns the store and the tree.
func mcastImage(t *testing.T, size int) (data, src string) {
	t.Helper()
	dir := t.TempDir()
	src, data = filepath.Join(dir, "src"), filepath.Join(dir, "data")
	bulkTree(t, filepath.Join(src, "bulk"), size)
	os.WriteFile(filepath.Join(src, "motd"), []byte("hello\n"), 0o644)
	ok(t, "--data", data, "image", "import", src, "--image", "web")
	return data, src
}

func receiveArgs(name, target string, extra ...string) []string {
	return append([]string{"multicast", "receive", "--interface", "eth0", "--target", target, "--name", name, "--join-timeout", "30s"}, extra...)
}

// TestMulticastFourReceiversLossless: the torture tree (every file type,
// xattrs, ACLs, hard links) plus bulk data reaches four receivers intact.
func TestMulticastFourReceiversLossless(t *testing.T) {
	m := newMcastNet(t, 4)
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	bulkTree(t, filepath.Join(tt.Root, "bulk"), 4<<20)
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "image", "import", tt.Root, "--image", "torture")
	var rx []*proc
	var targets []string
	for i, ns := range m.receivers {
		target := filepath.Join(t.TempDir(), "root")
		targets = append(targets, target)
		rx = append(rx, startIn(t, ns, receiveArgs(fmt.Sprintf("r%d", i), target, "--image", "torture")...))
	}
	s := startIn(t, m.sender, "--data", data, "multicast", "send", "torture", "--interface", "eth0", "--min-receivers", "4", "--max-bitrate", "300m", "--json")
	if code := s.wait(t, 60*time.Second, "sender"); code != 0 {
		t.Fatalf("sender exited %d\n%s\n%s", code, s.stdout.String(), s.stderr.String())
	}
	for i, p := range rx {
		if code := p.wait(t, 10*time.Second, "receiver"); code != 0 {
			t.Fatalf("receiver %d exited %d\n%s\n%s", i, code, p.stdout.String(), p.stderr.String())
		}
		if !strings.Contains(p.stdout.String(), "received torture@1") {
			t.Errorf("receiver %d: %s", i, p.stdout.String())
		}
		testtree.Oracle(t, tt.Root, targets[i], tt.Skipped()...)
	}
	r, states := s.report(t)
	for i := range rx {
		if states[fmt.Sprintf("r%d", i)] != "done" {
			t.Errorf("sender report: %+v", r)
		}
	}
	// Events: each receiver registered and finished, with progress lines.
	out := s.stdout.String()
	for _, kind := range []string{`"kind":"registered"`, `"kind":"done"`, `"kind":"start"`} {
		if strings.Count(out, kind) < 1 {
			t.Errorf("sender events lack %s", kind)
		}
	}
}

// TestMulticastRandomLoss: 3% of UDP packets dropped on every receiver's
// input; all complete and verify. The session waits for its named
// receivers (--group-of).
func TestMulticastRandomLoss(t *testing.T) {
	m := newMcastNet(t, 3)
	data, src := mcastImage(t, 8<<20)
	var rx []*proc
	var targets []string
	for i, ns := range m.receivers {
		lossy(t, ns, 3)
		target := filepath.Join(t.TempDir(), "root")
		targets = append(targets, target)
		rx = append(rx, startIn(t, ns, receiveArgs(fmt.Sprintf("r%d", i), target)...))
	}
	// --group-of: the session starts once r0, r1 and r2 are all present.
	s := startIn(t, m.sender, "--data", data, "multicast", "send", "web", "--interface", "eth0", "--group-of", "r[0-2]", "--max-bitrate", "200m", "--json")
	if code := s.wait(t, 60*time.Second, "sender"); code != 0 {
		t.Fatalf("sender exited %d\n%s\n%s", code, s.stdout.String(), s.stderr.String())
	}
	if !strings.Contains(s.stdout.String(), "all 3 expected receivers present") {
		t.Errorf("the session did not start on --group-of:\n%s", s.stdout.String())
	}
	r, _ := s.report(t)
	if r.Repairs == 0 {
		t.Errorf("no repairs at 3%% loss: %+v", r)
	}
	for i, p := range rx {
		if code := p.wait(t, 10*time.Second, "receiver"); code != 0 {
			t.Fatalf("receiver %d exited %d\n%s\n%s", i, code, p.stdout.String(), p.stderr.String())
		}
		oracle(t, src, targets[i])
	}
}

// TestMulticastLateJoiner: a receiver that starts 2 s into the session
// still completes (a carousel pass serves what it missed).
func TestMulticastLateJoiner(t *testing.T) {
	m := newMcastNet(t, 3)
	data, src := mcastImage(t, 8<<20)
	var rx []*proc
	var targets []string
	for i, ns := range m.receivers[:2] {
		target := filepath.Join(t.TempDir(), "root")
		targets = append(targets, target)
		rx = append(rx, startIn(t, ns, receiveArgs(fmt.Sprintf("r%d", i), target)...))
	}
	// 8 MiB at 20 Mbit/s takes over 3 s.
	s := startIn(t, m.sender, "--data", data, "multicast", "send", "web", "--interface", "eth0", "--min-receivers", "2", "--max-bitrate", "20m", "--json")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.stdout.String(), `"kind":"start"`) {
		if time.Now().After(deadline) {
			t.Fatalf("session did not start:\n%s\n%s", s.stdout.String(), s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	late := filepath.Join(t.TempDir(), "root")
	targets = append(targets, late)
	rx = append(rx, startIn(t, m.receivers[2], receiveArgs("late", late)...))
	if code := s.wait(t, 60*time.Second, "sender"); code != 0 {
		t.Fatalf("sender exited %d\n%s\n%s", code, s.stdout.String(), s.stderr.String())
	}
	r, states := s.report(t)
	if states["late"] != "done" || r.Passes < 2 {
		t.Errorf("late joiner: %+v (want done after a second pass)", r)
	}
	for i, p := range rx {
		if code := p.wait(t, 10*time.Second, "receiver"); code != 0 {
			t.Fatalf("receiver %d exited %d\n%s\n%s", i, code, p.stdout.String(), p.stderr.String())
		}
		oracle(t, src, targets[i])
	}
}

// TestMulticastKilledAndThrottledReceivers: one receiver is killed in
// the middle and one sits behind a link at 10% of the session rate. The
// others complete; the throttled one is evicted, exits with status 3 and
// gets the version by `goldcast deploy` from a server instead.
func TestMulticastKilledAndThrottledReceivers(t *testing.T) {
	m := newMcastNet(t, 4)
	data, src := mcastImage(t, 8<<20)
	// r3's link carries 4 Mbit/s of a 40 Mbit/s session.
	out, err := exec.Command("ip", "netns", "exec", m.hub, "tc", "qdisc", "add", "dev", "r3", "root", "tbf", "rate", "4mbit", "burst", "32kb", "latency", "50ms").CombinedOutput()
	if err != nil {
		t.Fatalf("tc: %v\n%s", err, out)
	}
	var rx []*proc
	var targets []string
	for i, ns := range m.receivers {
		target := filepath.Join(t.TempDir(), "root")
		targets = append(targets, target)
		rx = append(rx, startIn(t, ns, receiveArgs(fmt.Sprintf("r%d", i), target)...))
	}
	s := startIn(t, m.sender, "--data", data, "multicast", "send", "web", "--interface", "eth0", "--min-receivers", "4", "--max-bitrate", "40m", "--json")
	// Kill r2 once it has some of the stream.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.stdout.String(), `"kind":"progress","receiver":"r2"`) || !strings.Contains(s.stdout.String(), `"kind":"start"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no progress from r2:\n%s\n%s", s.stdout.String(), s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	rx[2].cmd.Process.Kill()
	if code := s.wait(t, 60*time.Second, "sender"); code != 2 {
		t.Fatalf("sender exited %d, want 2 (not every receiver done)\n%s\n%s", code, s.stdout.String(), s.stderr.String())
	}
	r, states := s.report(t)
	want := map[string]string{"r0": "done", "r1": "done", "r2": "lost", "r3": "evicted"}
	for name, st := range want {
		if states[name] != st {
			t.Errorf("%s: state %q, want %q (report %+v)", name, states[name], st, r)
		}
	}
	for _, i := range []int{0, 1} {
		if code := rx[i].wait(t, 10*time.Second, "receiver"); code != 0 {
			t.Fatalf("receiver %d exited %d\n%s", i, code, rx[i].stderr.String())
		}
		oracle(t, src, targets[i])
	}
	if code := rx[3].wait(t, 10*time.Second, "throttled receiver"); code != 3 {
		t.Fatalf("throttled receiver exited %d, want 3 (evicted)\n%s", code, rx[3].stderr.String())
	}
	if !strings.Contains(rx[3].stderr.String(), "evicted") {
		t.Errorf("throttled receiver's message: %s", rx[3].stderr.String())
	}
	// The eviction left an empty target; the unicast fallback fills it.
	srv := startServer(t, data, 0)
	ok(t, srv.args("deploy", "--image", "web@1", "--target", targets[3])...)
	oracle(t, src, targets[3])
}

// TestMulticastRefusesOtherVersion: a receiver insisting on another
// version never joins (and says which it saw) while one for the version
// on offer completes.
func TestMulticastRefusesOtherVersion(t *testing.T) {
	m := newMcastNet(t, 2)
	data, src := mcastImage(t, 1<<20)
	wrong := startIn(t, m.receivers[1], receiveArgs("wrong", filepath.Join(t.TempDir(), "root"), "--image", "web@2", "--join-timeout", "4s")...)
	target := filepath.Join(t.TempDir(), "root")
	right := startIn(t, m.receivers[0], receiveArgs("right", target, "--image", "web@1", "--json")...)
	s := startIn(t, m.sender, "--data", data, "multicast", "send", "web", "--interface", "eth0", "--min-receivers", "1", "--max-bitrate", "100m", "--json")
	if code := s.wait(t, 30*time.Second, "sender"); code != 0 {
		t.Fatalf("sender exited %d\n%s", code, s.stderr.String())
	}
	if code := right.wait(t, 10*time.Second, "receiver"); code != 0 {
		t.Fatalf("receiver exited %d\n%s", code, right.stderr.String())
	}
	oracle(t, src, target)
	if code := wrong.wait(t, 20*time.Second, "receiver for web@2"); code == 0 {
		t.Fatalf("a receiver for web@2 joined a session for web@1")
	}
	if !strings.Contains(wrong.stderr.String(), "no matching multicast session") || !strings.Contains(wrong.stderr.String(), "web@1") {
		t.Errorf("refusal message: %s", wrong.stderr.String())
	}
}

// TestMulticastEvictionFallsBackToServer: a receiver behind a slow link
// given --fallback-server is evicted and deploys the version from a
// goldcast server over HTTP itself, ending with a verified target.
func TestMulticastEvictionFallsBackToServer(t *testing.T) {
	m := newMcastNet(t, 2)
	data, src := mcastImage(t, 6<<20)
	srv := startIn(t, m.sender, "--data", data, "server", "--http", "10.79.0.1:18080", "--rsync", "")
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command("ip", "netns", "exec", m.receivers[1], "curl", "-sf", "-o", "/dev/null", "http://10.79.0.1:18080/metrics").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up:\n%s", srv.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := exec.Command("ip", "netns", "exec", m.hub, "tc", "qdisc", "add", "dev", "r1", "root", "tbf", "rate", "4mbit", "burst", "32kb", "latency", "50ms").CombinedOutput()
	if err != nil {
		t.Fatalf("tc: %v\n%s", err, out)
	}
	fast := filepath.Join(t.TempDir(), "root")
	slow := filepath.Join(t.TempDir(), "root")
	r0 := startIn(t, m.receivers[0], receiveArgs("r0", fast)...)
	r1 := startIn(t, m.receivers[1], receiveArgs("r1", slow, "--fallback-server", "http://10.79.0.1:18080", "--token-file", filepath.Join(data, "admin.token"))...)
	s := startIn(t, m.sender, "--data", data, "multicast", "send", "web", "--interface", "eth0", "--min-receivers", "2", "--max-bitrate", "40m", "--json")
	// Once evicted, the slow link need not slow the HTTP fallback down.
	for !strings.Contains(s.stdout.String(), `"kind":"evicted"`) {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("no eviction:\n%s", s.stdout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	exec.Command("ip", "netns", "exec", m.hub, "tc", "qdisc", "del", "dev", "r1", "root").Run()
	if code := s.wait(t, 60*time.Second, "sender"); code != 2 {
		t.Fatalf("sender exited %d, want 2 (one receiver evicted)\n%s", code, s.stdout.String())
	}
	if _, states := s.report(t); states["r0"] != "done" || states["r1"] != "evicted" {
		t.Errorf("receiver states %v", states)
	}
	if code := r0.wait(t, 10*time.Second, "receiver"); code != 0 {
		t.Fatalf("receiver exited %d\n%s", code, r0.stderr.String())
	}
	if code := r1.wait(t, 60*time.Second, "evicted receiver"); code != 0 {
		t.Fatalf("evicted receiver exited %d\n%s", code, r1.stderr.String())
	}
	if !strings.Contains(r1.stdout.String(), "by HTTP after eviction") {
		t.Errorf("evicted receiver: %s", r1.stdout.String())
	}
	oracle(t, src, fast)
	oracle(t, src, slow)
}
