package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// The PXE identity the stock clients send, so the answer names a boot
// file: BIOS (architecture 0) PXE firmware.
const pxeVendorClass = "PXEClient:Arch:00000:UNDI:002001"

// startDHCPServer runs `goldcast server` with full-mode DHCP on the
// namespace pair's server side, its log in DATA/server.log, and returns
// the function that kills it.
func startDHCPServer(t *testing.T, n *netns, data string, extra ...string) func() {
	t.Helper()
	args := append([]string{goldcast.path, "--data", data, "server", "--http", "10.77.0.1:8080", "--rsync", "",
		"--dhcp-mode", "full", "--dhcp-interface", n.serverIf, "--dhcp-router", "10.77.0.1"}, extra...)
	return startNetnsProcess(t, n.server, filepath.Join(data, fmt.Sprintf("server-%d.log", time.Now().UnixNano())), "DHCP serving", args...)
}

// setClientMAC gives the client side of the veth another MAC address.
func setClientMAC(t *testing.T, n *netns, mac string) {
	t.Helper()
	ipCmd(t, "-n", n.client, "link", "set", n.clientIf, "down")
	ipCmd(t, "-n", n.client, "link", "set", n.clientIf, "address", mac)
	ipCmd(t, "-n", n.client, "link", "set", n.clientIf, "up")
}

// dhcpAnswer is what a stock client reported from its lease.
type dhcpAnswer struct {
	IP, Router, DNS, File string
}

// TestDHCPInterop runs `goldcast server` with full-mode DHCP and asks it
// with two stock clients, busybox udhcpc and ISC dhclient, each once as a
// machine with a node record (its reserved address) and once as an
// unknown machine (a pool address): the address, router, DNS server and
// boot file each client reports from its lease.
func TestDHCPInterop(t *testing.T) {
	for _, tool := range []string{"busybox", "dhclient"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps: busybox, isc-dhcp-client)", tool)
		}
	}
	n := newNetns(t)
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	const (
		udhcpcMAC  = "52:54:00:77:10:01"
		dhclntMAC  = "52:54:00:77:10:02"
		unknownU   = "52:54:00:77:20:01"
		unknownD   = "52:54:00:77:20:02"
		udhcpcIP   = "10.77.0.51"
		dhclientIP = "10.77.0.52"
	)
	ok(t, "--data", data, "node", "add", "udhcpc01", "--mac", udhcpcMAC, "--ip", udhcpcIP, "--boot", "install")
	ok(t, "--data", data, "node", "add", "dhclient01", "--mac", dhclntMAC, "--ip", dhclientIP, "--boot", "install")
	var extra []string
	wantDNS := ""
	if strings.Contains(ok(t, "server", "--help").stdout, "--dhcp-dns") {
		extra = append(extra, "--dhcp-dns", "10.77.0.53")
		wantDNS = "10.77.0.53"
	} else {
		t.Log("goldcast server has no --dhcp-dns flag: no DNS server is handed out, the test checks that none is")
	}
	startDHCPServer(t, n, data, append(extra, "--dhcp-range", "10.77.0.100-10.77.0.150")...)

	got := map[string]dhcpAnswer{}
	for _, c := range []struct{ client, mac string }{
		{"udhcpc", udhcpcMAC}, {"udhcpc", unknownU}, {"dhclient", dhclntMAC}, {"dhclient", unknownD},
	} {
		setClientMAC(t, n, c.mac)
		if c.client == "udhcpc" {
			got[c.mac] = runUdhcpc(t, n)
		} else {
			got[c.mac] = runDhclient(t, n)
		}
	}
	for mac, want := range map[string]string{udhcpcMAC: udhcpcIP, dhclntMAC: dhclientIP} {
		if got[mac].IP != want {
			t.Errorf("client %s with a node record got %q, want its reserved %s", mac, got[mac].IP, want)
		}
	}
	for _, mac := range []string{unknownU, unknownD} {
		ip := net.ParseIP(got[mac].IP).To4()
		if ip == nil || ip[3] < 100 || ip[3] > 150 || !strings.HasPrefix(got[mac].IP, "10.77.0.") {
			t.Errorf("unknown client %s got %q, want an address of the pool 10.77.0.100-150", mac, got[mac].IP)
		}
	}
	if got[unknownU].IP == got[unknownD].IP {
		t.Errorf("two unknown clients got the same address %s", got[unknownU].IP)
	}
	for mac, a := range got {
		if a.Router != "10.77.0.1" {
			t.Errorf("client %s: router %q, want 10.77.0.1", mac, a.Router)
		}
		if a.DNS != wantDNS {
			t.Errorf("client %s: DNS %q, want %q", mac, a.DNS, wantDNS)
		}
		if a.File != "undionly.kpxe" {
			t.Errorf("client %s: boot file %q, want undionly.kpxe (BIOS PXE)", mac, a.File)
		}
	}
	t.Logf("leases: %+v", got)
}

// runUdhcpc asks for a lease with busybox udhcpc as BIOS PXE firmware and
// returns what its script was told.
func runUdhcpc(t *testing.T, n *netns) dhcpAnswer {
	t.Helper()
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE|$ip|$router|$dns|${boot_file:-$bootfile}|\"\nexit 0\n"), 0o755)
	out, err := exec.Command("ip", "netns", "exec", n.client, "busybox", "udhcpc", "-i", n.clientIf, "-n", "-q", "-f",
		"-t", "5", "-T", "2", "-s", script, "-V", pxeVendorClass, "-x", "0x5d:0000").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, "|"); len(f) == 6 && f[0] == "LEASE" {
			return dhcpAnswer{IP: f[1], Router: strings.TrimSpace(f[2]), DNS: strings.TrimSpace(f[3]), File: f[4]}
		}
	}
	t.Fatalf("udhcpc got no lease: %v\n%s", err, out)
	return dhcpAnswer{}
}

// runDhclient asks for a lease with ISC dhclient in the foreground as
// BIOS PXE firmware, waits for its script to report the bound lease, and
// stops it (by PID).
func runDhclient(t *testing.T, n *netns) dhcpAnswer {
	t.Helper()
	dir := t.TempDir()
	report := filepath.Join(dir, "report")
	script := filepath.Join(dir, "dhclient.sh")
	os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\ncase \"$reason\" in BOUND|REBOOT) echo \"LEASE|$new_ip_address|$new_routers|$new_domain_name_servers|$new_filename|\" >> %s;; esac\nexit 0\n", report)), 0o755)
	conf := filepath.Join(dir, "dhclient.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("send vendor-class-identifier %q;\nrequest subnet-mask, routers, domain-name-servers;\n", pxeVendorClass)), 0o644)
	cmd := exec.Command("ip", "netns", "exec", n.client, "dhclient", "-d", "-4", "-1", "-sf", script,
		"-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "-cf", conf, n.clientIf)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(report)
		if f := strings.Split(strings.TrimSpace(string(b)), "|"); len(f) == 6 && f[0] == "LEASE" {
			// dhclient runs its script on BOUND before it writes the
			// lease file: wait for the file too.
			var lf []byte
			for time.Now().Before(deadline) {
				lf, _ = os.ReadFile(filepath.Join(dir, "leases"))
				if strings.Contains(string(lf), "fixed-address "+f[1]+";") {
					return dhcpAnswer{IP: f[1], Router: f[2], DNS: f[3], File: f[4]}
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Errorf("dhclient's lease file does not record %s:\n%s", f[1], lf)
			return dhcpAnswer{IP: f[1], Router: f[2], DNS: f[3], File: f[4]}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dhclient got no lease within 30 s:\n%s", out.String())
	return dhcpAnswer{}
}

// TestDHCPCrashDurability kills the goldcast server (SIGKILL) while
// perfdhcp loads it and recording clients take leases, restarts it on
// the same data directory, and checks that no acknowledged lease was
// lost or given away: every recorded client gets its address again by
// renewal, by a fresh DISCOVER and by a full exchange, and new clients
// never get a recorded address.
func TestDHCPCrashDurability(t *testing.T) {
	if _, err := exec.LookPath("perfdhcp"); err != nil {
		t.Skip("perfdhcp is not installed (make deps: kea-admin)")
	}
	n := newNetns(t)
	// perfdhcp talks as a relay agent from this address.
	ipCmd(t, "-n", n.client, "addr", "add", "10.77.0.2/24", "dev", n.clientIf)
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	args := []string{"--dhcp-range", "10.77.0.10-10.77.0.250"}
	kill := startDHCPServer(t, n, data, args...)

	perf := exec.Command("ip", "netns", "exec", n.client, "perfdhcp", "-4", "-l", n.clientIf, "-r", "200", "-R", "50", "-p", "60")
	perfOut := &strings.Builder{}
	perf.Stdout, perf.Stderr = perfOut, perfOut
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	stopPerf := func() { perf.Process.Kill(); perf.Wait() }
	t.Cleanup(stopPerf)

	// Recording clients: each exchange uses a new MAC, so every ACK is a
	// new lease written just before it was sent.
	const workers, killAfter, maxRecorded = 6, 40, 100
	rec := &ackRecord{acks: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < maxRecorded/workers; i++ {
				mac := fmt.Sprintf("02:67:63:00:%02x:%02x", w, i)
				c := newRecordingClient(t, n, mac)
				lease, err := c.Request(ctx)
				c.Close()
				if err == nil {
					rec.add(mac, lease.ACK.YourIPAddr.String())
				}
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for rec.len() < killAfter && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	kill() // SIGKILL, by PID, while requests are in flight
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	recorded := rec.snapshot()
	for _, b := range rec.bad {
		t.Errorf("before the crash: %s", b)
	}
	if len(recorded) < killAfter {
		t.Fatalf("only %d leases recorded before the kill; perfdhcp:\n%s", len(recorded), perfOut)
	}
	t.Logf("%d leases acknowledged before SIGKILL", len(recorded))

	startDHCPServer(t, n, data, args...)
	taken := map[string]string{}
	for mac, ip := range recorded {
		taken[ip] = mac
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel2()
	for mac, ip := range recorded {
		c := newRecordingClient(t, n, mac)
		offer, err := c.DiscoverOffer(ctx2)
		if err != nil || offer.YourIPAddr.String() != ip {
			t.Errorf("after restart %s was offered %v (%v), want its acknowledged %s", mac, yiaddr(offer), err, ip)
		}
		lease, err := c.Request(ctx2)
		if err != nil || lease.ACK.YourIPAddr.String() != ip {
			t.Errorf("after restart %s got %v by a full exchange (%v), want %s", mac, leaseIP(lease), err, ip)
			c.Close()
			continue
		}
		// A renewal: REQUEST with ciaddr, answered by unicast, so the
		// client side holds the address while it asks.
		ipCmd(t, "-n", n.client, "addr", "add", ip+"/32", "dev", n.clientIf)
		renewed, err := c.Renew(ctx2, lease)
		ipCmd(t, "-n", n.client, "addr", "del", ip+"/32", "dev", n.clientIf)
		if err != nil || renewed.ACK.YourIPAddr.String() != ip {
			t.Errorf("after restart %s renewed to %v (%v), want %s", mac, leaseIP(renewed), err, ip)
		}
		c.Close()
	}
	for i := range 30 {
		mac := fmt.Sprintf("02:67:63:ff:00:%02x", i)
		c := newRecordingClient(t, n, mac)
		lease, err := c.Request(ctx2)
		c.Close()
		if err != nil {
			t.Errorf("new client %s after restart: %v", mac, err)
			continue
		}
		ip := lease.ACK.YourIPAddr.String()
		if owner, ok := taken[ip]; ok {
			t.Errorf("new client %s got %s, acknowledged to %s before the crash", mac, ip, owner)
		}
		taken[ip] = mac
	}
	stopPerf()
}

// ackRecord is the MAC -> address of every DHCPACK a recording client
// received.
type ackRecord struct {
	mu   sync.Mutex
	acks map[string]string
	bad  []string
}

func (r *ackRecord) add(mac, ip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.acks[mac]; ok && old != ip {
		r.bad = append(r.bad, fmt.Sprintf("%s acknowledged %s then %s", mac, old, ip))
	}
	r.acks[mac] = ip
}

func (r *ackRecord) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acks)
}

func (r *ackRecord) snapshot() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.acks {
		out[k] = v
	}
	return out
}

// newRecordingClient opens an nclient4 client with hardware address mac
// on the client side of the veth: its raw socket is created on a thread
// inside the client namespace and stays there.
func newRecordingClient(t *testing.T, n *netns, mac string) *nclient4.Client {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	var c *nclient4.Client
	err = inNetns(n.client, func() error {
		var err error
		c, err = nclient4.New(n.clientIf, nclient4.WithHWAddr(hw), nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
		return err
	})
	if err != nil {
		t.Fatalf("dhcp client %s: %v", mac, err)
	}
	return c
}

// inNetns runs fn on a new OS thread that joined network namespace ns,
// and returns its error. Sockets fn opens stay in ns. The thread is never
// unlocked, so it ends with fn and never runs other goroutines.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), syscall.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func yiaddr(m *dhcpv4.DHCPv4) string {
	if m == nil {
		return "nothing"
	}
	return m.YourIPAddr.String()
}

func leaseIP(l *nclient4.Lease) string {
	if l == nil || l.ACK == nil {
		return "nothing"
	}
	return l.ACK.YourIPAddr.String()
}
