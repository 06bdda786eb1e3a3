package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/netboot/dhcp"
)

// The benchmark network: a /16 so the pool holds as many addresses as
// goldcast allows (65,536), perfdhcp's relay address on the client side.
const (
	benchServerIP = "10.78.0.1"
	benchRelayIP  = "10.78.0.2"
	benchFirst    = "10.78.0.10"
	benchLast     = "10.78.255.250"
)

// TestBenchmarkNetboot compares goldcast's DHCP server with Kea (leases
// per second under perfdhcp, both keeping leases on disk) and its TFTP
// server with tftpd-hpa (a 64 MiB file fetched by curl), in one run on
// one pair of network namespaces. It prints a markdown table.
func TestBenchmarkNetboot(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench) to run benchmarks")
	}
	for _, tool := range []string{"perfdhcp", "kea-dhcp4", "in.tftpd", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps)", tool)
		}
	}
	n := newNetns(t)
	ipCmd(t, "-n", n.server, "addr", "flush", "dev", n.serverIf)
	ipCmd(t, "-n", n.server, "addr", "add", benchServerIP+"/16", "dev", n.serverIf)
	ipCmd(t, "-n", n.client, "addr", "add", benchRelayIP+"/16", "dev", n.clientIf)

	rate := envInt("GOLDCAST_BENCH_DHCP_RATE", 8000)
	clients := envInt("GOLDCAST_BENCH_DHCP_CLIENTS", 10000)
	secs := envInt("GOLDCAST_BENCH_DHCP_SECONDS", 10)
	const rounds = 3
	var ours, core, theirs []float64
	for i := range rounds {
		// Alternate, Kea first, so none always runs last.
		theirs = append(theirs, benchKea(t, n, rate, clients, secs))
		ours = append(ours, benchGoldcastDHCP(t, n, rate, clients, secs))
		core = append(core, benchDHCPCore(t, n, rate, clients, secs))
		t.Logf("DHCP round %d: goldcast server %.0f leases/s, netboot/dhcp alone %.0f, kea %.0f", i+1, ours[i], core[i], theirs[i])
	}
	dOurs, dCore, dTheirs := medianF(ours), medianF(core), medianF(theirs)

	size := envInt("GOLDCAST_BENCH_TFTP_MB", 64) << 20
	boot := t.TempDir()
	writeRandomFile(t, filepath.Join(boot, "big.bin"), size)
	want := sha256File(t, filepath.Join(boot, "big.bin"))
	stopOurs := startGoldcastTFTP(t, n, boot)
	stopTheirs := startTftpd(t, n, boot)
	const tftpRounds = 5
	var tOurs, tTheirs []time.Duration
	for range tftpRounds {
		tTheirs = append(tTheirs, curlTFTP(t, n, "tftp://"+benchServerIP+":6969/big.bin", want))
		tOurs = append(tOurs, curlTFTP(t, n, "tftp://"+benchServerIP+"/big.bin", want))
	}
	stopOurs()
	stopTheirs()
	mo, mt := median(tOurs), median(tTheirs)
	mb := float64(size) / (1 << 20)

	var table strings.Builder
	fmt.Fprintf(&table, "| job | goldcast | median | alternative | median | goldcast speed / alternative |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&table, "| DHCP leases/s (4-way, %d clients, %d s at %d/s offered, pool /16) | `goldcast server --dhcp-mode full` (lease flushed before each ACK) | %.0f | `kea-dhcp4` (memfile, persist) | %.0f | %.2fx |\n",
		clients, secs, rate, dOurs, dTheirs, dOurs/dTheirs)
	fmt.Fprintf(&table, "| same, DHCP server alone | `netboot/dhcp` Server in the test process (FileLeaseStore, no event store) | %.0f | `kea-dhcp4` (memfile, persist) | %.0f | %.2fx |\n",
		dCore, dTheirs, dCore/dTheirs)
	fmt.Fprintf(&table, "| TFTP %.0f MiB, `curl --tftp-blksize 1468` | `goldcast server --tftp` | %.2f s (%.1f MiB/s) | `in.tftpd -L -s DIR` | %.2f s (%.1f MiB/s) | %.2fx |\n",
		mb, mo.Seconds(), mb/mo.Seconds(), mt.Seconds(), mb/mt.Seconds(), mt.Seconds()/mo.Seconds())
	fmt.Fprintf(&table, "\nDHCP rounds (leases/s): goldcast server %s, netboot/dhcp alone %s, kea %s. TFTP rounds: goldcast %s, tftpd-hpa %s.\n",
		fmtRates(ours), fmtRates(core), fmtRates(theirs), fmtDurations(tOurs), fmtDurations(tTheirs))
	fmt.Fprintf(&table, "Machine: %d CPUs (%s), %s; perfdhcp `-r %d -R %d -p %d` from a client namespace over a veth; median of %d DHCP and %d TFTP runs.\n",
		runtime.NumCPU(), runtime.GOARCH, kernel(), rate, clients, secs, rounds, tftpRounds)
	t.Log("\n" + table.String())
	appendBenchOut(t, table.String())
}

// benchGoldcastDHCP runs perfdhcp against a fresh goldcast server and
// returns the 4-way exchanges per second it completed. It also checks
// that the lease file holds a lease for every client perfdhcp used.
func benchGoldcastDHCP(t *testing.T, n *netns, rate, clients, secs int) float64 {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	log := filepath.Join(data, "server.log")
	stop := startNetnsProcess(t, n.server, log, "DHCP serving", goldcast.path, "--data", data, "server",
		"--http", benchServerIP+":8080", "--rsync", "", "--dhcp-mode", "full", "--dhcp-interface", n.serverIf,
		"--dhcp-range", benchFirst+"-"+benchLast)
	r := perfdhcp(t, n, rate, clients, secs)
	stop()
	leases, err := os.ReadFile(filepath.Join(data, "dhcp-leases"))
	if err != nil {
		t.Fatal(err)
	}
	macs := map[string]bool{}
	for _, m := range regexp.MustCompile(`"mac":"([0-9a-f:]+)"`).FindAllSubmatch(leases, -1) {
		macs[string(m[1])] = true
	}
	if len(macs) == 0 || len(macs) > clients {
		t.Errorf("goldcast lease file holds %d clients, want 1..%d", len(macs), clients)
	}
	return r
}

// benchDHCPCore runs perfdhcp against goldcast's DHCP server package
// alone, serving from this process inside the server namespace with a
// FileLeaseStore and an info-level log as the server keeps, but no event
// store, and returns the exchanges per second.
func benchDHCPCore(t *testing.T, n *netns, rate, clients, secs int) float64 {
	t.Helper()
	dir := t.TempDir()
	st, err := dhcp.OpenFileLeaseStore(filepath.Join(dir, "dhcp-leases"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logf, err := os.Create(filepath.Join(dir, "dhcp.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv, err := dhcp.New(dhcp.Config{
		Mode: dhcp.ModeFull, Interface: n.serverIf, ServerIP: netip.MustParseAddr(benchServerIP),
		Netmask: netip.MustParseAddr("255.255.0.0"),
		Range:   dhcp.Range{First: netip.MustParseAddr(benchFirst), Last: netip.MustParseAddr(benchLast)},
	}, dhcp.Deps{Leases: st, Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- inNetns(n.server, func() error { return srv.Serve(ctx) }) }()
	waitFor(t, logf.Name(), "dhcp serving")
	r := perfdhcp(t, n, rate, clients, secs)
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	return r
}

// benchKea runs perfdhcp against kea-dhcp4 with a memfile lease file and
// the same pool, and returns the exchanges per second.
func benchKea(t *testing.T, n *netns, rate, clients, secs int) float64 {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll("/run/kea", 0o755) // Kea refuses to start without it
	cfg := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": [%q]},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "10.78.0.0/16", "pools": [{"pool": "%s - %s"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": %q}], "severity": "INFO"}]
}}`, n.serverIf, filepath.Join(dir, "leases.csv"), benchFirst, benchLast, filepath.Join(dir, "kea.log"))
	conf := filepath.Join(dir, "kea.json")
	os.WriteFile(conf, []byte(cfg), 0o644)
	t.Setenv("KEA_LOCKFILE_DIR", dir)
	t.Setenv("KEA_PIDFILE_DIR", dir)
	stop := startNetnsProcess(t, n.server, filepath.Join(dir, "kea.out"), "", "kea-dhcp4", "-c", conf)
	waitFor(t, filepath.Join(dir, "kea.log"), "DHCP4_STARTED")
	r := perfdhcp(t, n, rate, clients, secs)
	stop()
	return r
}

// perfdhcp runs perfdhcp in the client namespace (as a relay at
// benchRelayIP) and returns its 4-way exchange rate.
func perfdhcp(t *testing.T, n *netns, rate, clients, secs int) float64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.client, "perfdhcp", "-4", "-l", n.clientIf,
		"-r", strconv.Itoa(rate), "-R", strconv.Itoa(clients), "-p", strconv.Itoa(secs)).CombinedOutput()
	// perfdhcp exits 3 when packets were dropped, which at full load
	// they are; only a missing report is a failure.
	m := regexp.MustCompile(`Rate: ([0-9.]+) 4-way exchanges/second`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	r, _ := strconv.ParseFloat(string(m[1]), 64)
	if r == 0 {
		t.Fatalf("perfdhcp completed no exchange:\n%s", out)
	}
	return r
}

// startNetnsProcess starts a program in namespace ns with its output in
// log, waits for ready to appear there (if set), and returns a function
// that kills it (by PID) and waits for it; the function also runs at
// cleanup.
func startNetnsProcess(t *testing.T, ns, log, ready string, args ...string) func() {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	}
	t.Cleanup(stop)
	if ready != "" {
		waitFor(t, log, ready)
	}
	return stop
}

// waitFor waits up to 20 s for text to appear in the file at path.
func waitFor(t *testing.T, path, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(text)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not appear in %s:\n%s", text, path, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startGoldcastTFTP serves dir with goldcast's TFTP server on port 69.
func startGoldcastTFTP(t *testing.T, n *netns, dir string) func() {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	return startNetnsProcess(t, n.server, filepath.Join(data, "server.log"), "TFTP serving", goldcast.path, "--data", data, "server",
		"--http", benchServerIP+":8080", "--rsync", "", "--tftp", benchServerIP+":69", "--boot-dir", dir)
}

// startTftpd serves dir with tftpd-hpa in the foreground on port 6969.
func startTftpd(t *testing.T, n *netns, dir string) func() {
	t.Helper()
	stop := startNetnsProcess(t, n.server, filepath.Join(t.TempDir(), "tftpd.log"), "", "in.tftpd", "-L", "-s", dir, "-a", benchServerIP+":6969")
	time.Sleep(300 * time.Millisecond) // tftpd prints nothing when ready
	return stop
}

// curlTFTP downloads url with curl in the client namespace, checks the
// content's sha256 against want and returns the time taken.
func curlTFTP(t *testing.T, n *netns, url, want string) time.Duration {
	t.Helper()
	out := filepath.Join(t.TempDir(), "download")
	var cerr []byte
	var err error
	d := timed(func() {
		cerr, err = exec.Command("ip", "netns", "exec", n.client, "curl", "-sS", "--tftp-blksize", "1468", "-o", out, url).CombinedOutput()
	})
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, cerr)
	}
	if got := sha256File(t, out); got != want {
		t.Fatalf("curl %s: content sha256 %s, want %s", url, got, want)
	}
	os.Remove(out)
	return d
}

// writeRandomFile writes size pseudo-random bytes to path.
func writeRandomFile(t *testing.T, path string, size int) {
	t.Helper()
	b := make([]byte, size)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := range 8 {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sha256File is the hex sha256 of the file at path.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// envInt is the integer in environment variable name, else def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtRates(v []float64) string {
	var s []string
	for _, r := range v {
		s = append(s, fmt.Sprintf("%.0f", r))
	}
	return strings.Join(s, ", ")
}

func fmtDurations(v []time.Duration) string {
	var s []string
	for _, d := range v {
		s = append(s, fmt.Sprintf("%.2f s", d.Seconds()))
	}
	return strings.Join(s, ", ")
}
