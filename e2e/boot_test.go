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
	cfg := "nodes:\n  - name: n1\n    macs: [\"52:54:00:00:00:01\"]\n    boot: install\n    kernel_args: quiet\n  - name: n2\n    macs: [\"52:54:00:00:00:02\"]\n"
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
// cached Debian kernel and checks what it holds.
func TestNetbootInitramfsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	k := testtree.BootableKernel(t)
	out := filepath.Join(t.TempDir(), "initrd.img")
	ok(t, "netboot", "initramfs", "--kernel-version", k.Version, "--modules-dir", k.ModulesDir, "-o", out)
	list, err := exec.Command("sh", "-c", "zcat \"$0\" | busybox cpio -t", out).Output()
	if err != nil {
		t.Fatalf("list the initramfs: %v", err)
	}
	for _, want := range []string{"init", "etc/goldcast/modules", "virtio_net.ko"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("initramfs lacks %s:\n%s", want, list)
		}
	}
}
