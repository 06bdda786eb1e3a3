package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/netboot/initramfs"
)

func newNetbootCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "netboot", Short: "Build what network-booting nodes load"}
	var kver, modules, out, fromImage, busybox, compression, kernelOut, toolsRoot string
	var extra, tools, firmware []string
	var noTools bool
	ird := &cobra.Command{
		Use:   "initramfs --kernel-version V -o FILE",
		Short: "Build the goldcast initramfs for a kernel (SystemImager's UYOK)",
		Long: `Writes a compressed cpio initramfs whose /init is this goldcast binary
(build it with make build: it must be static), with:

  - the kernel modules for common network cards, disks and filesystems
    (virtio, e1000, igb, ixgbe, mlx5, ahci, nvme, sd_mod, ext4, xfs, vfat,
    md, dm) and their dependencies, from --modules-dir (default
    /lib/modules/V);
  - the programs an install runs (sfdisk, partx, wipefs, blkid, mkfs.ext4,
    mkswap; mkfs.vfat, mkfs.xfs, mdadm, lvm and others when present) with
    their shared libraries;
  - busybox as /bin/sh for the rescue shell (a static one is best: Debian's
    busybox-static);
  - firmware files on request (--firmware).

Modules come from this machine, or with --from-image NAME[@V] from that
image's tree: the golden client's own kernel and modules (SystemImager's
"use your own kernel"); --kernel-out then copies the image's kernel too.
Programs come from this machine (--tools-root names another root of the
same architecture).

Booted by iPXE with the node's command line, it brings up the network by
DHCP, reports to the server and runs the node's boot action. Put the kernel
beside it as DATA/boot/vmlinuz and the initramfs as
DATA/boot/goldcast-initrd.img for the server to serve.`,
		Example: `  goldcast netboot initramfs --kernel-version $(uname -r) -o /var/lib/goldcast/boot/goldcast-initrd.img
  goldcast netboot initramfs --from-image golden --kernel-version 6.1.0-50-amd64 \
      --kernel-out /var/lib/goldcast/boot/vmlinuz -o /var/lib/goldcast/boot/goldcast-initrd.img
  goldcast netboot initramfs --kernel-version $(uname -r) --module bnxt_en --firmware 'bnx2x/*' -o initrd.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kver == "" || out == "" {
				return errors.New("--kernel-version V and -o FILE are required")
			}
			root := "/"
			if toolsRoot == "" {
				toolsRoot = "/"
			}
			if fromImage != "" {
				s, err := a.existingStore()
				if err != nil {
					return err
				}
				v, err := s.Resolve(fromImage)
				if err != nil {
					return fmt.Errorf("--from-image: %w", err)
				}
				root = v.TreePath()
			}
			if modules == "" {
				modules = filepath.Join(root, "lib", "modules", kver)
			}
			if _, err := os.Stat(filepath.Join(modules, "modules.dep")); err != nil {
				return fmt.Errorf("kernel %s: no module tree at %s (install the kernel there or name it with --modules-dir): %w", kver, modules, err)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the goldcast binary: %w", err)
			}
			opt := initramfs.Options{
				Goldcast: self, KernelVersion: kver, ModulesDir: modules,
				Modules:     append(initramfs.DefaultModules(), extra...),
				Compression: initramfs.Compression(compression),
				ToolsRoot:   toolsRoot, Firmware: firmware,
				Log: a.log,
			}
			if !noTools {
				opt.Tools = append(initramfs.DefaultTools(), tools...)
				opt.OptionalTools = initramfs.DefaultOptionalTools()
				opt.Busybox = busybox
				if opt.Busybox == "" {
					opt.Busybox = findBusybox(toolsRoot)
				}
				if opt.Busybox == "" {
					a.printf("note: no busybox under %s: the initramfs has no rescue shell (apt-get install busybox-static)\n", toolsRoot)
				}
			}
			if kernelOut != "" {
				src := filepath.Join(root, "boot", "vmlinuz-"+kver)
				if err := copyFile(src, kernelOut); err != nil {
					return fmt.Errorf("--kernel-out: %w", err)
				}
				a.printf("wrote %s (from %s)\n", kernelOut, src)
			}
			f, err := os.Create(out + ".part")
			if err != nil {
				return fmt.Errorf("create %q: %w", out, err)
			}
			opt.Out = f
			err = initramfs.Build(cmd.Context(), opt)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(out + ".part")
				return err
			}
			if err := os.Rename(out+".part", out); err != nil {
				return err
			}
			fi, err := os.Stat(out)
			if err != nil {
				return err
			}
			a.printf("wrote %s (%.1f MiB; init: %s, kernel %s, modules from %s, programs from %s)\n", out, float64(fi.Size())/(1<<20), self, kver, modules, toolsRoot)
			return nil
		},
	}
	ird.Flags().StringVar(&kver, "kernel-version", "", "kernel release the modules are for (required), e.g. 6.1.0-50-amd64")
	ird.Flags().StringVar(&modules, "modules-dir", "", "module tree (default /lib/modules/VERSION, inside the image with --from-image)")
	ird.Flags().StringVarP(&out, "output", "o", "", "initramfs file to write (required)")
	ird.Flags().StringArrayVar(&extra, "module", nil, "extra kernel module to include (repeatable)")
	ird.Flags().StringVar(&fromImage, "from-image", "", "take the kernel modules (and --kernel-out's kernel) from this image version (NAME or NAME@V)")
	ird.Flags().StringVar(&toolsRoot, "tools-root", "/", "root directory the install programs and busybox are copied from")
	ird.Flags().StringArrayVar(&tools, "tool", nil, "extra program to include with its libraries (repeatable)")
	ird.Flags().StringArrayVar(&firmware, "firmware", nil, "firmware file or pattern under /lib/firmware to include (repeatable)")
	ird.Flags().StringVar(&busybox, "busybox", "", "busybox binary inside --tools-root for the rescue shell (default: /bin/busybox or /usr/bin/busybox when present)")
	ird.Flags().BoolVar(&noTools, "no-tools", false, "leave out the install programs and busybox (an initramfs that can only report)")
	ird.Flags().StringVar(&compression, "compression", "gzip", "gzip, zstd or none")
	ird.Flags().StringVar(&kernelOut, "kernel-out", "", "also copy the kernel (/boot/vmlinuz-V of this machine or the image) to this file")
	cmd.AddCommand(ird)
	return cmd
}

// findBusybox returns the path inside root of a busybox binary, or ""
// when there is none.
func findBusybox(root string) string {
	cands := []string{"/bin/busybox", "/usr/bin/busybox", "/usr/lib/initramfs-tools/bin/busybox"}
	var found []string
	for _, c := range cands {
		if fi, err := os.Stat(filepath.Join(root, c)); err == nil && fi.Mode().IsRegular() {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

// copyFile copies src to dst through a temporary file renamed into place.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst + ".part")
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst + ".part")
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(dst + ".part")
		return err
	}
	return os.Rename(dst+".part", dst)
}
