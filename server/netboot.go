package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/goldcast/goldcast/internal/durable"
	"github.com/goldcast/goldcast/netboot/dhcp"
	"github.com/goldcast/goldcast/netboot/tftp"
	"github.com/goldcast/goldcast/server/state"
)

// DefaultIPXEDir is where Debian's ipxe package installs the iPXE
// binaries (undionly.kpxe, ipxe.efi, snponly.efi).
const DefaultIPXEDir = "/usr/lib/ipxe"

// NetbootConfig turns on the network boot services.
type NetbootConfig struct {
	// TFTPAddr is the TFTP listen address ("" turns TFTP off).
	TFTPAddr string
	// BootDir is the TFTP root holding the iPXE binaries (default
	// DefaultIPXEDir).
	BootDir string
	// DHCPMode is full, proxy or off ("").
	DHCPMode string
	// DHCPInterface is the interface DHCP serves; the server's address on
	// it becomes the DHCP server identifier and the boot server.
	DHCPInterface string
	// DHCPRange is the full-mode pool, "FIRST-LAST".
	DHCPRange string
	// DHCPRouter is the default gateway handed out (optional).
	DHCPRouter string
	// DHCPDNS lists the name servers handed out in full mode.
	DHCPDNS []string
	// DHCPLeaseTime is the full-mode lease duration (0: one hour).
	DHCPLeaseTime time.Duration
	// SystemImagerOptions adds option 140 (this server's address) to
	// full-mode answers, as SystemImager's installers expect.
	SystemImagerOptions bool
	// UnknownNodes is what machines without a node record get at network
	// boot: "menu" or "register" (see config.Server); empty follows
	// server.unknown_nodes of the running goldcast.yaml.
	UnknownNodes string
}

// startNetboot starts TFTP and DHCP as the configuration asks, in g.
func startNetboot(ctx context.Context, g *errgroup.Group, nc NetbootConfig, dataDir string, httpPort int, cl *cluster, db *state.Store, log *slog.Logger) error {
	// seen remembers which node DHCP last gave (or offered) each address,
	// so TFTP transfers, which know only the address, name their node.
	var seen sync.Map // netip.Addr -> node name
	nodeAt := func(a netip.Addr) string {
		if n, ok := seen.Load(a); ok {
			return n.(string)
		}
		for _, n := range cl.Get().ExpandedNodes() {
			for _, ip := range n.IPs {
				if ip == a.String() {
					return n.Name
				}
			}
		}
		return ""
	}
	if nc.TFTPAddr != "" {
		root := nc.BootDir
		if root == "" {
			// Debian's ipxe package links some binaries to /boot; TFTP
			// never follows a link out of its root, so serve copies.
			var err error
			if root, err = stageIPXE(DefaultIPXEDir, filepath.Join(dataDir, "boot", "ipxe")); err != nil {
				return err
			}
		}
		if _, err := os.Stat(filepath.Join(root, "undionly.kpxe")); err != nil {
			log.Warn("no iPXE binaries in the TFTP boot directory: install Debian's ipxe package or pass --boot-dir", "dir", root)
		}
		srv, err := tftp.New(tftp.Config{Root: root, Addr: nc.TFTPAddr, Logger: log, OnTransfer: func(tr tftp.Transfer) {
			if tr.SizeProbe {
				return
			}
			msg := fmt.Sprintf("TFTP %s: %d bytes to %s", tr.File, tr.Bytes, tr.Remote)
			if tr.Err != nil {
				msg = fmt.Sprintf("TFTP %s to %s failed: %v", tr.File, tr.Remote, tr.Err)
			}
			db.AppendEvent(state.Event{Node: nodeAt(tr.Remote.Addr().Unmap()), Kind: "boot", Stage: "tftp", Message: msg, Bytes: tr.Bytes, Fields: map[string]string{"file": tr.File, "remote": tr.Remote.String()}})
		}})
		if err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
		g.Go(func() error { return srv.ListenAndServe(ctx) })
		log.Info("TFTP serving", "addr", nc.TFTPAddr, "root", root)
	}
	mode := dhcp.Mode(nc.DHCPMode)
	if mode == "" || mode == dhcp.ModeOff {
		return nil
	}
	if nc.DHCPInterface == "" {
		return errors.New("--dhcp-mode needs --dhcp-interface: a DHCP server must know which network it serves")
	}
	ip, mask, err := interfaceAddr(nc.DHCPInterface)
	if err != nil {
		return err
	}
	cfg := dhcp.Config{Mode: mode, Interface: nc.DHCPInterface, ServerIP: ip, Netmask: mask,
		BootFile: dhcp.DefaultBooter{NextServer: ip, ScriptURL: fmt.Sprintf("http://%s:%d/boot/ipxe?mac=${net0/mac}&uuid=${uuid}", ip, httpPort),
			HTTPBase: fmt.Sprintf("http://%s:%d/boot/files/", ip, httpPort)}}
	if mode == dhcp.ModeFull {
		first, last, ok := strings.Cut(nc.DHCPRange, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("--dhcp-range %q: want FIRST-LAST, e.g. 10.0.0.100-10.0.0.199", nc.DHCPRange)
		}
		cfg.Range = dhcp.Range{First: a, Last: b}
	}
	if nc.DHCPRouter != "" {
		if cfg.Router, err = netip.ParseAddr(nc.DHCPRouter); err != nil {
			return fmt.Errorf("--dhcp-router: %w", err)
		}
	}
	for _, d := range nc.DHCPDNS {
		a, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil || !a.Is4() {
			return fmt.Errorf("--dhcp-dns %q: want IPv4 addresses", d)
		}
		cfg.DNS = append(cfg.DNS, a)
	}
	cfg.LeaseTime = nc.DHCPLeaseTime
	if nc.SystemImagerOptions {
		b := ip.As4()
		cfg.Options = map[uint8][]byte{dhcp.OptionImageServer: b[:]}
	}
	// DHCP events arrive in batches under a flood (a rack booting at
	// once): one state transaction per batch.
	deps := dhcp.Deps{Logger: log, Reservations: reservations{cl}, OnEvents: func(batch []dhcp.Event) {
		conf := cl.Get()
		out := make([]state.Event, 0, len(batch))
		for _, e := range batch {
			node := ""
			if n, ok := findByMAC(conf, e.MAC); ok {
				node = n.Name
				if e.IP.IsValid() && !e.IP.IsUnspecified() && (e.Kind == dhcp.EventAck || e.Kind == dhcp.EventOffer) {
					seen.Store(e.IP, node)
				}
			}
			out = append(out, state.Event{Node: node, Kind: "boot", Stage: "dhcp-" + string(e.Kind),
				Message: fmt.Sprintf("DHCP %s %s %s (arch %d)", e.Kind, e.MAC, e.IP, e.Arch), Fields: map[string]string{"mac": e.MAC.String(), "ip": e.IP.String()}})
		}
		if err := db.AppendEvents(out); err != nil {
			log.Warn("record DHCP events", "count", len(out), "err", err)
		}
	}}
	if mode == dhcp.ModeFull {
		leases, err := dhcp.OpenFileLeaseStore(filepath.Join(dataDir, "dhcp-leases"))
		if err != nil {
			return fmt.Errorf("dhcp leases: %w", err)
		}
		deps.Leases = leases
		g.Go(func() error { <-ctx.Done(); return leases.Close() })
	}
	srv, err := dhcp.New(cfg, deps)
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	g.Go(func() error { return srv.Serve(ctx) })
	log.Info("DHCP serving", "mode", mode, "interface", nc.DHCPInterface, "server", ip, "range", nc.DHCPRange)
	return nil
}

// interfaceAddr returns the first IPv4 address of an interface and its mask.
func interfaceAddr(name string) (netip.Addr, netip.Addr, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("--dhcp-interface %q: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("--dhcp-interface %q: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ip, _ := netip.AddrFromSlice(n.IP.To4())
			mask, _ := netip.AddrFromSlice(net.IP(n.Mask).To4())
			return ip, mask, nil
		}
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("--dhcp-interface %q has no IPv4 address", name)
}

// reservations gives DHCP the addresses node records fix.
type reservations struct{ cl *cluster }

func (r reservations) Lookup(mac net.HardwareAddr) (netip.Addr, string, bool) {
	n, ok := findByMAC(r.cl.Get(), mac)
	if !ok || len(n.IPs) == 0 {
		return netip.Addr{}, "", false
	}
	ip, err := netip.ParseAddr(n.IPs[0])
	if err != nil {
		return netip.Addr{}, "", false
	}
	return ip, n.Name, true
}

// IPXEBinaries are the iPXE programs goldcast's DHCP names.
func IPXEBinaries() []string {
	return []string{"undionly.kpxe", "ipxe.efi", "snponly.efi", "ipxe-arm64.efi"}
}

// stageIPXE copies the iPXE binaries found in src (following symlinks,
// which Debian's package uses) into dst and returns dst. Missing ones
// are skipped; the caller warns when none is there.
func stageIPXE(src, dst string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("stage iPXE binaries: %w", err)
	}
	for _, name := range IPXEBinaries() {
		data, err := os.ReadFile(filepath.Join(src, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("stage iPXE binary %s: %w", name, err)
		}
		if err := durable.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			return "", fmt.Errorf("stage iPXE binary %s: %w", name, err)
		}
	}
	return dst, nil
}
