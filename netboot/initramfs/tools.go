package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultTools returns the commands an install needs, which Build copies
// from Options.ToolsRoot with their shared libraries unless Options.Tools
// says otherwise: partitioning, filesystem creation and probing.
func DefaultTools() []string {
	return []string{"sfdisk", "partx", "wipefs", "blkid", "mkfs.ext4", "mkswap", "unshare"}
}

// DefaultOptionalTools returns the commands Build adds when ToolsRoot has
// them and skips (with a note) when it does not: other filesystems, md
// RAID, LVM, and filesystem repair.
func DefaultOptionalTools() []string {
	return []string{
		"mkfs.vfat", "mkfs.xfs", "mkfs.btrfs", "mkfs.ext2", "mkfs.ext3", "e2fsck", "tune2fs", "xfs_admin",
		"mdadm", "lvm", "pvcreate", "vgcreate", "lvcreate", "vgchange", "vgmknodes", "btrfs",
		"kexec",
	}
}

// toolDirs returns the directories, in search order, where Build looks
// for a command inside the tools root. /init searches them in the same
// order (its PATH).
func toolDirs() []string { return []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} }

// libDirs are the directories, in search order, where Build looks for a
// shared library inside the tools root: the dynamic loader's own trusted
// directories on Debian and most distributions, so that the copies are
// found at run time without an ld.so.cache.
func libDirs(machine elf.Machine) []string {
	multiarch := map[elf.Machine]string{
		elf.EM_X86_64:  "x86_64-linux-gnu",
		elf.EM_AARCH64: "aarch64-linux-gnu",
		elf.EM_386:     "i386-linux-gnu",
	}[machine]
	dirs := []string{}
	if multiarch != "" {
		dirs = append(dirs, "/lib/"+multiarch, "/usr/lib/"+multiarch)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

// dataFiles returns the configuration files the tools read, copied when
// present.
func dataFiles() []string { return []string{"/etc/mke2fs.conf"} }

// toolCollector gathers the entries for tools and their libraries from a
// root directory, each file once.
type toolCollector struct {
	root string
	// files are the entries collected, by initramfs path.
	files map[string]File
	// real maps a file's resolved location in the root to the initramfs
	// path holding its copy, so a second name becomes a symbolic link.
	real map[string]string
}

// collectTools returns the entries for the required and optional tools
// found in root, and the names of the optional tools that are missing. A
// missing required tool is an error naming the directories searched.
func collectTools(root string, required, optional []string) ([]File, []string, error) {
	c := &toolCollector{root: root, files: map[string]File{}, real: map[string]string{}}
	var missing []string
	for i, name := range slices.Concat(required, optional) {
		if name == "" || strings.Contains(name, "/") {
			return nil, nil, fmt.Errorf("tool %q: want a command name", name)
		}
		p, err := c.findTool(name)
		if errors.Is(err, fs.ErrNotExist) {
			if i < len(required) {
				return nil, nil, fmt.Errorf("tool %s: not found in %s under %s", name, strings.Join(toolDirs(), ", "), root)
			}
			missing = append(missing, name)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("tool %s: %w", name, err)
		}
		if err := c.addBinary(p); err != nil {
			return nil, nil, fmt.Errorf("tool %s: %w", name, err)
		}
	}
	for _, p := range dataFiles() {
		real, err := c.resolve(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		c.files[p] = File{Path: p, Mode: 0o644, Source: real}
	}
	out := make([]File, 0, len(c.files))
	for _, f := range c.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, missing, nil
}

// findTool returns the path inside the root of the first toolDirs entry
// holding an executable name.
func (c *toolCollector) findTool(name string) (string, error) {
	for _, dir := range toolDirs() {
		p := path.Join(dir, name)
		real, err := c.resolve(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		fi, err := os.Stat(real)
		if err != nil {
			return "", err
		}
		if fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fs.ErrNotExist
}

// addBinary adds the executable or library at p (a path inside the root)
// and, for a dynamically linked ELF file, its program interpreter and the
// shared libraries it needs, recursively.
func (c *toolCollector) addBinary(p string) error {
	if _, ok := c.files[p]; ok {
		return nil
	}
	real, err := c.resolve(p)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if first, ok := c.real[real]; ok {
		c.files[p] = File{Path: p, Mode: fs.ModeSymlink | 0o777, Linkname: first}
		return nil
	}
	c.real[real] = p
	c.files[p] = File{Path: p, Mode: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid), Source: real}

	f, err := elf.Open(real)
	if err != nil {
		// A script or other non-ELF file: nothing more to resolve.
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("read %s: %w", real, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		interp, err := io.ReadAll(io.LimitReader(prog.Open(), 4096))
		if err != nil {
			return fmt.Errorf("read interpreter of %s: %w", real, err)
		}
		ip := string(bytes.TrimRight(interp, "\x00"))
		if !path.IsAbs(ip) {
			return fmt.Errorf("%s: interpreter %q is not an absolute path", real, ip)
		}
		if err := c.addBinary(path.Clean(ip)); err != nil {
			return fmt.Errorf("interpreter of %s: %w", p, err)
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("libraries of %s: %w", real, err)
	}
	var runpath []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(d, "$ORIGIN", path.Dir(p))
				if path.IsAbs(d) {
					runpath = append(runpath, path.Clean(d))
				}
			}
		}
	}
	dirs := slices.Concat(runpath, libDirs(f.Machine))
	for _, lib := range needed {
		lp, err := c.findLibrary(lib, dirs)
		if err != nil {
			return fmt.Errorf("library %s of %s: %w", lib, p, err)
		}
		if err := c.addBinary(lp); err != nil {
			return fmt.Errorf("library %s of %s: %w", lib, p, err)
		}
	}
	return nil
}

// findLibrary returns the path inside the root of the shared library
// name: name itself when absolute, else the first of dirs holding it.
func (c *toolCollector) findLibrary(name string, dirs []string) (string, error) {
	if path.IsAbs(name) {
		return path.Clean(name), nil
	}
	for _, dir := range dirs {
		p := path.Join(dir, name)
		if _, err := c.resolve(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s under %s", strings.Join(dirs, ", "), c.root)
}

// resolve returns the location on this machine of the path p inside the
// root, following symbolic links as if the root were "/": an absolute
// link target starts again at the root, and ".." never leaves it.
func (c *toolCollector) resolve(p string) (string, error) {
	const maxLinks = 40
	links := 0
	done := "/"
	rest := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	for len(rest) > 0 {
		elem := rest[0]
		rest = rest[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, elem)
		host := filepath.Join(c.root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		links++
		if links > maxLinks {
			return "", fmt.Errorf("resolve %s under %s: too many symbolic links", p, c.root)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(c.root, filepath.FromSlash(done)), nil
}

// busyboxEntries returns the entries for the busybox at p inside root:
// the binary at /bin/busybox (with its libraries when it is not static),
// and /bin/sh plus a link for each applet it lists that no other entry
// provides. A busybox that cannot be run here (another architecture) gets
// only /bin/sh.
func busyboxEntries(ctx context.Context, root, p string, taken map[string]bool) ([]File, error) {
	c := &toolCollector{root: root, files: map[string]File{}, real: map[string]string{}}
	real, err := c.resolve(p)
	if err != nil {
		return nil, fmt.Errorf("busybox %s under %s: %w", p, root, err)
	}
	if err := c.addBinary(p); err != nil {
		return nil, fmt.Errorf("busybox: %w", err)
	}
	var out []File
	for _, f := range c.files {
		if f.Path == p {
			f.Path = "/bin/busybox"
		}
		if !taken[f.Path] {
			out = append(out, f)
			taken[f.Path] = true
		}
	}
	applets := []string{"sh"}
	if list, err := exec.CommandContext(ctx, real, "--list-full").Output(); err == nil {
		applets = nil
		for _, line := range strings.Fields(string(list)) {
			applets = append(applets, "/"+path.Clean(line))
		}
	}
	for _, a := range applets {
		if !path.IsAbs(a) {
			a = "/bin/" + a
		}
		if taken[a] || a == "/bin/busybox" || strings.Count(a, "/") > 3 {
			continue
		}
		taken[a] = true
		out = append(out, File{Path: a, Mode: fs.ModeSymlink | 0o777, Linkname: "/bin/busybox"})
	}
	if !taken["/bin/sh"] {
		out = append(out, File{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777, Linkname: "/bin/busybox"})
	}
	return out, nil
}
