package initramfs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/internal/testtree"
	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// qemuBootTimeout bounds one boot under TCG emulation, from QEMU's start
// to its exit.
const qemuBootTimeout = 180 * time.Second

// compressedModulesDir makes a modules directory that mirrors src
// (symbolic links to its module files, its modules.dep, modules.builtin,
// modules.softdep and modules.alias) except that the modules named in compress are stored
// compressed (name -> "zstd" or "gzip") as .ko.zst or .ko.gz, and
// modules.dep says so: the form later Debian kernels ship.
func compressedModulesDir(t *testing.T, src string, compress map[string]string) string {
	t.Helper()
	dst := t.TempDir()
	dep, err := os.ReadFile(filepath.Join(src, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	renamed := map[string]string{}
	var paths []string
	for _, line := range strings.Split(string(dep), "\n") {
		if mod, _, ok := strings.Cut(line, ":"); ok {
			paths = append(paths, mod)
			switch compress[moduleName(mod)] {
			case "zstd":
				renamed[mod] = mod + ".zst"
			case "gzip":
				renamed[mod] = mod + ".gz"
			}
		}
	}
	if len(renamed) != len(compress) {
		t.Fatalf("modules.dep of %s lacks some of %v", src, compress)
	}
	for _, mod := range paths {
		to := filepath.Join(dst, filepath.FromSlash(mod))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		from := filepath.Join(src, filepath.FromSlash(mod))
		if _, ok := renamed[mod]; !ok {
			if err := os.Symlink(from, to); err != nil {
				t.Fatal(err)
			}
			continue
		}
		plain, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, filepath.FromSlash(renamed[mod])))
		if err != nil {
			t.Fatal(err)
		}
		var zw interface {
			Write([]byte) (int, error)
			Close() error
		}
		if compress[moduleName(mod)] == "zstd" {
			if zw, err = zstd.NewWriter(out); err != nil {
				t.Fatal(err)
			}
		} else {
			zw = gzip.NewWriter(out)
		}
		if _, err := zw.Write(plain); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(dep), "\n"), "\n") {
		f := strings.Fields(strings.Replace(line, ":", " :", 1))
		for i, p := range f {
			if r, ok := renamed[p]; ok {
				f[i] = r
			}
		}
		b.WriteString(strings.Replace(strings.Join(f, " "), " :", ":", 1) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dst, "modules.dep"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"modules.builtin", "modules.softdep", "modules.alias"} {
		if data, err := os.ReadFile(filepath.Join(src, f)); err == nil {
			if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// sparseDisk creates a sparse raw disk image of size bytes.
func sparseDisk(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// qemuEscape escapes a value for QEMU's comma-separated options.
func qemuEscape(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// TestBootInQEMU boots Debian's kernel with the initramfs in QEMU (TCG,
// user-mode networking, a virtio NIC, a virtio disk and a virtio-SCSI
// disk) and checks the whole InitMain path: modules loaded (two of them
// compressed, which Debian 12's kernel cannot decompress, so goldcast
// does), DHCP from QEMU's built-in server, the report reaching an HTTP
// server on the host's loopback (10.0.2.2 to the guest) with the node's
// token, and the machine powering itself off.
func TestBootInQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots a kernel in QEMU (tens of seconds each)")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("skipping: qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	kernel := testtree.BootableKernel(t)
	initBin := buildStatic(t, "github.com/goldcast/goldcast/cmd/goldcast")
	modules := compressedModulesDir(t, kernel.ModulesDir, map[string]string{"failover": "zstd", "virtio_blk": "gzip"})

	tests := []struct {
		name        string
		compression Compression
		action      string // goldcast.action, "" for the default (power off)
	}{
		{name: "zstd-poweroff", compression: CompressZstd},
		{name: "gzip-shell", compression: CompressGzip, action: actionShell},
	}
	for _, tc := range tests {
		compression := tc.compression
		t.Run(tc.name, func(t *testing.T) {
			initrd := filepath.Join(t.TempDir(), "initrd.img")
			out, err := os.Create(initrd)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			opt := Options{Out: out, Goldcast: initBin, KernelVersion: kernel.Version, ModulesDir: modules, Compression: compression}
			if tc.action == actionShell {
				// The rescue shell: this machine's busybox and install tools.
				busybox, err := exec.LookPath("busybox")
				if err != nil {
					t.Skip("busybox is not installed")
				}
				opt.Busybox, opt.Tools = busybox, DefaultTools()
			}
			err = Build(t.Context(), opt)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(initrd); err == nil {
				t.Logf("initramfs (%s): %d KiB, built in %v", compression, fi.Size()/1024, time.Since(start).Round(time.Millisecond))
			}
			bootQEMU(t, qemu, kernel, initrd, tc.action)
		})
	}
}

// shellWait is how long a machine booted with goldcast.action=shell must
// stay up after its report.
const shellWait = 5 * time.Second

// bootQEMU boots kernel and initrd with goldcast.action=action and checks
// the report and, by default, the power-off, or with action shell that
// the machine stays up; see TestBootInQEMU.
func bootQEMU(t *testing.T, qemu string, kernel testtree.Kernel, initrd, action string) {
	const token = "t0k3n-test01"
	reports := make(chan Report, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != ReportPath {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get(api.NodeTokenHeader) != token {
			http.Error(w, "wrong token", http.StatusForbidden)
			return
		}
		var rep Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reports <- rep
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	console := filepath.Join(dir, "console.log")
	consoleFile, err := os.Create(console)
	if err != nil {
		t.Fatal(err)
	}
	defer consoleFile.Close()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("serial console:\n%s", b)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), qemuBootTimeout+30*time.Second)
	defer cancel()
	cmdline := fmt.Sprintf("console=ttyS0 panic=1 goldcast.server=http://10.0.2.2:%s goldcast.node=test01 goldcast.token=%s", port, token)
	if action != "" {
		cmdline += " goldcast.action=" + action
	}
	args := []string{
		"-accel", "tcg", "-m", "512", "-smp", "2", "-nographic", "-no-reboot",
		"-kernel", kernel.Image, "-initrd", initrd,
		"-append", cmdline,
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
		"-drive", "file=" + qemuEscape(sparseDisk(t, "vda.img", 64<<20)) + ",if=virtio,format=raw",
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "file=" + qemuEscape(sparseDisk(t, "sda.img", 32<<20)) + ",if=none,id=d1,format=raw",
		"-device", "scsi-hd,drive=d1,bus=scsi0.0",
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdout, cmd.Stderr = consoleFile, consoleFile
	keys, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
	})

	var rep Report
	if action == actionShell {
		select {
		case rep = <-reports:
		case <-exited:
			t.Fatalf("QEMU exited (%v) without a boot report reaching the server", waitErr)
		case <-time.After(qemuBootTimeout):
			t.Fatalf("no boot report within %v", qemuBootTimeout)
		}
		t.Logf("booted and reported in %v; report: %+v", time.Since(start).Round(100*time.Millisecond), rep)
		// The rescue shell answers on the serial console.
		deadline := time.Now().Add(qemuBootTimeout)
		typed := false
		for {
			b, _ := os.ReadFile(console)
			if strings.Contains(string(b), "rescue-42") {
				break
			}
			if !typed && strings.Contains(string(b), "goldcast rescue#") {
				if _, err := io.WriteString(keys, "echo rescue-$((6*7)); sfdisk --version\n"); err != nil {
					t.Fatalf("type into the console: %v", err)
				}
				typed = true
			}
			select {
			case <-exited:
				t.Fatalf("QEMU exited (%v) after the report although goldcast.action=shell", waitErr)
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rescue shell did not run a command within %v (prompt seen: %v)", qemuBootTimeout, typed)
			}
		}
		select {
		case <-exited:
			t.Fatalf("QEMU exited (%v) after the report although goldcast.action=shell", waitErr)
		case <-time.After(shellWait):
		}
	} else {
		select {
		case <-exited:
		case <-time.After(qemuBootTimeout):
			t.Fatalf("QEMU (pid %d) still running after %v: the machine did not power off", pid, qemuBootTimeout)
		}
		elapsed := time.Since(start)
		if waitErr != nil {
			t.Fatalf("QEMU: %v", waitErr)
		}
		select {
		case rep = <-reports:
		default:
			t.Fatalf("QEMU exited after %v without a boot report reaching the server", elapsed.Round(time.Second))
		}
		t.Logf("booted, reported and powered off in %v; report: %+v", elapsed.Round(100*time.Millisecond), rep)
	}
	logBytes, err := os.ReadFile(console)
	if err != nil {
		t.Fatal(err)
	}
	log := string(logBytes)
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "goldcast-init [") {
			t.Log(strings.TrimSpace(line))
		}
	}

	type summary struct {
		Node, Kernel, Interface, Address string
		MACs, Disks                      []string
		CPUs                             int
		HasMemory, HasBootID             bool
		DiskBytes                        map[string]int64
	}
	got := summary{
		Node: rep.Node, Kernel: rep.Kernel, Interface: rep.Interface, Address: rep.Address,
		MACs: rep.MACs, Disks: rep.Disks, CPUs: rep.CPUs, HasMemory: rep.MemoryKB > 0, HasBootID: rep.BootID != "",
		DiskBytes: rep.DiskBytes,
	}
	want := summary{
		Node: "test01", Kernel: kernel.Version, Interface: "eth0", Address: "10.0.2.15/24",
		MACs: []string{"52:54:00:12:34:56"}, Disks: []string{"sda", "vda"}, CPUs: 2, HasMemory: true, HasBootID: true,
		DiskBytes: map[string]int64{"sda": 32 << 20, "vda": 64 << 20},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if rep.MemoryKB > 512*1024 {
		t.Errorf("report: memory %d KiB is more than the guest's 512 MiB", rep.MemoryKB)
	}

	var steps []string
	for _, s := range []string{
		"mounted devtmpfs on /dev",
		"loaded module failover (decompressed by goldcast)",
		"loaded module virtio_blk (decompressed by goldcast)",
		"loaded module virtio_net",
		"loaded, 0 failed",
		"DHCP: 10.0.2.15/24",
		"reported to http://10.0.2.2:" + port + ReportPath,
	} {
		if !strings.Contains(log, s) {
			steps = append(steps, s)
		}
	}
	final := []string{"powering off", "reboot: Power down"}
	if action == actionShell {
		final = []string{"rescue shell on the console", "rescue-42", "sfdisk from util-linux"}
	}
	for _, s := range final {
		if !strings.Contains(log, s) {
			steps = append(steps, s)
		}
	}
	if len(steps) > 0 {
		t.Errorf("console lacks %q", steps)
	}
}
