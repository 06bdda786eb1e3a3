package initramfs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goldcast/goldcast/internal/testtree"
	"github.com/google/go-cmp/cmp"
)

// fakeModulesDir writes testModulesDep, testModulesBuiltin and a small
// file for each module of testModulesDep (its contents: its own path).
func fakeModulesDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(testModulesDep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(testModulesBuiltin), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(testModulesDep), "\n") {
		mod, _, _ := strings.Cut(line, ":")
		p := filepath.Join(dir, mod)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(mod), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildArchive runs Build and returns its entries, decompressed and
// parsed.
func buildArchive(t *testing.T, opt Options) []cpioEntry {
	t.Helper()
	var buf bytes.Buffer
	opt.Out = &buf
	if err := Build(t.Context(), opt); err != nil {
		t.Fatal(err)
	}
	entries, err := parseCPIO(decompress(t, opt.Compression, buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestBuild(t *testing.T) {
	goldcast := buildStatic(t, "github.com/goldcast/goldcast/cmd/goldcast")
	goldcastData, err := os.ReadFile(goldcast)
	if err != nil {
		t.Fatal(err)
	}
	modules := fakeModulesDir(t)
	const v = "6.1.0-test"
	dir := func(name string, perm uint32) cpioEntry { return cpioEntry{Name: name, Mode: modeDir | perm, NLink: 2} }
	file := func(name string, perm uint32, data string) cpioEntry {
		return cpioEntry{Name: name, Mode: modeRegular | perm, NLink: 1, Data: data}
	}
	mod := func(rel string) cpioEntry { return file("lib/modules/"+v+"/"+rel, 0o644, rel) }
	base := []cpioEntry{
		dir("dev", 0o755),
		{Name: "dev/console", Mode: modeChar | 0o600, NLink: 1, Major: 5, Minor: 1},
		{Name: "dev/null", Mode: modeChar | 0o666, NLink: 1, Major: 1, Minor: 3},
	}
	rest := []cpioEntry{
		file("init", 0o755, string(goldcastData)),
	}
	tail := []cpioEntry{dir("proc", 0o755), dir("run", 0o755), dir("sys", 0o755), dir("tmp", 0o1777)}
	listHeader := "# Modules /init loads, in order (written by goldcast's initramfs builder).\n"

	tests := []struct {
		name string
		opt  Options
		want []cpioEntry
	}{
		{
			name: "no modules, default compression",
			opt:  Options{Goldcast: goldcast},
			want: concat(base, []cpioEntry{dir("etc", 0o755), dir("etc/goldcast", 0o755), file("etc/goldcast/modules", 0o644, listHeader)}, rest, tail),
		},
		{
			name: "modules and extras, zstd",
			opt: Options{
				Goldcast: goldcast, KernelVersion: v, ModulesDir: modules, Modules: []string{"virtio-net", "af_packet"}, Compression: CompressZstd,
				Extra: []File{
					{Path: "/etc", Mode: fs.ModeDir | 0o750},
					{Path: "/etc/ssl/certs/ca.crt", Mode: 0o644, Data: []byte("PEM")},
					{Path: "/bin", Mode: fs.ModeSymlink | 0o777, Linkname: "usr/bin"},
					{Path: "/dev/sda", Mode: fs.ModeDevice | 0o660, Major: 8},
					{Path: "/etc/hostname", Mode: 0o644, Source: filepath.Join(modules, "modules.builtin")},
				},
			},
			want: concat(
				[]cpioEntry{{Name: "bin", Mode: modeSymlink | 0o777, NLink: 1, Data: "usr/bin"}},
				base,
				[]cpioEntry{
					{Name: "dev/sda", Mode: modeBlock | 0o660, NLink: 1, Major: 8},
					dir("etc", 0o750), dir("etc/goldcast", 0o755),
					file("etc/goldcast/modules", 0o644, listHeader+
						"/lib/modules/"+v+"/kernel/drivers/virtio/virtio.ko\n"+
						"/lib/modules/"+v+"/kernel/drivers/virtio/virtio_ring.ko\n"+
						"/lib/modules/"+v+"/kernel/net/core/failover.ko.zst\n"+
						"/lib/modules/"+v+"/kernel/drivers/net/net_failover.ko\n"+
						"/lib/modules/"+v+"/kernel/drivers/net/virtio_net.ko\n"),
					file("etc/hostname", 0o644, testModulesBuiltin),
					dir("etc/ssl", 0o755), dir("etc/ssl/certs", 0o755), file("etc/ssl/certs/ca.crt", 0o644, "PEM"),
				},
				rest,
				[]cpioEntry{
					dir("lib", 0o755), dir("lib/modules", 0o755), dir("lib/modules/"+v, 0o755), dir("lib/modules/"+v+"/kernel", 0o755),
					dir("lib/modules/"+v+"/kernel/drivers", 0o755),
					dir("lib/modules/"+v+"/kernel/drivers/net", 0o755),
					mod("kernel/drivers/net/net_failover.ko"),
					mod("kernel/drivers/net/virtio_net.ko"),
					dir("lib/modules/"+v+"/kernel/drivers/virtio", 0o755),
					mod("kernel/drivers/virtio/virtio.ko"),
					mod("kernel/drivers/virtio/virtio_ring.ko"),
					dir("lib/modules/"+v+"/kernel/net", 0o755), dir("lib/modules/"+v+"/kernel/net/core", 0o755),
					mod("kernel/net/core/failover.ko.zst"),
				},
				tail,
			),
		},
		{
			name: "uncompressed",
			opt:  Options{Goldcast: goldcast, KernelVersion: v, ModulesDir: modules, Modules: []string{"nvme"}, Compression: CompressNone},
			want: concat(base,
				[]cpioEntry{dir("etc", 0o755), dir("etc/goldcast", 0o755), file("etc/goldcast/modules", 0o644, listHeader+
					"/lib/modules/"+v+"/kernel/drivers/nvme/host/nvme-core.ko\n/lib/modules/"+v+"/kernel/drivers/nvme/host/nvme.ko\n")},
				rest,
				[]cpioEntry{
					dir("lib", 0o755), dir("lib/modules", 0o755), dir("lib/modules/"+v, 0o755), dir("lib/modules/"+v+"/kernel", 0o755),
					dir("lib/modules/"+v+"/kernel/drivers", 0o755), dir("lib/modules/"+v+"/kernel/drivers/nvme", 0o755),
					dir("lib/modules/"+v+"/kernel/drivers/nvme/host", 0o755),
					mod("kernel/drivers/nvme/host/nvme-core.ko"), mod("kernel/drivers/nvme/host/nvme.ko"),
				},
				tail),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := buildArchive(t, tc.opt)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("archive (-want +got):\n%s", diff)
			}
		})
	}
}

func concat(parts ...[]cpioEntry) []cpioEntry {
	var out []cpioEntry
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestBuildReproducible builds the same archive twice, with each
// compression, and compares the bytes.
func TestBuildReproducible(t *testing.T) {
	goldcast := buildStatic(t, "github.com/goldcast/goldcast/netboot/initramfs/testdata/gcinit")
	modules := fakeModulesDir(t)
	for _, c := range []Compression{CompressGzip, CompressZstd, CompressNone} {
		t.Run(string(c), func(t *testing.T) {
			var a, b bytes.Buffer
			for _, buf := range []*bytes.Buffer{&a, &b} {
				opt := Options{Out: buf, Goldcast: goldcast, KernelVersion: "v", ModulesDir: modules, Modules: []string{"virtio_pci"}, Compression: c}
				if err := Build(t.Context(), opt); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Errorf("two builds differ (%d and %d bytes)", a.Len(), b.Len())
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	goldcast := buildStatic(t, "github.com/goldcast/goldcast/netboot/initramfs/testdata/gcinit")
	modules := fakeModulesDir(t)
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\necho a shell script is not an ELF executable\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	ok := Options{Goldcast: goldcast}
	with := func(f func(*Options)) Options { o := ok; f(&o); return o }
	tests := []struct {
		name    string
		ctx     context.Context
		opt     Options
		noOut   bool
		want    string // a part of the error
		wantErr error
	}{
		{name: "no output", opt: ok, noOut: true, want: "no output writer"},
		{name: "no goldcast", opt: Options{}, want: "no goldcast binary"},
		{name: "goldcast missing", opt: Options{Goldcast: "/nonexistent/goldcast"}, wantErr: fs.ErrNotExist},
		{name: "goldcast not ELF", opt: Options{Goldcast: notELF}, want: "bad magic number"},
		{name: "goldcast dynamically linked", opt: Options{Goldcast: "/bin/true"}, want: "is dynamically linked (interpreter /lib64/ld-linux-x86-64.so.2): build it with CGO_ENABLED=0"},
		{name: "unknown compression", opt: with(func(o *Options) { o.Compression = "lz4" }), want: `unknown compression "lz4"`},
		{name: "modules without kernel version", opt: with(func(o *Options) { o.ModulesDir = modules }), want: `kernel version "" is empty`},
		{name: "kernel version with a slash", opt: with(func(o *Options) { o.ModulesDir, o.KernelVersion = modules, "../x" }), want: "not a single path element"},
		{name: "modules without a directory", opt: with(func(o *Options) { o.Modules = []string{"virtio"} }), want: "Options.Modules needs Options.ModulesDir"},
		{name: "no modules.dep", opt: with(func(o *Options) { o.ModulesDir, o.KernelVersion = t.TempDir(), "v" }), wantErr: fs.ErrNotExist},
		{name: "default modules missing", opt: with(func(o *Options) { o.ModulesDir, o.KernelVersion = modules, "v" }), want: "no module and nothing built in named virtio_blk, virtio_scsi, sd_mod, ahci, e1000, e1000e, igb, ixgbe, mlx5_core, r8169, ext4, xfs, vfat, nls_cp437, nls_ascii, nls_utf8, md_mod, raid0, raid1, raid10, raid456, dm_mod"},
		{name: "relative extra", opt: with(func(o *Options) { o.Extra = []File{{Path: "etc/x", Mode: 0o644}} }), want: `entry "etc/x": path is not absolute and clean`},
		{name: "unclean extra", opt: with(func(o *Options) { o.Extra = []File{{Path: "/etc/../x", Mode: 0o644}} }), want: "not absolute and clean"},
		{name: "extra replaces /init", opt: with(func(o *Options) { o.Extra = []File{{Path: "/init", Mode: 0o755}} }), want: "entry /init appears twice"},
		{name: "extra twice", opt: with(func(o *Options) {
			o.Extra = []File{{Path: "/opt", Mode: fs.ModeDir | 0o755}, {Path: "/opt", Mode: fs.ModeDir | 0o700}}
		}), want: "entry /opt appears twice"},
		{name: "extra under a file", opt: with(func(o *Options) { o.Extra = []File{{Path: "/init/x", Mode: 0o644}} }), want: "entry /init/x: parent /init is not a directory"},
		{name: "symlink without target", opt: with(func(o *Options) { o.Extra = []File{{Path: "/bin", Mode: fs.ModeSymlink}} }), want: "symbolic link without a target"},
		{name: "data on a directory", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Mode: fs.ModeDir, Data: []byte("a")}} }), want: "only a regular file has Data or Source"},
		{name: "data and source", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Data: []byte("a"), Source: goldcast}} }), want: "both Data and Source"},
		{name: "device numbers on a file", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Major: 1}} }), want: "device numbers on something other than a device"},
		{name: "linkname on a file", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Linkname: "y"}} }), want: "Linkname on something other than a symbolic link"},
		{name: "irregular", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Mode: fs.ModeIrregular}} }), want: "has no cpio equivalent"},
		{name: "source missing", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Source: "/nonexistent/file"}} }), wantErr: fs.ErrNotExist},
		{name: "source a directory", opt: with(func(o *Options) { o.Extra = []File{{Path: "/x", Source: t.TempDir()}} }), want: "is not a regular file"},
		{name: "cancelled", ctx: cancelled, opt: ok, wantErr: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			if !tc.noOut {
				tc.opt.Out = &bytes.Buffer{}
			}
			err := Build(ctx, tc.opt)
			switch {
			case err == nil:
				t.Fatal("Build succeeded")
			case !strings.HasPrefix(err.Error(), "build initramfs: "):
				t.Errorf("error %q does not start with \"build initramfs: \"", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("error %q is not %v", err, tc.wantErr)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestBuildDebianModules resolves DefaultModules against a real Debian
// kernel's modules.dep (the cached Bootable root).
func TestBuildDebianModules(t *testing.T) {
	kernel := testtree.BootableKernel(t)
	goldcast := buildStatic(t, "github.com/goldcast/goldcast/netboot/initramfs/testdata/gcinit")
	var list []string
	names := map[string]bool{}
	for _, e := range buildArchive(t, Options{Goldcast: goldcast, KernelVersion: kernel.Version, ModulesDir: kernel.ModulesDir, Compression: CompressNone}) {
		if e.Name == strings.TrimPrefix(ModuleListPath, "/") {
			list = readModuleList([]byte(e.Data))
		}
		if strings.HasPrefix(e.Name, "lib/modules/"+kernel.Version+"/kernel/") && e.Mode&0o170000 == modeRegular {
			names[moduleName(e.Name)] = true
		}
	}
	pos := map[string]int{}
	for i, f := range list {
		if !strings.HasPrefix(f, "/lib/modules/"+kernel.Version+"/kernel/") {
			t.Errorf("module list entry %q is not under /lib/modules/%s/kernel", f, kernel.Version)
		}
		if !names[moduleName(f)] {
			t.Errorf("module list names %s, which the archive lacks", f)
		}
		pos[moduleName(f)] = i
	}
	if len(pos) != len(names) {
		t.Errorf("module list has %d modules, the archive %d", len(pos), len(names))
	}
	// Each pair: the first must be loaded before the second.
	for _, before := range [][2]string{
		{"virtio", "virtio_pci"}, {"virtio_ring", "virtio_net"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"},
		{"scsi_mod", "virtio_scsi"}, {"scsi_mod", "sd_mod"}, {"libata", "ahci"}, {"nvme_core", "nvme"}, {"libphy", "r8169"},
	} {
		a, okA := pos[before[0]]
		b, okB := pos[before[1]]
		if !okA || !okB || a >= b {
			t.Errorf("module %s (at %d, listed %v) must come before %s (at %d, listed %v)", before[0], a, okA, before[1], b, okB)
		}
	}
	for _, want := range DefaultModules() {
		if _, ok := pos[want]; !ok && want != "af_packet" {
			t.Errorf("default module %s is not in the list", want)
		}
	}
}
