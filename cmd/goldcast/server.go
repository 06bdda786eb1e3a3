package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

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
	f.DurationVar(&cfg.ConfigPollInterval, "config-poll", 2*time.Second, "how often goldcast.yaml is checked for changes (SIGHUP reloads at once)")
	f.StringVar(&cfg.Netboot.TFTPAddr, "tftp", "", `TFTP listen address for iPXE binaries, e.g. ":69" ("" off)`)
	f.StringVar(&cfg.Netboot.BootDir, "boot-dir", "", "TFTP root with undionly.kpxe and ipxe.efi (default "+server.DefaultIPXEDir+", Debian package ipxe)")
	f.StringVar(&cfg.Netboot.DHCPMode, "dhcp-mode", "off", "DHCP: full (addresses and boot info), proxy (boot info beside another DHCP server) or off")
	f.StringVar(&cfg.Netboot.DHCPInterface, "dhcp-interface", "", "interface DHCP serves (required with --dhcp-mode)")
	f.StringVar(&cfg.Netboot.DHCPRange, "dhcp-range", "", "full-mode address pool FIRST-LAST, e.g. 10.0.0.100-10.0.0.199")
	f.StringVar(&cfg.Netboot.DHCPRouter, "dhcp-router", "", "default gateway handed out in full mode")
	return cmd
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
