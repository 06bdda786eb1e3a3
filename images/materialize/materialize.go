// Package materialize lays manifest entries down on disk: it creates each
// entry under a root, writes regular-file content keeping runs of zeros as
// holes, and applies the metadata the manifest records (owner, full mode,
// xattrs, nanosecond mtime) in the order the kernel requires.
//
// Callers pass entries of a validated manifest (see manifest.Validate) in
// manifest order into an empty root, so every parent is a directory this
// package created and no path can be reached through a symlink; files are
// still opened with O_NOFOLLOW|O_EXCL so a racing change fails instead of
// writing elsewhere.
package materialize

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/images/manifest"
)

// Options tune how entries are laid down.
type Options struct {
	// Unprivileged skips what needs root: ownership, device nodes, and
	// security.* / trusted.* xattrs. The manifest stays the source of
	// truth for them.
	Unprivileged bool
}

// ErrSkipped reports an entry that was deliberately not created (a device
// node without privileges).
var ErrSkipped = errors.New("entry skipped: needs root")

// Path returns where the entry lives under root.
func Path(root, p string) string {
	if p == "." {
		return root
	}
	return root + "/" + p
}

// CreateDir makes a directory entry owner-writable so its children can be
// created; FinishDir applies its real metadata once they are. The root
// entry "." must already exist.
func CreateDir(root string, e *manifest.Entry) error {
	if e.Path == "." {
		return nil
	}
	if err := os.Mkdir(Path(root, e.Path), 0o700); err != nil {
		return fmt.Errorf("create directory %q: %w", e.Path, err)
	}
	return nil
}

// FinishDir applies a directory's metadata. Call it after everything
// inside the directory exists, deepest directories first, so creating
// children does not move the recorded mtime.
func FinishDir(root string, e *manifest.Entry, opts Options) error {
	f, err := os.OpenFile(Path(root, e.Path), os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open directory %q: %w", e.Path, err)
	}
	defer f.Close()
	return applyFd(f, e, opts)
}

// WriteFile creates a regular file (a hard-link group leader or a lone
// file) with content from r, keeping zero runs as holes, and applies its
// metadata. It returns the sha256 and length of what it wrote; the caller
// compares them with the manifest.
func WriteFile(root string, e *manifest.Entry, r io.Reader, opts Options) (string, int64, error) {
	f, err := os.OpenFile(Path(root, e.Path), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("create %q: %w", e.Path, err)
	}
	h := sha256.New()
	n, err := CopySparse(f, io.TeeReader(r, h))
	if err != nil {
		f.Close()
		return "", n, fmt.Errorf("write %q: %w", e.Path, err)
	}
	if err := applyFd(f, e, opts); err != nil {
		f.Close()
		return "", n, err
	}
	if err := f.Close(); err != nil {
		return "", n, fmt.Errorf("close %q: %w", e.Path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Link makes a hard-link member share its group leader's inode. The
// leader carries the metadata already.
func Link(root string, e *manifest.Entry) error {
	if err := os.Link(Path(root, e.LinkTo), Path(root, e.Path)); err != nil {
		return fmt.Errorf("hard link %q to %q: %w", e.Path, e.LinkTo, err)
	}
	return nil
}

// LinkExisting makes the entry share the inode of src, an existing file
// whose content and metadata already equal the entry (an unchanged file
// of an earlier version).
func LinkExisting(src, root string, e *manifest.Entry) error {
	if err := os.Link(src, Path(root, e.Path)); err != nil {
		return fmt.Errorf("link %q from %q: %w", e.Path, src, err)
	}
	return nil
}

// CreateSpecial creates a symlink, device node or FIFO with its metadata.
// Without privileges a device node is not created and ErrSkipped returned.
func CreateSpecial(root string, e *manifest.Entry, opts Options) error {
	p := Path(root, e.Path)
	switch e.Type {
	case manifest.TypeSymlink:
		if err := os.Symlink(e.Target, p); err != nil {
			return fmt.Errorf("create symlink %q: %w", e.Path, err)
		}
		return Reconcile(root, e, opts)
	case manifest.TypeCharDev, manifest.TypeBlockDev, manifest.TypeFIFO:
		mode := uint32(unix.S_IFIFO)
		switch e.Type {
		case manifest.TypeCharDev:
			mode = unix.S_IFCHR
		case manifest.TypeBlockDev:
			mode = unix.S_IFBLK
		}
		if opts.Unprivileged && e.Type != manifest.TypeFIFO {
			return ErrSkipped
		}
		if err := unix.Mknod(p, mode|0o600, int(unix.Mkdev(e.DevMajor, e.DevMinor))); err != nil {
			return fmt.Errorf("create %s %q: %w", e.Type, e.Path, err)
		}
		// A FIFO or device must not be opened to set metadata (open
		// blocks or touches hardware), so work by path.
		return Reconcile(root, e, opts)
	}
	return fmt.Errorf("create %q: %s is not a special file", e.Path, e.Type)
}

// applyFd sets owner, mode, xattrs and mtime on an open file or directory.
// Order matters: chown clears setuid/setgid and file capabilities, so it
// goes first; the mtime goes last.
func applyFd(f *os.File, e *manifest.Entry, opts Options) error {
	fd := int(f.Fd())
	if !opts.Unprivileged {
		if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
			return fmt.Errorf("chown %q: %w", e.Path, err)
		}
	}
	if err := unix.Fchmod(fd, e.Mode); err != nil {
		return fmt.Errorf("chmod %q: %w", e.Path, err)
	}
	for _, x := range e.Xattrs {
		if opts.Unprivileged && privilegedXattr(x.Name) {
			continue
		}
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("set xattr %q on %q: %w", x.Name, e.Path, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MtimeNS), unix.NsecToTimespec(e.MtimeNS)}
	if err := futimens(fd, ts); err != nil {
		return fmt.Errorf("set mtime on %q: %w", e.Path, err)
	}
	return nil
}

// futimens sets times on an open descriptor: utimensat with a NULL path,
// which x/sys/unix does not wrap.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func privilegedXattr(name string) bool {
	return strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "trusted.")
}

// BlockSize is the granularity at which CopySparse looks for zeros.
const BlockSize = 4096

// CopySparse copies r into f, seeking over every all-zero BlockSize block
// instead of writing it, so zero runs become holes; a file ending in a
// hole is extended to its full length. It returns the bytes consumed
// from r.
func CopySparse(f *os.File, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	zero := make([]byte, BlockSize)
	var off, written int64 // bytes consumed; end of the last data written
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			end, werr := writeNonZero(f, buf[:n], off, zero)
			if werr != nil {
				return off, werr
			}
			if end > 0 {
				written = end
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return off, err
		}
	}
	if written < off {
		if err := f.Truncate(off); err != nil {
			return off, err
		}
	}
	return off, nil
}

// writeNonZero writes the non-zero blocks of chunk at offset base,
// coalescing adjacent ones into one write. It returns the file offset
// just past the last byte written, or 0 when the chunk was all zeros.
func writeNonZero(f *os.File, chunk []byte, base int64, zero []byte) (int64, error) {
	start, end := -1, int64(0)
	flush := func(to int) error {
		if _, err := f.WriteAt(chunk[start:to], base+int64(start)); err != nil {
			return err
		}
		end = base + int64(to)
		start = -1
		return nil
	}
	for i := 0; i < len(chunk); i += BlockSize {
		stop := min(i+BlockSize, len(chunk))
		isZero := bytes.Equal(chunk[i:stop], zero[:stop-i])
		switch {
		case !isZero && start < 0:
			start = i
		case isZero && start >= 0:
			if err := flush(i); err != nil {
				return 0, err
			}
		}
	}
	if start >= 0 {
		if err := flush(len(chunk)); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// RemoveContents deletes everything inside dir except the names in keep,
// making read-only directories writable first, and leaves dir itself. It
// is how a failed extraction takes back what it wrote into an empty target.
func RemoveContents(dir string, keep ...string) error {
	names, err := readNames(dir)
	if err != nil {
		return err
	}
	var firstErr error
	for _, n := range names {
		if slices.Contains(keep, n) {
			continue
		}
		p := dir + "/" + n
		if err := makeWritable(p); err != nil && firstErr == nil {
			firstErr = err
		}
		if err := os.RemoveAll(p); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func makeWritable(p string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	if err := unix.Chmod(p, 0o700); err != nil {
		return err
	}
	names, err := readNames(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := makeWritable(p + "/" + n); err != nil {
			return err
		}
	}
	return nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// IsEmptyDir reports whether dir exists and holds nothing but, when
// allowLostFound, a lost+found directory (a freshly made filesystem).
func IsEmptyDir(dir string, allowLostFound bool) (bool, error) {
	names, err := readNames(dir)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if allowLostFound && n == "lost+found" {
			continue
		}
		return false, nil
	}
	return true, nil
}

// Reconcile makes an existing entry's metadata equal to e's: owner, mode
// (not for symlinks), the exact set of xattrs (adding, changing and
// removing), and mtime. It is how an update fixes an entry whose content
// is already right.
func Reconcile(root string, e *manifest.Entry, opts Options) error {
	p := Path(root, e.Path)
	if !opts.Unprivileged {
		if err := unix.Lchown(p, int(e.UID), int(e.GID)); err != nil {
			return fmt.Errorf("chown %q: %w", e.Path, err)
		}
	}
	if e.Type != manifest.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, e.Mode, 0); err != nil {
			return fmt.Errorf("chmod %q: %w", e.Path, err)
		}
	}
	have, err := manifest.ReadXattrs(p)
	if err != nil {
		return fmt.Errorf("read xattrs of %q: %w", e.Path, err)
	}
	want := map[string]bool{}
	for _, x := range e.Xattrs {
		want[x.Name] = true
	}
	for _, x := range have {
		if !want[x.Name] && !(opts.Unprivileged && privilegedXattr(x.Name)) {
			if err := unix.Lremovexattr(p, x.Name); err != nil {
				return fmt.Errorf("remove xattr %q from %q: %w", x.Name, e.Path, err)
			}
		}
	}
	for _, x := range e.Xattrs {
		if opts.Unprivileged && privilegedXattr(x.Name) {
			continue
		}
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("set xattr %q on %q: %w", x.Name, e.Path, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MtimeNS), unix.NsecToTimespec(e.MtimeNS)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime on %q: %w", e.Path, err)
	}
	return nil
}
