package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ScanOptions tune Scan.
type ScanOptions struct {
	// OneFileSystem keeps the walk on the root's filesystem: a mount point
	// is recorded as an empty directory and not descended into, unless
	// CrossMount says to.
	OneFileSystem bool
	// CrossMount, with OneFileSystem, is asked about each mount point met
	// (by manifest path); true descends into it (a local filesystem such
	// as /boot belongs to the tree, /proc does not).
	CrossMount func(rel string) bool
	// Exclude drops matching paths (and, for directories, everything
	// under them).
	Exclude *Excluder
	// Logger receives warnings (skipped sockets). Nil discards them.
	Logger *slog.Logger
}

// Scan walks the tree at root and returns its manifest without content
// digests: regular files carry size but an empty SHA256 until HashContent
// fills it. Hard-link groups are found by inode within the walk; each
// group's first path in manifest order is its leader.
func Scan(ctx context.Context, root string, opts ScanOptions) (*Manifest, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rootSt unix.Stat_t
	if err := unix.Lstat(root, &rootSt); err != nil {
		return nil, fmt.Errorf("scan %q: %w", root, &os.PathError{Op: "lstat", Path: root, Err: err})
	}
	if rootSt.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("scan %q: not a directory", root)
	}
	type inode struct{ dev, ino uint64 }
	s := &scanner{root: root, opts: opts, log: log}
	rootEntry, err := s.entry(".", filepath.Clean(root), &rootSt)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Entries: []Entry{rootEntry}}
	inodes := map[int]inode{}
	if err := s.walkDir(ctx, ".", filepath.Clean(root), rootSt.Dev, m, func(i int, st *unix.Stat_t) {
		if st.Nlink > 1 {
			inodes[i] = inode{st.Dev, st.Ino}
		}
	}); err != nil {
		return nil, err
	}
	// Sort with the inode keys attached, then assign link leaders.
	type keyed struct {
		e   Entry
		key inode
		has bool
	}
	ks := make([]keyed, len(m.Entries))
	for i := range m.Entries {
		k, ok := inodes[i]
		ks[i] = keyed{m.Entries[i], k, ok}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return ComparePaths(a.e.Path, b.e.Path) })
	leader := map[inode]string{}
	for i := range ks {
		m.Entries[i] = ks[i].e
		if !ks[i].has {
			continue
		}
		if l, ok := leader[ks[i].key]; ok {
			m.Entries[i].LinkTo = l
		} else {
			leader[ks[i].key] = ks[i].e.Path
		}
	}
	for i := range m.Entries {
		slices.SortFunc(m.Entries[i].Xattrs, func(a, b Xattr) int { return compareStrings(a.Name, b.Name) })
	}
	return m, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type scanner struct {
	root string
	opts ScanOptions
	log  *slog.Logger
}

func (s *scanner) walkDir(ctx context.Context, rel, abs string, dev uint64, m *Manifest, note func(int, *unix.Stat_t)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readDirNames(abs)
	if err != nil {
		return fmt.Errorf("scan %q: %w", abs, err)
	}
	for _, name := range names {
		childRel := Join(rel, name)
		childAbs := abs + "/" + name
		var st unix.Stat_t
		if err := unix.Lstat(childAbs, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // vanished during the walk
			}
			return fmt.Errorf("scan %q: %w", childAbs, &os.PathError{Op: "lstat", Path: childAbs, Err: err})
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if s.opts.Exclude.Match(childRel, isDir) {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			s.log.Warn("skipping socket", "path", childAbs)
			continue
		}
		e, err := s.entry(childRel, childAbs, &st)
		if err != nil {
			return err
		}
		m.Entries = append(m.Entries, e)
		if e.Type == TypeRegular {
			note(len(m.Entries)-1, &st)
		}
		if isDir {
			if s.opts.OneFileSystem && st.Dev != dev && (s.opts.CrossMount == nil || !s.opts.CrossMount(childRel)) {
				continue
			}
			if err := s.walkDir(ctx, childRel, childAbs, st.Dev, m, note); err != nil {
				return err
			}
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

func (s *scanner) entry(rel, abs string, st *unix.Stat_t) (Entry, error) {
	e := Entry{
		Path:    rel,
		Mode:    st.Mode & ModeMask,
		UID:     st.Uid,
		GID:     st.Gid,
		MtimeNS: st.Mtim.Nano(),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = TypeRegular
		e.Size = st.Size
	case unix.S_IFDIR:
		e.Type = TypeDir
	case unix.S_IFLNK:
		e.Type = TypeSymlink
		t, err := os.Readlink(abs)
		if err != nil {
			return e, fmt.Errorf("scan %q: %w", abs, err)
		}
		e.Target = t
	case unix.S_IFCHR:
		e.Type = TypeCharDev
		e.DevMajor, e.DevMinor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	case unix.S_IFBLK:
		e.Type = TypeBlockDev
		e.DevMajor, e.DevMinor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	case unix.S_IFIFO:
		e.Type = TypeFIFO
	default:
		return e, fmt.Errorf("scan %q: unsupported file type %o", abs, st.Mode&unix.S_IFMT)
	}
	x, err := ReadXattrs(abs)
	if err != nil {
		return e, fmt.Errorf("scan %q: %w", abs, err)
	}
	e.Xattrs = x
	return e, nil
}

// ReadXattrs returns the extended attributes of path (not following a
// final symlink), sorted by name. Filesystems without xattr support yield
// none.
func ReadXattrs(path string) ([]Xattr, error) {
	buf := make([]byte, 1024)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs: %w", err)
	}
	var out []Xattr
	for _, name := range splitNul(buf[:n]) {
		val, err := getXattr(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get xattr %q: %w", name, err)
		}
		out = append(out, Xattr{Name: name, Value: val})
	}
	slices.SortFunc(out, func(a, b Xattr) int { return compareStrings(a.Name, b.Name) })
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// Progress receives counts as work proceeds; it must be safe for
// concurrent use. Nil is allowed.
type Progress func(files int, bytes int64)

// HashContent fills SHA256 for every regular file by reading it under root,
// using workers goroutines (0 means one per CPU). Hard-link members get
// their leader's digest. A file whose size changed since Scan is an error:
// the tree was modified during the walk.
func (m *Manifest) HashContent(ctx context.Context, root string, workers int, progress Progress) error {
	var jobs []int
	for i := range m.Entries {
		if m.Entries[i].Type == TypeRegular && m.Entries[i].LinkTo == "" {
			jobs = append(jobs, i)
		}
	}
	err := ParallelEach(ctx, len(jobs), workers, func(j int) error {
		e := &m.Entries[jobs[j]]
		sum, n, err := HashFile(filepath.Join(root, e.Path))
		if err != nil {
			return err
		}
		if n != e.Size {
			return fmt.Errorf("hash %q: size changed from %d to %d during the walk", e.Path, e.Size, n)
		}
		e.SHA256 = sum
		if progress != nil {
			progress(1, n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	idx := m.Index()
	for i := range m.Entries {
		if e := &m.Entries[i]; e.LinkTo != "" {
			e.SHA256 = m.Entries[idx[e.LinkTo]].SHA256
		}
	}
	return nil
}

// HashFile returns the hex sha256 and length of a file's content. It does
// not follow a final symlink.
func HashFile(path string) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", 0, fmt.Errorf("hash %q: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ParallelEach calls fn(0..n-1) on up to workers goroutines (0 means one
// per CPU) and returns the first error; after an error or cancellation no
// new calls start.
func ParallelEach(ctx context.Context, n, workers int, fn func(i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	var failed atomic.Bool
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = fn(i)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
