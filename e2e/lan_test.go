package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// bridgeLAN is a switch namespace holding a bridge (multicast snooping
// off, as udpcast needs) and host namespaces plugged into it by veths.
// Each host has eth0 with its address in a /24 and a default route out
// of it; its veth's bridge side is named by the caller. The namespaces
// go away with the test.
type bridgeLAN struct {
	sw    string
	hosts []string
	ports []string // the bridge side of each host's veth, in sw
}

// newBridgeLAN makes a LAN of len(addrs) hosts; namespace names start
// with prefix and a random id, so parallel runs do not collide.
func newBridgeLAN(t *testing.T, prefix string, ports, addrs []string) *bridgeLAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (iproute2) is not installed", tool)
		}
	}
	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	addNs := func(ns string) {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	l := &bridgeLAN{sw: prefix + "sw" + id}
	addNs(l.sw)
	ipCmd(t, "-n", l.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	ipCmd(t, "-n", l.sw, "link", "set", "br0", "up")
	for i, addr := range addrs {
		ns := fmt.Sprintf("%s%s-%d", prefix, id, i)
		addNs(ns)
		ipCmd(t, "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", ports[i], "netns", l.sw)
		ipCmd(t, "-n", l.sw, "link", "set", ports[i], "master", "br0", "up")
		ipCmd(t, "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		ipCmd(t, "-n", ns, "route", "add", "default", "dev", "eth0")
		l.hosts = append(l.hosts, ns)
		l.ports = append(l.ports, ports[i])
	}
	return l
}
