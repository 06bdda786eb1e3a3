package initramfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// moduleName returns the name a module file stands for: the base name
// without its .ko (and compression) suffix, dashes turned into
// underscores as the kernel does ("nvme-core.ko.xz" -> "nvme_core").
func moduleName(file string) string {
	base := path.Base(file)
	for _, s := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if b, ok := strings.CutSuffix(base, s); ok {
			base = b
			break
		}
	}
	return strings.ReplaceAll(base, "-", "_")
}

// moduleIndex is what a kernel's modules.dep and modules.builtin say.
type moduleIndex struct {
	file    map[string]string   // module name -> path relative to the modules directory
	deps    map[string][]string // relative path -> its dependencies' relative paths
	builtin map[string]bool     // names of modules built into the kernel
	softPre map[string][]string // module name -> names or aliases modprobe loads before it (modules.softdep "pre:")
	alias   map[string][]string // alias -> module names (modules.alias, exact aliases only)
}

// readModuleIndex reads dir/modules.dep and, if it exists,
// dir/modules.builtin.
func readModuleIndex(dir string) (moduleIndex, error) {
	idx := moduleIndex{file: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{},
		softPre: map[string][]string{}, alias: map[string][]string{}}
	dep, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return idx, fmt.Errorf("read module dependencies: %w", err)
	}
	if err := idx.parseDep(dep); err != nil {
		return idx, fmt.Errorf("%s: %w", filepath.Join(dir, "modules.dep"), err)
	}
	builtin, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return idx, fmt.Errorf("read built-in modules: %w", err)
	}
	idx.parseBuiltin(builtin)
	for _, f := range []string{"modules.softdep", "modules.alias"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return idx, fmt.Errorf("read %s: %w", f, err)
		}
		idx.parseSoftdepAlias(data)
	}
	return idx, nil
}

// parseSoftdepAlias reads modules.softdep lines ("softdep libcrc32c pre:
// crc32c post: x") and the exact (wildcard-free) lines of modules.alias
// ("alias crc32c crc32c_generic"); other lines are ignored.
func (idx moduleIndex) parseSoftdepAlias(data []byte) {
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "softdep":
			mod := moduleName(f[1])
			pre := false
			for _, w := range f[2:] {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						idx.softPre[mod] = append(idx.softPre[mod], w)
					}
				}
			}
		case len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?["):
			idx.alias[f[1]] = append(idx.alias[f[1]], moduleName(f[2]))
		}
	}
}

// parseDep reads modules.dep lines: "kernel/a/b.ko: kernel/c.ko kernel/d.ko".
func (idx moduleIndex) parseDep(data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		if !ok || mod == "" {
			return fmt.Errorf("line %d: %q is not \"module: dependencies\"", n, line)
		}
		if !filepath.IsLocal(mod) {
			return fmt.Errorf("line %d: module path %q leaves the modules directory", n, mod)
		}
		idx.file[moduleName(mod)] = mod
		idx.deps[mod] = strings.Fields(deps)
	}
	return sc.Err()
}

// parseBuiltin reads modules.builtin lines: "kernel/net/packet/af_packet.ko".
func (idx moduleIndex) parseBuiltin(data []byte) {
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			idx.builtin[moduleName(line)] = true
		}
	}
}

// resolve returns the files of the named modules and of everything they
// depend on, each after its dependencies (dependencies in the reverse of
// their modules.dep order, as modprobe loads them), without repeats.
// Built-in modules are left out.
func (idx moduleIndex) resolve(names []string) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(rel string, chain []string) error
	visit = func(rel string, chain []string) error {
		switch state[rel] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(chain, rel), " -> "))
		}
		deps, ok := idx.deps[rel]
		if !ok {
			return fmt.Errorf("%s needs %s, which modules.dep does not list", chain[len(chain)-1], rel)
		}
		state[rel] = visiting
		// Soft dependencies first (a module's code may ask for them by
		// name when it loads, as libcrc32c asks for crc32c); missing
		// ones, or ones already being visited, are skipped as modprobe
		// does.
		for _, soft := range idx.softPre[moduleName(rel)] {
			targets := []string{moduleName(soft)}
			if _, ok := idx.file[targets[0]]; !ok {
				targets = idx.alias[soft]
			}
			for _, t := range targets {
				if srel, ok := idx.file[t]; ok && state[srel] == 0 {
					if err := visit(srel, append(chain, rel)); err != nil {
						return err
					}
				}
			}
		}
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], append(chain, rel)); err != nil {
				return err
			}
		}
		state[rel] = done
		order = append(order, rel)
		return nil
	}
	var missing []string
	for _, name := range names {
		n := moduleName(name)
		rel, ok := idx.file[n]
		switch {
		case ok:
			if err := visit(rel, nil); err != nil {
				return nil, err
			}
		case idx.builtin[n]:
		default:
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no module and nothing built in named %s", strings.Join(missing, ", "))
	}
	return order, nil
}

// readModuleList parses ModuleListPath's contents.
func readModuleList(data []byte) []string {
	var files []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			files = append(files, line)
		}
	}
	return files
}

// moduleCompression returns how a module file is compressed: "xz",
// "zstd", "gzip", or "" for a plain .ko.
func moduleCompression(file string) string {
	switch {
	case strings.HasSuffix(file, ".ko.xz"):
		return "xz"
	case strings.HasSuffix(file, ".ko.zst"):
		return "zstd"
	case strings.HasSuffix(file, ".ko.gz"):
		return "gzip"
	}
	return ""
}

// loadModule loads a module file into the kernel with finit_module(2).
// A compressed module is handed over with MODULE_INIT_COMPRESSED_FILE;
// when the kernel cannot decompress it (EOPNOTSUPP without
// CONFIG_MODULE_DECOMPRESS, EINVAL before Linux 5.17), a zstd or gzip
// module is decompressed here and loaded with init_module(2). A module
// that is already loaded is not an error. It reports whether the module
// was decompressed here.
func loadModule(file string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	comp := moduleCompression(file)
	flags := 0
	if comp != "" {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return false, nil
	}
	if comp == "" || !(errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
		return false, fmt.Errorf("load module %s: finit_module: %w", file, err)
	}
	if comp == "xz" {
		return false, fmt.Errorf("load module %s: the kernel cannot decompress it (%w) and goldcast does not read xz", file, err)
	}
	image, derr := decompressModule(f, comp)
	if derr != nil {
		return false, fmt.Errorf("load module %s: the kernel cannot decompress it (%v): %w", file, err, derr)
	}
	if err := unix.InitModule(image, ""); err != nil && !errors.Is(err, unix.EEXIST) {
		return true, fmt.Errorf("load module %s (decompressed): init_module: %w", file, err)
	}
	return true, nil
}

// decompressModule reads a whole zstd or gzip module from r's start.
func decompressModule(r io.ReadSeeker, comp string) ([]byte, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind: %w", err)
	}
	var zr io.Reader
	switch comp {
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer d.Close()
		zr = d
	case "gzip":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer g.Close()
		zr = g
	default:
		return nil, fmt.Errorf("cannot decompress %q", comp)
	}
	image, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", comp, err)
	}
	return image, nil
}
