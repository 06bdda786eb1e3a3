package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netns is a pair of network namespaces joined by a veth: the server side
// 10.77.0.1/24 and a bare client side.
type netns struct {
	server, client     string
	serverIf, clientIf string
	clientMAC          string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed")
	}
	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	n := &netns{server: "gcs" + id, client: "gcc" + id, serverIf: "gs" + id, clientIf: "gc" + id, clientMAC: "52:54:00:77:00:42"}
	ipCmd(t, "netns", "add", n.server)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.server).Run() })
	ipCmd(t, "netns", "add", n.client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.client).Run() })
	ipCmd(t, "link", "add", n.serverIf, "netns", n.server, "type", "veth", "peer", "name", n.clientIf, "netns", n.client)
	ipCmd(t, "-n", n.client, "link", "set", n.clientIf, "address", n.clientMAC)
	ipCmd(t, "-n", n.server, "addr", "add", "10.77.0.1/24", "dev", n.serverIf)
	for _, ns := range [][2]string{{n.server, n.serverIf}, {n.client, n.clientIf}} {
		ipCmd(t, "-n", ns[0], "link", "set", ns[1], "up")
		ipCmd(t, "-n", ns[0], "link", "set", "lo", "up")
	}
	return n
}

// TestNetbootDHCPAndTFTP runs `goldcast server` with DHCP in full mode and
// TFTP inside a namespace, and a stock busybox udhcpc and curl's tftp://
// in the other: the node's reserved address, the boot file, and the
// events at the server.
func TestNetbootDHCPAndTFTP(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox (udhcpc) is not installed")
	}
	n := newNetns(t)
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	cfg := fmt.Sprintf("nodes:\n  - name: pxe01\n    macs: [\"%s\"]\n    ips: [10.77.0.50]\n    boot: install\n", n.clientMAC)
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644)
	bootDir := t.TempDir()
	ipxeBinary := []byte(strings.Repeat("iPXE boot program ", 4000))
	os.WriteFile(filepath.Join(bootDir, "undionly.kpxe"), ipxeBinary, 0o644)

	srv := exec.Command("ip", "netns", "exec", n.server, goldcast.path, "--data", data, "server",
		"--http", "10.77.0.1:8080", "--rsync", "", "--tftp", "10.77.0.1:69", "--boot-dir", bootDir,
		"--dhcp-mode", "full", "--dhcp-interface", n.serverIf, "--dhcp-range", "10.77.0.100-10.77.0.150")
	stdout, _ := srv.StdoutPipe()
	srv.Stderr = srv.Stdout
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	ready := make(chan struct{})
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "DHCP serving") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("server did not start DHCP:\n%s", logs.String())
	}

	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE $ip $siaddr $boot_file\"\nexit 0\n"), 0o755)
	out, err := exec.Command("ip", "netns", "exec", n.client, "busybox", "udhcpc", "-i", n.clientIf, "-n", "-q", "-t", "5", "-T", "2", "-s", script,
		"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "LEASE 10.77.0.50 ") {
		t.Fatalf("udhcpc did not get the reserved address: %v\n%s\nserver:\n%s", err, out, logs.String())
	}
	if !strings.Contains(string(out), "undionly.kpxe") {
		t.Errorf("the offer names no BIOS boot file:\n%s", out)
	}

	ipCmd(t, "-n", n.client, "addr", "add", "10.77.0.50/24", "dev", n.clientIf)
	got, err := exec.Command("ip", "netns", "exec", n.client, "curl", "-s", "--tftp-blksize", "1468", "tftp://10.77.0.1/undionly.kpxe").Output()
	if err != nil || string(got) != string(ipxeBinary) {
		t.Fatalf("tftp download: %v (%d bytes, want %d)", err, len(got), len(ipxeBinary))
	}
	script2, err := exec.Command("ip", "netns", "exec", n.client, "curl", "-s", "http://10.77.0.1:8080/boot/ipxe?mac="+n.clientMAC).Output()
	if err != nil || !strings.Contains(string(script2), "goldcast.node=pxe01") {
		t.Fatalf("iPXE script over the namespace: %v\n%s", err, script2)
	}
	status, err := exec.Command("ip", "netns", "exec", n.server, goldcast.path, "status", "pxe01", "--server", "http://10.77.0.1:8080", "--token-file", filepath.Join(data, "admin.token")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dhcp-ack", "ipxe"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("status pxe01 lacks %s:\n%s", want, status)
		}
	}
}
