package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBenchmarkTorrent compares fetching one 200 MB version by
// BitTorrent with N nodes fetching it by unicast HTTP from the server at
// once (goldcast deploy), N = 1, 2, 4, 8, in network namespaces where
// every link (server and nodes) is capped at 100 Mbit/s both ways. Both
// extract into an empty root while the bytes arrive. It prints T(N) and
// T(N)/T(1) for both (make bench; docs/benchmarks.md).
func TestBenchmarkTorrent(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench) to run benchmarks")
	}
	const maxN = 8
	const rate = "100mbit"
	l := newTorrentLAN(t, maxN+1)
	data, src := torrentImage(t, 200<<20)
	for i := range l.hosts {
		l.limit(t, i, rate)
	}
	startTorrentServer(t, l, data)
	// Make the version's torrent (export and hash the stream) before
	// timing anything.
	if out, err := exec.Command("ip", "netns", "exec", l.hosts[1], "curl", "-sf", "-o", "/dev/null",
		torrentServerURL+"/api/v1/images/web@1/torrent").CombinedOutput(); err != nil {
		t.Fatalf("prepare torrent: %v\n%s", err, out)
	}
	streamSize := func() int64 {
		fi, err := os.Stat(filepath.Join(data, "streams", "web", "1.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}()
	work := t.TempDir()
	clean := func() {
		ents, _ := os.ReadDir(work)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(work, e.Name()))
		}
	}

	// torrent: N nodes join at once; T is when the last one has the whole
	// stream verified and extracted (they keep seeding until the wave
	// ends, which is not timed).
	torrentRun := func(n int) (time.Duration, float64) {
		defer clean()
		start := time.Now()
		var cs []*torrentClient
		for i := 1; i <= n; i++ {
			args := append([]string{"--seed-time", "120s"}, strings.Fields(os.Getenv("GOLDCAST_BENCH_TORRENT_ARGS"))...)
			cs = append(cs, startTorrentClient(t, l.hosts[i], filepath.Join(work, fmt.Sprint(i)), args...))
		}
		done := make([]time.Duration, n)
		for {
			left := 0
			for i, c := range cs {
				if done[i] != 0 {
					continue
				}
				if _, ok := c.saw("complete"); ok {
					done[i] = time.Since(start)
				} else {
					left++
				}
			}
			if left == 0 {
				break
			}
			if time.Since(start) > 10*time.Minute {
				t.Fatal("torrent wave did not complete within 10 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if os.Getenv("GOLDCAST_BENCH_TORRENT_TRACE") != "" {
			for i, c := range cs {
				t.Logf("node %d progress (one line a second):\n%s", i+1, c.stderr.String())
			}
		}
		var peers, total int64
		for _, c := range cs {
			r := c.wait(t, 3*time.Minute)
			peers += r.FromPeers
			total += r.FromPeers + r.FromServer
		}
		oracle(t, src, cs[0].target)
		return maxDuration(done), float64(peers) / float64(total)
	}
	// unicast: N nodes run goldcast deploy over HTTP at once; T is when
	// the last one has finished.
	unicastRun := func(n int) time.Duration {
		defer clean()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, n)
		outs := make([][]byte, n)
		for i := 1; i <= n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i-1], errs[i-1] = exec.Command("ip", "netns", "exec", l.hosts[i], goldcast.path, "deploy",
					"--server", torrentServerURL, "--image", "web@1", "--target", filepath.Join(work, fmt.Sprint("u", i))).CombinedOutput()
			}()
		}
		wg.Wait()
		d := time.Since(start)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("deploy in host %d: %v\n%s", i+1, err, outs[i])
			}
		}
		oracle(t, src, filepath.Join(work, "u1"))
		return d
	}

	ns := benchSizes(t, "GOLDCAST_BENCH_TORRENT_N", []int{1, 2, 4, 8})
	unicast := os.Getenv("GOLDCAST_BENCH_TORRENT_NO_UNICAST") == ""
	tor := map[int]time.Duration{}
	uni := map[int]time.Duration{}
	share := map[int]float64{}
	for _, n := range ns {
		tor[n], share[n] = torrentRun(n)
		if unicast {
			uni[n] = unicastRun(n)
		}
		t.Logf("N=%d: torrent %.1f s (peers %.0f%%), unicast %.1f s", n, tor[n].Seconds(), 100*share[n], uni[n].Seconds())
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| N | torrent T(N) | torrent T(N)/T(1) | bytes from peers | unicast HTTP T(N) | unicast T(N)/T(1) |\n|---|---|---|---|---|---|\n")
	for _, n := range ns {
		fmt.Fprintf(&table, "| %d | %.1f s | %.2f | %.0f%% | %.1f s | %.2f |\n", n, tor[n].Seconds(), tor[n].Seconds()/tor[1].Seconds(),
			100*share[n], uni[n].Seconds(), uni[n].Seconds()/uni[1].Seconds())
	}
	fmt.Fprintf(&table, "\nSingle node: torrent/unicast = %.2f. Stream %d bytes (incompressible), every link tc tbf %s both ways.\n",
		tor[1].Seconds()/uni[1].Seconds(), streamSize, rate)
	fmt.Fprintf(&table, "Machine: %d CPUs (%s), %s; server and nodes in network namespaces on one bridge.\n", runtime.NumCPU(), runtime.GOARCH, kernel())
	t.Log("\n" + table.String())
	appendBenchOut(t, table.String())
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
