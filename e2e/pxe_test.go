package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goldcast/goldcast/internal/testtree"
)

// syncBuffer is a bytes.Buffer safe for one writer (a child process) and
// a reader (the test).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pxeBoot is one QEMU machine network-booting through a goldcast server
// on a bridge in a namespace of its own.
type pxeBoot struct {
	// net is the /24 prefix ("10.78.0"): the server is .1, the node .60.
	net, node, mac string
	// serverArgs are added to the server's command line; qemuArgs are the
	// machine's firmware and size (the NIC and tap are added).
	serverArgs, qemuArgs []string
	// nicOptions are appended to the virtio-net device (",romfile=").
	nicOptions string
	// proxy runs goldcast's DHCP in proxy mode beside dnsmasq, which
	// hands out the addresses; default: goldcast in full mode alone.
	proxy   bool
	timeout time.Duration
	// data is the server's data directory, set by run.
	data string
	// srvLog holds the server's output.
	srvLog syncBuffer
	// dnsmasqLeases is dnsmasq's lease file in proxy mode.
	dnsmasqLeases string
}

// skipUnlessPXE skips when the machine cannot run a QEMU PXE boot.
func skipUnlessPXE(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("a PXE boot in QEMU needs root (network namespaces, bridge, tap)")
	}
	for _, tool := range []string{"ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("/dev/net/tun is missing: no tap devices")
	}
}

// run prepares the boot files and the node, starts the server and the
// machine, waits for the machine to power itself off, and returns the
// node's `goldcast status --json` output with the stages in order. It
// fails the test unless a booted event with CPUs and disks arrived and
// the DHCP ack and iPXE script steps are there.
func (p *pxeBoot) run(t *testing.T) (out []byte, stages []string) {
	t.Helper()
	// Boot files first: the kernel from the cached Debian root and the
	// initramfs through the CLI, as an administrator makes them.
	k := testtree.BootableKernel(t)
	p.data = filepath.Join(t.TempDir(), "data")
	boot := filepath.Join(p.data, "boot")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(k.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(boot, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, "netboot", "initramfs", "--kernel-version", k.Version, "--modules-dir", k.ModulesDir, "-o", filepath.Join(boot, "goldcast-initrd.img"))
	cfg := fmt.Sprintf("nodes:\n  - name: %s\n    macs: [\"%s\"]\n    ips: [%s.60]\n    boot: install\n", p.node, p.mac, p.net)
	if err := os.WriteFile(filepath.Join(p.data, "goldcast.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// One namespace: bridge br0 with the server's address and the tap
	// QEMU's NIC is plugged into. Bridges snoop multicast unless told not
	// to; test bridges turn it off.
	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ns, tap := "gcpxe"+id, "tap"+id
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	ipCmd(t, "-n", ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", ns, "addr", "add", p.net+".1/24", "dev", "br0")
	ipCmd(t, "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
	ipCmd(t, "-n", ns, "link", "set", tap, "master", "br0")
	ipCmd(t, "-n", ns, "link", "set", tap, "up")
	ipCmd(t, "-n", ns, "link", "set", "br0", "up")

	var serial syncBuffer
	dhcpArgs := []string{"--dhcp-mode", "full", "--dhcp-interface", "br0", "--dhcp-range", p.net + ".100-" + p.net + ".150"}
	if p.proxy {
		dhcpArgs = []string{"--dhcp-mode", "proxy", "--dhcp-interface", "br0"}
		p.startDnsmasq(t, ns)
	}
	srvArgs := append(append([]string{"netns", "exec", ns, goldcast.path, "--data", p.data, "server",
		"--http", p.net + ".1:8080", "--rsync", ""}, dhcpArgs...), p.serverArgs...)
	srv := exec.Command("ip", srvArgs...)
	srv.Stdout, srv.Stderr = &p.srvLog, &p.srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	t.Cleanup(func() { srv.Process.Kill(); <-srvDone })
	dumpLogs := func() {
		t.Logf("QEMU serial output:\n%s", serial.String())
		t.Logf("server log:\n%s", p.srvLog.String())
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(p.srvLog.String(), "DHCP serving"); {
		select {
		case <-srvDone:
			t.Fatalf("server exited before serving DHCP:\n%s", p.srvLog.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start DHCP within 20 s:\n%s", p.srvLog.String())
		}
	}

	qemuArgs := append([]string{"netns", "exec", ns, "qemu-system-x86_64"}, p.qemuArgs...)
	qemuArgs = append(qemuArgs, "-accel", "tcg", "-nographic", "-nodefaults", "-serial", "stdio",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+p.mac+p.nicOptions)
	qemu := exec.Command("ip", qemuArgs...)
	qemu.Stdout, qemu.Stderr = &serial, &serial
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	qemuDone := make(chan error, 1)
	go func() { qemuDone <- qemu.Wait() }()
	qemuExited := false
	t.Cleanup(func() {
		if !qemuExited {
			qemu.Process.Kill()
			<-qemuDone
		}
	})

	// The install action reports and then powers the machine off, which
	// ends QEMU.
	select {
	case err := <-qemuDone:
		qemuExited = true
		if err != nil {
			dumpLogs()
			t.Fatalf("QEMU exited with %v", err)
		}
	case <-time.After(p.timeout):
		dumpLogs()
		t.Fatalf("the machine did not boot, report and power off within %s", p.timeout)
	}

	out, err = exec.Command("ip", "netns", "exec", ns, goldcast.path, "status", p.node, "--json",
		"--server", "http://"+p.net+".1:8080", "--token-file", filepath.Join(p.data, "admin.token")).Output()
	if err != nil {
		dumpLogs()
		t.Fatalf("goldcast status %s: %v", p.node, err)
	}
	var st struct {
		Events []struct {
			Stage  string            `json:"stage"`
			Fields map[string]string `json:"fields"`
		} `json:"events"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	booted := false
	for _, e := range st.Events {
		stages = append(stages, e.Stage)
		// The machine has no disk: the field is there, possibly empty.
		_, hasDisks := e.Fields["disks"]
		if e.Stage == "booted" && e.Fields["cpus"] != "" && e.Fields["cpus"] != "0" && hasDisks {
			booted = true
		}
	}
	if !booted {
		dumpLogs()
		t.Fatalf("status %s shows no booted event with cpus and disks (stages %v):\n%s", p.node, stages, out)
	}
	t.Logf("%s events: %v", p.node, stages)
	wantStages := []string{"dhcp-ack", "ipxe"}
	if p.proxy {
		// goldcast gave boot information only: a proxy offer, no lease.
		wantStages = []string{"dhcp-offer", "ipxe"}
	}
	for _, want := range wantStages {
		if !strings.Contains(strings.Join(stages, " "), want) {
			t.Errorf("status %s lacks a %s event (stages %v)", p.node, want, stages)
		}
	}
	return out, stages
}

// startDnsmasq runs dnsmasq in namespace ns as the site's DHCP server:
// addresses only (no PXE, no DNS), on br0, stopped by PID at cleanup.
func (p *pxeBoot) startDnsmasq(t *testing.T, ns string) {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq is not installed (Debian package dnsmasq)")
	}
	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=br0", "--bind-interfaces", "--log-dhcp",
		"--dhcp-range="+p.net+".200,"+p.net+".250,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"))
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", log.String())
		}
	})
	p.dnsmasqLeases = filepath.Join(dir, "leases")
}

// TestPXEBootQEMUProxyDHCP boots the same way beside another DHCP
// server: dnsmasq hands out the addresses and goldcast, in proxy mode,
// only the boot information (the iPXE ROM merges the two offers). The
// initramfs then gets its address from dnsmasq.
func TestPXEBootQEMUProxyDHCP(t *testing.T) {
	skipUnlessPXE(t)
	p := &pxeBoot{net: "10.80.0", node: "pxeproxy01", mac: "52:54:00:80:00:10", proxy: true,
		qemuArgs: []string{"-m", "768", "-boot", "n"}, timeout: 180 * time.Second}
	p.run(t)
	leases, err := os.ReadFile(p.dnsmasqLeases)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(leases), p.mac) || !strings.Contains(string(leases), p.net+".2") {
		t.Errorf("dnsmasq leased no address in %s.200-250 to %s:\n%s", p.net, p.mac, leases)
	}
	if strings.Contains(p.srvLog.String(), "dhcp-ack") {
		t.Errorf("goldcast acknowledged a lease in proxy mode:\n%s", p.srvLog.String())
	}
}

// TestPXEBootQEMU network-boots a QEMU machine through goldcast end to
// end: SeaBIOS runs QEMU's own iPXE virtio-net option ROM, whose DHCP
// (user class "iPXE") goldcast answers with the per-node script URL; iPXE
// loads the script, then the kernel and the goldcast initramfs over HTTP;
// the initramfs (goldcast as /init) takes its address from goldcast's
// DHCP, reports "booted" and, for the install action, powers off.
func TestPXEBootQEMU(t *testing.T) {
	skipUnlessPXE(t)
	p := &pxeBoot{net: "10.78.0", node: "pxe01", mac: "52:54:00:78:00:10",
		qemuArgs: []string{"-m", "768", "-boot", "n"}, timeout: 180 * time.Second}
	p.run(t)
}
