package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBenchmarkMulticast compares goldcast multicast with udpcast
// (udp-sender/udp-receiver) in one run: one sender whose link tc limits
// to 200 Mbit/s, a 200 MB incompressible stream, N = 1, 2, 4, 8
// receivers on a bridge, lossless and with 3% of UDP packets dropped on
// every receiver's input. Both senders are told --max-bitrate 200m. It
// prints T(N)/T(1) and goodput (stream bits / time / link rate) for
// docs/benchmarks.md and asserts only that every copy completed.
func TestBenchmarkMulticast(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench) to run benchmarks")
	}
	for _, tool := range []string{"udp-sender", "udp-receiver", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages udpcast, nftables)", tool)
		}
	}
	const (
		linkRate = 200e6
		size     = 200 << 20
	)
	ns := benchSizes(t, "GOLDCAST_BENCH_MCAST_N", []int{1, 2, 4, 8})
	m := newMcastNet(t, 8) // the sender's veth cuts GSO batches into frames, as a NIC would
	if out, err := exec.Command("ip", "netns", "exec", m.sender, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
		"rate", "200mbit", "burst", "256kb", "latency", "50ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v\n%s", err, out)
	}
	data, _ := mcastImage(t, size)
	work := t.TempDir()
	streamFile := filepath.Join(work, "web.tar.zst")
	ok(t, "--data", data, "image", "export", "web", "-o", streamFile)
	fi, err := os.Stat(streamFile)
	if err != nil {
		t.Fatal(err)
	}
	streamBytes := fi.Size()

	setLoss := func(n, pct int) {
		for _, r := range m.receivers[:n] {
			exec.Command("ip", "netns", "exec", r, "nft", "delete", "table", "inet", "loss").Run()
			if pct > 0 {
				lossy(t, r, pct)
			}
		}
	}
	targets := func(n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			d := filepath.Join(work, fmt.Sprintf("t%d", i))
			os.RemoveAll(d)
			out = append(out, d)
		}
		return out
	}
	// ours returns the session time (the sender's report: from
	// announcing to the last confirmation, as udp-sender's run) and the
	// whole command's (which adds exporting the stream to a scratch file).
	ours := func(n int, extra ...string) (session, whole time.Duration) {
		var rx []*proc
		for i, target := range targets(n) {
			rx = append(rx, startIn(t, m.receivers[i], receiveArgs(fmt.Sprintf("r%d", i), target)...))
		}
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		s := startIn(t, m.sender, append([]string{"--data", data, "multicast", "send", "web", "--interface", "eth0",
			"--min-receivers", fmt.Sprint(n), "--max-bitrate", "200m", "--json"}, extra...)...)
		if code := s.wait(t, 5*time.Minute, "goldcast sender"); code != 0 {
			t.Fatalf("goldcast sender exited %d\n%s\n%s", code, lastLines(s.stdout.String(), 20), s.stderr.String())
		}
		whole = time.Since(start)
		for i, p := range rx {
			if code := p.wait(t, 30*time.Second, "goldcast receiver"); code != 0 {
				t.Fatalf("goldcast receiver %d exited %d\n%s", i, code, p.stderr.String())
			}
		}
		var rep struct {
			Took      time.Duration `json:"took_ns"`
			FirstPass time.Duration `json:"first_pass_ns"`
			Packets   int64         `json:"packets"`
			Repairs   int64         `json:"repairs"`
			Passes    int           `json:"passes"`
			Receivers []struct {
				Took time.Duration `json:"took_ns"`
			} `json:"receivers"`
		}
		if err := json.Unmarshal([]byte(lastLines(s.stdout.String(), 1)), &rep); err != nil {
			t.Fatalf("sender report: %v", err)
		}
		var done []string
		for _, r := range rep.Receivers {
			done = append(done, fmt.Sprintf("%.2f", r.Took.Seconds()))
		}
		t.Logf("goldcast N=%d %v: session %s (first pass sent at %.2f s, receivers done at %s s), command %s, %d packets, %d repairs, %d passes",
			n, extra, rep.Took, rep.FirstPass.Seconds(), strings.Join(done, " "), whole, rep.Packets, rep.Repairs, rep.Passes)
		return rep.Took, whole
	}
	// udpcast: a receiver whose connect request is lost never joins, and
	// udp-sender would wait for it for ever; --max-wait starts without
	// it, and the row says how many copies completed.
	theirs := func(n int) (time.Duration, int) {
		var rx []*exec.Cmd
		for i, target := range targets(n) {
			os.MkdirAll(target, 0o755)
			c := exec.Command("ip", "netns", "exec", m.receivers[i], "udp-receiver", "--interface", "eth0", "--mcast-rdv-address", "224.0.0.1",
				"--file", filepath.Join(target, "web.tar.zst"), "--nokbd", "--no-progress", "--nosync", "--receive-timeout", "20")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Process.Kill(); c.Wait() })
			rx = append(rx, c)
		}
		time.Sleep(300 * time.Millisecond)
		// Lossless it takes about 12 s here; a minute means it is stuck
		// (under loss udp-sender sometimes waits for ever, or drops a
		// receiver and exits).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		c := exec.CommandContext(ctx, "ip", "netns", "exec", m.sender, "udp-sender", "--interface", "eth0", "--mcast-rdv-address", "224.0.0.1",
			"--file", streamFile, "--min-receivers", fmt.Sprint(n), "--max-wait", "10", "--max-bitrate", "200m", "--nokbd", "--no-progress")
		out, err := c.CombinedOutput()
		took := time.Since(start)
		if err != nil {
			t.Logf("udp-sender N=%d: %v\n%s", n, err, lastLines(string(out), 5))
		}
		complete := 0
		for i, r := range rx {
			done := make(chan struct{})
			go func() { r.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(25 * time.Second):
				r.Process.Kill()
				<-done
			}
			if fi, err := os.Stat(filepath.Join(work, fmt.Sprintf("t%d", i), "web.tar.zst")); err == nil && fi.Size() == streamBytes {
				complete++
			}
		}
		return took, complete
	}

	type row struct {
		n, loss, theirDone     int
		ours, oursWhole, their time.Duration
	}
	var rows []row
	for _, loss := range []int{0, 3} {
		for _, n := range ns {
			setLoss(8, 0)
			setLoss(n, loss)
			r := row{n: n, loss: loss}
			r.ours, r.oursWhole = ours(n)
			r.their, r.theirDone = theirs(n)
			rows = append(rows, r)
		}
	}
	setLoss(8, 0)
	// Jumbo frames (MTU 9000 on every link): goldcast sizes its blocks to
	// the MTU; udpcast's blocks are at most 1456 bytes whatever the MTU.
	mtu := func(v string) {
		for _, l := range [][2]string{{m.sender, "eth0"}, {m.hub, "s0"}, {m.hub, "br0"}} {
			ipCmd(t, "-n", l[0], "link", "set", l[1], "mtu", v)
		}
		for i, r := range m.receivers {
			ipCmd(t, "-n", r, "link", "set", "eth0", "mtu", v)
			ipCmd(t, "-n", m.hub, "link", "set", fmt.Sprintf("r%d", i), "mtu", v)
		}
	}
	mtu("9000")
	var jumbo []row
	for _, loss := range []int{0, 3} {
		for _, n := range []int{ns[0], ns[len(ns)-1]} {
			setLoss(8, 0)
			setLoss(n, loss)
			r := row{n: n, loss: loss}
			r.ours, r.oursWhole = ours(n)
			jumbo = append(jumbo, r)
		}
	}
	setLoss(8, 0)
	mtu("1500")

	goodput := func(d time.Duration) float64 { return float64(streamBytes*8) / d.Seconds() / linkRate }
	var table strings.Builder
	fmt.Fprintf(&table, "| N | loss | goldcast | T(N)/T(1) | goodput | udpcast | T(N)/T(1) | goodput | udpcast copies |\n|---|---|---|---|---|---|---|---|---|\n")
	base := map[int][2]time.Duration{}
	for _, r := range rows {
		if r.n == ns[0] {
			base[r.loss] = [2]time.Duration{r.ours, r.their}
		}
		b := base[r.loss]
		udp := fmt.Sprintf("%.2f s | %.2f | %.0f%%", r.their.Seconds(), r.their.Seconds()/b[1].Seconds(), 100*goodput(r.their))
		if r.theirDone < r.n {
			udp = fmt.Sprintf("incomplete after %.0f s | - | -", r.their.Seconds())
		}
		fmt.Fprintf(&table, "| %d | %d%% | %.2f s | %.2f | %.0f%% | %s | %d of %d |\n", r.n, r.loss,
			r.ours.Seconds(), r.ours.Seconds()/b[0].Seconds(), 100*goodput(r.ours), udp, r.theirDone, r.n)
	}
	fmt.Fprintf(&table, "\nMTU 9000 (goldcast blocks of 8936 bytes; udpcast cannot use more than 1456):\n\n| N | loss | goldcast | T(N)/T(1) | goodput |\n|---|---|---|---|---|\n")
	jbase := map[int]time.Duration{}
	for _, r := range jumbo {
		if r.n == ns[0] {
			jbase[r.loss] = r.ours
		}
		fmt.Fprintf(&table, "| %d | %d%% | %.2f s | %.2f | %.0f%% |\n", r.n, r.loss, r.ours.Seconds(), r.ours.Seconds()/jbase[r.loss].Seconds(), 100*goodput(r.ours))
	}
	var export []string
	for _, r := range rows {
		export = append(export, fmt.Sprintf("%.1f", (r.oursWhole-r.ours).Seconds()))
	}
	fmt.Fprintf(&table, "\nExport to scratch and start-up before each goldcast session (s): %s.\n", strings.Join(export, ", "))
	fmt.Fprintf(&table, "\nLossy/lossless time:")
	for _, n := range ns {
		var l0, l3 row
		for _, r := range rows {
			if r.n == n && r.loss == 0 {
				l0 = r
			}
			if r.n == n && r.loss == 3 {
				l3 = r
			}
		}
		udp := "-"
		if l0.theirDone == n && l3.theirDone == n {
			udp = fmt.Sprintf("%.2fx", l3.their.Seconds()/l0.their.Seconds())
		}
		fmt.Fprintf(&table, " N=%d goldcast %.2fx, udpcast %s;", n, l3.ours.Seconds()/l0.ours.Seconds(), udp)
	}
	fmt.Fprintln(&table)
	fmt.Fprintf(&table, "\nStream: %d bytes (incompressible). Link: tc tbf 200 Mbit/s on the sender's veth; both senders --max-bitrate 200m. "+
		"Time: udpcast, udp-sender start to exit (all receivers confirmed); goldcast, the session as the sender reports it (announcing to the last confirmation, i.e. without exporting the stream first). goldcast receivers extract and verify into a tree; udp-receiver writes the file. "+
		"Machine: %d CPUs (%s), %s.\n", streamBytes, runtime.NumCPU(), runtime.GOARCH, kernel())
	t.Log("\n" + table.String())
	appendBenchOut(t, table.String())
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
