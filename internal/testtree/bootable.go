package testtree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// bootableInclude is the package list Bootable adds to a minbase root (as
// debootstrap --include takes it): a kernel, GRUB for BIOS, systemd as
// init, and ifupdown so the root has a network configuration to detect.
const bootableInclude = "linux-image-amd64,grub-pc,systemd-sysv,ifupdown"

// bootableSpec is what a cached bootable root was built from; its key
// names the cache entry, so changing any parameter builds a new root.
type bootableSpec struct {
	suite, variant, mirror string
	include                string
}

// key returns "SUITE-VARIANT-bootable-SHA", SHA being the first 12 hex
// digits of the sha256 of all parameters. It never equals a
// debootstrapSpec key, so both roots live side by side in the cache.
func (s bootableSpec) key() string {
	sum := sha256.Sum256([]byte("suite=" + s.suite + "\nvariant=" + s.variant + "\nmirror=" + s.mirror +
		"\ninclude=" + s.include + "\n"))
	return fmt.Sprintf("%s-%s-bootable-%x", s.suite, s.variant, sum[:6])
}

func (s bootableSpec) args(target string) []string {
	return []string{"--variant=" + s.variant, "--include=" + s.include, s.suite, target, s.mirror}
}

func defaultBootableSpec() bootableSpec {
	return bootableSpec{
		suite:   debootstrapSuite,
		variant: debootstrapVariant,
		mirror:  debootstrapMirror,
		include: bootableInclude,
	}
}

// bootablePath returns where the cached bootable root for spec lives:
// CACHE/debootstrap/KEY, beside the roots Debootstrap caches (they share
// its lock file).
func bootablePath(spec bootableSpec) string {
	return filepath.Join(cacheRoot(), "debootstrap", spec.key())
}

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
// --include=linux-image-amd64,grub-pc,systemd-sysv,ifupdown bookworm ROOT
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
	spec := defaultBootableSpec()
	final := bootablePath(spec)
	if ok, err := checkBootable(final); err != nil {
		t.Fatalf("testtree: %v", err)
	} else if ok {
		return final
	}
	if os.Geteuid() != 0 {
		t.Skip("testtree: Bootable needs root to build its cached root")
	}
	tool, err := lookTool("debootstrap")
	if err != nil {
		t.Fatalf("testtree: debootstrap not installed (Debian package debootstrap; make test installs it): %v", err)
	}
	err = buildBootable(tool, spec, final, t.Logf)
	if bf, ok := errors.AsType[*buildFailure](err); ok && bf.unreachable {
		t.Skipf("testtree: debootstrap cannot reach mirror %s, skipping: %v\n%s", spec.mirror, bf.err, bf.tail)
	} else if ok {
		t.Fatalf("testtree: %v\n%s", bf.err, bf.tail)
	} else if err != nil {
		t.Fatalf("testtree: %v", err)
	}
	return final
}

// buildBootable builds the root for spec at final unless another process
// did so first, under the lock and with the cleanup rules of
// buildDebootstrap. logf reports waits and progress.
func buildBootable(tool string, spec bootableSpec, final string, logf func(string, ...any)) error {
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create debootstrap cache directory: %w", err)
	}
	lockPath := filepath.Join(parent, ".lock")
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open debootstrap cache lock: %w", err)
	}
	defer lock.Close() // releases the flock
	if err := flock(lock, unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		logf("testtree: waiting for another process holding %s to finish its debootstrap build", lockPath)
		if err := flock(lock, unix.LOCK_EX); err != nil {
			return fmt.Errorf("lock %s: %w", lockPath, err)
		}
	} else if err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}

	// Under the lock: someone may have finished meanwhile, and any
	// temporary directory left here is from a build that died.
	if ok, err := checkBootable(final); err != nil || ok {
		return err
	}
	if err := removeStaleBuilds(parent); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+spec.key()+"-")
	if err != nil {
		return fmt.Errorf("create debootstrap build directory: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod debootstrap build directory: %w", err)
	}

	logf("testtree: building bootable debootstrap root %s (takes one to a few minutes)", final)
	cmd := exec.Command(tool, spec.args(tmp)...)
	cmd.Env = debootstrapEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// As in buildDebootstrap: the child holds the lock too, and is told
	// to stop if this process dies.
	cmd.ExtraFiles = []*os.File{lock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	runErr := cmd.Run()
	if runErr == nil {
		if _, err := checkBootable(tmp); err != nil {
			runErr = fmt.Errorf("debootstrap reported success but built no bootable root: %w", err)
		}
	}
	if runErr != nil {
		logText := out.String()
		if inner, err := os.ReadFile(filepath.Join(tmp, "debootstrap", "debootstrap.log")); err == nil {
			logText += "\n--- " + filepath.Join(tmp, "debootstrap", "debootstrap.log") + " ---\n" + string(inner)
		}
		fail := &buildFailure{
			err:         fmt.Errorf("debootstrap %s: %w", strings.Join(cmd.Args[1:], " "), runErr),
			tail:        tailLines(logText, logTailLines),
			unreachable: mirrorUnreachable(logText),
		}
		if err := removeBuild(tmp); err != nil {
			fail.err = fmt.Errorf("%w (and cleaning up: %w)", fail.err, err)
		}
		return fail
	}
	if err := os.Rename(tmp, final); err != nil {
		if cerr := removeBuild(tmp); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %w)", err, cerr)
		}
		if ok, cerr := checkBootable(final); ok && cerr == nil {
			return nil
		}
		return fmt.Errorf("move bootable debootstrap root into the cache: %w", err)
	}
	return nil
}
