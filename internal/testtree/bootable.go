package testtree

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// bootableInclude is the package list Bootable adds to a minbase root (as
// debootstrap --include takes it): a kernel, GRUB for BIOS and GRUB's UEFI
// modules (grub-efi-amd64-bin), systemd as
// init, and ifupdown so the root has a network configuration to detect.
const bootableInclude = "linux-image-amd64,grub-pc,grub-efi-amd64-bin,systemd-sysv,ifupdown"

// checkBootable reports whether dir exists and, if it does, whether it
// looks like a finished bootable Debian root: a Debian root with
// grub-install and a kernel in /boot.
func checkBootable(dir string) (bool, error) {
	ok, err := checkRoot(dir)
	if !ok || err != nil {
		return ok, err
	}
	if _, err := os.Stat(filepath.Join(dir, "usr", "sbin", "grub-install")); err != nil {
		return true, fmt.Errorf("cached root %s has no grub-install (remove it to rebuild): %w", dir, err)
	}
	kernels, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil || len(kernels) == 0 {
		return true, fmt.Errorf("cached root %s has no kernel in /boot (remove it to rebuild)", dir)
	}
	return true, nil
}

// Bootable returns the path of a Debian root that can boot from a disk,
// made by `debootstrap --variant=minbase
// --include=linux-image-amd64,grub-pc,grub-efi-amd64-bin,systemd-sysv,ifupdown bookworm ROOT
// http://deb.debian.org/debian`: it holds a kernel and initramfs in /boot,
// the GRUB tools and modules for BIOS (i386-pc), systemd as init and an
// /etc/network/interfaces. It is built on first use (one to a few
// minutes; keep `go test -timeout` above that) and cached in
// CACHE/debootstrap/bookworm-minbase-bootable-SHA, where CACHE is
// $GOLDCAST_TEST_CACHE or DefaultCacheDir and SHA digests the build
// parameters, following the same rules as Debootstrap: built in a
// temporary directory and renamed into place only on success, and
// serialised with Debootstrap's builds by the same lock file.
//
// The returned tree is shared by every test and every later run: callers
// must treat it as read-only (copy it to modify it).
//
// Bootable skips and fails the test in the same cases as Debootstrap.
func Bootable(t testing.TB) string {
	t.Helper()
	return cachedRoot(t, debootstrapSpec{
		suite: debootstrapSuite, variant: debootstrapVariant, mirror: debootstrapMirror, include: bootableInclude,
	})
}
