package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/client/sysconf"
	"github.com/goldcast/goldcast/internal/progress"
)

// serverFlags are the options every command that talks to a server has.
type serverFlags struct {
	url, tokenFile, nodeTokenFile, fingerprint, caFile string
}

func (s *serverFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.url, "server", os.Getenv("GOLDCAST_SERVER"), "server URL, e.g. http://imageserver:8080 (env GOLDCAST_SERVER)")
	f.StringVar(&s.tokenFile, "token-file", os.Getenv("GOLDCAST_TOKEN_FILE"), "file holding the admin token (the server's DATA/admin.token; env GOLDCAST_TOKEN_FILE)")
	f.StringVar(&s.nodeTokenFile, "node-token-file", os.Getenv("GOLDCAST_NODE_TOKEN_FILE"), "file holding this node's own token (goldcast node token NAME; env GOLDCAST_NODE_TOKEN_FILE)")
	f.StringVar(&s.fingerprint, "tls-fingerprint", "", "pin the server certificate's sha256 (for --tls-self-signed servers)")
	f.StringVar(&s.caFile, "tls-ca", "", "trust this CA certificate for the server")
}

func (s *serverFlags) client() (*client.Client, error) {
	if s.url == "" {
		return nil, errors.New("--server URL is required (or set GOLDCAST_SERVER)")
	}
	o := client.Options{URL: s.url, TLSFingerprint: s.fingerprint, CAFile: s.caFile}
	if s.tokenFile != "" {
		t, err := client.ReadToken(s.tokenFile)
		if err != nil {
			return nil, err
		}
		o.Token = t
	}
	if s.nodeTokenFile != "" {
		t, err := client.ReadToken(s.nodeTokenFile)
		if err != nil {
			return nil, err
		}
		o.NodeToken = t
	}
	return client.New(o)
}

func newCaptureCommand(a *app) *cobra.Command {
	var sf serverFlags
	var o client.CaptureOptions
	cmd := &cobra.Command{
		Use:   "capture --server URL --image NAME [--root DIR]",
		Short: "Capture this machine (the golden client) as a new image version",
		Long: `Walks the root (default /) and the local filesystems mounted below it,
skipping /proc, /sys, /dev, /run and /tmp contents, network and pseudo
filesystems, the swap files /swapfile and /swap.img (add others with
--exclude) and the default excludes (see docs/capture.md),
records the disk layout, and publishes the tree as the next version of
NAME on the server.

The first capture of an image travels as one verified stream. Later
captures compare directory digests with the image's latest version, send
only the manifest entries that changed, and send changed files as rsync
deltas against the server's copy. Nothing is published until every file
has arrived and matched its sha256; an interrupted capture leaves no
version behind. --dry-run lists what would change.`,
		Example: `  goldcast capture --server http://imageserver:8080 --token-file admin.token --image web
  goldcast capture --server URL --token-file F --image web --root /mnt/golden --exclude '/srv/cache/*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Image == "" {
				return errors.New("--image NAME is required")
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			bar := progress.New(a.errOut, "capture", 0, 0)
			o.Log, o.Progress, o.Out = a.log, bar.Add, a.out
			start := time.Now()
			res, err := c.Capture(cmd.Context(), o)
			bar.Finish()
			if err != nil {
				return err
			}
			sent, recvd := c.WireBytes()
			if o.DryRun {
				if !res.New {
					fmt.Fprintf(a.errOut, "dry run: %d changes; nothing sent\n", len(res.Changes))
				}
				return nil
			}
			p := res.Published
			switch {
			case p.Unchanged:
				a.printf("%s@%d already holds this tree; nothing published\n", p.Image, p.Version)
			case res.Full:
				a.printf("published %s@%d: %d files, %s, sent as a full stream\n", p.Image, p.Version, res.Files, progress.Bytes(res.Bytes))
			default:
				a.printf("published %s@%d: %d files, %s; %s sent as is, %s rebuilt from the previous version\n",
					p.Image, p.Version, res.Files, progress.Bytes(res.Bytes), progress.Bytes(res.LiteralBytes), progress.Bytes(res.MatchedBytes))
			}
			a.printf("wire: %s sent, %s received in %s\n", progress.Bytes(sent), progress.Bytes(recvd), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	sf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "image name (required)")
	f.StringVar(&o.Root, "root", "/", "tree to capture (a mounted or chrooted system)")
	f.StringArrayVar(&o.Excludes, "exclude", nil, "exclude pattern, added to the defaults (repeatable)")
	f.StringVar(&o.ExcludeFrom, "exclude-from", "", "file of exclude patterns, one per line")
	f.StringVar(&o.Comment, "comment", "", "note recorded in image.json")
	f.BoolVar(&o.DryRun, "dry-run", false, "list what would change; send nothing")
	f.BoolVar(&o.SkipLayout, "no-layout", false, "do not record the disk layout")
	return cmd
}

func newDeployCommand(a *app) *cobra.Command {
	var sf serverFlags
	var cf configureFlags
	var configure bool
	var o client.DeployOptions
	cmd := &cobra.Command{
		Use:   "deploy --server URL --image NAME[@V] --target DIR",
		Short: "Lay an image version into an empty root and verify it",
		Long: `Fills an empty directory (typically a freshly made and mounted filesystem)
with an image version. --transport http (default) extracts the verified
tar.zst stream; --transport rsync pulls from the server's rsync daemon and
then applies what rsync cannot carry (setuid bits, hard links, xattrs, ACLs,
nanosecond times) from the manifest. Either way the result is checked
against the version's manifest. A non-empty target is refused unless
--force, which updates it in place instead: everything but lost+found is
made to match the image (no update excludes apply, so node-local files such
as /etc/hostname and /etc/goldcast are replaced or deleted), whatever the
--transport.`,
		Example: "  goldcast deploy --server http://imageserver:8080 --image web --target /mnt/newroot",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.Image == "") == (o.Node == "") || o.Target == "" {
				return errors.New("--target DIR and one of --image NAME or --node NAME are required")
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			bar := progress.New(a.errOut, "deploy", 0, 0)
			o.Log, o.Progress = a.log, bar.Add
			start := time.Now()
			res, err := c.Deploy(cmd.Context(), o)
			bar.Finish()
			if err != nil {
				return err
			}
			a.printf("deployed %s into %s: %d entries, %s, in %s\n", res.Version, o.Target, res.Entries, progress.Bytes(res.Bytes), time.Since(start).Round(time.Millisecond))
			if !configure {
				return nil
			}
			if o.Node == "" {
				return errors.New("--configure needs --node: the configurator makes the root that node's")
			}
			changes, err := c.Configure(cmd.Context(), cf.options(a, o.Node, o.Target))
			a.printf("configured %s for node %s:\n", o.Target, o.Node)
			printChanges(a, changes)
			return err
		},
	}
	sf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "image NAME or NAME@VERSION")
	f.StringVar(&o.Node, "node", "", "lay down this node's plan: its image with its overrides (needs the node's or the admin token)")
	f.StringVar(&o.Target, "target", "", "empty directory to deploy into (required)")
	f.StringVar(&o.Transport, "transport", client.TransportHTTP, "http (verified stream) or rsync (server's rsync daemon)")
	f.BoolVar(&o.Force, "force", false, "deploy into a non-empty target by updating it in place")
	f.BoolVar(&configure, "configure", false, "then run the system configurator for --node (see goldcast sysconf)")
	cf.add(cmd)
	return cmd
}

func newUpdateCommand(a *app) *cobra.Command {
	var sf serverFlags
	var o client.UpdateOptions
	var reboot bool
	cmd := &cobra.Command{
		Use:   "update --server URL [--image NAME[@V]] [--root DIR]",
		Short: "Bring an installed node up to date with its image (si_updateclient)",
		Long: `Compares the node's root with the image version by directory digests,
fetches changed files as rsync deltas against the local copies, writes each
to a temporary name and renames it into place, applies every piece of
metadata from the manifest, and deletes what the image lacks (unless
--no-delete). Paths in the default exclude list (node identity, logs, home
directories, network configuration; see docs/update.md) and in
ROOT/etc/goldcast/update.exclude are never touched. Afterwards the root is
checked against the version again and ROOT/etc/goldcast/last-sync records
what it now matches. Without --image, the reference of the last sync is
used (NAME follows the latest version, NAME@N stays on N). Mount points of
other filesystems (/proc, /run on a live root) are left alone. Safe to
rerun; --dry-run prints the itemized changes only.`,
		Example: `  goldcast update --server http://imageserver:8080 --image web
  goldcast update --server URL --image web@4 --root /mnt/node --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reboot && o.Root != "/" {
				return errors.New("--reboot only makes sense for --root /")
			}
			if o.Image != "" && o.Node != "" {
				return errors.New("give --image or --node, not both")
			}
			if o.Image == "" && o.Node == "" {
				ls, err := lastSync(o.Root)
				if err != nil {
					return err
				}
				o.Image, o.Node = ls.Ref, ls.Node
				if o.Image == "" && o.Node == "" {
					o.Image = ls.Image
				}
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			bar := progress.New(a.errOut, "update", 0, 0)
			o.Log, o.Progress, o.Out = a.log, bar.Add, a.out
			start := time.Now()
			res, err := c.Update(cmd.Context(), o)
			bar.Finish()
			if err != nil {
				return err
			}
			sent, recvd := c.WireBytes()
			if o.DryRun {
				fmt.Fprintf(a.errOut, "dry run: %d changes to reach %s; nothing changed\n", len(res.Changes), res.Version)
				return nil
			}
			a.printf("%s now matches %s: %d changes, %d files fetched (%s sent whole), %d paths deleted; wire %s sent, %s received, in %s\n",
				o.Root, res.Version, len(res.Changes), res.Fetched, progress.Bytes(res.LiteralBytes), res.Deleted,
				progress.Bytes(sent), progress.Bytes(recvd), time.Since(start).Round(time.Millisecond))
			if reboot && len(res.Changes) > 0 {
				a.printf("rebooting\n")
				return exec.CommandContext(cmd.Context(), "systemctl", "reboot").Run()
			}
			return nil
		},
	}
	sf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "", "image NAME or NAME@VERSION (default: what the last sync used)")
	f.StringVar(&o.Node, "node", "", "update to this node's plan: its image with its overrides")
	f.StringVar(&o.Root, "root", "/", "root to update")
	f.StringArrayVar(&o.Excludes, "exclude", nil, "extra exclude pattern (repeatable)")
	f.StringVar(&o.ExcludeFile, "exclude-from", "", "exclude file, added to the defaults and ROOT/etc/goldcast/update.exclude")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the itemized changes; change nothing")
	f.BoolVar(&o.NoDelete, "no-delete", false, "keep local files the image does not have")
	f.BoolVar(&reboot, "reboot", false, "reboot when the update changed something")
	return cmd
}

// lastSync reads the record of the last update of root.
func lastSync(root string) (*client.LastSync, error) {
	b, err := os.ReadFile(filepath.Join(root, "etc/goldcast/last-sync"))
	if err != nil {
		return nil, fmt.Errorf("--image or --node not given and no earlier sync recorded (%w)", err)
	}
	var ls client.LastSync
	if err := json.Unmarshal(b, &ls); err != nil {
		return nil, fmt.Errorf("read last sync: %w", err)
	}
	return &ls, nil
}

// configureFlags are the system configurator's switches.
type configureFlags struct {
	disk                                                                 string
	noBootloader, noNetwork, noFstab, noHostname, noMachineID, noSSHKeys bool
}

func (f *configureFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.disk, "disk", "", "disk to install the bootloader on (e.g. /dev/sda); without it the bootloader step is skipped")
	fl.BoolVar(&f.noBootloader, "no-bootloader", false, "skip the bootloader step (like si_updateclient --no-bootloader)")
	fl.BoolVar(&f.noNetwork, "no-network", false, "skip writing network configuration")
	fl.BoolVar(&f.noFstab, "no-fstab", false, "skip writing /etc/fstab")
	fl.BoolVar(&f.noHostname, "no-hostname", false, "skip /etc/hostname and /etc/hosts")
	fl.BoolVar(&f.noMachineID, "no-machine-id", false, "keep /etc/machine-id")
	fl.BoolVar(&f.noSSHKeys, "no-ssh-keys", false, "keep the image's SSH host keys")
}

func (f *configureFlags) options(a *app, node, root string) client.ConfigureOptions {
	return client.ConfigureOptions{
		Node: node, Root: root, Disk: f.disk, Log: a.log,
		NoBootloader: f.noBootloader, NoNetwork: f.noNetwork, NoFstab: f.noFstab,
		NoHostname: f.noHostname, NoMachineID: f.noMachineID, NoSSHKeys: f.noSSHKeys,
	}
}

// printChanges reports what the configurator did.
func printChanges(a *app, changes []sysconf.Change) {
	for _, c := range changes {
		if c.Path == "" {
			a.printf("  %-11s note: %s\n", c.Step, c.What)
			continue
		}
		a.printf("  %-11s %s: %s\n", c.Step, c.Path, c.What)
	}
}

func newSysconfCommand(a *app) *cobra.Command {
	var sf serverFlags
	var cf configureFlags
	var node, root string
	cmd := &cobra.Command{
		Use:   "sysconf --server URL --node NAME --root DIR [--disk DEV]",
		Short: "Make a laid-down root belong to its node: fstab, hostname, network, identity, bootloader",
		Long: `Runs the system configurator against ROOT for NODE, with the node's record
and the image's captured disk layout from the server: /etc/fstab by UUID
from the layout, /etc/hostname and /etc/hosts, network configuration in the
format the image uses (systemd-networkd, netplan, NetworkManager, ifupdown;
static from the node's IPs and vars gateway/dns, else DHCP), a fresh
/etc/machine-id, new SSH host keys (kept when a private override of the
node provides them), and the image's own GRUB installed on --disk from a
chroot. Every step can be skipped and every change is reported.`,
		Example: "  goldcast sysconf --server http://imageserver:8080 --node node007 --node-token-file node007.token --root /mnt/target --disk /dev/sda",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" || root == "" {
				return errors.New("--node NAME and --root DIR are required")
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			changes, err := c.Configure(cmd.Context(), cf.options(a, node, root))
			printChanges(a, changes)
			return err
		},
	}
	sf.add(cmd)
	cf.add(cmd)
	cmd.Flags().StringVar(&node, "node", "", "node name (required)")
	cmd.Flags().StringVar(&root, "root", "", "mounted root to configure (required)")
	return cmd
}
