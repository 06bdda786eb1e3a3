package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/client/install"
	"github.com/goldcast/goldcast/netboot/initramfs"
)

func newInstallCommand(a *app) *cobra.Command {
	var cfg install.Config
	var tokenFile string
	var noPost bool
	cmd := &cobra.Command{
		Use:   "install --server URL --node NAME --token-file F",
		Short: "Install this machine as a node: partition, mkfs, receive the image, configure, boot loader",
		Long: `Turns this machine into the node NAME, as the goldcast initramfs does by
itself when a node boots with the install action. Run it by hand from the
initramfs's rescue shell (goldcast.action=rescue) or any live system.

Steps, each reported to the server (goldcast status NAME --watch):
  1. the node's install plan from the server: image version, transport,
     disk rule, post action, scripts;
  2. pre-install scripts (DATA/scripts/pre-install on the server);
  3. the disk: chosen by the node's install.disk rule (default: the first
     non-removable disk), partitioned like the golden client's (scaled to
     this disk), filesystems made with the captured labels and UUIDs,
     mounted under --target. A disk that holds data is refused unless the
     node says install.wipe: true;
  4. the node's tree (image plus overrides) received by its transport and
     verified against the manifest;
  5. fstab, host name, network, machine-id, SSH host keys, then the
     bootloader; a first-boot unit that reports the node healthy once;
  6. post-install scripts, chrooted into the new system;
  7. the post action: reboot (default), poweroff, shell or kexec
     (--no-post-action leaves the machine as it is, still mounted).

Settings come from the flags; in the initramfs from the kernel command
line (goldcast.server, goldcast.node, goldcast.token), then the plan.`,
		Example: `  goldcast install --server http://10.0.0.1:8080 --node node007 --token-file /tmp/node007.token
  goldcast install --server http://10.0.0.1:8080 --node node007 --token-file t --no-post-action --target /mnt/new`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokenFile != "" {
				t, err := client.ReadToken(tokenFile)
				if err != nil {
					return err
				}
				cfg.Token = t
			}
			if cfg.Token == "" {
				return errors.New("--token-file is required: the node's token (goldcast node token NAME on the server)")
			}
			cfg.Log = a.log
			return runInstall(cmd.Context(), cfg, noPost, a.printf)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", os.Getenv("GOLDCAST_SERVER"), "server URL (env GOLDCAST_SERVER)")
	f.StringVar(&cfg.Node, "node", "", "the node this machine becomes (required)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the node's token (required)")
	f.StringVar(&cfg.TLSFingerprint, "tls-fingerprint", "", "pin the server certificate's sha256")
	f.StringVar(&cfg.Target, "target", install.DefaultTarget, "where the new filesystems are mounted during the install")
	f.StringVar(&cfg.Transport, "transport", "", "override the node's transport: http, rsync, multicast or torrent")
	f.StringVar(&cfg.Interface, "interface", "", "network interface the multicast transport listens on")
	f.BoolVar(&noPost, "no-post-action", false, "skip the post action: leave the new system mounted and the machine running")
	return cmd
}

// runInstall runs an install with a progress reporter and then its post
// action.
func runInstall(ctx context.Context, cfg install.Config, noPost bool, logf func(string, ...any)) error {
	c, err := client.New(client.Options{URL: cfg.Server, NodeToken: cfg.Token, TLSFingerprint: cfg.TLSFingerprint})
	if err != nil {
		return err
	}
	rep := c.NewProgressReporter(cfg.Node, cfg.Token, cfg.Log)
	cfg.Reporter = rep
	if cfg.BootID == "" {
		if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
			cfg.BootID = strings.TrimSpace(string(b))
		}
	}
	res, err := install.Run(ctx, cfg)
	// Every report, the last one included, reaches the server before the
	// machine reboots or the command ends.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rep.Close(fctx)
	if err != nil {
		return err
	}
	if noPost {
		logf("installed %s@%d on %s; left mounted at %s (--no-post-action)\n", res.Plan.Image, res.Plan.Version, res.Disk.Path, res.Target)
		return nil
	}
	return install.Finish(ctx, res, func(format string, args ...any) { logf(format+"\n", args...) })
}

// initramfsHooks is what the goldcast initramfs runs for boot actions
// besides reporting: the installer.
func initramfsHooks() initramfs.Hooks {
	return initramfs.Hooks{Install: func(ctx context.Context, b initramfs.Boot, logf func(string, ...any)) error {
		log := slog.New(slog.NewTextHandler(b.Console, &slog.HandlerOptions{Level: slog.LevelInfo}))
		return runInstall(ctx, install.Config{Server: b.Server, Node: b.Node, Token: b.Token, BootID: b.BootID, Interface: b.Interface, Log: log}, false, logf)
	}}
}

// newFirstBootCommand is the command the installed system's first-boot
// unit runs.
func newFirstBootCommand(a *app) *cobra.Command {
	var o install.FirstBootOptions
	cmd := &cobra.Command{
		Use:    "firstboot",
		Hidden: true,
		Short:  "Report this installed node healthy to its server once (run by the goldcast-firstboot unit)",
		Long: `Reads ` + install.InstalledPath + ` and the node token the installer left,
posts the node's health (host name, boot ID, kernel, image version) to the
server, retrying until --timeout, then removes the unit, the token and its
own binary so it never runs again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = a.log
			return install.FirstBoot(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "/", "the installed system's root")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up reaching the server after this long")
	return cmd
}
