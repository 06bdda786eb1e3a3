package testtree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Kernel is a Debian kernel taken from a Bootable root: the image a boot
// loader (or QEMU's -kernel) starts and the directory of its modules.
type Kernel struct {
	// Version is the kernel release, as uname -r prints it
	// ("6.1.0-50-amd64").
	Version string
	// Image is the path of the compressed kernel image (ROOT/boot/vmlinuz-VERSION).
	Image string
	// ModulesDir is the path of the modules of that kernel
	// (ROOT/lib/modules/VERSION), with modules.dep and modules.builtin.
	ModulesDir string
}

// BootableKernel returns the kernel of Bootable's root (building that
// root on first use, see Bootable). It fails the test unless the root
// holds exactly one kernel with a modules directory that has modules.dep.
// The files belong to the shared cached root: treat them as read-only.
func BootableKernel(t testing.TB) Kernel {
	t.Helper()
	root := Bootable(t)
	images, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(images) != 1 {
		t.Fatalf("bootable root %s: want exactly one kernel in /boot, found %q (glob error %v)", root, images, err)
	}
	k := Kernel{Image: images[0], Version: strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")}
	k.ModulesDir = filepath.Join(root, "lib", "modules", k.Version)
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err != nil {
		t.Fatalf("bootable root %s: kernel %s has no modules.dep: %v", root, k.Version, err)
	}
	return k
}
