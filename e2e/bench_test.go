package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/internal/testtree"
)

// TestBenchmarkImageStore compares goldcast's import and export with the
// tools they replace, on the debootstrap root, in one run (make bench).
// It asserts nothing about time; it prints a table for
// docs/benchmarks.md.
func TestBenchmarkImageStore(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench) to run benchmarks")
	}
	src := testtree.Debootstrap(t)
	work := t.TempDir()
	const rounds = 5
	sh := func(script string) func(i int) {
		return func(i int) {
			c := exec.Command("sh", "-ec", script)
			c.Env = append(os.Environ(), "SRC="+src, "WORK="+work, fmt.Sprintf("I=%d", i), "GOLDCAST="+goldcast.path)
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", script, err, out)
			}
		}
	}
	// Each import goes to a fresh store, each copy to a fresh directory;
	// both end by flushing the filesystem, as a publish does.
	rows := []struct {
		what, ours, theirs string
		oursRun, theirsRun func(int)
	}{
		{
			what:      "store a tree (first version)",
			ours:      "goldcast image import SRC --image deb",
			theirs:    "rsync -aHAXS --numeric-ids SRC/ DST/ && sync -f DST",
			oursRun:   sh(`"$GOLDCAST" --data "$WORK/data$I" image import "$SRC" --image deb >/dev/null`),
			theirsRun: sh(`rsync -aHAXS --numeric-ids "$SRC/" "$WORK/rsync$I/" && sync -f "$WORK/rsync$I"`),
		},
		{
			what:      "export a version as a stream",
			ours:      "goldcast image export deb -o FILE",
			theirs:    "tar --xattrs --acls -cf - . | zstd -3 > FILE",
			oursRun:   sh(`"$GOLDCAST" --data "$WORK/data0" image export deb -o "$WORK/ours$I.tar.zst" 2>/dev/null`),
			theirsRun: sh(`tar --xattrs --acls --numeric-owner -C "$SRC" -cf - . | zstd -3 -q > "$WORK/theirs$I.tar.zst"`),
		},
		{
			what:      "extract a stream into an empty root",
			ours:      "goldcast image extract FILE --target DIR",
			theirs:    "zstd -dc FILE | tar --xattrs --acls -xpf - -C DIR",
			oursRun:   sh(`"$GOLDCAST" image extract "$WORK/ours0.tar.zst" --target "$WORK/x$I" >/dev/null && sync -f "$WORK/x$I"`),
			theirsRun: sh(`mkdir "$WORK/y$I" && zstd -dc "$WORK/theirs0.tar.zst" | tar --xattrs --xattrs-include='*' --acls --numeric-owner -xpf - -C "$WORK/y$I" && sync -f "$WORK/y$I"`),
		},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| job | goldcast | median | alternative | median | ratio |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		var ours, theirs []time.Duration
		for i := 0; i < rounds; i++ {
			// Alternate so neither side always runs on a warmer cache.
			theirs = append(theirs, timed(func() { r.theirsRun(i) }))
			ours = append(ours, timed(func() { r.oursRun(i) }))
		}
		mo, mt := median(ours), median(theirs)
		fmt.Fprintf(&table, "| %s | `%s` | %.2f s | `%s` | %.2f s | %.2fx |\n",
			r.what, cell(r.ours), mo.Seconds(), cell(r.theirs), mt.Seconds(), mo.Seconds()/mt.Seconds())
	}
	size := func(p string) int64 { fi, _ := os.Stat(filepath.Join(work, p)); return fi.Size() }
	fmt.Fprintf(&table, "\nStream size: goldcast %d bytes, tar|zstd -3 %d bytes.\n", size("ours0.tar.zst"), size("theirs0.tar.zst"))
	fmt.Fprintf(&table, "Machine: %d CPUs (%s), %s; tree: debootstrap --variant=minbase bookworm; median of %d runs, page cache warm.\n",
		runtime.NumCPU(), runtime.GOARCH, kernel(), rounds)
	t.Log("\n" + table.String())
	appendBenchOut(t, table.String())
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "unknown kernel"
	}
	return strings.TrimSpace(string(out))
}

// cell escapes a command for a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// rsyncDaemon starts a stock rsync daemon on loopback serving dir as
// module "golden", the way SystemImager's si_getimage pulled from a golden
// client.
func rsyncDaemon(t *testing.T, dir string) string {
	t.Helper()
	work := t.TempDir()
	port := freeLoopbackPort(t)
	conf := fmt.Sprintf("pid file = %s/pid\nuse chroot = no\nnumeric ids = yes\n[golden]\npath = %s\nread only = yes\nuid = root\ngid = root\n", work, dir)
	os.WriteFile(filepath.Join(work, "rsyncd.conf"), []byte(conf), 0o644)
	cmd := exec.Command("rsync", "--daemon", "--no-detach", "--config="+filepath.Join(work, "rsyncd.conf"), "--address=127.0.0.1", "--port="+port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if exec.Command("rsync", "rsync://127.0.0.1:"+port+"/").Run() == nil {
			return "rsync://127.0.0.1:" + port + "/golden/"
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("stock rsync daemon did not start")
	return ""
}

func freeLoopbackPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// rsyncStats runs stock rsync with --stats and returns the bytes it sent
// and received.
func rsyncStats(t *testing.T, args ...string) (sent, recvd int64) {
	t.Helper()
	out, err := exec.Command("rsync", append([]string{"--stats"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rsync %v: %v\n%s", args, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		var n int64
		if v, ok := strings.CutPrefix(line, "Total bytes sent: "); ok {
			fmt.Sscan(strings.ReplaceAll(v, ",", ""), &n)
			sent = n
		}
		if v, ok := strings.CutPrefix(line, "Total bytes received: "); ok {
			fmt.Sscan(strings.ReplaceAll(v, ",", ""), &n)
			recvd = n
		}
	}
	return sent, recvd
}

// TestBenchmarkCaptureAndUpdate compares capture and update with stock
// rsync on the debootstrap root over loopback (make bench).
func TestBenchmarkCaptureAndUpdate(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench) to run benchmarks")
	}
	golden := copyTree(t, testtree.Debootstrap(t))
	unix.Lsetxattr(filepath.Join(golden, "usr/bin/ls"), "user.goldcast.e2e", []byte("v1"), 0)
	daemon := rsyncDaemon(t, golden)
	const rounds = 3
	var ours, theirs []time.Duration
	var s *testServer
	var c *client.Client
	work := t.TempDir()
	for i := 0; i < rounds; i++ {
		dst := filepath.Join(work, fmt.Sprintf("rsync%d", i))
		theirs = append(theirs, timed(func() {
			rsyncStats(t, "-aHAXS", "--numeric-ids", daemon, dst+"/")
			exec.Command("sync", "-f", dst).Run()
		}))
		s = startServer(t, "", 0)
		var err error
		c, err = client.New(client.Options{URL: s.url, Token: readToken(t, s.tokenFile)})
		if err != nil {
			t.Fatal(err)
		}
		ours = append(ours, timed(func() {
			if _, err := c.Capture(context.Background(), client.CaptureOptions{Image: "deb", Root: golden, SkipLayout: true}); err != nil {
				t.Fatal(err)
			}
		}))
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| job | goldcast | time | wire bytes | stock rsync | time | wire bytes | time ratio |\n|---|---|---|---|---|---|---|---|\n")
	fullSent, fullRecvd := c.WireBytes()
	fmt.Fprintf(&table, "| full capture | `goldcast capture` | %.2f s | %d | `rsync -aHAXS --numeric-ids rsync://golden/ DST/` | %.2f s | (whole tree) | %.2fx |\n",
		median(ours).Seconds(), fullSent+fullRecvd, median(theirs).Seconds(), median(ours).Seconds()/median(theirs).Seconds())

	// A node deployed from version 1, and its stock-rsync twin.
	node := filepath.Join(work, "node")
	if _, err := c.Deploy(context.Background(), client.DeployOptions{Image: "deb", Target: node}); err != nil {
		t.Fatal(err)
	}
	// Stock rsync's node is a copy of its own first pull.
	stockCopy := filepath.Join(work, "rsync0")
	twin := filepath.Join(work, "twin")
	run0(t, "cp", "-a", stockCopy, twin)

	fiveChanges(t, golden)
	c2, _ := client.New(client.Options{URL: s.url, Token: readToken(t, s.tokenFile)})
	incOurs := timed(func() {
		if _, err := c2.Capture(context.Background(), client.CaptureOptions{Image: "deb", Root: golden, SkipLayout: true}); err != nil {
			t.Fatal(err)
		}
	})
	incSent, incRecvd := c2.WireBytes()
	var rs, rr int64
	incTheirs := timed(func() { rs, rr = rsyncStats(t, "-aHAXS", "--numeric-ids", "--delete", daemon, stockCopy+"/") })
	fmt.Fprintf(&table, "| incremental capture (5-change edit) | `goldcast capture` | %.2f s | %d | `rsync -aHAXS --numeric-ids --delete` | %.2f s | %d | %.2fx |\n",
		incOurs.Seconds(), incSent+incRecvd, incTheirs.Seconds(), rs+rr, incOurs.Seconds()/incTheirs.Seconds())

	c3, _ := client.New(client.Options{URL: s.url, Token: readToken(t, s.tokenFile)})
	updOurs := timed(func() {
		if _, err := c3.Update(context.Background(), client.UpdateOptions{Image: "deb", Root: node}); err != nil {
			t.Fatal(err)
		}
	})
	updSent, updRecvd := c3.WireBytes()
	updTheirs := timed(func() { rs, rr = rsyncStats(t, "-aHAXS", "--numeric-ids", "--delete", daemon, twin+"/") })
	fmt.Fprintf(&table, "| update a node after the edit | `goldcast update` | %.2f s | %d | `rsync -aHAXS --numeric-ids --delete` | %.2f s | %d | %.2fx |\n",
		updOurs.Seconds(), updSent+updRecvd, updTheirs.Seconds(), rs+rr, updOurs.Seconds()/updTheirs.Seconds())
	fmt.Fprintf(&table, "\nWire bytes count both directions: goldcast at the TCP connection (headers included), stock rsync from its --stats totals. Full capture: median of %d runs; incremental rows: one run each.\n", rounds)
	t.Log("\n" + table.String())
	appendBenchOut(t, table.String())
}

// benchSizes returns the node counts a benchmark runs: def, or the
// numbers in the environment variable env ("1 8" for a quicker look).
func benchSizes(t *testing.T, env string, def []int) []int {
	t.Helper()
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	var ns []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want node counts such as \"1 8\"", env, s)
		}
		ns = append(ns, n)
	}
	return ns
}

// appendBenchOut appends a benchmark's table to the file named by
// GOLDCAST_BENCH_OUT, when it is set, so one `make bench` collects every
// table.
func appendBenchOut(t *testing.T, table string) {
	t.Helper()
	out := os.Getenv("GOLDCAST_BENCH_OUT")
	if out == "" {
		return
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = f.WriteString("\n" + table)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Errorf("GOLDCAST_BENCH_OUT: %v", err)
	}
}
