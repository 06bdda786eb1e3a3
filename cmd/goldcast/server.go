package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/server"
)

func newServerCommand(a *app) *cobra.Command {
	var cfg server.Config
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the image server: HTTP API, rsync daemon, capture sessions",
		Long: `Runs goldcast's server in one process: the HTTP API under /api/v1 (images,
verified tar.zst streams, tree listings and rsync deltas for capture and
update), a read-only rsync daemon offering every image version as a module
(NAME for the latest, NAME@N for each version) to stock rsync clients,
/healthz and Prometheus /metrics. State (capture sessions, node status,
events) lives in DATA/state.db.

Mutating calls and captures need the admin token, generated on first start
into DATA/admin.token (mode 0600) and printed once. Reads are also allowed
from the networks in goldcast.yaml's server.allow_networks.

Without --http/--rsync the addresses come from goldcast.yaml (server.listen,
server.rsync_listen; defaults :8080 and :873); without root a privileged
rsync port is replaced by 8730. SIGTERM or Ctrl-C shuts down gracefully.`,
		Example: `  goldcast server --data /var/lib/goldcast
  goldcast server --http 127.0.0.1:8080 --rsync 127.0.0.1:8730 --tls-self-signed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.config()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("http") {
				cfg.HTTPAddr = c.Server.Listen
			}
			if !cmd.Flags().Changed("rsync") {
				cfg.RsyncAddr = unprivileged(c.Server.RsyncListen, 8730)
			}
			netbootFromConfig(cmd.Flags(), &cfg.Netboot, c.Server)
			switch cfg.Netboot.UnknownNodes {
			case "", "menu", "register":
			default:
				return fmt.Errorf("--unknown-nodes %q: want menu or register", cfg.Netboot.UnknownNodes)
			}
			cfg.DataDir, cfg.ConfigPath, cfg.Logger = a.dataDir, a.configPath, a.log
			cfg.Ready = func(r server.Ready) {
				fmt.Fprintf(a.out, "goldcast server listening\n  API:    %s\n", r.URL)
				if r.RsyncAddr != "" {
					fmt.Fprintf(a.out, "  rsync:  rsync://%s/ (list modules with: rsync rsync://%s/)\n", r.RsyncAddr, r.RsyncAddr)
				}
				if r.Fingerprint != "" {
					fmt.Fprintf(a.out, "  TLS certificate sha256: %s (clients: --tls-fingerprint %s)\n", r.Fingerprint, r.Fingerprint)
				}
				if r.NewToken != "" {
					fmt.Fprintf(a.out, "  admin token (shown once, stored in %s): %s\n", r.TokenPath, r.NewToken)
				} else {
					fmt.Fprintf(a.out, "  admin token: in %s\n", r.TokenPath)
				}
				fmt.Fprintf(a.out, "  try: curl %s/healthz\n", r.URL)
			}
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.HTTPAddr, "http", ":8080", "HTTP API listen address")
	f.StringVar(&cfg.RsyncAddr, "rsync", ":873", `rsync daemon listen address ("" turns it off)`)
	f.StringVar(&cfg.Torrent.PeerAddr, "torrent-peer", "", `BitTorrent seeder listen address (default: the --http host, a free port; "off": web seed only)`)
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "key of --tls-cert (PEM)")
	f.BoolVar(&cfg.TLSSelfSigned, "tls-self-signed", false, "serve HTTPS with a certificate generated into DATA/tls (clients pin its fingerprint)")
	f.DurationVar(&cfg.CaptureTimeout, "capture-timeout", 2*time.Minute, "how long a silent capture session keeps its image locked")
	f.DurationVar(&cfg.HealthTimeout, "health-timeout", 15*time.Minute, "how long an installed node has to report healthy from its first boot before it is marked unhealthy (0: no limit)")
	f.DurationVar(&cfg.ConfigPollInterval, "config-poll", 2*time.Second, "how often goldcast.yaml is checked for changes (SIGHUP reloads at once)")
	f.StringVar(&cfg.Netboot.TFTPAddr, "tftp", "", `TFTP listen address for iPXE binaries, e.g. ":69" ("" off)`)
	f.StringVar(&cfg.Netboot.BootDir, "boot-dir", "", "TFTP root with undionly.kpxe and ipxe.efi (default "+server.DefaultIPXEDir+", Debian package ipxe)")
	f.StringVar(&cfg.Netboot.DHCPMode, "dhcp-mode", "off", "DHCP: full (addresses and boot info), proxy (boot info beside another DHCP server) or off")
	f.StringVar(&cfg.Netboot.DHCPInterface, "dhcp-interface", "", "interface DHCP serves (required with --dhcp-mode)")
	f.StringVar(&cfg.Netboot.DHCPRange, "dhcp-range", "", "full-mode address pool FIRST-LAST, e.g. 10.0.0.100-10.0.0.199")
	f.StringVar(&cfg.Netboot.DHCPRouter, "dhcp-router", "", "default gateway handed out in full mode")
	f.StringSliceVar(&cfg.Netboot.DHCPDNS, "dhcp-dns", nil, "name servers handed out in full mode (comma-separated)")
	f.DurationVar(&cfg.Netboot.DHCPLeaseTime, "dhcp-lease-time", time.Hour, "full-mode lease duration")
	f.StringVar(&cfg.Netboot.UnknownNodes, "unknown-nodes", "", "what a machine no node record knows gets at network boot: menu, or register (boots the initramfs and records it as discovered-<mac>); default: server.unknown_nodes of goldcast.yaml, else menu")
	return cmd
}

// netbootFromConfig fills the netboot settings no flag gave from the
// server section of goldcast.yaml: flags win over the file.
func netbootFromConfig(flags *pflag.FlagSet, nc *server.NetbootConfig, s config.Server) {
	set := func(flag string, dst *string, v string) {
		if !flags.Changed(flag) && v != "" {
			*dst = v
		}
	}
	set("tftp", &nc.TFTPAddr, s.TFTPListen)
	set("boot-dir", &nc.BootDir, s.BootDir)
	set("dhcp-mode", &nc.DHCPMode, s.DHCP.Mode)
	set("dhcp-interface", &nc.DHCPInterface, s.DHCP.Interface)
	set("dhcp-range", &nc.DHCPRange, s.DHCP.Range)
	set("dhcp-router", &nc.DHCPRouter, s.DHCP.Router)
	if !flags.Changed("dhcp-dns") && len(s.DHCP.DNS) > 0 {
		nc.DHCPDNS = s.DHCP.DNS
	}
	if !flags.Changed("dhcp-lease-time") && s.DHCP.LeaseTime != "" {
		// Load checked the duration.
		if d, err := time.ParseDuration(s.DHCP.LeaseTime); err == nil {
			nc.DHCPLeaseTime = d
		}
	}
	nc.SystemImagerOptions = s.DHCP.SystemImagerOptions
}

// unprivileged swaps a privileged port for alt when not running as root.
func unprivileged(addr string, alt int) string {
	if os.Geteuid() == 0 || addr == "" {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if p, err := strconv.Atoi(port); err == nil && p < 1024 {
		return net.JoinHostPort(host, strconv.Itoa(alt))
	}
	return addr
}
