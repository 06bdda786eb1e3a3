// Package testtree provides filesystem fixtures for tests of goldcast's
// image tools: a "torture tree" holding every kind of entry and metadata
// an OS root can carry (Build), a fidelity oracle that compares two trees
// with rsync (Oracle), and a cached minimal Debian root built with
// debootstrap (Debootstrap).
//
// Everything here needs root and a few Debian tools (rsync, libcap2-bin,
// acl, debootstrap); each helper skips or fails the calling test with a
// message naming what is missing.
package testtree

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/internal/tool"
)

// Tree describes a torture tree made by Build. Every path except Root is
// relative to Root, uses '/' separators and has no leading "./".
type Tree struct {
	// Root is the absolute path of the tree.
	Root string

	// Socket is a unix socket left behind after its listener was closed.
	// Image tools must skip sockets, so a faithful copy lacks it: pass it
	// to Oracle as an exclude (see Skipped).
	Socket string
	// Sparse is a file of SparseSize bytes apparent size holding two small
	// data islands; the rest, including its tail, is holes.
	Sparse string
	// Hardlinks lists the hard-link groups: the paths of each group share
	// one inode. The first group has three paths in different directories,
	// the second has two. Paths within a group are sorted bytewise.
	Hardlinks [][]string

	// Empty is an empty regular file.
	Empty string
	// Small is a small regular file.
	Small string
	// Random is a 1 MiB file of pseudo-random (incompressible but
	// reproducible) bytes.
	Random string

	// Deep is the innermost directory of a chain nested DeepLevels
	// directories deep; it holds one regular file.
	Deep string
	// LongName is a regular file whose name is 255 bytes long, the most
	// Linux allows.
	LongName string
	// Unicode lists regular files with non-ASCII UTF-8 names, in both NFC
	// and NFD forms of the same word.
	Unicode []string
	// NonUTF8 is a regular file whose name holds the bytes 0xff 0xfe,
	// which are not valid UTF-8.
	NonUTF8 string
	// OddNames lists regular files whose names hold spaces, a newline,
	// '%' and '=' (including a name that looks percent-escaped).
	OddNames []string

	// Setuid is an executable with mode 04755.
	Setuid string
	// Setgid is an executable with mode 02755.
	Setgid string
	// StickyDir is a directory with mode 01777.
	StickyDir string
	// SetgidDir is a directory with mode 02755 holding one file.
	SetgidDir string
	// ReadOnlyDir is a directory with mode 0555 holding one file.
	ReadOnlyDir string
	// EmptyDirs lists directories with no entries.
	EmptyDirs []string

	// Symlink is a symbolic link with a relative target inside the tree.
	Symlink string
	// DanglingSymlink is a symbolic link whose target does not exist.
	DanglingSymlink string
	// AbsoluteSymlink is a symbolic link with an absolute target.
	AbsoluteSymlink string

	// CharDevice is a character device node, major 1 minor 3.
	CharDevice string
	// BlockDevice is a block device node, major 7 minor 200.
	BlockDevice string
	// FIFO is a named pipe.
	FIFO string

	// Capability is a file with the file capability cap_net_raw+ep (the
	// security.capability xattr).
	Capability string
	// ACLFile is a file with the POSIX access ACL u:1234:rwx,g:2345:r.
	ACLFile string
	// DefaultACLDir is a directory with the POSIX default ACL u:1234:rx;
	// it holds one file created after the default ACL was set, which
	// therefore carries an inherited access ACL.
	DefaultACLDir string
	// XattrFile is a file carrying the user xattrs of XattrValues.
	XattrFile string
	// XattrDir is a directory carrying the user xattrs of XattrValues.
	XattrDir string
	// XattrValues holds the user.* xattrs set on XattrFile and XattrDir:
	// a text value, a binary value with NUL bytes and an empty value.
	XattrValues map[string][]byte

	// Orphans lists entries (files, a directory and a symlink) owned by
	// uids and gids that have no passwd or group entry: 4242:4343 and
	// 100000:100001.
	Orphans []string

	// Mtimes lists the entries given distinctive nanosecond mtimes (a
	// file, a symlink and a directory) and the mtime of each. Every other
	// entry, the root included, has mtime DefaultMtime.
	Mtimes map[string]time.Time
}

// Abs returns the absolute path of rel, a path relative to t.Root.
func (t *Tree) Abs(rel string) string {
	return filepath.Join(t.Root, filepath.FromSlash(rel))
}

// Skipped returns the relative paths of the entries that image tools skip
// by design (the socket), ready to pass to Oracle as excludes.
func (t *Tree) Skipped() []string {
	return []string{t.Socket}
}

// SparseSize is the apparent size of Tree.Sparse: 64 MiB.
const SparseSize = 64 << 20

// DeepLevels is how many directories deep Tree.Deep is nested.
const DeepLevels = 60

// DefaultMtime is the mtime, in nanoseconds since the Unix epoch, of every
// entry of a torture tree not listed in Tree.Mtimes (2017-07-14T02:40:00.5Z).
const DefaultMtime = 1500000000_500000000

// The distinctive mtimes, in nanoseconds since the Unix epoch, listed in
// Tree.Mtimes.
const (
	// FileMtime is the mtime of the file in Tree.Mtimes.
	FileMtime = 1600000000_123456789
	// SymlinkMtime is the mtime of the symlink in Tree.Mtimes.
	SymlinkMtime = 1600000001_987654321
	// DirMtime is the mtime of the directory in Tree.Mtimes.
	DirMtime = 1600000002_000000001
)

// Build creates a torture tree at dir, which must not exist or be empty,
// and returns its description. The tree holds:
//
//   - regular files: empty, small, 1 MiB of pseudo-random bytes, and a
//     sparse file of 64 MiB apparent size with two 4 KiB data islands made
//     by seek and write (its tail is a hole);
//   - a directory chain 60 levels deep, empty directories, a sticky
//     directory (01777), a setgid directory (02755) and a read-only
//     directory (0555) that holds a file;
//   - a 255-byte name, NFC and NFD unicode names ("naïve-日本語"), a name
//     with the non-UTF-8 bytes 0xff 0xfe, and names with spaces, a newline,
//     '%' and '=';
//   - setuid (04755) and setgid (02755) executables;
//   - relative, dangling and absolute symlinks;
//   - two hard-link groups, of 3 paths in different directories and of 2;
//   - a char device (1,3), a block device (7,200) and a FIFO;
//   - a unix socket, bound and then left behind. Image tools skip sockets,
//     so a faithful copy of the tree does NOT contain it: pass
//     Tree.Skipped (or Tree.Socket) to Oracle as an exclude;
//   - a file capability (cap_net_raw+ep), a POSIX access ACL on a file and
//     a default ACL on a directory, and user.* xattrs (text, binary with
//     NUL bytes, empty) on a file and a directory;
//   - files, a directory and a symlink owned by ids without passwd
//     entries (4242:4343, 100000:100001);
//   - explicit nanosecond mtimes on every entry (see Tree.Mtimes and
//     DefaultMtime), set last so that creating children does not disturb
//     directory mtimes.
//
// Contents and metadata are reproducible: two builds differ only in inode
// numbers and ctimes (and in atimes, once something reads the files). Build skips the test when not run as root,
// when setcap (Debian package libcap2-bin) or setfacl (package acl) is
// missing, or when the kernel or filesystem refuses device nodes, xattrs
// or ACLs. Any other failure is fatal.
func Build(t testing.TB, dir string) *Tree {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testtree: Build needs root (device nodes, foreign owners, setuid bits, file capabilities)")
	}
	setcap, err := tool.Look("setcap")
	if err != nil {
		t.Skipf("testtree: setcap not found (install Debian package libcap2-bin): %v", err)
	}
	setfacl, err := tool.Look("setfacl")
	if err != nil {
		t.Skipf("testtree: setfacl not found (install Debian package acl): %v", err)
	}
	b := &builder{setcap: setcap, setfacl: setfacl}
	tree, err := b.build(dir)
	if err != nil {
		if skip, ok := errors.AsType[*skipError](err); ok {
			t.Skipf("testtree: %v", skip)
		}
		t.Fatalf("testtree: build torture tree at %s: %v", dir, err)
	}
	return tree
}

// skipError reports an environment that cannot hold a torture tree, as
// opposed to a bug: the test is skipped rather than failed.
type skipError struct{ err error }

func (e *skipError) Error() string { return e.err.Error() }
func (e *skipError) Unwrap() error { return e.err }

type builder struct {
	setcap, setfacl string
	root            string
	mtimes          map[string]time.Time
}

func (b *builder) abs(rel string) string { return filepath.Join(b.root, filepath.FromSlash(rel)) }

func (b *builder) build(dir string) (*Tree, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve tree root %q: %w", dir, err)
	}
	if err := prepareRoot(root); err != nil {
		return nil, err
	}
	b.root = root
	b.mtimes = map[string]time.Time{}
	t := &Tree{Root: root}

	steps := []func(*Tree) error{
		b.regularFiles,
		b.deepChain,
		b.names,
		b.modes,
		b.symlinks,
		b.hardlinks,
		b.specials,
		b.attributes,
		b.orphans,
		b.times,
	}
	for _, step := range steps {
		if err := step(t); err != nil {
			return nil, err
		}
	}
	// Last: freeze the read-only directory, then stamp every mtime. Nothing
	// is created after this point, so directory mtimes stay as set.
	if err := b.chmod(t.ReadOnlyDir, 0o555); err != nil {
		return nil, err
	}
	if err := b.stampTimes(); err != nil {
		return nil, err
	}
	t.Mtimes = b.mtimes
	return t, nil
}

// prepareRoot creates root, or checks that it is an empty directory, and
// gives it mode 0755.
func prepareRoot(root string) error {
	entries, err := os.ReadDir(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(root, 0o755); err != nil {
			return fmt.Errorf("create tree root: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read tree root: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("tree root %s is not empty (holds %q, ...)", root, entries[0].Name())
	}
	if err := unix.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("chmod tree root %s: %w", root, err)
	}
	return nil
}

// mkdir creates directory rel with exactly mode perm (umask ignored).
func (b *builder) mkdir(rel string, perm uint32) error {
	if err := unix.Mkdir(b.abs(rel), 0o700); err != nil {
		return fmt.Errorf("mkdir %q: %w", rel, err)
	}
	return b.chmod(rel, perm)
}

// mkdirs creates each directory with mode 0755.
func (b *builder) mkdirs(rels ...string) error {
	for _, rel := range rels {
		if err := b.mkdir(rel, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) chmod(rel string, perm uint32) error {
	if err := unix.Chmod(b.abs(rel), perm); err != nil {
		return fmt.Errorf("chmod %q to %#o: %w", rel, perm, err)
	}
	return nil
}

// file creates regular file rel holding data with exactly mode perm.
func (b *builder) file(rel string, perm uint32, data []byte) error {
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create file %q: %w", rel, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write file %q: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close file %q: %w", rel, err)
	}
	return b.chmod(rel, perm)
}

func (b *builder) content(rel string) []byte {
	return []byte("goldcast torture tree: " + rel + "\n")
}

func (b *builder) regularFiles(t *Tree) error {
	if err := b.mkdirs("files", "files/empty-subdir", "empty-dir", "sparse"); err != nil {
		return err
	}
	t.EmptyDirs = []string{"empty-dir", "files/empty-subdir"}
	t.Empty, t.Small, t.Random = "files/empty", "files/small", "files/random-1MiB"
	if err := b.file(t.Empty, 0o644, nil); err != nil {
		return err
	}
	if err := b.file(t.Small, 0o644, []byte("hello, goldcast\n")); err != nil {
		return err
	}
	random := make([]byte, 1<<20)
	var seed [32]byte
	copy(seed[:], "goldcast testtree random file 1")
	if _, err := rand.NewChaCha8(seed).Read(random); err != nil {
		return fmt.Errorf("generate random content: %w", err)
	}
	if err := b.file(t.Random, 0o600, random); err != nil {
		return err
	}
	t.Sparse = "sparse/sparse-64MiB"
	return b.sparse(t.Sparse)
}

// sparse creates a SparseSize file with two 4 KiB data islands written at
// 1 MiB and 40 MiB by seek and write; the file ends in a hole.
func (b *builder) sparse(rel string) error {
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create sparse file %q: %w", rel, err)
	}
	defer f.Close()
	for i, off := range []int64{1 << 20, 40 << 20} {
		island := bytes.Repeat([]byte{byte('A' + i)}, 4096)
		if _, err := f.Seek(off, 0); err != nil {
			return fmt.Errorf("seek sparse file %q to %d: %w", rel, off, err)
		}
		if _, err := f.Write(island); err != nil {
			return fmt.Errorf("write sparse file %q island at %d: %w", rel, off, err)
		}
	}
	if err := f.Truncate(SparseSize); err != nil {
		return fmt.Errorf("extend sparse file %q: %w", rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close sparse file %q: %w", rel, err)
	}
	return b.chmod(rel, 0o644)
}

func (b *builder) deepChain(t *Tree) error {
	rel := "deep"
	if err := b.mkdir(rel, 0o755); err != nil {
		return err
	}
	for i := 1; i <= DeepLevels; i++ {
		rel += fmt.Sprintf("/d%02d", i)
		if err := b.mkdir(rel, 0o755); err != nil {
			return err
		}
	}
	t.Deep = rel
	return b.file(rel+"/bottom", 0o644, b.content("bottom"))
}

func (b *builder) names(t *Tree) error {
	if err := b.mkdir("names", 0o755); err != nil {
		return err
	}
	prefix := "long-name-"
	t.LongName = "names/" + prefix + strings.Repeat("x", 255-len(prefix))
	t.Unicode = []string{"names/naïve-日本語", "names/nai\u0308ve-日本語"}
	t.NonUTF8 = "names/bad-\xff\xfe-utf8"
	t.OddNames = []string{
		"names/with space",
		"names/trailing space ",
		"names/new\nline",
		"names/per%cent",
		"names/key=value",
		"names/%41%3D=looks-escaped",
	}
	all := append([]string{t.LongName, t.NonUTF8}, t.Unicode...)
	all = append(all, t.OddNames...)
	for _, rel := range all {
		if err := b.file(rel, 0o644, b.content(rel)); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) modes(t *Tree) error {
	if err := b.mkdir("modes", 0o755); err != nil {
		return err
	}
	script := []byte("#!/bin/sh\necho goldcast\n")
	t.Setuid, t.Setgid = "modes/setuid", "modes/setgid"
	if err := b.file(t.Setuid, 0o4755, script); err != nil {
		return err
	}
	if err := b.file(t.Setgid, 0o2755, script); err != nil {
		return err
	}
	t.StickyDir, t.SetgidDir, t.ReadOnlyDir = "modes/sticky", "modes/setgid-dir", "modes/readonly"
	if err := b.mkdir(t.StickyDir, 0o1777); err != nil {
		return err
	}
	if err := b.file(t.StickyDir+"/file", 0o666, b.content("sticky")); err != nil {
		return err
	}
	if err := b.mkdir(t.SetgidDir, 0o2755); err != nil {
		return err
	}
	if err := b.file(t.SetgidDir+"/file", 0o644, b.content("setgid-dir")); err != nil {
		return err
	}
	// Made read-only at the very end of build, so that it can be filled.
	if err := b.mkdir(t.ReadOnlyDir, 0o755); err != nil {
		return err
	}
	return b.file(t.ReadOnlyDir+"/file", 0o444, b.content("readonly"))
}

func (b *builder) symlink(target, rel string) error {
	if err := os.Symlink(target, b.abs(rel)); err != nil {
		return fmt.Errorf("symlink %q -> %q: %w", rel, target, err)
	}
	return nil
}

func (b *builder) symlinks(t *Tree) error {
	if err := b.mkdir("links", 0o755); err != nil {
		return err
	}
	t.Symlink, t.DanglingSymlink, t.AbsoluteSymlink = "links/relative", "links/dangling", "links/absolute"
	if err := b.symlink("../files/small", t.Symlink); err != nil {
		return err
	}
	if err := b.symlink("does-not-exist/anywhere", t.DanglingSymlink); err != nil {
		return err
	}
	return b.symlink("/etc/hostname", t.AbsoluteSymlink)
}

func (b *builder) link(oldRel, newRel string) error {
	if err := os.Link(b.abs(oldRel), b.abs(newRel)); err != nil {
		return fmt.Errorf("hard link %q to %q: %w", newRel, oldRel, err)
	}
	return nil
}

func (b *builder) hardlinks(t *Tree) error {
	if err := b.mkdirs("hardlinks", "hardlinks/a", "hardlinks/b"); err != nil {
		return err
	}
	// Group 1 spans three directories, one of them outside "hardlinks", so
	// a walk meets its members far apart.
	g1 := []string{"hardlinks/a/one", "hardlinks/b/two", "files/three-linked"}
	if err := b.file(g1[0], 0o644, b.content("hard-link group 1")); err != nil {
		return err
	}
	for _, rel := range g1[1:] {
		if err := b.link(g1[0], rel); err != nil {
			return err
		}
	}
	// Group 2 also carries an xattr, which its members share.
	g2 := []string{"hardlinks/pair-1", "hardlinks/pair-2"}
	if err := b.file(g2[0], 0o640, b.content("hard-link group 2")); err != nil {
		return err
	}
	if err := b.setxattr(g2[0], "user.goldcast.group", []byte("2")); err != nil {
		return err
	}
	if err := b.link(g2[0], g2[1]); err != nil {
		return err
	}
	for _, g := range [][]string{g1, g2} {
		slices.Sort(g)
		t.Hardlinks = append(t.Hardlinks, g)
	}
	return nil
}

func (b *builder) specials(t *Tree) error {
	if err := b.mkdir("special", 0o755); err != nil {
		return err
	}
	t.CharDevice, t.BlockDevice = "special/null", "special/loop200"
	nodes := []struct {
		rel          string
		kind, perm   uint32
		major, minor uint32
	}{
		{t.CharDevice, unix.S_IFCHR, 0o666, 1, 3},
		{t.BlockDevice, unix.S_IFBLK, 0o660, 7, 200},
	}
	for _, n := range nodes {
		err := unix.Mknod(b.abs(n.rel), n.kind|n.perm, int(unix.Mkdev(n.major, n.minor)))
		if errors.Is(err, unix.EPERM) {
			return &skipError{fmt.Errorf("mknod %q refused (container without CAP_MKNOD?): %w", n.rel, err)}
		}
		if err != nil {
			return fmt.Errorf("mknod %q: %w", n.rel, err)
		}
		if err := b.chmod(n.rel, n.perm); err != nil {
			return err
		}
	}
	t.FIFO = "special/fifo"
	if err := unix.Mkfifo(b.abs(t.FIFO), 0o600); err != nil {
		return fmt.Errorf("mkfifo %q: %w", t.FIFO, err)
	}
	if err := b.chmod(t.FIFO, 0o644); err != nil {
		return err
	}
	t.Socket = "special/socket"
	if err := bindSocket(b.abs(t.Socket)); err != nil {
		return fmt.Errorf("create socket %q: %w", t.Socket, err)
	}
	return b.chmod(t.Socket, 0o755)
}

// bindSocket binds a unix stream socket at path and closes it, which
// leaves the socket file behind. Paths too long for sockaddr_un are
// reached through the /proc/self/fd link of their directory.
func bindSocket(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	addr := path
	if len(addr) >= len(unix.RawSockaddrUnix{}.Path) {
		dfd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open socket directory: %w", err)
		}
		defer unix.Close(dfd)
		addr = fmt.Sprintf("/proc/self/fd/%d/%s", dfd, filepath.Base(path))
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		return fmt.Errorf("bind %s: %w", addr, err)
	}
	return nil
}

func (b *builder) setxattr(rel, name string, value []byte) error {
	err := unix.Lsetxattr(b.abs(rel), name, value, 0)
	if errors.Is(err, unix.ENOTSUP) {
		return &skipError{fmt.Errorf("filesystem of %s does not support xattr %s: %w", b.root, name, err)}
	}
	if err != nil {
		return fmt.Errorf("set xattr %s on %q: %w", name, rel, err)
	}
	return nil
}

// run runs a tool on one tree entry; the tool's output goes into the error.
func (b *builder) run(rel string, tool string, args ...string) error {
	out, err := exec.Command(tool, append(args, b.abs(rel))...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "Operation not supported") {
			return &skipError{fmt.Errorf("%s on %q: filesystem of %s refuses it: %w: %s", filepath.Base(tool), rel, b.root, err, msg)}
		}
		return fmt.Errorf("%s %s on %q: %w: %s", filepath.Base(tool), strings.Join(args, " "), rel, err, msg)
	}
	return nil
}

func (b *builder) attributes(t *Tree) error {
	if err := b.mkdir("attrs", 0o755); err != nil {
		return err
	}
	// Capabilities go on after the last write, chown and chmod, each of
	// which would drop them.
	t.Capability = "attrs/cap-net-raw"
	if err := b.file(t.Capability, 0o755, []byte("#!/bin/sh\nexit 0\n")); err != nil {
		return err
	}
	if err := b.run(t.Capability, b.setcap, "cap_net_raw+ep"); err != nil {
		return err
	}

	t.ACLFile = "attrs/acl-file"
	if err := b.file(t.ACLFile, 0o640, b.content("acl")); err != nil {
		return err
	}
	if err := b.run(t.ACLFile, b.setfacl, "-m", "u:1234:rwx,g:2345:r"); err != nil {
		return err
	}
	t.DefaultACLDir = "attrs/acl-default-dir"
	if err := b.mkdir(t.DefaultACLDir, 0o755); err != nil {
		return err
	}
	if err := b.run(t.DefaultACLDir, b.setfacl, "-d", "-m", "u:1234:rx"); err != nil {
		return err
	}
	// Created after the default ACL, so it inherits an access ACL.
	inherit := t.DefaultACLDir + "/inherited"
	f, err := os.OpenFile(b.abs(inherit), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create file %q: %w", inherit, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close file %q: %w", inherit, err)
	}

	t.XattrFile, t.XattrDir = "attrs/xattr-file", "attrs/xattr-dir"
	t.XattrValues = map[string][]byte{
		"user.goldcast.text":   []byte("hello xattr"),
		"user.goldcast.binary": {0x00, 0x01, 0xff, 0x00, 'b', 'i', 'n', 0x00},
		"user.goldcast.empty":  {},
	}
	if err := b.file(t.XattrFile, 0o644, b.content("xattr")); err != nil {
		return err
	}
	if err := b.mkdir(t.XattrDir, 0o755); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(t.XattrValues))
	for _, rel := range []string{t.XattrFile, t.XattrDir} {
		for _, name := range names {
			if err := b.setxattr(rel, name, t.XattrValues[name]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *builder) orphans(t *Tree) error {
	if err := b.mkdir("owners", 0o755); err != nil {
		return err
	}
	type owned struct {
		rel      string
		uid, gid int
	}
	list := []owned{
		{"owners/uid4242-gid4343", 4242, 4343},
		{"owners/uid100000-gid100001", 100000, 100001},
		{"owners/dir-uid4242", 4242, 4343},
		{"owners/link-uid100000", 100000, 100001},
	}
	if err := b.file(list[0].rel, 0o644, b.content("orphan")); err != nil {
		return err
	}
	if err := b.file(list[1].rel, 0o600, b.content("orphan")); err != nil {
		return err
	}
	if err := b.mkdir(list[2].rel, 0o750); err != nil {
		return err
	}
	if err := b.symlink("uid4242-gid4343", list[3].rel); err != nil {
		return err
	}
	for _, o := range list {
		if err := unix.Lchown(b.abs(o.rel), o.uid, o.gid); err != nil {
			return fmt.Errorf("lchown %q to %d:%d: %w", o.rel, o.uid, o.gid, err)
		}
		t.Orphans = append(t.Orphans, o.rel)
	}
	return nil
}

func (b *builder) times(t *Tree) error {
	if err := b.mkdirs("times", "times/nano-dir"); err != nil {
		return err
	}
	if err := b.file("times/nano-dir/file", 0o644, b.content("in nano-dir")); err != nil {
		return err
	}
	if err := b.file("times/nano-file", 0o644, b.content("nano")); err != nil {
		return err
	}
	if err := b.symlink("nano-file", "times/nano-link"); err != nil {
		return err
	}
	b.mtimes["times/nano-file"] = time.Unix(0, FileMtime)
	b.mtimes["times/nano-link"] = time.Unix(0, SymlinkMtime)
	b.mtimes["times/nano-dir"] = time.Unix(0, DirMtime)
	return nil
}

// stampTimes sets atime and mtime of every entry, not following symlinks.
// Changing an entry's times leaves its parent's mtime alone, so the walk
// order does not matter.
func (b *builder) stampTimes() error {
	return filepath.WalkDir(b.root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk tree: %w", err)
		}
		rel, err := filepath.Rel(b.root, path)
		if err != nil {
			return fmt.Errorf("relative path of %q: %w", path, err)
		}
		mt, ok := b.mtimes[filepath.ToSlash(rel)]
		if !ok {
			mt = time.Unix(0, DefaultMtime)
		}
		ts := unix.NsecToTimespec(mt.UnixNano())
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %q: %w", rel, err)
		}
		return nil
	})
}
