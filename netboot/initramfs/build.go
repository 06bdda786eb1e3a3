package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ModuleListPath is where the archive lists the module files InitMain
// loads, one absolute path a line, in load order (dependencies first);
// empty lines and lines starting with # are ignored.
const ModuleListPath = "/etc/goldcast/modules"

// Compression is how Build compresses the cpio archive. The kernel must
// have been built to unpack it (CONFIG_RD_GZIP, CONFIG_RD_ZSTD; Debian's
// kernels have both).
type Compression string

// The compressions Build writes. The zero value means CompressGzip.
const (
	// CompressGzip is gzip, which every distribution kernel unpacks.
	CompressGzip Compression = "gzip"
	// CompressZstd is zstd: a smaller archive that unpacks faster, for
	// kernels from 5.9 on.
	CompressZstd Compression = "zstd"
	// CompressNone writes the cpio archive as it is.
	CompressNone Compression = "none"
)

// File is one entry Build adds to the archive.
type File struct {
	// Path is the absolute, clean path inside the initramfs
	// ("/etc/resolv.conf"). Missing parent directories are added (0755).
	Path string
	// Mode holds the entry's type and permissions: no type bits for a
	// regular file, fs.ModeDir, fs.ModeSymlink, fs.ModeDevice with
	// fs.ModeCharDevice for a character device, fs.ModeDevice alone for a
	// block device, fs.ModeNamedPipe. Permission, setuid, setgid and
	// sticky bits are taken as given; every entry is owned by root.
	Mode fs.FileMode
	// Data is a regular file's contents, unless Source is set.
	Data []byte
	// Source is a file on this machine whose contents a regular file
	// gets, read when Build runs (instead of Data).
	Source string
	// Linkname is a symbolic link's target.
	Linkname string
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
}

// Options tells Build what to put in the archive and where to write it.
type Options struct {
	// Out receives the compressed archive. Build does not close it.
	Out io.Writer
	// Goldcast is the path of the goldcast binary to install as /init. It
	// must be a statically linked ELF executable (built with
	// CGO_ENABLED=0): the initramfs has no dynamic loader or libc.
	Goldcast string
	// KernelVersion is the release of the kernel the initramfs boots with
	// (uname -r, "6.1.0-50-amd64"); modules go to /lib/modules/VERSION.
	// Required with ModulesDir.
	KernelVersion string
	// ModulesDir is that kernel's module directory on this machine
	// (ROOT/lib/modules/VERSION), whose modules.dep (and modules.builtin,
	// if present) resolve Modules to files. Empty means an initramfs
	// without modules, for kernels with the drivers built in.
	ModulesDir string
	// Modules names the modules to load ("virtio_net"; a dash and an
	// underscore are the same), in order; each comes after its
	// dependencies, which are added from modules.dep. Names built into
	// the kernel (modules.builtin) are skipped; a name that is neither a
	// module nor built in is an error. Nil means DefaultModules().
	Modules []string
	// Extra lists additional entries. A directory may repeat one that
	// Build makes (the Extra one's mode wins); any other repeated path is
	// an error.
	Extra []File
	// Compression is how the archive is compressed; empty means gzip.
	Compression Compression

	// ToolsRoot is the directory Tools, OptionalTools, Busybox and
	// Firmware are taken from: "/" (empty) for this machine, or an image
	// version's tree to use the golden client's own programs.
	ToolsRoot string
	// Tools are commands (such as DefaultTools()) copied from ToolsRoot's
	// /usr/sbin, /usr/bin, /sbin or /bin to the same place in the archive,
	// with their program interpreter and shared libraries; a second name
	// for the same file becomes a symbolic link. A missing one is an
	// error.
	Tools []string
	// OptionalTools are added like Tools when present; each missing one
	// is logged and left out.
	OptionalTools []string
	// Busybox is the path inside ToolsRoot of a busybox binary (ideally
	// static) for the rescue shell: it goes to /bin/busybox with /bin/sh
	// and its applets as links, after Tools (a tool wins over an applet of
	// the same path). Empty means no shell.
	Busybox string
	// Firmware are file names or glob patterns relative to ToolsRoot's
	// /lib/firmware ("rtl_nic/*.fw"), copied to /lib/firmware. A pattern
	// matching nothing is an error.
	Firmware []string
	// Log receives notes about what was left out; nil discards them.
	Log *slog.Logger
}

// DefaultModules returns the modules Build loads unless Options.Modules
// says otherwise, in load order: virtio (PCI transport, network, block,
// SCSI), SCSI and NVMe disks and AHCI controllers, the common Intel,
// Mellanox and Realtek NICs, the filesystems an install makes (ext4, xfs,
// vfat with its code pages), md RAID and device-mapper (LVM), and
// af_packet, which DHCP needs (usually built in).
func DefaultModules() []string {
	return []string{
		"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
		"sd_mod", "ahci", "nvme",
		"e1000", "e1000e", "igb", "ixgbe", "mlx5_core", "r8169",
		"ext4", "xfs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
		"md_mod", "raid0", "raid1", "raid10", "raid456", "dm_mod",
		"af_packet",
	}
}

// baseEntries are the directories and device nodes every archive holds.
func baseEntries() []File {
	dir := fs.ModeDir | 0o755
	return []File{
		{Path: "/dev", Mode: dir},
		{Path: "/dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "/dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
		{Path: "/etc", Mode: dir},
		{Path: "/etc/goldcast", Mode: dir},
		{Path: "/proc", Mode: dir},
		{Path: "/run", Mode: dir},
		{Path: "/sys", Mode: dir},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// Build writes a compressed newc cpio archive to opt.Out: the goldcast
// binary as /init, the requested kernel modules with their dependencies
// and ModuleListPath naming them in load order, the base directories and
// device nodes (see the package documentation), and opt.Extra. The
// archive is reproducible: entries are sorted by path, owned by root and
// dated 1970-01-01, so the same inputs give the same bytes.
func Build(ctx context.Context, opt Options) error {
	if opt.Out == nil {
		return errors.New("build initramfs: no output writer (Options.Out)")
	}
	if opt.Goldcast == "" {
		return errors.New("build initramfs: no goldcast binary (Options.Goldcast)")
	}
	if err := checkStatic(opt.Goldcast); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	compression := opt.Compression
	if compression == "" {
		compression = CompressGzip
	}
	if !slices.Contains([]Compression{CompressGzip, CompressZstd, CompressNone}, compression) {
		return fmt.Errorf("build initramfs: unknown compression %q (want gzip, zstd or none)", opt.Compression)
	}

	files := baseEntries()
	files = append(files, File{Path: "/init", Mode: 0o755, Source: opt.Goldcast})
	list := "# Modules /init loads, in order (written by goldcast's initramfs builder).\n"
	if opt.ModulesDir != "" {
		if opt.KernelVersion == "" || strings.ContainsAny(opt.KernelVersion, "/ \n") {
			return fmt.Errorf("build initramfs: kernel version %q is empty or not a single path element", opt.KernelVersion)
		}
		names := opt.Modules
		if names == nil {
			names = DefaultModules()
		}
		idx, err := readModuleIndex(opt.ModulesDir)
		if err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		rels, err := idx.resolve(names)
		if err != nil {
			return fmt.Errorf("build initramfs: modules of %s: %w", opt.ModulesDir, err)
		}
		for _, rel := range rels {
			p := path.Join("/lib/modules", opt.KernelVersion, rel)
			files = append(files, File{Path: p, Mode: 0o644, Source: filepath.Join(opt.ModulesDir, filepath.FromSlash(rel))})
			list += p + "\n"
		}
	} else if len(opt.Modules) > 0 {
		return errors.New("build initramfs: Options.Modules needs Options.ModulesDir")
	}
	files = append(files, File{Path: ModuleListPath, Mode: 0o644, Data: []byte(list)})
	programs, err := programEntries(ctx, opt, files)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	files = append(files, programs...)

	entries, err := mergeEntries(files, opt.Extra)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}

	var zw io.WriteCloser
	switch compression {
	case CompressGzip:
		zw = gzip.NewWriter(opt.Out)
	case CompressZstd:
		enc, err := zstd.NewWriter(opt.Out, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("build initramfs: zstd writer: %w", err)
		}
		zw = enc
	case CompressNone:
		zw = nopWriteCloser{opt.Out}
	}
	cw := newCPIOWriter(zw)
	for _, f := range entries {
		if err := ctx.Err(); err != nil {
			zw.Close()
			return fmt.Errorf("build initramfs: %w", err)
		}
		if err := writeEntry(cw, f); err != nil {
			zw.Close()
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if err := cw.close(); err != nil {
		zw.Close()
		return fmt.Errorf("build initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("build initramfs: finish %s stream: %w", compression, err)
	}
	return nil
}

// programEntries returns the entries for opt's tools, busybox and
// firmware, none of which may repeat a path of have.
func programEntries(ctx context.Context, opt Options, have []File) ([]File, error) {
	root := opt.ToolsRoot
	if root == "" {
		root = "/"
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var out []File
	if len(opt.Tools)+len(opt.OptionalTools) > 0 {
		tools, missing, err := collectTools(root, opt.Tools, opt.OptionalTools)
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			log.Info("optional tools not found, left out", "root", root, "tools", strings.Join(missing, " "))
		}
		out = append(out, tools...)
	}
	if opt.Busybox != "" {
		taken := map[string]bool{}
		for _, f := range slices.Concat(have, out, opt.Extra) {
			taken[f.Path] = true
		}
		bb, err := busyboxEntries(ctx, root, opt.Busybox, taken)
		if err != nil {
			return nil, err
		}
		out = append(out, bb...)
	}
	fwRoot := filepath.Join(root, "lib", "firmware")
	for _, pattern := range opt.Firmware {
		if path.IsAbs(pattern) || slices.Contains(strings.Split(pattern, "/"), "..") {
			return nil, fmt.Errorf("firmware %q: want a path relative to /lib/firmware", pattern)
		}
		matches, err := filepath.Glob(filepath.Join(fwRoot, filepath.FromSlash(pattern)))
		if err != nil {
			return nil, fmt.Errorf("firmware %q: %w", pattern, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("firmware %q: no such file under %s", pattern, fwRoot)
		}
		for _, m := range matches {
			fi, err := os.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("firmware %s: %w", m, err)
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			rel, _ := filepath.Rel(fwRoot, m)
			out = append(out, File{Path: path.Join("/lib/firmware", filepath.ToSlash(rel)), Mode: 0o644, Source: m})
		}
	}
	return out, nil
}

// nopWriteCloser is an io.WriteCloser whose Close does nothing.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// checkStatic fails unless name is an ELF executable without a program
// interpreter (a dynamic loader), i.e. one that runs without libc.
func checkStatic(name string) error {
	f, err := elf.Open(name)
	if err != nil {
		return fmt.Errorf("goldcast binary %s: %w", name, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("goldcast binary %s: ELF type %v is not an executable", name, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(io.LimitReader(p.Open(), 256))
			return fmt.Errorf("goldcast binary %s is dynamically linked (interpreter %s): build it with CGO_ENABLED=0",
				name, bytes.TrimRight(interp, "\x00"))
		}
	}
	return nil
}

// checkFile validates an entry's path and the fields its type uses.
func checkFile(f File) error {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
		return fmt.Errorf("entry %q: path is not absolute and clean, or is /", f.Path)
	}
	if _, err := unixMode(f.Mode); err != nil {
		return fmt.Errorf("entry %s: %w", f.Path, err)
	}
	regular := f.Mode.Type() == 0
	switch {
	case !regular && (f.Data != nil || f.Source != ""):
		return fmt.Errorf("entry %s: only a regular file has Data or Source", f.Path)
	case f.Data != nil && f.Source != "":
		return fmt.Errorf("entry %s: both Data and Source", f.Path)
	case f.Mode.Type() == fs.ModeSymlink && f.Linkname == "":
		return fmt.Errorf("entry %s: symbolic link without a target", f.Path)
	case f.Mode.Type() != fs.ModeSymlink && f.Linkname != "":
		return fmt.Errorf("entry %s: Linkname on something other than a symbolic link", f.Path)
	case f.Mode&fs.ModeDevice == 0 && (f.Major != 0 || f.Minor != 0):
		return fmt.Errorf("entry %s: device numbers on something other than a device", f.Path)
	}
	return nil
}

// mergeEntries checks base and extra entries, lets extra directories
// replace base ones, adds missing parent directories and returns every
// entry sorted by path, so that each directory precedes its contents.
func mergeEntries(base, extra []File) ([]File, error) {
	byPath := map[string]File{}
	fromBase := map[string]bool{}
	for i, f := range slices.Concat(base, extra) {
		if err := checkFile(f); err != nil {
			return nil, err
		}
		isBase := i < len(base)
		if old, ok := byPath[f.Path]; ok {
			if old.Mode.IsDir() && f.Mode.IsDir() && fromBase[f.Path] && !isBase {
				byPath[f.Path] = f
				fromBase[f.Path] = false
				continue
			}
			return nil, fmt.Errorf("entry %s appears twice", f.Path)
		}
		byPath[f.Path] = f
		fromBase[f.Path] = isBase
	}
	for p := range byPath {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if d, ok := byPath[dir]; ok {
				if !d.Mode.IsDir() {
					return nil, fmt.Errorf("entry %s: parent %s is not a directory", p, dir)
				}
				continue
			}
			byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	// A parent's path is a prefix of its children's, so it sorts first.
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// writeEntry writes one checked entry.
func writeEntry(cw *cpioWriter, f File) error {
	mode, err := unixMode(f.Mode)
	if err != nil {
		return fmt.Errorf("entry %s: %w", f.Path, err)
	}
	h := cpioHeader{name: strings.TrimPrefix(f.Path, "/"), mode: mode, rdevMajor: f.Major, rdevMinor: f.Minor}
	switch {
	case f.Mode.Type() == fs.ModeSymlink:
		return cw.entry(h, []byte(f.Linkname))
	case f.Source != "":
		src, err := os.Open(f.Source)
		if err != nil {
			return fmt.Errorf("entry %s: %w", f.Path, err)
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return fmt.Errorf("entry %s: %w", f.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("entry %s: source %s is not a regular file", f.Path, f.Source)
		}
		h.size = fi.Size()
		return cw.stream(h, src)
	default:
		return cw.entry(h, f.Data)
	}
}
