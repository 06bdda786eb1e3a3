package initramfs

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestModuleName(t *testing.T) {
	tests := map[string]string{
		"kernel/drivers/net/virtio_net.ko":          "virtio_net",
		"kernel/drivers/nvme/host/nvme-core.ko":     "nvme_core",
		"kernel/drivers/nvme/host/nvme-core.ko.xz":  "nvme_core",
		"kernel/drivers/block/virtio_blk.ko.zst":    "virtio_blk",
		"kernel/drivers/block/virtio_blk.ko.gz":     "virtio_blk",
		"/lib/modules/6.1.0/kernel/fs/fuse/fuse.ko": "fuse",
		"virtio-rng": "virtio_rng",
	}
	for in, want := range tests {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// testModulesDep is a small modules.dep: virtio_net needs net_failover
// (which needs failover) and the virtio core, listed as depmod lists
// them (a module before what it needs).
const testModulesDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/core/failover.ko.zst:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko.zst
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko.zst kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/nvme/host/nvme-core.ko:
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
kernel/c.ko: kernel/gone.ko
`

const testModulesBuiltin = "kernel/net/packet/af_packet.ko\nkernel/drivers/block/loop.ko\n"

func TestResolve(t *testing.T) {
	idx := moduleIndex{file: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	if err := idx.parseDep([]byte(testModulesDep)); err != nil {
		t.Fatal(err)
	}
	idx.parseBuiltin([]byte(testModulesBuiltin))
	tests := []struct {
		name    string
		modules []string
		want    []string
		wantErr string
	}{
		{name: "nothing", modules: nil},
		{name: "no dependencies", modules: []string{"virtio"}, want: []string{"kernel/drivers/virtio/virtio.ko"}},
		{name: "dependencies first, in modprobe's order", modules: []string{"virtio_net"}, want: []string{
			"kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/virtio/virtio_ring.ko",
			"kernel/net/core/failover.ko.zst",
			"kernel/drivers/net/net_failover.ko",
			"kernel/drivers/net/virtio_net.ko",
		}},
		{name: "shared dependencies once", modules: []string{"virtio_pci", "virtio_net", "virtio_pci"}, want: []string{
			"kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/virtio/virtio_ring.ko",
			"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
			"kernel/drivers/virtio/virtio_pci.ko",
			"kernel/net/core/failover.ko.zst",
			"kernel/drivers/net/net_failover.ko",
			"kernel/drivers/net/virtio_net.ko",
		}},
		{name: "dash or underscore, built-ins skipped", modules: []string{"af_packet", "nvme", "nvme-core", "loop"}, want: []string{
			"kernel/drivers/nvme/host/nvme-core.ko",
			"kernel/drivers/nvme/host/nvme.ko",
		}},
		{name: "unknown modules", modules: []string{"virtio", "e1000", "r8169"}, wantErr: "no module and nothing built in named e1000, r8169"},
		{name: "cycle", modules: []string{"a"}, wantErr: "dependency cycle: kernel/a.ko -> kernel/b.ko -> kernel/a.ko"},
		{name: "dependency not listed", modules: []string{"c"}, wantErr: "kernel/c.ko needs kernel/gone.ko, which modules.dep does not list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := idx.resolve(tc.modules)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("resolve error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("resolve(%q) (-want +got):\n%s", tc.modules, diff)
			}
		})
	}
}

func TestParseDepErrors(t *testing.T) {
	tests := []struct {
		name, dep, want string
	}{
		{name: "no colon", dep: "kernel/a.ko\n", want: `line 1: "kernel/a.ko" is not "module: dependencies"`},
		{name: "absolute path", dep: "kernel/a.ko:\n/etc/shadow:\n", want: `line 2: module path "/etc/shadow" leaves the modules directory`},
		{name: "parent path", dep: "../../x.ko:\n", want: `line 1: module path "../../x.ko" leaves the modules directory`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx := moduleIndex{file: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
			err := idx.parseDep([]byte(tc.dep))
			if err == nil || err.Error() != tc.want {
				t.Errorf("parseDep error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadModuleList(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string
	}{
		{name: "empty", data: ""},
		{name: "comments and blank lines", data: "# header\n\n/lib/modules/v/a.ko\n  /lib/modules/v/b.ko.xz  \n#/lib/modules/v/c.ko\n", want: []string{"/lib/modules/v/a.ko", "/lib/modules/v/b.ko.xz"}},
		{name: "no final newline", data: "/a.ko\n/b.ko", want: []string{"/a.ko", "/b.ko"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, readModuleList([]byte(tc.data))); diff != "" {
				t.Errorf("readModuleList (-want +got):\n%s", diff)
			}
		})
	}
}

func TestModuleCompression(t *testing.T) {
	tests := map[string]string{
		"/lib/modules/v/a.ko":     "",
		"/lib/modules/v/a.ko.xz":  "xz",
		"/lib/modules/v/a.ko.zst": "zstd",
		"/lib/modules/v/a.ko.gz":  "gzip",
		"/lib/modules/v/a.zst":    "",
	}
	for in, want := range tests {
		if got := moduleCompression(in); got != want {
			t.Errorf("moduleCompression(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecompressModule(t *testing.T) {
	image := []byte("\x7fELF" + strings.Repeat("module image ", 1000))
	var zs, gz bytes.Buffer
	zw, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(image)
	zw.Close()
	gw := gzip.NewWriter(&gz)
	gw.Write(image)
	gw.Close()
	tests := []struct {
		name, comp string
		data       []byte
		wantErr    bool
	}{
		{name: "zstd", comp: "zstd", data: zs.Bytes()},
		{name: "gzip", comp: "gzip", data: gz.Bytes()},
		{name: "xz is the kernel's", comp: "xz", data: []byte("\xfd7zXZ\x00"), wantErr: true},
		{name: "damaged zstd", comp: "zstd", data: zs.Bytes()[:len(zs.Bytes())/2], wantErr: true},
		{name: "gzip that is not", comp: "gzip", data: zs.Bytes(), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.data)
			r.Seek(3, 0) // decompressModule starts over from the beginning
			got, err := decompressModule(r, tc.comp)
			if (err != nil) != tc.wantErr {
				t.Fatalf("decompressModule error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !bytes.Equal(got, image) {
				t.Errorf("decompressModule returned %d bytes, not the %d-byte image", len(got), len(image))
			}
		})
	}
}

func TestResolveSoftDependencies(t *testing.T) {
	idx := moduleIndex{file: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{},
		softPre: map[string][]string{}, alias: map[string][]string{}}
	if err := idx.parseDep([]byte("kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\n")); err != nil {
		t.Fatal(err)
	}
	idx.parseSoftdepAlias([]byte("# soft dependencies\nsoftdep libcrc32c pre: crc32c absent post: nothing\nsoftdep xfs pre: libcrc32c\n"))
	idx.parseSoftdepAlias([]byte("alias crc32c crc32c_intel\nalias crc32c crc32c_generic\nalias pci:v*d* something\n"))
	got, err := idx.resolve([]string{"xfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/arch/x86/crypto/crc32c-intel.ko",
		"kernel/crypto/crc32c_generic.ko",
		"kernel/lib/libcrc32c.ko",
		"kernel/fs/xfs/xfs.ko",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resolve(xfs) (-want +got):\n%s", diff)
	}
}
