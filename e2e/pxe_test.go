package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	// machine's firmware and size (the NIC, tap and disk are added).
	serverArgs, qemuArgs []string
	// nicOptions are appended to the virtio-net device (",romfile=").
	nicOptions string
	// proxy runs goldcast's DHCP in proxy mode beside dnsmasq, which
	// hands out the addresses; default: goldcast in full mode alone.
	proxy bool
	// nodeYAML is appended to the node's entry in goldcast.yaml, each line
	// indented like the entry's keys ("image: golden\ntransport: http").
	nodeYAML string
	// serverYAML is the server section of goldcast.yaml, if any
	// ("server:\n  allow_networks: [...]").
	serverYAML string
	// setup fills the data directory (images, scripts) before the server
	// starts.
	setup func(t *testing.T, data string)
	// disk is a raw disk image the machine gets as its virtio disk.
	disk    string
	timeout time.Duration

	// data is the server's data directory, set by start.
	data string
	// ns is the namespace, tap the machine's tap device, url the API.
	ns, tap, url string
	// srvLog holds the server's output, serial the machine's console.
	srvLog, serial syncBuffer
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

// start prepares the boot files (the cached Debian kernel and a goldcast
// initramfs built through the CLI), the node and the data directory, the
// namespace with its bridge and tap, and starts the server.
func (p *pxeBoot) start(t *testing.T) {
	t.Helper()
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
	// no_timer_check: under TCG on a busy host the kernel's IO-APIC timer
	// check can fail and panic the boot.
	cfg := p.serverYAML + fmt.Sprintf("nodes:\n  - name: %s\n    macs: [\"%s\"]\n    ips: [%s.60]\n    boot: install\n    kernel_args: no_timer_check\n", p.node, p.mac, p.net)
	for _, line := range strings.Split(strings.TrimSpace(p.nodeYAML), "\n") {
		if line != "" {
			cfg += "    " + line + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(p.data, "goldcast.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if p.setup != nil {
		p.setup(t, p.data)
	}

	// One namespace: bridge br0 with the server's address and the tap
	// QEMU's NIC is plugged into. Bridges snoop multicast unless told not
	// to; test bridges turn it off.
	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	p.ns, p.tap = "gcpxe"+id, "tap"+id
	ipCmd(t, "netns", "add", p.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.ns).Run() })
	ipCmd(t, "-n", p.ns, "link", "set", "lo", "up")
	ipCmd(t, "-n", p.ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", p.ns, "addr", "add", p.net+".1/24", "dev", "br0")
	ipCmd(t, "-n", p.ns, "tuntap", "add", "dev", p.tap, "mode", "tap")
	ipCmd(t, "-n", p.ns, "link", "set", p.tap, "master", "br0")
	ipCmd(t, "-n", p.ns, "link", "set", p.tap, "up")
	ipCmd(t, "-n", p.ns, "link", "set", "br0", "up")

	dhcpArgs := []string{"--dhcp-mode", "full", "--dhcp-interface", "br0", "--dhcp-range", p.net + ".100-" + p.net + ".150"}
	if p.proxy {
		dhcpArgs = []string{"--dhcp-mode", "proxy", "--dhcp-interface", "br0"}
		p.startDnsmasq(t, p.ns)
	}
	p.url = "http://" + p.net + ".1:8080"
	srvArgs := append(append([]string{"netns", "exec", p.ns, goldcast.path, "--data", p.data, "server",
		"--http", p.net + ".1:8080", "--rsync", "", "--torrent-peer", "off"}, dhcpArgs...), p.serverArgs...)
	srv := exec.Command("ip", srvArgs...)
	srv.Stdout, srv.Stderr = &p.srvLog, &p.srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	t.Cleanup(func() { srv.Process.Kill(); <-srvDone })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU serial output:\n%s", p.serial.String())
			t.Logf("server log:\n%s", p.srvLog.String())
		}
	})
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
}

// machine is one run of the QEMU machine.
type machine struct {
	cmd  *exec.Cmd
	done chan error
	// keys types into the serial console.
	keys io.WriteCloser
	// started is when the machine was powered on.
	started time.Time
	// exited is set once done has delivered.
	exited bool
	err    error
}

// boot powers the machine on.
func (p *pxeBoot) boot(t *testing.T) *machine {
	t.Helper()
	args := append([]string{"netns", "exec", p.ns, "qemu-system-x86_64"}, p.qemuArgs...)
	args = append(args, "-accel", "tcg", "-nographic", "-nodefaults", "-serial", "stdio",
		"-netdev", "tap,id=n0,ifname="+p.tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+p.mac+p.nicOptions)
	if p.disk != "" {
		args = append(args, "-drive", "file="+p.disk+",if=virtio,format=raw,cache=unsafe")
	}
	m := &machine{cmd: exec.Command("ip", args...), done: make(chan error, 1)}
	m.cmd.Stdout, m.cmd.Stderr = &p.serial, &p.serial
	keys, err := m.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	m.keys = keys
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() { m.kill() })
	return m
}

// kill pulls the machine's plug (SIGKILL to QEMU) and waits for it.
func (m *machine) kill() {
	if m.exited {
		return
	}
	m.cmd.Process.Kill()
	m.err = <-m.done
	m.exited = true
	m.keys.Close()
}

// pxeStatus is `goldcast status NODE --json`.
type pxeStatus struct {
	Nodes []struct {
		Node    string  `json:"node"`
		State   string  `json:"state"`
		Stage   string  `json:"stage"`
		Image   string  `json:"image"`
		Version int     `json:"version"`
		Percent float64 `json:"percent"`
	} `json:"nodes"`
	Events []struct {
		Time    time.Time         `json:"time"`
		Kind    string            `json:"kind"`
		Stage   string            `json:"stage"`
		Message string            `json:"message"`
		Bytes   int64             `json:"bytes"`
		Fields  map[string]string `json:"fields"`
	} `json:"events"`
	raw []byte
}

// state is the node's state ("" before any).
func (s pxeStatus) state() string {
	if len(s.Nodes) == 0 {
		return ""
	}
	return s.Nodes[0].State
}

// stages lists the node's event stages, oldest first.
func (s pxeStatus) stages() []string {
	var out []string
	for _, e := range s.Events {
		out = append(out, e.Stage)
	}
	return out
}

// booted reports whether a booted event with the hardware facts arrived.
func (s pxeStatus) booted() bool {
	for _, e := range s.Events {
		// A machine without a disk reports the field, empty.
		_, hasDisks := e.Fields["disks"]
		if e.Stage == "booted" && e.Fields["cpus"] != "" && e.Fields["cpus"] != "0" && hasDisks {
			return true
		}
	}
	return false
}

// status runs `goldcast status NODE --json` against the server.
func (p *pxeBoot) status(t *testing.T) pxeStatus {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", p.ns, goldcast.path, "status", p.node, "--json",
		"--server", p.url, "--token-file", filepath.Join(p.data, "admin.token")).Output()
	if err != nil {
		t.Fatalf("goldcast status %s: %v\n%s", p.node, err, out)
	}
	st := pxeStatus{raw: out}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// waitFor polls the node's status until done says so, and fails the test
// when the machine stops first (unless exitOK) or within timeout nothing
// happens. It returns the last status.
func (p *pxeBoot) waitFor(t *testing.T, m *machine, what string, timeout time.Duration, exitOK bool, done func(pxeStatus) bool) pxeStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := p.status(t)
		if done(st) {
			return st
		}
		select {
		case err := <-m.done:
			m.exited, m.err = true, err
			st = p.status(t)
			if done(st) {
				return st
			}
			if !exitOK {
				t.Fatalf("the machine stopped (%v) before %s; stages %v", err, what, st.stages())
			}
			return st
		case <-time.After(2 * time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; stages %v\n%s", what, timeout, st.stages(), st.raw)
		}
	}
}

// run boots the machine until the node's booted report arrived with the
// hardware facts, checks the DHCP and iPXE steps (a proxy gives no lease:
// its offer is enough), stops the machine, and returns the status.
func (p *pxeBoot) run(t *testing.T) pxeStatus {
	t.Helper()
	p.start(t)
	m := p.boot(t)
	st := p.waitFor(t, m, "booted report", p.timeout, false, pxeStatus.booted)
	m.kill()
	t.Logf("%s events: %v", p.node, st.stages())
	p.checkBootSteps(t, st)
	return st
}

// checkBootSteps checks that the status shows the network boot's steps.
func (p *pxeBoot) checkBootSteps(t *testing.T, st pxeStatus) {
	t.Helper()
	want := []string{"dhcp-ack", "ipxe", "booted"}
	if p.proxy {
		want = []string{"dhcp-offer", "ipxe", "booted"}
	}
	for _, w := range want {
		if !slices.Contains(st.stages(), w) {
			t.Errorf("status %s lacks a %s event (stages %v)", p.node, w, st.stages())
		}
	}
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
