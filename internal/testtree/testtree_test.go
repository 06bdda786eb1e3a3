package testtree

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/internal/tool"
)

func lstat(t *testing.T, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %q: %v", path, err)
	}
	return &st
}

func TestBuild(t *testing.T) {
	tree := Build(t, filepath.Join(t.TempDir(), "tree"))
	if !filepath.IsAbs(tree.Root) {
		t.Errorf("Root %q is not absolute", tree.Root)
	}

	typeOf := func(rel string) uint32 { return lstat(t, tree.Abs(rel)).Mode & unix.S_IFMT }
	perm := func(rel string) uint32 { return lstat(t, tree.Abs(rel)).Mode & 0o7777 }

	t.Run("regular", func(t *testing.T) {
		for rel, size := range map[string]int64{tree.Empty: 0, tree.Small: 16, tree.Random: 1 << 20} {
			if st := lstat(t, tree.Abs(rel)); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != size {
				t.Errorf("%s: mode %#o size %d, want regular file of %d bytes", rel, st.Mode, st.Size, size)
			}
		}
	})

	t.Run("modes", func(t *testing.T) {
		for rel, want := range map[string]uint32{
			".":                          0o755,
			tree.Setuid:                  0o4755,
			tree.Setgid:                  0o2755,
			tree.StickyDir:               0o1777,
			tree.SetgidDir:               0o2755,
			tree.ReadOnlyDir:             0o555,
			tree.ReadOnlyDir + "/file":   0o444,
			"owners/uid100000-gid100001": 0o600,
		} {
			if got := perm(rel); got != want {
				t.Errorf("%s: mode %#o, want %#o", rel, got, want)
			}
		}
		for _, dir := range []string{tree.StickyDir, tree.SetgidDir, tree.ReadOnlyDir} {
			if typeOf(dir) != unix.S_IFDIR {
				t.Errorf("%s is not a directory", dir)
			}
		}
		if entries, err := os.ReadDir(tree.Abs(tree.ReadOnlyDir)); err != nil || len(entries) != 1 {
			t.Errorf("read-only dir holds %v (err %v), want one file", entries, err)
		}
	})

	t.Run("names", func(t *testing.T) {
		if got := strings.Count(tree.Deep, "/"); got != DeepLevels {
			t.Errorf("Deep %q is %d levels below the top directory, want %d", tree.Deep, got, DeepLevels)
		}
		if typeOf(tree.Deep+"/bottom") != unix.S_IFREG {
			t.Errorf("no file at the bottom of the deep chain")
		}
		if n := len(filepath.Base(tree.LongName)); n != 255 {
			t.Errorf("long name is %d bytes, want 255", n)
		}
		if utf8.ValidString(tree.NonUTF8) || !strings.Contains(tree.NonUTF8, "\xff\xfe") {
			t.Errorf("NonUTF8 %q is valid UTF-8 or lacks 0xff 0xfe", tree.NonUTF8)
		}
		if len(tree.Unicode) != 2 || tree.Unicode[0] == tree.Unicode[1] {
			t.Errorf("Unicode = %q, want two distinct names", tree.Unicode)
		}
		joined := strings.Join(tree.OddNames, "")
		for _, c := range []string{" ", "\n", "%", "="} {
			if !strings.Contains(joined, c) {
				t.Errorf("no odd name contains %q", c)
			}
		}
		all := append([]string{tree.LongName, tree.NonUTF8}, tree.Unicode...)
		for _, rel := range append(all, tree.OddNames...) {
			if typeOf(rel) != unix.S_IFREG {
				t.Errorf("%q is not a regular file", rel)
			}
		}
		for _, rel := range tree.EmptyDirs {
			if entries, err := os.ReadDir(tree.Abs(rel)); err != nil || len(entries) != 0 {
				t.Errorf("empty dir %s holds %v (err %v)", rel, entries, err)
			}
		}
	})

	t.Run("symlinks", func(t *testing.T) {
		for rel, check := range map[string]func(string) bool{
			tree.Symlink:         func(tg string) bool { return !filepath.IsAbs(tg) },
			tree.DanglingSymlink: func(tg string) bool { return !filepath.IsAbs(tg) },
			tree.AbsoluteSymlink: filepath.IsAbs,
		} {
			target, err := os.Readlink(tree.Abs(rel))
			if err != nil || !check(target) {
				t.Errorf("%s -> %q (err %v): wrong kind of target", rel, target, err)
			}
		}
		if _, err := os.Stat(tree.Abs(tree.Symlink)); err != nil {
			t.Errorf("relative symlink does not resolve: %v", err)
		}
		if _, err := os.Stat(tree.Abs(tree.DanglingSymlink)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("dangling symlink: stat err %v, want not-exist", err)
		}
	})

	t.Run("hardlinks", func(t *testing.T) {
		if len(tree.Hardlinks) != 2 || len(tree.Hardlinks[0]) != 3 || len(tree.Hardlinks[1]) != 2 {
			t.Fatalf("Hardlinks = %q, want groups of 3 and 2", tree.Hardlinks)
		}
		dirs := map[string]bool{}
		for _, rel := range tree.Hardlinks[0] {
			dirs[filepath.Dir(rel)] = true
		}
		if len(dirs) != 3 {
			t.Errorf("group 1 %q spans %d directories, want 3", tree.Hardlinks[0], len(dirs))
		}
		var inodes []uint64
		for _, g := range tree.Hardlinks {
			first := lstat(t, tree.Abs(g[0]))
			for _, rel := range g {
				st := lstat(t, tree.Abs(rel))
				if st.Ino != first.Ino || st.Nlink != uint64(len(g)) {
					t.Errorf("%s: inode %d nlink %d, want inode %d nlink %d", rel, st.Ino, st.Nlink, first.Ino, len(g))
				}
			}
			inodes = append(inodes, first.Ino)
		}
		if inodes[0] == inodes[1] {
			t.Errorf("the two groups share an inode")
		}
	})

	t.Run("specials", func(t *testing.T) {
		for rel, want := range map[string][3]uint32{
			tree.CharDevice:  {unix.S_IFCHR, 1, 3},
			tree.BlockDevice: {unix.S_IFBLK, 7, 200},
		} {
			st := lstat(t, tree.Abs(rel))
			got := [3]uint32{st.Mode & unix.S_IFMT, unix.Major(st.Rdev), unix.Minor(st.Rdev)}
			if got != want {
				t.Errorf("%s: type/major/minor %#o/%d/%d, want %#o/%d/%d", rel, got[0], got[1], got[2], want[0], want[1], want[2])
			}
		}
		if typeOf(tree.FIFO) != unix.S_IFIFO {
			t.Errorf("%s is not a FIFO", tree.FIFO)
		}
		if typeOf(tree.Socket) != unix.S_IFSOCK {
			t.Errorf("%s is not a socket", tree.Socket)
		}
		if got := tree.Skipped(); len(got) != 1 || got[0] != tree.Socket {
			t.Errorf("Skipped() = %q, want just the socket", got)
		}
	})

	t.Run("xattrs", func(t *testing.T) {
		getx := func(rel, name string) ([]byte, error) {
			buf := make([]byte, 4096)
			n, err := unix.Lgetxattr(tree.Abs(rel), name, buf)
			if err != nil {
				return nil, fmt.Errorf("getxattr %s %s: %w", rel, name, err)
			}
			return buf[:n], nil
		}
		for rel, name := range map[string]string{
			tree.Capability:                   "security.capability",
			tree.ACLFile:                      "system.posix_acl_access",
			tree.DefaultACLDir:                "system.posix_acl_default",
			tree.DefaultACLDir + "/inherited": "system.posix_acl_access",
		} {
			if v, err := getx(rel, name); err != nil || len(v) == 0 {
				t.Errorf("%s: %s = %q, err %v; want a value", rel, name, v, err)
			}
		}
		if getcap, err := tool.Look("getcap"); err == nil {
			out, err := exec.Command(getcap, tree.Abs(tree.Capability)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "cap_net_raw=ep") {
				t.Errorf("getcap: %s (err %v), want cap_net_raw=ep", out, err)
			}
		}
		if v, err := getx(tree.Hardlinks[1][1], "user.goldcast.group"); err != nil || string(v) != "2" {
			t.Errorf("hard-link group 2 xattr = %q, err %v", v, err)
		}
		if !bytes.Contains(tree.XattrValues["user.goldcast.binary"], []byte{0}) {
			t.Errorf("binary xattr value has no NUL byte")
		}
		for _, rel := range []string{tree.XattrFile, tree.XattrDir} {
			for name, want := range tree.XattrValues {
				if got, err := getx(rel, name); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %s = %q, err %v; want %q", rel, name, got, err, want)
				}
			}
		}
	})

	t.Run("sparse", func(t *testing.T) {
		st := lstat(t, tree.Abs(tree.Sparse))
		if st.Size != SparseSize {
			t.Errorf("sparse size %d, want %d", st.Size, SparseSize)
		}
		if used := st.Blocks * 512; used > 1<<20 {
			t.Errorf("sparse file uses %d bytes on disk, want far below %d", used, st.Size)
		}
		f, err := os.Open(tree.Abs(tree.Sparse))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for off, want := range map[int64]byte{0: 0, 1 << 20: 'A', 40 << 20: 'B', SparseSize - 1: 0} {
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, off); err != nil || b[0] != want {
				t.Errorf("byte at %d = %q (err %v), want %q", off, b[0], err, want)
			}
		}
	})

	t.Run("owners", func(t *testing.T) {
		want := map[string][2]uint32{
			"owners/uid4242-gid4343":     {4242, 4343},
			"owners/uid100000-gid100001": {100000, 100001},
			"owners/dir-uid4242":         {4242, 4343},
			"owners/link-uid100000":      {100000, 100001},
		}
		if len(tree.Orphans) != len(want) {
			t.Errorf("Orphans = %q, want %d entries", tree.Orphans, len(want))
		}
		for _, rel := range tree.Orphans {
			st := lstat(t, tree.Abs(rel))
			if got := [2]uint32{st.Uid, st.Gid}; got != want[rel] {
				t.Errorf("%s owned by %v, want %v", rel, got, want[rel])
			}
		}
		for _, id := range []string{"4242", "100000"} {
			if u, err := user.LookupId(id); err == nil {
				t.Errorf("uid %s has a passwd entry (%s); the orphans are not orphans here", id, u.Username)
			}
		}
		if typeOf("owners/link-uid100000") != unix.S_IFLNK {
			t.Errorf("orphan link is not a symlink")
		}
	})

	t.Run("mtimes", func(t *testing.T) {
		if len(tree.Mtimes) != 3 {
			t.Errorf("Mtimes = %v, want a file, a symlink and a directory", tree.Mtimes)
		}
		want := map[string]int64{
			".":                   DefaultMtime,
			"deep":                DefaultMtime,
			tree.Deep:             DefaultMtime,
			tree.ReadOnlyDir:      DefaultMtime,
			tree.Socket:           DefaultMtime,
			tree.Symlink:          DefaultMtime,
			"times/nano-file":     FileMtime,
			"times/nano-link":     SymlinkMtime,
			"times/nano-dir":      DirMtime,
			"times/nano-dir/file": DefaultMtime,
		}
		for rel, mt := range tree.Mtimes {
			if want[rel] != mt.UnixNano() {
				t.Errorf("Mtimes[%s] = %d, want %d", rel, mt.UnixNano(), want[rel])
			}
		}
		for rel, ns := range want {
			if got := lstat(t, tree.Abs(rel)).Mtim.Nano(); got != ns {
				t.Errorf("%s: mtime %d, want %d", rel, got, ns)
			}
		}
		types := map[string]uint32{"times/nano-file": unix.S_IFREG, "times/nano-link": unix.S_IFLNK, "times/nano-dir": unix.S_IFDIR}
		for rel, ty := range types {
			if typeOf(rel) != ty {
				t.Errorf("%s has the wrong type", rel)
			}
		}
	})
}

func TestBuildRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b := &builder{setcap: "/bin/false", setfacl: "/bin/false"}
	if _, err := b.build(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("build into non-empty dir: err %v, want not empty", err)
	}
}

// TestBuildCopiedFaithfully checks the tree and the oracle against each
// other: cp -a, which keeps everything, must satisfy the oracle once the
// socket is excluded, and dropping the socket must not.
func TestBuildCopiedFaithfully(t *testing.T) {
	tmp := t.TempDir()
	tree := Build(t, filepath.Join(tmp, "src"))
	dst := filepath.Join(tmp, "dst")
	if out, err := exec.Command("cp", "-a", tree.Root, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	Oracle(t, tree.Root, dst, tree.Skipped()...)

	if err := os.Remove(filepath.Join(dst, tree.Socket)); err != nil {
		t.Fatal(err)
	}
	// Removing the socket changed its directory's mtime; put it back, as an
	// image tool that skips the socket would.
	sockDir := filepath.Dir(tree.Socket)
	if out, err := exec.Command("touch", "-r", filepath.Join(tree.Root, sockDir), filepath.Join(dst, sockDir)).CombinedOutput(); err != nil {
		t.Fatalf("touch: %v %s", err, out)
	}
	Oracle(t, tree.Root, dst, tree.Skipped()...)
	out, err := OracleOutput(tree.Root, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, tree.Socket) {
		t.Errorf("oracle without excludes does not report the missing socket:\n%s", out)
	}

	// Breaking a hard link, keeping content and metadata, must show.
	broken := filepath.Join(dst, tree.Hardlinks[0][0])
	data, err := os.ReadFile(broken)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("touch", "-h", "-r", filepath.Join(tree.Root, tree.Hardlinks[0][0]), broken).CombinedOutput(); len(out) > 0 {
		t.Fatalf("touch: %s", out)
	}
	// The parent directory's mtime changed too; restore it so only the
	// link structure differs.
	parent := filepath.Dir(tree.Hardlinks[0][0])
	if out, _ := exec.Command("touch", "-h", "-r", filepath.Join(tree.Root, parent), filepath.Join(dst, parent)).CombinedOutput(); len(out) > 0 {
		t.Fatalf("touch: %s", out)
	}
	out, err = OracleOutput(tree.Root, dst, tree.Skipped()...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "hf") {
		t.Errorf("oracle does not report a broken hard link:\n%s", out)
	}
}

// TestOracleSeesTortureFeatures damages a faithful copy of a torture tree
// in many places at once and checks that the oracle names each one.
func TestOracleSeesTortureFeatures(t *testing.T) {
	tmp := t.TempDir()
	tree := Build(t, filepath.Join(tmp, "src"))
	dst := filepath.Join(tmp, "dst")
	if out, err := exec.Command("cp", "-a", tree.Root, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	in := func(rel string) string { return filepath.Join(dst, filepath.FromSlash(rel)) }
	run := func(name string, args ...string) error {
		prog, err := tool.Look(name)
		if err != nil {
			return err
		}
		if out, err := exec.Command(prog, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, out)
		}
		return nil
	}
	keepMtime := func(rel string, change func(string) error) error {
		var st unix.Stat_t
		if err := unix.Lstat(in(rel), &st); err != nil {
			return err
		}
		if err := change(in(rel)); err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, in(rel), []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
	var wants []string
	// Each damage is reported on a line holding want (rsync escapes bytes
	// outside printable ASCII as \#ooo in the C locale).
	for _, d := range []struct {
		want   string
		damage func() error
	}{
		{tree.Capability, func() error { return run("setcap", "-r", in(tree.Capability)) }},
		{tree.ACLFile, func() error { return run("setfacl", "-m", "u:1234:r", in(tree.ACLFile)) }},
		{tree.DefaultACLDir + "/", func() error { return run("setfacl", "-k", in(tree.DefaultACLDir)) }},
		{tree.XattrDir + "/", func() error {
			return unix.Lsetxattr(in(tree.XattrDir), "user.goldcast.binary", []byte{0, 1, 0xff, 0, 'b', 'i', 'n', 1}, 0)
		}},
		{tree.XattrFile, func() error { return unix.Lremovexattr(in(tree.XattrFile), "user.goldcast.empty") }},
		{tree.Setuid, func() error { return unix.Chmod(in(tree.Setuid), 0o755) }},
		{tree.BlockDevice, func() error {
			return keepMtime(tree.BlockDevice, func(p string) error {
				if err := os.Remove(p); err != nil {
					return err
				}
				return unix.Mknod(p, unix.S_IFBLK|0o660, int(unix.Mkdev(7, 201)))
			})
		}},
		{tree.Sparse, func() error {
			return keepMtime(tree.Sparse, func(p string) error {
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = f.WriteAt([]byte{1}, 2<<20)
				return err
			})
		}},
		{tree.Deep + "/bottom", func() error {
			return keepMtime(tree.Deep+"/bottom", func(p string) error { return os.WriteFile(p, []byte("X"), 0o644) })
		}},
		{"owners/link-uid100000", func() error { return unix.Lchown(in("owners/link-uid100000"), 0, 0) }},
		{"times/nano-link", func() error {
			ts := unix.NsecToTimespec(SymlinkMtime + 1)
			return unix.UtimesNanoAt(unix.AT_FDCWD, in("times/nano-link"), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		}},
		{`names/bad-\#377\#376-utf8`, func() error { return unix.Chmod(in(tree.NonUTF8), 0o600) }},
		{`names/new\#012line`, func() error { return unix.Chmod(in("names/new\nline"), 0o600) }},
	} {
		if err := d.damage(); err != nil {
			t.Fatalf("damage %s: %v", d.want, err)
		}
		wants = append(wants, d.want)
	}
	out, err := OracleOutput(tree.Root, dst, tree.Skipped()...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("oracle did not report damaged %q", want)
		}
	}
	if t.Failed() {
		t.Logf("oracle output:\n%s", out)
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs, fatals []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

// smallTree writes a few entries under dir.
func smallTree(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{dir, filepath.Join(dir, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"a": "alpha\n", "sub/b": "bravo\n", "sub/c": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
}

func TestOracle(t *testing.T) {
	if _, err := tool.Look("rsync"); err != nil {
		t.Fatalf("rsync is needed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to compare ownership and xattrs")
	}
	src := filepath.Join(t.TempDir(), "src")
	smallTree(t, src)

	copyTree := func(t *testing.T) string {
		dst := filepath.Join(t.TempDir(), "dst")
		if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp -a: %v\n%s", err, out)
		}
		return dst
	}

	t.Run("identical", func(t *testing.T) {
		dst := copyTree(t)
		if out, err := OracleOutput(src, dst); err != nil || out != "" {
			t.Errorf("identical copy: output %q, err %v; want none", out, err)
		}
		r := &recorder{TB: t}
		Oracle(r, src, dst)
		if len(r.errs)+len(r.fatals) > 0 {
			t.Errorf("Oracle failed an identical copy: %q %q", r.errs, r.fatals)
		}
	})

	for _, tc := range []struct {
		name   string
		change func(dst string) error
		want   string // a substring of the rsync output
	}{
		{"mode", func(dst string) error { return os.Chmod(filepath.Join(dst, "a"), 0o600) }, "a"},
		{"owner", func(dst string) error { return os.Lchown(filepath.Join(dst, "sub/b"), 4242, 4343) }, "sub/b"},
		{"content same size and mtime", func(dst string) error {
			p := filepath.Join(dst, "a")
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte("ALPHA\n"), 0o644); err != nil {
				return err
			}
			return os.Chtimes(p, st.ModTime(), st.ModTime())
		}, "a"},
		{"mtime nanoseconds", func(dst string) error {
			p := filepath.Join(dst, "sub/c")
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			mt := st.ModTime().Add(1)
			return os.Chtimes(p, mt, mt)
		}, "sub/c"},
		{"symlink mtime nanoseconds", func(dst string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(FileMtime), unix.NsecToTimespec(FileMtime)}
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, "link"), ts, unix.AT_SYMLINK_NOFOLLOW)
		}, "link"},
		{"directory mtime", func(dst string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(DirMtime), unix.NsecToTimespec(DirMtime)}
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, "sub"), ts, 0)
		}, "sub/"},
		{"acl", func(dst string) error {
			setfacl, err := tool.Look("setfacl")
			if err != nil {
				return err
			}
			if out, err := exec.Command(setfacl, "-m", "u:1234:r", filepath.Join(dst, "a")).CombinedOutput(); err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}, "a"},
		{"xattr", func(dst string) error {
			return unix.Lsetxattr(filepath.Join(dst, "sub/b"), "user.extra", []byte{0}, 0)
		}, "sub/b"},
		{"extra entry", func(dst string) error {
			return os.WriteFile(filepath.Join(dst, "sub", "extra"), nil, 0o644)
		}, "deleting"},
		{"missing entry", func(dst string) error { return os.Remove(filepath.Join(dst, "link")) }, "link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := copyTree(t)
			if err := tc.change(dst); err != nil {
				t.Fatal(err)
			}
			out, err := OracleOutput(src, dst)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("oracle output %q lacks %q", out, tc.want)
			}
			r := &recorder{TB: t}
			Oracle(r, src, dst)
			if len(r.errs) != 1 || !strings.Contains(r.errs[0], out) {
				t.Errorf("Oracle reported %q, want one error quoting %q", r.errs, out)
			}
		})
	}

	t.Run("excludes", func(t *testing.T) {
		dst := copyTree(t)
		if err := os.Remove(filepath.Join(dst, "sub/b")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, "a-extra"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// Restore directory mtimes so only the excluded entries differ.
		for _, d := range []string{"", "sub"} {
			if out, err := exec.Command("touch", "-r", filepath.Join(src, d), filepath.Join(dst, d)).CombinedOutput(); err != nil {
				t.Fatalf("touch: %v %s", err, out)
			}
		}
		if out, err := OracleOutput(src, dst, "sub/b", "/a-extra"); err != nil || out != "" {
			t.Errorf("excluded differences reported: %q (err %v)", out, err)
		}
		// Anchored: excluding "b" must not hide sub/b.
		if out, _ := OracleOutput(src, dst, "b", "a-extra"); !strings.Contains(out, "sub/b") {
			t.Errorf("unanchored-looking exclude hid sub/b: %q", out)
		}
	})

	t.Run("missing root", func(t *testing.T) {
		if _, err := OracleOutput(src, filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Errorf("no error for a missing dst")
		}
	})
}

func TestCapLines(t *testing.T) {
	var b strings.Builder
	for i := range 250 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	got := capLines(b.String(), 100)
	if !strings.HasPrefix(got, "line 0\n") || !strings.Contains(got, "line 99\n") || strings.Contains(got, "line 100\n") ||
		!strings.HasSuffix(got, "... and 150 more lines") {
		t.Errorf("capLines = %q", got)
	}
	if got := capLines("a\nb\n", 100); got != "a\nb\n" {
		t.Errorf("capLines short = %q", got)
	}
}

func TestDebootstrapKey(t *testing.T) {
	spec := defaultSpec()
	if !regexp.MustCompile(`^bookworm-minbase-[0-9a-f]{12}$`).MatchString(spec.key()) {
		t.Errorf("key %q has the wrong shape", spec.key())
	}
	other := spec
	other.mirror = "http://example.invalid/debian"
	if other.key() == spec.key() {
		t.Errorf("mirror does not change the key")
	}
	t.Setenv(CacheEnv, "/some/cache")
	if got, want := debootstrapPath(spec), "/some/cache/debootstrap/"+spec.key(); got != want {
		t.Errorf("debootstrapPath = %q, want %q", got, want)
	}
}

// TestDebootstrapCached checks the real cached root, only when it is
// already built: building it takes minutes.
func TestDebootstrapCached(t *testing.T) {
	path := debootstrapPath(defaultSpec())
	if ok, err := checkRoot(path); err != nil || !ok {
		t.Skipf("no cached debootstrap root at %s (err %v); not building one here", path, err)
	}
	root := Debootstrap(t)
	if root != path {
		t.Errorf("Debootstrap = %q, want %q", root, path)
	}
	v, err := os.ReadFile(filepath.Join(root, "etc", "debian_version"))
	if err != nil || !strings.HasPrefix(string(v), "12.") {
		t.Errorf("debian_version %q (err %v), want bookworm (12.x)", v, err)
	}
}

// fakeDebootstrap writes a stand-in debootstrap script: it appends a line
// to count, then runs body with the target directory in $3.
func fakeDebootstrap(t *testing.T, count, body string) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "debootstrap")
	text := "#!/bin/sh\necho run >> '" + count + "'\n" + body + "\n"
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func TestBuildDebootstrapWithFake(t *testing.T) {
	spec := debootstrapSpec{suite: "fake", variant: "minbase", mirror: "http://example.invalid"}
	noLog := func(string, ...any) {}

	t.Run("success once under concurrency", func(t *testing.T) {
		t.Setenv(CacheEnv, t.TempDir())
		final := debootstrapPath(spec)
		stale := filepath.Join(filepath.Dir(final), ".tmp-stale-build")
		if err := os.MkdirAll(filepath.Join(stale, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		count := filepath.Join(t.TempDir(), "count")
		tool := fakeDebootstrap(t, count, `sleep 0.3; mkdir -p "$3/etc"; echo 12.0 > "$3/etc/debian_version"`)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { errs[i] = buildDebootstrap(tool, spec, final, noLog) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("buildDebootstrap: %v", err)
			}
		}
		if runs, _ := os.ReadFile(count); strings.Count(string(runs), "run") != 1 {
			t.Errorf("debootstrap ran %d times, want once", strings.Count(string(runs), "run"))
		}
		if ok, err := checkRoot(final); !ok || err != nil {
			t.Errorf("no finished root at %s: %v", final, err)
		}
		if st, err := os.Stat(final); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("root mode %v (err %v), want 0755", st.Mode(), err)
		}
		if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale build left behind: %v", err)
		}
	})

	t.Run("root placed meanwhile", func(t *testing.T) {
		t.Setenv(CacheEnv, t.TempDir())
		final := debootstrapPath(spec)
		tool := fakeDebootstrap(t, filepath.Join(t.TempDir(), "count"),
			`mkdir -p "$3/etc" '`+final+`/etc'; echo 12.0 > "$3/etc/debian_version"; echo placed > '`+final+`/etc/debian_version'`)
		if err := buildDebootstrap(tool, spec, final, noLog); err != nil {
			t.Fatalf("buildDebootstrap: %v", err)
		}
		if v, err := os.ReadFile(filepath.Join(final, "etc", "debian_version")); err != nil || string(v) != "placed\n" {
			t.Errorf("root placed meanwhile was replaced: %q, %v", v, err)
		}
		entries, _ := os.ReadDir(filepath.Dir(final))
		if len(entries) != 2 {
			t.Errorf("cache holds %v, want the lock and the placed root", entries)
		}
	})

	for _, tc := range []struct {
		name        string
		body        string
		unreachable bool
	}{
		{"mirror unreachable", `mkdir -p "$3/debootstrap"; echo "wget: unable to resolve host address" > "$3/debootstrap/debootstrap.log"; echo "E: Failed getting release file http://example.invalid/dists/fake/Release"; exit 1`, true},
		{"other failure", `mkdir -p "$3/debootstrap"; echo "E: Couldn't find these debs: nope"; exit 1`, false},
		{"success without a root", `exit 0`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(CacheEnv, t.TempDir())
			final := debootstrapPath(spec)
			tool := fakeDebootstrap(t, filepath.Join(t.TempDir(), "count"), tc.body)
			err := buildDebootstrap(tool, spec, final, noLog)
			bf, ok := errors.AsType[*buildFailure](err)
			if !ok {
				t.Fatalf("err = %v, want a build failure", err)
			}
			if bf.unreachable != tc.unreachable {
				t.Errorf("unreachable = %v, want %v; tail:\n%s", bf.unreachable, tc.unreachable, bf.tail)
			}
			if tc.unreachable && !strings.Contains(bf.tail, "unable to resolve host") {
				t.Errorf("tail lacks the inner debootstrap.log:\n%s", bf.tail)
			}
			entries, _ := os.ReadDir(filepath.Dir(final))
			for _, e := range entries {
				if e.Name() != ".lock" {
					t.Errorf("failed build left %s behind", e.Name())
				}
			}
		})
	}
}

func TestRemoveBuildUnmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := filepath.Join(t.TempDir(), ".tmp-build with space")
	mnt := filepath.Join(dir, "proc")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err := mountsUnder(dir); err != nil || len(m) != 1 || m[0] != mnt {
		t.Fatalf("mountsUnder = %q, %v; want [%s]", m, err, mnt)
	}
	if err := removeBuild(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("build dir still there: %v", err)
	}
}

func TestMirrorUnreachable(t *testing.T) {
	for log, want := range map[string]bool{
		"E: Failed getting release file http://deb.debian.org/debian/dists/bookworm/Release": true,
		"E: Couldn't download packages: libc6":                                               true,
		"wget: unable to resolve host address 'deb.debian.org'":                              true,
		"E: Release signed by unknown key (key id 6ED0E7B82643E131)":                         false,
		"W: Failure trying to run: chroot \"/x\" /bin/true":                                  false,
	} {
		if got := mirrorUnreachable(log); got != want {
			t.Errorf("mirrorUnreachable(%q) = %v, want %v", log, got, want)
		}
	}
}
