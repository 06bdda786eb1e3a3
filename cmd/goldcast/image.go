package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/ref"
	"github.com/goldcast/goldcast/images/signing"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/progress"
)

func newImageCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images and their versions",
		Long: `An image is a named sequence of immutable versions. A version is a real
directory tree plus its manifest (every path's type, mode, owner, times,
xattrs, sha256) and image.json. Refer to a version as NAME@N; plain NAME
means the latest version.`,
	}
	cmd.AddCommand(
		imageImportCmd(a), imageLsCmd(a), imageInfoCmd(a), imageVersionsCmd(a),
		imageCpCmd(a), imageMvCmd(a), imageRmCmd(a), imageVerifyCmd(a), imageDiffCmd(a),
		imagePruneCmd(a), imageShellCmd(a), imageExportCmd(a), imageImportStreamCmd(a),
		imageExtractCmd(a), imageSignCmd(a),
	)
	return cmd
}

// completeImages offers image names (and NAME@N forms) for completion.
func completeImages(a *app) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		s, err := store.Open(a.dataDir, nil)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		imgs, err := s.Images()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, im := range imgs {
			out = append(out, im.Name)
			if strings.HasPrefix(toComplete, im.Name+"@") {
				vs, _ := s.Versions(im.Name)
				for _, v := range vs {
					out = append(out, v.Ref())
				}
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func imageImportCmd(a *app) *cobra.Command {
	var name, comment, excludeFrom, layoutFile string
	var excludes []string
	var crossFS, checksum, force bool
	cmd := &cobra.Command{
		Use:   "import DIR --image NAME",
		Short: "Store a directory tree as a new image version",
		Long: `Walk DIR (staying on its filesystem unless --cross-filesystems) and store it
as the next version of NAME. Files unchanged since the latest version (same
size, mtime, mode, owner and xattrs; with --checksum, same content too) share
its inodes, so a new version costs only what changed. Sockets are skipped
with a warning. A tree identical to the latest version publishes nothing
unless --force.

A tree built in a directory (debootstrap, a chroot) has no disks: give the
layout nodes should be partitioned with as --disk-layout FILE (the JSON
that goldcast capture records, see docs/install-disks.md).

Exclude patterns follow rsync: "/var/cache/*" is anchored at DIR, "*.log"
matches at any depth, a trailing "/" matches directories only, "**" crosses
directories. --exclude-from reads one pattern per line ("#" comments).`,
		Example: `  goldcast image import /srv/golden --image web
  goldcast image import / --image compute --exclude '/home/*' --exclude-from /etc/goldcast/exclude`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return errors.New("--image NAME is required")
			}
			ex, err := manifest.NewExcluder(excludes)
			if err != nil {
				return err
			}
			if excludeFrom != "" {
				if err := ex.AddFile(excludeFrom); err != nil {
					return err
				}
			}
			var layout []byte
			if layoutFile != "" {
				if layout, err = readDiskLayout(layoutFile); err != nil {
					return err
				}
			}
			s, err := a.store()
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			bar := progress.New(a.errOut, "import", 0, 0)
			start := time.Now()
			res, err := s.ImportDir(cmd.Context(), args[0], name, store.ImportOptions{
				Exclude: ex, CrossFilesystems: crossFS, Checksum: checksum, SourceHost: host,
				Comment: comment, PublishUnchanged: force, Progress: bar.Add, DiskLayout: layout,
			})
			bar.Finish()
			if err != nil {
				return err
			}
			if res.Unchanged {
				a.printf("%s already holds this tree; nothing published (use --force to publish anyway)\n", res.Version.Ref())
				return nil
			}
			i := res.Version.Info
			a.printf("published %s: %d files, %s, %d shared with the previous version, in %s\n",
				res.Version.Ref(), i.Totals.Files, progress.Bytes(i.Totals.Bytes), res.Reused, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "image", "", "image name (required)")
	f.StringArrayVar(&excludes, "exclude", nil, "exclude pattern (repeatable)")
	f.StringVar(&excludeFrom, "exclude-from", "", "file of exclude patterns, one per line")
	f.StringVar(&layoutFile, "disk-layout", "", "JSON disk layout to record in image.json (as goldcast capture records it; see docs/install-disks.md), for trees not captured from a running machine")
	f.BoolVar(&crossFS, "cross-filesystems", false, "descend into other filesystems mounted below DIR")
	f.BoolVar(&checksum, "checksum", false, "compare content, not just size and mtime, with the previous version")
	f.StringVar(&comment, "comment", "", "note recorded in image.json")
	f.BoolVar(&force, "force", false, "publish even when nothing changed")
	_ = cmd.RegisterFlagCompletionFunc("image", completeImages(a))
	return cmd
}

func imageLsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Long:    "Lists every image with its latest version number, how many versions it has, file count, size, publish time and manifest digest.",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			imgs, err := s.Images()
			if err != nil {
				return err
			}
			if a.jsonOut {
				if imgs == nil {
					imgs = []store.ImageSummary{}
				}
				return a.printJSON(imgs)
			}
			rows := make([][]string, 0, len(imgs))
			for _, im := range imgs {
				rows = append(rows, []string{im.Name, strconv.Itoa(im.Latest), strconv.Itoa(im.Versions),
					strconv.Itoa(im.Files), progress.Bytes(im.Bytes), im.Created.Local().Format("2006-01-02 15:04"), im.Digest[:16]})
			}
			a.table([]string{"IMAGE", "LATEST", "VERSIONS", "FILES", "SIZE", "PUBLISHED", "DIGEST"}, rows)
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

func imageInfoCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info NAME[@VERSION]",
		Short: "Show a version's image.json: provenance, totals, digest, tree path",
		Long: `Shows where the version came from (host, path, capture time), its parent,
manifest digest, whether it is signed, totals, kernels found under /boot,
the excludes it was taken with, and the path of its tree (chroot-able; do
not edit it in place: versions share files, use "image shell").`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			v, err := s.Resolve(args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(v.Info)
			}
			i := v.Info
			a.printf("image:       %s\n", v.Ref())
			a.printf("tree:        %s\n", i.Path)
			a.printf("published:   %s\n", i.Created.Local().Format(time.RFC3339))
			a.printf("captured:    %s from %s:%s\n", i.CapturedAt.Local().Format(time.RFC3339), orDash(i.SourceHost), orDash(i.SourcePath))
			if i.Parent > 0 {
				a.printf("parent:      %s@%d\n", i.Image, i.Parent)
			}
			a.printf("manifest:    sha256:%s\n", i.ManifestDigest)
			a.printf("signed:      %v\n", i.Signed)
			a.printf("entries:     %d (%d files, %d directories), %s\n", i.Totals.Entries, i.Totals.Files, i.Totals.Dirs, progress.Bytes(i.Totals.Bytes))
			if len(i.Kernels) > 0 {
				a.printf("kernels:     %s\n", strings.Join(i.Kernels, ", "))
			}
			if len(i.Excludes) > 0 {
				a.printf("excludes:    %s\n", strings.Join(i.Excludes, " "))
			}
			if i.Comment != "" {
				a.printf("comment:     %s\n", i.Comment)
			}
			if !i.TreeExact {
				a.printf("note:        stored without root; owners and device nodes are kept in the manifest only\n")
			}
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func imageVersionsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:               "versions NAME",
		Short:             "List the versions of an image",
		Long:              "Lists an image's versions, oldest first: number, publish time, files, size, signature, digest and comment.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			vs, err := s.Versions(args[0])
			if err != nil {
				return err
			}
			if len(vs) == 0 {
				return fmt.Errorf("image %q: %w", args[0], store.ErrNotFound)
			}
			if a.jsonOut {
				infos := make([]store.Info, len(vs))
				for i, v := range vs {
					infos[i] = v.Info
				}
				return a.printJSON(infos)
			}
			var rows [][]string
			for _, v := range vs {
				i := v.Info
				rows = append(rows, []string{strconv.Itoa(i.Version), i.Created.Local().Format("2006-01-02 15:04:05"),
					strconv.Itoa(i.Totals.Files), progress.Bytes(i.Totals.Bytes), yesNo(i.Signed), i.ManifestDigest[:16], i.Comment})
			}
			a.table([]string{"VERSION", "PUBLISHED", "FILES", "SIZE", "SIGNED", "DIGEST", "COMMENT"}, rows)
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func imageCpCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "cp SRC[@VERSION] DST",
		Short:             "Copy a version as a new version of another (or a new) image",
		Long:              "The copy shares every file with its source, so it costs no space until one side changes.",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			v, err := s.Copy(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			a.printf("published %s (copy of %s)\n", v.Ref(), args[0])
			return nil
		},
	}
}

func imageMvCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "mv OLD NEW",
		Short:             "Rename an image with all its versions",
		Long:              "Renames NAME and all its versions at once. Refuses while nodes in the configuration use the old name, unless --force (then update goldcast.yaml).",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.refuseIfUsed(args[0], force, "rename"); err != nil {
				return err
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			if err := s.Rename(args[0], args[1]); err != nil {
				return err
			}
			a.printf("renamed %s to %s\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "rename even though nodes in the configuration use the image")
	return cmd
}

// refuseIfUsed stops removing or renaming an image that nodes use.
func (a *app) refuseIfUsed(ref string, force bool, verb string) error {
	name, _, err := store.ParseRef(ref)
	if err != nil {
		return err
	}
	c, err := a.config()
	if err != nil {
		return fmt.Errorf("check which nodes use %q: %w", name, err)
	}
	used := c.NodesUsingImage(name)
	if len(used) == 0 || force {
		return nil
	}
	shown := used
	if len(shown) > 10 {
		shown = append(shown[:10:10], fmt.Sprintf("... (%d in all)", len(used)))
	}
	return fmt.Errorf("refusing to %s image %q: nodes use it: %s (move them to another image first, or pass --force)",
		verb, name, strings.Join(shown, ", "))
}

func imageRmCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm NAME[@VERSION]...",
		Short: "Remove images or single versions",
		Long: `Removes NAME with all its versions, or only one version with NAME@N (or
NAME@latest). Refuses to remove an image a node or group in the
configuration uses, or a version one pins (image: NAME@N), unless --force.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			c, err := a.config()
			if err != nil {
				return fmt.Errorf("check which nodes use the image: %w", err)
			}
			for _, ref := range args {
				name, n, err := store.ParseRef(ref)
				if err != nil {
					return err
				}
				if n == 0 && strings.Contains(ref, "@") {
					// NAME@latest names one version, not the image.
					v, err := s.Resolve(ref)
					if err != nil {
						return err
					}
					n = v.Info.Version
				}
				if n > 0 && pinnedVersions(c, name)[n] && !force {
					return fmt.Errorf("refusing to remove %s@%d: the configuration pins it (image: %s@%d); pass --force to remove it anyway", name, n, name, n)
				}
				if n == 0 {
					if err := a.refuseIfUsed(name, force, "remove"); err != nil {
						return err
					}
					if err := s.Remove(name); err != nil {
						return err
					}
					a.printf("removed image %s\n", name)
					continue
				}
				if err := s.RemoveVersion(name, n); err != nil {
					return err
				}
				a.printf("removed %s@%d\n", name, n)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even though nodes use the image")
	return cmd
}

func loadPubKey(path string) (ed25519.PublicKey, error) {
	if path == "" {
		return nil, nil
	}
	return signing.LoadPublicKey(path)
}

func imageVerifyCmd(a *app) *cobra.Command {
	var pubkey string
	cmd := &cobra.Command{
		Use:   "verify NAME[@VERSION]",
		Short: "Re-hash a version's tree and check every field against its manifest",
		Long: `Reads every file of the version's tree, hashes it, and compares type, mode,
owner, size, mtime, content, link targets, devices, xattrs and hard links
with the manifest; each difference is reported. The manifest's digest is
checked against image.json, and with --pubkey the signature as well.
Exits 1 when anything differs.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := loadPubKey(pubkey)
			if err != nil {
				return err
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			v, err := s.Resolve(args[0])
			if err != nil {
				return err
			}
			bar := progress.New(a.errOut, "verify", v.Info.Totals.Files, v.Info.Totals.Bytes)
			res, err := s.Verify(cmd.Context(), v.Ref(), store.VerifyOptions{PublicKey: pub, Progress: bar.Add})
			bar.Finish()
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"image": v.Ref(), "ok": len(res.Changes) == 0,
					"signature_checked": res.SignatureChecked, "differences": nonNil(res.Changes)}); err != nil {
					return err
				}
			} else {
				for _, c := range res.Changes {
					a.printf("%s\n", c.Describe())
				}
			}
			if len(res.Changes) > 0 {
				if !a.jsonOut {
					fmt.Fprintf(a.errOut, "%s: %d differences from the manifest\n", v.Ref(), len(res.Changes))
				}
				return exitCode(1)
			}
			if !a.jsonOut {
				sig := ""
				if res.SignatureChecked {
					sig = ", signature good"
				}
				a.printf("%s: ok (%d entries match the manifest%s)\n", v.Ref(), v.Info.Totals.Entries, sig)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "require a valid signature by this public key")
	a.addJSONFlag(cmd)
	return cmd
}

func nonNil(c []manifest.Change) []manifest.Change {
	if c == nil {
		return []manifest.Change{}
	}
	return c
}

func imageDiffCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff A[@V] B[@V]",
		Short: "Itemize what changed between two versions, like rsync -i",
		Long: `Prints one line per changed path in rsync's --itemize-changes format:
">f+++++++++" new file, ">fcst......" content changed, ".f...p....." mode,
"*deleting" removed; letters c s t p o g a x are checksum, size, time,
permissions, owner, group, ACL and xattrs.`,
		Example:           "  goldcast image diff web@3 web@4",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			changes, err := s.Diff(args[0], args[1])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(nonNil(changes))
			}
			for _, c := range changes {
				a.printf("%s\n", c.Itemize())
			}
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

func imagePruneCmd(a *app) *cobra.Command {
	var keep int
	cmd := &cobra.Command{
		Use:   "prune [NAME...] --keep N",
		Short: "Remove all but the newest N versions",
		Long:  "Prunes the named images, or every image when none is named. Versions that nodes pin in the configuration (image: NAME@N) are kept.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if keep < 1 {
				return fmt.Errorf("--keep must be at least 1, not %d", keep)
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			c, err := a.config()
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				imgs, err := s.Images()
				if err != nil {
					return err
				}
				for _, im := range imgs {
					names = append(names, im.Name)
				}
			}
			for _, name := range names {
				removed, err := s.Prune(name, keep, pinnedVersions(c, name))
				if err != nil {
					return err
				}
				for _, n := range removed {
					a.printf("removed %s@%d\n", name, n)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&keep, "keep", 0, "versions to keep per image (required)")
	return cmd
}

func imageShellCmd(a *app) *cobra.Command {
	var command, comment string
	cmd := &cobra.Command{
		Use:   "shell NAME[@VERSION]",
		Short: "Edit an image in a shell; publish a new version on exit",
		Long: `Makes a private working copy of the version and starts a shell chrooted
into it, with /proc, /sys and /dev mounted in a private mount namespace
(they vanish with the shell and are never captured). When the shell exits
with status 0 the copy is published as the image's next version (nothing
is published if nothing changed); a non-zero exit ("exit 1") aborts and
discards it. The copy shares nothing with the store, so an aborted edit
leaves no trace. Editing an older version (NAME@N) publishes the result as
the newest version.

Needs root: only root can keep the image's owners, device nodes and file
capabilities in the copy. An image without /bin/sh gets a host shell whose
working directory is the copy; absolute paths then mean the host's.`,
		Example: `  goldcast image shell web
  goldcast image shell web --command 'apt-get install -y htop' --comment 'add htop'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Geteuid() != 0 {
				return errors.New("image shell needs root: without it the copy cannot keep the image's owners, device nodes and capabilities, and publishing it would lose them")
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			wc, err := s.NewWorkingCopy(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer wc.Discard()
			sh, chrooted := shellCommand(cmd.Context(), wc.Root, command)
			sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, a.out, a.errOut
			sh.Env = append(os.Environ(), "GOLDCAST_IMAGE="+wc.Parent.Ref(), "PS1=(goldcast "+wc.Parent.Ref()+") \\w# ")
			if !chrooted {
				fmt.Fprintf(a.errOut, "warning: %s has no /bin/sh: running a HOST shell in the copy at %s; absolute paths are the host's\n", wc.Parent.Ref(), wc.Root)
			}
			if command == "" {
				fmt.Fprintf(a.errOut, "editing a copy of %s; exit 0 publishes, \"exit 1\" aborts\n", wc.Parent.Ref())
			}
			if err := sh.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					fmt.Fprintf(a.errOut, "shell exited with status %d: aborted, nothing published\n", ee.ExitCode())
					return exitCode(ee.ExitCode())
				}
				return fmt.Errorf("run shell: %w", err)
			}
			if comment == "" {
				comment = "edited with image shell"
				if command != "" {
					comment = "image shell: " + command
				}
			}
			res, err := wc.Publish(cmd.Context(), comment)
			if err != nil {
				return err
			}
			if res.Unchanged {
				a.printf("no changes to %s; nothing published\n", wc.Parent.Ref())
				return nil
			}
			a.printf("published %s (edited from %s)\n", res.Version.Ref(), wc.Parent.Ref())
			return nil
		},
	}
	cmd.Flags().StringVarP(&command, "command", "c", "", "run this shell command instead of an interactive shell")
	cmd.Flags().StringVar(&comment, "comment", "", "note recorded in the new version's image.json")
	return cmd
}

// shellCommand runs a shell chrooted into root when root holds /bin/sh,
// inside a private mount namespace with /proc, /sys and /dev mounted;
// otherwise a host shell with root as its working directory. It reports
// whether it chroots.
func shellCommand(ctx context.Context, root, command string) (*exec.Cmd, bool) {
	args := []string{}
	if command != "" {
		args = append(args, "-c", command)
	}
	if fi, err := os.Stat(filepath.Join(root, "bin/sh")); err == nil && !fi.IsDir() {
		// The script sees the copy as $1 and the shell's arguments after it.
		script := `set -e; r=$1; shift
for d in proc sys dev; do [ -d "$r/$d" ] || continue
  case $d in proc) mount -t proc proc "$r/proc";; sys) mount -t sysfs sysfs "$r/sys";; dev) mount --rbind /dev "$r/dev";; esac
done
exec chroot "$r" /bin/sh "$@"`
		full := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "goldcast-shell", root}, args...)
		return exec.CommandContext(ctx, "unshare", full...), true
	}
	shell := os.Getenv("SHELL")
	if shell == "" || command != "" {
		shell = "/bin/sh"
	}
	c := exec.CommandContext(ctx, shell, args...)
	c.Dir = root
	return c, false
}

func imageExportCmd(a *app) *cobra.Command {
	var format, outPath string
	cmd := &cobra.Command{
		Use:   "export NAME[@VERSION] --format tar.zst -o FILE|-",
		Short: "Write a version as a self-describing stream (tar + zstd)",
		Long: `The stream starts with the manifest (and signature when signed) and then
every entry in manifest order, as PAX tar compressed with zstd. It carries
every field of the manifest: modes with setuid/setgid/sticky, numeric owners,
nanosecond mtimes, xattrs and ACLs, hard links and devices. Read it back with
"image import-stream" or "image extract".`,
		Example:           "  goldcast image export web@4 -o web-4.tar.zst\n  goldcast image export web -o - | ssh host goldcast image extract - --target /mnt",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "tar.zst" {
				return fmt.Errorf("--format %q: only tar.zst is supported", format)
			}
			if outPath == "" {
				return errors.New("-o FILE (or - for stdout) is required")
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			v, err := s.Resolve(args[0])
			if err != nil {
				return err
			}
			var w io.Writer = a.out
			var f *os.File
			if outPath != "-" {
				if f, err = os.Create(outPath + ".part"); err != nil {
					return fmt.Errorf("create %q: %w", outPath, err)
				}
				defer func() {
					if f != nil {
						f.Close()
						os.Remove(outPath + ".part")
					}
				}()
				w = f
			}
			bar := progress.New(a.errOut, "export", v.Info.Totals.Entries, v.Info.Totals.Bytes)
			_, err = s.Export(cmd.Context(), v.Ref(), w, stream.WriteOptions{Progress: bar.Add})
			bar.Finish()
			if err != nil {
				return err
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return fmt.Errorf("write %q: %w", outPath, err)
				}
				f = nil
				if err := os.Rename(outPath+".part", outPath); err != nil {
					return fmt.Errorf("write %q: %w", outPath, err)
				}
				fmt.Fprintf(a.errOut, "exported %s to %s\n", v.Ref(), outPath)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "tar.zst", "stream format (tar.zst)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "output file, or - for stdout")
	return cmd
}

// openInput opens FILE or stdin for "-".
func openInput(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return f, nil
}

// verifier checks stream signatures against pub; nil pub accepts any.
func verifier(pub ed25519.PublicKey) func(string, []byte) error {
	if pub == nil {
		return nil
	}
	return func(digest string, raw []byte) error {
		if raw == nil {
			return fmt.Errorf("%w: the stream is not signed but --pubkey requires it", signing.ErrBadSignature)
		}
		sig, err := signing.Unmarshal(raw)
		if err != nil {
			return err
		}
		return signing.Verify(pub, digest, sig)
	}
}

func imageImportStreamCmd(a *app) *cobra.Command {
	var name, pubkey string
	var force bool
	cmd := &cobra.Command{
		Use:   "import-stream FILE|- --image NAME",
		Short: "Store a version stream (from image export) as a new version",
		Long: `Reads a stream written by "image export" (from FILE or stdin), checks every
entry against the manifest it carries, and publishes it as the next version
of NAME, keeping its signature and provenance. Files identical to the
latest version share its inodes. With --pubkey, an unsigned stream or one
signed by another key is refused before anything is written.`,
		Example: "  goldcast image import-stream web-4.tar.zst --image web\n  curl -s http://server/web.tar.zst | goldcast image import-stream - --image web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return errors.New("--image NAME is required")
			}
			pub, err := loadPubKey(pubkey)
			if err != nil {
				return err
			}
			in, err := openInput(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			s, err := a.store()
			if err != nil {
				return err
			}
			bar := progress.New(a.errOut, "import", 0, 0)
			res, err := s.ImportStream(cmd.Context(), in, name, store.StreamImportOptions{Verify: verifier(pub), Progress: bar.Add, PublishUnchanged: force})
			bar.Finish()
			if err != nil {
				return err
			}
			if res.Unchanged {
				a.printf("%s already holds this version; nothing published (use --force to publish anyway)\n", res.Version.Ref())
				return nil
			}
			i := res.Version.Info
			a.printf("published %s: %d files, %s, %d shared with the previous version\n",
				res.Version.Ref(), i.Totals.Files, progress.Bytes(i.Totals.Bytes), res.Reused)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "image", "", "image name (required)")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "require a valid signature by this public key")
	cmd.Flags().BoolVar(&force, "force", false, "publish even when the stream holds the latest version")
	return cmd
}

func imageExtractCmd(a *app) *cobra.Command {
	var target, pubkey string
	var keepPartial bool
	cmd := &cobra.Command{
		Use:   "extract FILE|- --target DIR",
		Short: "Lay a version stream into an empty directory, verifying every entry",
		Long: `Reads the stream's manifest first, then checks each entry against it as it
lands: names, types, modes, owners, times, xattrs, and the sha256 of content.
Entries that would escape DIR (.., absolute paths, writing through a
symlink), truncated or corrupt input, and (with --pubkey) a missing or wrong
signature are refused with a clear error, and DIR is emptied again so a
partial tree never looks complete. DIR must be empty or absent (a fresh
filesystem's lost+found is fine). Directory times are set last.`,
		Example: "  goldcast image extract web-4.tar.zst --target /mnt/root --pubkey /etc/goldcast/image.pub",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" {
				return errors.New("--target DIR is required")
			}
			pub, err := loadPubKey(pubkey)
			if err != nil {
				return err
			}
			in, err := openInput(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			bar := progress.New(a.errOut, "extract", 0, 0)
			res, err := stream.Extract(cmd.Context(), in, target, stream.ExtractOptions{
				Verify: verifier(pub), KeepPartial: keepPartial, Progress: bar.Add, Logger: a.log,
				Materialize: materialize.Options{Unprivileged: os.Geteuid() != 0},
			})
			bar.Finish()
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				fmt.Fprintln(a.errOut, "note: not root: owners, device nodes and security.*/trusted.* xattrs were not applied")
			}
			t := res.Manifest.Totals()
			a.printf("extracted %d entries (%d files, %s) into %s; manifest sha256:%s\n",
				t.Entries, t.Files, progress.Bytes(t.Bytes), target, res.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "empty directory to extract into (required)")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "require a valid signature by this public key")
	cmd.Flags().BoolVar(&keepPartial, "keep-partial", false, "leave what was written when extraction fails (for debugging)")
	return cmd
}

func imageSignCmd(a *app) *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:               "sign NAME[@VERSION] --key KEY",
		Short:             "Sign a version's manifest digest with an Ed25519 key",
		Long:              "Stores a detached signature beside the manifest; exports carry it and extract/verify --pubkey check it. Create keys with \"goldcast key generate\".",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeImages(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return errors.New("--key KEY is required")
			}
			priv, err := signing.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			v, sig, err := s.Sign(args[0], priv)
			if err != nil {
				return err
			}
			a.printf("signed %s (manifest sha256:%s) with key %s\n", v.Ref(), sig.Digest, sig.KeyID)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "private key file (required)")
	return cmd
}

// pinnedVersions collects the versions of image name that nodes or groups
// name explicitly (image: NAME@N), which prune must keep.
func pinnedVersions(c *config.Config, name string) map[int]bool {
	pinned := map[int]bool{}
	refs := []string{}
	for _, n := range c.Nodes {
		refs = append(refs, n.Image)
	}
	for _, g := range c.Groups {
		refs = append(refs, g.Image)
	}
	for _, r := range refs {
		if n, v, err := ref.Parse(r); err == nil && n == name && v > 0 {
			pinned[v] = true
		}
	}
	return pinned
}

// readDiskLayout reads and checks a disk layout file for image.json.
func readDiskLayout(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--disk-layout: %w", err)
	}
	var l disklayout.Layout
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("--disk-layout %s: %w", path, err)
	}
	root := false
	for _, f := range l.Filesystems {
		root = root || f.Mountpoint == "/"
	}
	if !root {
		return nil, fmt.Errorf("--disk-layout %s: no filesystem is mounted at /", path)
	}
	if l.Version == 0 {
		l.Version = disklayout.FormatVersion
	}
	return json.Marshal(l)
}
