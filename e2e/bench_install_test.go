package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchmarkInstall times a whole install of the golden image on a
// SeaBIOS machine, from power-on to the healthy report, split by stage
// from the server's events; then boots the same machine into the rescue
// shell and times busybox wget of the same stream to /dev/null, the
// plain download the transfer stage is compared with.
func TestBenchmarkInstall(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench)")
	}
	skipUnlessPXE(t)
	p := &pxeBoot{net: "10.82.0", node: "bench01", mac: "52:54:00:82:00:10",
		serverYAML: "server:\n  allow_networks: [10.82.0.0/24]\n",
		nodeYAML:   "image: golden\ntransport: http\noverrides: [serial-console]", setup: importGolden,
		qemuArgs: []string{"-m", "1024", "-smp", "2", "-boot", "n"}, disk: sparseFile(t, "disk.img", 4<<30)}
	p.start(t)
	m := p.boot(t)
	st := p.waitFor(t, m, "healthy", 20*time.Minute, false, stateIs("healthy", "failed"))
	m.kill()
	if st.state() != "healthy" {
		t.Fatalf("install ended %s:\n%s", st.state(), st.raw)
	}
	// The stage boundaries, from the first event of each kind.
	first := func(match func(kind, stage string) bool, after time.Time) time.Time {
		for _, e := range st.Events {
			if !e.Time.Before(after) && match(e.Kind, e.Stage) {
				return e.Time
			}
		}
		t.Fatalf("no event after %v matches; stages %v", after, st.stages())
		return time.Time{}
	}
	stage := func(s string) func(string, string) bool {
		return func(_, st string) bool { return st == s }
	}
	on := m.started
	ack := first(stage("dhcp-ack"), on)
	script := first(stage("ipxe"), ack)
	booted := first(stage("booted"), script)
	partition := first(stage("partition"), booted)
	transfer := first(stage("transfer"), partition)
	sysconf := first(stage("sysconf"), transfer)
	done := first(stage("done"), sysconf)
	back := first(stage("ipxe"), done) // the reboot's local-boot script
	healthy := first(func(k, s string) bool { return s == "healthy" || k == "health" }, back)
	var size int64
	for _, e := range st.Events {
		if e.Stage == "transfer" && e.Bytes > size {
			size = e.Bytes
		}
	}
	xfer := sysconf.Sub(transfer)

	// The plain download: the rescue shell's busybox wget of the stream.
	ok(t, "--data", p.data, "node", "set", p.node, "--boot", "rescue")
	time.Sleep(3 * time.Second) // the server polls goldcast.yaml every 2 s
	m = p.boot(t)
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(p.serial.String(), "goldcast rescue#") {
		if time.Now().After(deadline) {
			t.Fatal("no rescue shell")
		}
		time.Sleep(time.Second)
	}
	mark := len(p.serial.String())
	io.WriteString(m.keys, "time wget -q -O /dev/null http://"+p.net+".1:8080/api/v1/images/golden@1/stream; echo wget-exit-$?\n")
	re := regexp.MustCompile(`real\s+(\d+)m\s*([\d.]+)s`)
	exit := regexp.MustCompile(`wget-exit-(\d+)`) // not the typed "$?"
	var wget time.Duration
	for wget == 0 {
		out := p.serial.String()[mark:]
		code := exit.FindStringSubmatch(out)
		if mm := re.FindStringSubmatch(out); mm != nil && code != nil && code[1] == "0" {
			mins, _ := strconv.Atoi(mm[1])
			secs, _ := strconv.ParseFloat(mm[2], 64)
			wget = time.Duration(mins)*time.Minute + time.Duration(secs*float64(time.Second))
		} else if code != nil && code[1] != "0" {
			t.Fatalf("wget failed:\n%s", out)
		}
		if time.Now().After(deadline.Add(5 * time.Minute)) {
			t.Fatalf("wget did not finish:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	m.kill()
	streamFile := filepath.Join(t.TempDir(), "golden.tar.zst")
	ok(t, "--data", p.data, "image", "export", "golden@1", "-o", streamFile)
	fi, err := os.Stat(streamFile)
	if err != nil {
		t.Fatal(err)
	}
	streamBytes := fi.Size()

	row := func(name string, d time.Duration) string { return fmt.Sprintf("| %s | %.1f s |\n", name, d.Seconds()) }
	var b strings.Builder
	b.WriteString("| stage | time |\n|---|---|\n")
	b.WriteString(row("power-on to DHCP ack (firmware, iPXE ROM)", ack.Sub(on)))
	b.WriteString(row("boot files (script, kernel, initramfs) and boot to the booted report", booted.Sub(ack)))
	b.WriteString(row("install plan, partition and mkfs", transfer.Sub(booted)))
	b.WriteString(row("transfer (receive, verify, write)", xfer))
	b.WriteString(row("sysconf, boot loader, first-boot unit", done.Sub(sysconf)))
	b.WriteString(row("reboot to the local-boot script", back.Sub(done)))
	b.WriteString(row("first boot to the healthy report", healthy.Sub(back)))
	b.WriteString(row("**power-on to healthy**", healthy.Sub(on)))
	fmt.Fprintf(&b, "\nimage: %d MB of files, stream %d MB; transfer %.1f MB/s of files; busybox wget of the same stream to /dev/null in the same VM: %.1f s (%.1f MB/s of stream); transfer/wget time ratio %.2f\n",
		size/1e6, streamBytes/1e6, float64(size)/1e6/xfer.Seconds(), wget.Seconds(), float64(streamBytes)/1e6/wget.Seconds(), xfer.Seconds()/wget.Seconds())
	t.Logf("install benchmark (QEMU TCG, 2 vCPU, 1 GiB, virtio disk and NIC):\n%s", b.String())
}
