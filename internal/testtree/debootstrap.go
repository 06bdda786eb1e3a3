package testtree

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/internal/mountinfo"

	"github.com/goldcast/goldcast/internal/tool"
)

// CacheEnv names the environment variable that, when set, replaces
// DefaultCacheDir as the directory where Debootstrap caches its roots.
const CacheEnv = "GOLDCAST_TEST_CACHE"

// DefaultCacheDir is where Debootstrap caches its roots unless CacheEnv
// is set.
const DefaultCacheDir = "/var/cache/goldcast-test"

// The root Debootstrap builds: debootstrap --variant=minbase bookworm
// ROOT http://deb.debian.org/debian.
const (
	debootstrapSuite   = "bookworm"
	debootstrapVariant = "minbase"
	debootstrapMirror  = "http://deb.debian.org/debian"
)

// logTailLines is how much of a failed debootstrap's output the test
// message quotes.
const logTailLines = 40

// debootstrapSpec is what a cached root was built from; its key names the
// cache entry, so changing any parameter builds a new root.
type debootstrapSpec struct {
	suite, variant, mirror string
	// include lists extra packages (debootstrap --include); a root with
	// them is a bootable root (see Bootable), checked for a kernel and
	// GRUB.
	include string
}

// key returns "SUITE-VARIANT-SHA" ("SUITE-VARIANT-bootable-SHA" with
// extra packages), SHA being the first 12 hex digits of the sha256 of all
// parameters.
func (s debootstrapSpec) key() string {
	if s.include != "" {
		sum := sha256.Sum256([]byte("suite=" + s.suite + "\nvariant=" + s.variant + "\nmirror=" + s.mirror +
			"\ninclude=" + s.include + "\n"))
		return fmt.Sprintf("%s-%s-bootable-%x", s.suite, s.variant, sum[:6])
	}
	sum := sha256.Sum256([]byte("suite=" + s.suite + "\nvariant=" + s.variant + "\nmirror=" + s.mirror + "\n"))
	return fmt.Sprintf("%s-%s-%x", s.suite, s.variant, sum[:6])
}

func (s debootstrapSpec) args(target string) []string {
	if s.include != "" {
		return []string{"--variant=" + s.variant, "--include=" + s.include, s.suite, target, s.mirror}
	}
	return []string{"--variant=" + s.variant, s.suite, target, s.mirror}
}

// check reports whether dir exists and whether it is a finished root of
// this spec.
func (s debootstrapSpec) check(dir string) (bool, error) {
	if s.include != "" {
		return checkBootable(dir)
	}
	return checkRoot(dir)
}

func defaultSpec() debootstrapSpec {
	return debootstrapSpec{suite: debootstrapSuite, variant: debootstrapVariant, mirror: debootstrapMirror}
}

// cacheRoot returns $GOLDCAST_TEST_CACHE, or DefaultCacheDir when unset.
func cacheRoot() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

// debootstrapPath returns where the cached root for spec lives:
// CACHE/debootstrap/KEY.
func debootstrapPath(spec debootstrapSpec) string {
	return filepath.Join(cacheRoot(), "debootstrap", spec.key())
}

// checkRoot reports whether dir exists and, if it does, whether it looks
// like a finished Debian root.
func checkRoot(dir string) (bool, error) {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("stat cached root: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc", "debian_version")); err != nil {
		return true, fmt.Errorf("cached root %s is not a Debian root (remove it to rebuild): %w", dir, err)
	}
	return true, nil
}

// Debootstrap returns the path of a minimal Debian root made by
// `debootstrap --variant=minbase bookworm ROOT http://deb.debian.org/debian`,
// building it on first use (a few minutes; keep `go test -timeout` above
// that) and caching it in CACHE/debootstrap/bookworm-minbase-SHA, where
// CACHE is $GOLDCAST_TEST_CACHE or DefaultCacheDir and SHA digests the
// build parameters. The root is built in a temporary directory beside its
// cache entry and renamed into place only on success, so an interrupted
// build never looks finished; a lock file in the cache directory makes
// concurrent test processes wait for one build.
//
// The returned tree is shared by every test and every later run: callers
// must treat it as read-only (copy it to modify it).
//
// Debootstrap skips the test when not run as root or when debootstrap
// fails because the mirror cannot be reached, and fails it (t.Fatalf)
// when debootstrap is not installed (Debian package debootstrap) or fails
// otherwise; both messages quote the end of debootstrap's log.
func Debootstrap(t testing.TB) string {
	t.Helper()
	return cachedRoot(t, defaultSpec())
}

// cachedRoot returns the cached root of spec, building it first when
// needed; it skips or fails t as Debootstrap documents.
func cachedRoot(t testing.TB, spec debootstrapSpec) string {
	t.Helper()
	final := debootstrapPath(spec)
	if ok, err := spec.check(final); err != nil {
		t.Fatalf("testtree: %v", err)
	} else if ok {
		return final
	}
	if os.Geteuid() != 0 {
		t.Skip("testtree: building a cached debootstrap root needs root")
	}
	prog, err := tool.Look("debootstrap")
	if err != nil {
		t.Fatalf("testtree: debootstrap not installed (Debian package debootstrap; make test installs it): %v", err)
	}
	err = buildDebootstrap(prog, spec, final, t.Logf)
	if bf, ok := errors.AsType[*buildFailure](err); ok && bf.unreachable {
		t.Skipf("testtree: debootstrap cannot reach mirror %s, skipping: %v\n%s", spec.mirror, bf.err, bf.tail)
	} else if ok {
		t.Fatalf("testtree: %v\n%s", bf.err, bf.tail)
	} else if err != nil {
		t.Fatalf("testtree: %v", err)
	}
	return final
}

// buildFailure is a debootstrap run that failed, with the end of its log.
type buildFailure struct {
	err         error
	tail        string
	unreachable bool // the mirror could not be reached
}

func (f *buildFailure) Error() string { return f.err.Error() }
func (f *buildFailure) Unwrap() error { return f.err }

// buildDebootstrap builds the root for spec at final unless another
// process did so first. logf reports waits and progress.
func buildDebootstrap(tool string, spec debootstrapSpec, final string, logf func(string, ...any)) error {
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
		err = flock(lock, unix.LOCK_EX)
		if err != nil {
			return fmt.Errorf("lock %s: %w", lockPath, err)
		}
	} else if err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}

	// Under the lock: someone may have finished meanwhile, and any
	// temporary directory left here is from a build that died.
	if ok, err := spec.check(final); err != nil || ok {
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

	logf("testtree: building debootstrap root %s (takes a few minutes)", final)
	cmd := exec.Command(tool, spec.args(tmp)...)
	cmd.Env = debootstrapEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// The child inherits the locked file, so the lock is held for as long
	// as debootstrap runs even if this process dies; and it is told to stop
	// (SIGTERM lets it unmount what it mounted) if this process dies.
	cmd.ExtraFiles = []*os.File{lock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	runErr := cmd.Run()
	if runErr == nil {
		if _, err := spec.check(tmp); err != nil {
			runErr = fmt.Errorf("debootstrap reported success but built no usable root: %w", err)
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
		// A root placed by hand (outside the lock) while this one was
		// built wins; this build is discarded either way.
		if cerr := removeBuild(tmp); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %w)", err, cerr)
		}
		if ok, cerr := spec.check(final); ok && cerr == nil {
			return nil
		}
		return fmt.Errorf("move debootstrap root into the cache: %w", err)
	}
	return nil
}

// flock applies how to f, retrying when interrupted by a signal.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// debootstrapEnv is the environment debootstrap runs in: the test's, in
// the C locale, with the sbin directories (chroot, ldconfig) on $PATH.
func debootstrapEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "LC_ALL=")
	})
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if !slices.Contains(filepath.SplitList(path), d) {
			path += string(filepath.ListSeparator) + d
		}
	}
	return append(env, "PATH="+strings.TrimPrefix(path, ":"), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
}

// mirrorUnreachable reports whether a debootstrap log shows that the
// mirror could not be reached, as opposed to another failure.
func mirrorUnreachable(log string) bool {
	for _, s := range []string{
		"Failed getting release file",
		"Failed getting release signature file",
		"Couldn't download",
		"unable to resolve host address",
		"Temporary failure in name resolution",
		"Name or service not known",
		"Connection refused",
		"Connection timed out",
		"Network is unreachable",
		"No route to host",
	} {
		if strings.Contains(log, s) {
			return true
		}
	}
	return false
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// removeStaleBuilds removes the temporary directories of builds that died
// in parent. The caller holds the cache lock, so no live build owns one.
func removeStaleBuilds(parent string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return fmt.Errorf("read debootstrap cache directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".tmp-") {
			if err := removeBuild(filepath.Join(parent, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeBuild deletes a failed or abandoned build directory, first
// detaching anything debootstrap mounted inside it (proc, sys, devpts), so
// the removal never reaches into a live filesystem.
func removeBuild(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	// Deepest first, so nested mounts go before their parents.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s in abandoned debootstrap build: %w", m, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove abandoned debootstrap build: %w", err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, from
// /proc/self/mountinfo.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	dir = filepath.Clean(dir)
	var mounts []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := mountinfo.Unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return mounts, nil
}
