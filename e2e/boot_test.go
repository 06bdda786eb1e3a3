package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goldcast/goldcast/internal/testtree"
)

// TestBootScriptReportAndStatus walks the HTTP side of a network boot:
// the per-node iPXE script, the kernel with a Range request, the report a
// booted initramfs sends with the token the script gave it, and
// `goldcast status NODE --json`.
func TestBootScriptReportAndStatus(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(data, "boot"), 0o755)
	os.WriteFile(filepath.Join(data, "boot", "vmlinuz"), bytes.Repeat([]byte("K"), 4096), 0o644)
	os.WriteFile(filepath.Join(data, "boot", "goldcast-initrd.img"), []byte("initrd"), 0o644)
	cfg := "nodes:\n  - name: n1\n    macs: [\"52:54:00:00:00:01\"]\n    boot: install\n    kernel_args: quiet\n  - name: n2\n    macs: [\"52:54:00:00:00:02\"]\n  - name: n3\n    uuid: 4C4C4544-0042-3510-8052-B4C04F564433\n    boot: install\n"
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644)
	s := startServerConfigured(t, data, 0, nil)
	get := func(path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, script := get("/boot/ipxe?mac=52:54:00:00:00:01", nil)
	if code != 200 || !strings.Contains(script, "goldcast.node=n1") || !strings.Contains(script, "initrd=goldcast-initrd.img") || !strings.Contains(script, " quiet") {
		t.Fatalf("install script (%d):\n%s", code, script)
	}
	token := regexp.MustCompile(`goldcast\.token=([0-9a-f]+)`).FindStringSubmatch(script)
	if token == nil {
		t.Fatalf("no token in the script:\n%s", script)
	}
	if _, local := get("/boot/ipxe?mac=52:54:00:00:00:02", nil); !strings.Contains(local, "sanboot") {
		t.Errorf("local boot script:\n%s", local)
	}
	if _, menu := get("/boot/ipxe?mac=52:54:00:00:00:99", nil); !strings.Contains(menu, "not a declared node") {
		t.Errorf("unknown machine script:\n%s", menu)
	}
	// A MAC no node holds, but the machine's SMBIOS UUID (iPXE's ${uuid}).
	if _, byUUID := get("/boot/ipxe?mac=52:54:00:00:00:98&uuid=4c4c4544-0042-3510-8052-b4c04f564433", nil); !strings.Contains(byUUID, "goldcast.node=n3") {
		t.Errorf("script by UUID:\n%s", byUUID)
	}
	if code, part := get("/boot/files/vmlinuz", map[string]string{"Range": "bytes=10-19"}); code != http.StatusPartialContent || part != "KKKKKKKKKK" {
		t.Errorf("Range request: %d %q", code, part)
	}
	if code, _ := get("/boot/files/../goldcast.yaml", nil); code == 200 {
		t.Error("a boot file request reached goldcast.yaml")
	}

	report := func(tok string) int {
		body, _ := json.Marshal(map[string]any{"node": "n1", "macs": []string{"52:54:00:00:00:01"}, "cpus": 2, "memory_kb": 524288, "disks": []string{"vda"}, "kernel": "6.1.0"})
		req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/boot/report", bytes.NewReader(body))
		req.Header.Set("X-Goldcast-Node-Token", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := report("00"); code != http.StatusForbidden {
		t.Errorf("report with a wrong token: %d", code)
	}
	if code := report(token[1]); code != http.StatusNoContent {
		t.Fatalf("report with the script's token: %d", code)
	}
	r := ok(t, "status", "n1", "--server", s.url, "--json")
	var st struct {
		Events []struct {
			Stage  string            `json:"stage"`
			Fields map[string]string `json:"fields"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	var booted bool
	for _, e := range st.Events {
		if e.Stage == "booted" && e.Fields["cpus"] == "2" && e.Fields["disks"] == "vda" {
			booted = true
		}
	}
	if !booted {
		t.Errorf("status n1 --json shows no booted event with the hardware facts:\n%s", r.stdout)
	}
}

// TestNetbootInitramfsCommand builds the initramfs through the CLI for the
// cached Debian kernel, once from a module directory and once from an
// image holding that kernel (--from-image, --kernel-out), and checks what
// they hold.
func TestNetbootInitramfsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	k := testtree.BootableKernel(t)
	list := func(out string) string {
		t.Helper()
		l, err := exec.Command("sh", "-c", "zcat \"$0\" | busybox cpio -t", out).Output()
		if err != nil {
			t.Fatalf("list the initramfs: %v", err)
		}
		return string(l)
	}
	wants := []string{"init", "etc/goldcast/modules", "virtio_net.ko", "xfs.ko", "usr/sbin/sfdisk", "bin/sh", "lib64/ld-linux-x86-64.so.2"}
	out := filepath.Join(t.TempDir(), "initrd.img")
	ok(t, "netboot", "initramfs", "--kernel-version", k.Version, "--modules-dir", k.ModulesDir, "-o", out)
	l := list(out)
	for _, want := range wants {
		if !strings.Contains(l, want) {
			t.Errorf("initramfs lacks %s:\n%s", want, l)
		}
	}

	// The golden client's own kernel: an image holding /boot and
	// /lib/modules of that kernel.
	data := filepath.Join(t.TempDir(), "data")
	golden := filepath.Join(t.TempDir(), "golden")
	modDir := filepath.Join(golden, "lib", "modules", k.Version)
	if err := os.MkdirAll(filepath.Dir(modDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", k.ModulesDir, modDir).CombinedOutput(); err != nil {
		t.Fatalf("copy modules: %v\n%s", err, out)
	}
	os.MkdirAll(filepath.Join(golden, "boot"), 0o755)
	if out, err := exec.Command("cp", k.Image, filepath.Join(golden, "boot", "vmlinuz-"+k.Version)).CombinedOutput(); err != nil {
		t.Fatalf("copy kernel: %v\n%s", err, out)
	}
	ok(t, "--data", data, "image", "import", golden, "--image", "golden")
	kernelOut := filepath.Join(t.TempDir(), "vmlinuz")
	out2 := filepath.Join(t.TempDir(), "initrd-uyok.img")
	r := ok(t, "--data", data, "netboot", "initramfs", "--from-image", "golden", "--kernel-version", k.Version, "--kernel-out", kernelOut, "-o", out2)
	if !strings.Contains(r.stdout, "modules from "+data) {
		t.Errorf("the report does not name the image's module tree:\n%s", r.stdout)
	}
	if got, _ := os.ReadFile(kernelOut); len(got) == 0 {
		t.Error("--kernel-out wrote no kernel")
	} else if want, _ := os.ReadFile(k.Image); !bytes.Equal(got, want) {
		t.Error("--kernel-out differs from the image's kernel")
	}
	if l := list(out2); !strings.Contains(l, "virtio_net.ko") || !strings.Contains(l, "usr/sbin/sfdisk") {
		t.Errorf("--from-image initramfs lacks modules or tools:\n%s", l)
	}
	// Errors name what is wrong.
	if r := run(t, "--data", data, "netboot", "initramfs", "--from-image", "golden", "--kernel-version", "9.9.9", "-o", out2); r.code == 0 || !strings.Contains(r.stderr, "no module tree") {
		t.Errorf("an unknown kernel version: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run(t, "--data", data, "netboot", "initramfs", "--from-image", "nosuch", "--kernel-version", k.Version, "-o", out2); r.code == 0 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("an unknown image: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestUnknownMachineRegisters runs the server with unknown_nodes: register
// in goldcast.yaml: an unknown MAC gets a register script with a token,
// its report adds node discovered-<mac> (boot local) with its hardware to
// goldcast.yaml, and its next boot is from its disk.
func TestUnknownMachineRegisters(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(data, "boot"), 0o755)
	os.WriteFile(filepath.Join(data, "boot", "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(data, "boot", "goldcast-initrd.img"), []byte("initrd"), 0o644)
	cfg := "# the lab\nserver:\n  unknown_nodes: register\nnodes:\n  - name: n1 # first node\n    macs: [\"52:54:00:00:00:01\"]\n"
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644)
	s := startServerConfigured(t, data, 0, nil)
	script := func(mac string) string {
		resp, err := http.Get(s.url + "/boot/ipxe?mac=" + mac)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	sc := script("52:54:00:AA:BB:CC")
	if !strings.Contains(sc, "goldcast.node=discovered-525400aabbcc") || !strings.Contains(sc, "goldcast.action=register") {
		t.Fatalf("register script:\n%s", sc)
	}
	token := regexp.MustCompile(`goldcast\.token=([0-9a-f]+)`).FindStringSubmatch(sc)
	if token == nil {
		t.Fatalf("no token in the register script:\n%s", sc)
	}
	body, _ := json.Marshal(map[string]any{"node": "discovered-525400aabbcc", "macs": []string{"52:54:00:aa:bb:cc"}, "cpus": 4, "memory_kb": 2 << 20, "disks": []string{"nvme0n1"}, "machine": "x86_64"})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/boot/report", bytes.NewReader(body))
	req.Header.Set("X-Goldcast-Node-Token", token[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("register report: %s", resp.Status)
	}
	r := ok(t, "--data", data, "node", "show", "discovered-525400aabbcc", "--json")
	for _, want := range []string{`"52:54:00:aa:bb:cc"`, `"local"`, `"cpus": "4"`, `"memory_mb": "2048"`, `"disks": "nvme0n1"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("node show lacks %s:\n%s", want, r.stdout)
		}
	}
	yaml, _ := os.ReadFile(filepath.Join(data, "goldcast.yaml"))
	if !strings.Contains(string(yaml), "# first node") || !strings.Contains(string(yaml), "# the lab") {
		t.Errorf("registering lost the file's comments:\n%s", yaml)
	}
	// The server reloads the file it wrote: the next boot is local.
	if sc := script("52:54:00:aa:bb:cc"); !strings.Contains(sc, "sanboot") {
		t.Errorf("the registered machine's next script is not a local boot:\n%s", sc)
	}
	r = ok(t, "status", "discovered-525400aabbcc", "--server", s.url, "--json")
	if !strings.Contains(r.stdout, `"registered"`) {
		t.Errorf("status shows no registered event:\n%s", r.stdout)
	}
}
