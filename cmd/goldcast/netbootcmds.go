package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/netboot/initramfs"
)

func newNetbootCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "netboot", Short: "Build what network-booting nodes load"}
	var kver, modules, out string
	var extra []string
	ird := &cobra.Command{
		Use:   "initramfs --kernel-version V -o FILE",
		Short: "Build the goldcast initramfs for a kernel (SystemImager's UYOK)",
		Long: `Writes a compressed cpio initramfs whose /init is this goldcast binary
(build it with make build: it must be static), with the kernel modules for
common network cards and disks (and their dependencies) taken from
--modules-dir (default /lib/modules/V: the kernel of this machine or of a
golden client's tree). Booted by iPXE with the node's command line, it
brings up the network by DHCP and reports to the server. Put the kernel
beside it as DATA/boot/vmlinuz and the initramfs as
DATA/boot/goldcast-initrd.img for the server to serve.`,
		Example: "  goldcast netboot initramfs --kernel-version $(uname -r) -o /var/lib/goldcast/boot/goldcast-initrd.img",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kver == "" || out == "" {
				return errors.New("--kernel-version V and -o FILE are required")
			}
			if modules == "" {
				modules = filepath.Join("/lib/modules", kver)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the goldcast binary: %w", err)
			}
			f, err := os.Create(out + ".part")
			if err != nil {
				return fmt.Errorf("create %q: %w", out, err)
			}
			err = initramfs.Build(cmd.Context(), initramfs.Options{
				Out: f, Goldcast: self, KernelVersion: kver, ModulesDir: modules,
				Modules: append(initramfs.DefaultModules(), extra...),
			})
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
			a.printf("wrote %s (init: %s, kernel %s)\n", out, self, kver)
			return nil
		},
	}
	ird.Flags().StringVar(&kver, "kernel-version", "", "kernel release the modules are for (required), e.g. 6.1.0-50-amd64")
	ird.Flags().StringVar(&modules, "modules-dir", "", "module tree (default /lib/modules/VERSION)")
	ird.Flags().StringVarP(&out, "output", "o", "", "initramfs file to write (required)")
	ird.Flags().StringArrayVar(&extra, "module", nil, "extra kernel module to include (repeatable)")
	cmd.AddCommand(ird)
	return cmd
}
