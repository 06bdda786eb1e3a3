package initramfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// ipJSON runs `ip -j -n NS ARGS` and decodes its output into v.
func ipJSON(t *testing.T, ns string, v any, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ip", append([]string{"-j", "-n", ns}, args...)...).Output()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v", ns, strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("ip -n %s %s: %v in %s", ns, strings.Join(args, " "), err, out)
	}
}

// TestRTNL configures a veth interface inside a network namespace of
// its own with the route netlink code and checks the result with ip(8).
func TestRTNL(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs the ip command (iproute2)")
	}
	ns := fmt.Sprintf("gcinitrd-%d-%08x", os.Getpid(), rand.Uint32())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(t.Context(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.CommandContext(t.Context(), "ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("remove namespace %s: %v: %s", ns, err, out)
		}
	})
	ip("-n", ns, "link", "add", "gcnic0", "type", "veth", "peer", "name", "gcnic1")
	ip("-n", ns, "link", "set", "gcnic1", "up")

	// The netlink calls run on a thread that joined the namespace and is
	// never returned to the scheduler.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- func() error {
			f, err := os.Open(filepath.Join("/run/netns", ns))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("setns: %w", err)
			}
			nl, err := openRTNL()
			if err != nil {
				return err
			}
			defer nl.close()
			lo, err := net.InterfaceByName("lo")
			if err != nil {
				return err
			}
			nic, err := net.InterfaceByName("gcnic0")
			if err != nil {
				return err
			}
			for _, step := range []func() error{
				func() error { return nl.linkUp(lo.Index) },
				func() error { return nl.linkUp(nic.Index) },
				func() error { return nl.addAddr(nic.Index, netip.MustParsePrefix("10.66.0.15/24")) },
				func() error { return nl.addAddr(nic.Index, netip.MustParsePrefix("10.66.0.15/24")) }, // again: replaced
				func() error { return nl.addDefaultRoute(nic.Index, netip.MustParseAddr("10.66.0.1")) },
				func() error { return nl.addDefaultRoute(nic.Index, netip.MustParseAddr("10.66.0.2")) }, // replaces the first
			} {
				if err := step(); err != nil {
					return err
				}
			}
			// The kernel's refusals come back as errors.
			err = nl.addDefaultRoute(nic.Index, netip.MustParseAddr("10.99.0.1"))
			if !errors.Is(err, unix.ENETUNREACH) {
				return fmt.Errorf("route via an unreachable gateway: %v, want ENETUNREACH", err)
			}
			if err := nl.linkUp(9999); !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("link up of a missing interface: %v, want ENODEV", err)
			}
			return nil
		}()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	type addrInfo struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
		Broadcast string `json:"broadcast"`
	}
	var links []struct {
		Ifname   string     `json:"ifname"`
		Flags    []string   `json:"flags"`
		AddrInfo []addrInfo `json:"addr_info"`
	}
	ipJSON(t, ns, &links, "-4", "addr", "show", "dev", "gcnic0")
	if len(links) != 1 {
		t.Fatalf("ip addr show dev gcnic0: %d links", len(links))
	}
	if !strings.Contains(strings.Join(links[0].Flags, ","), "UP") {
		t.Errorf("gcnic0 flags %v lack UP", links[0].Flags)
	}
	if diff := cmp.Diff([]addrInfo{{Family: "inet", Local: "10.66.0.15", Prefixlen: 24, Broadcast: "10.66.0.255"}}, links[0].AddrInfo); diff != "" {
		t.Errorf("gcnic0 addresses (-want +got):\n%s", diff)
	}
	type route struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Dev      string `json:"dev"`
		Protocol string `json:"protocol"`
	}
	var routes []route
	ipJSON(t, ns, &routes, "-4", "route", "show", "default")
	if diff := cmp.Diff([]route{{Dst: "default", Gateway: "10.66.0.2", Dev: "gcnic0", Protocol: "dhcp"}}, routes); diff != "" {
		t.Errorf("default routes (-want +got):\n%s", diff)
	}
	var loLinks []struct {
		Flags []string `json:"flags"`
	}
	ipJSON(t, ns, &loLinks, "link", "show", "dev", "lo")
	if len(loLinks) != 1 || !strings.Contains(strings.Join(loLinks[0].Flags, ","), "UP") {
		t.Errorf("lo is not up: %+v", loLinks)
	}
}
