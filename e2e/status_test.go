package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/server"
)

// watcher is a `goldcast status --watch` running in the background.
type watcher struct {
	cmd   *exec.Cmd
	first string
	lines chan string
	done  chan error
}

// startWatch starts goldcast with args and waits for its first line of
// output (the states it starts from), so that what follows is live.
func startWatch(t *testing.T, args ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, goldcast.path, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &watcher{cmd: cmd, lines: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w; stderr: %s", err, stderr.String())
		}
		w.done <- err
	}()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("goldcast %v printed nothing: %v", args, <-w.done)
		}
		w.first = l
	case <-time.After(60 * time.Second):
		t.Fatalf("goldcast %v printed nothing within a minute", args)
	}
	return w
}

// wait returns the watcher's exit code and output.
func (w *watcher) wait(t *testing.T) (int, string) {
	t.Helper()
	out := []string{w.first}
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				err := <-w.done
				var ee *exec.ExitError
				switch {
				case err == nil:
					return 0, strings.Join(out, "\n")
				case errors.As(err, &ee):
					return ee.ExitCode(), strings.Join(out, "\n") + "\n" + err.Error()
				default:
					t.Fatalf("watch: %v", err)
				}
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("watch did not end; output so far:\n%s", strings.Join(out, "\n"))
		}
	}
}

// TestStatusWatchInstall drives the CLI against a fake installer that
// reports through client.ProgressReporter: `status NODE --json` shows the
// percent rise report by report, `status --watch --until` ends when the
// node is installed (exit 0) or failed (exit 1), `events NODE --json`
// holds every stage, the installed node boots local in goldcast.yaml and
// the failed one stays install, and curl reads the live event stream.
func TestStatusWatchInstall(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	cfg := "# lab\nnodes:\n  - name: n1 # web tier\n    boot: install\n  - name: n2\n    boot: install\n"
	if err := os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServerConfigured(t, data, 0, nil)
	status := func(node string) api.NodeState {
		t.Helper()
		r := ok(t, s.args("status", node, "--json")...)
		var out struct {
			Nodes  []api.NodeState `json:"nodes"`
			Events []client.Event  `json:"events"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		if len(out.Nodes) != 1 || out.Nodes[0].Node != node {
			t.Fatalf("status %s --json: %s", node, r.stdout)
		}
		return out.Nodes[0]
	}
	if st := status("n1"); st.State != server.StateUnknown {
		t.Fatalf("n1 before any report: %+v", st)
	}

	w1 := startWatch(t, s.args("status", "n1", "--watch", "--until", "installed,failed")...)
	w2 := startWatch(t, s.args("status", "n2", "--watch", "--until", "installed,failed")...)

	tok, err := server.IssueNodeToken(data, "n1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	rep := client.NewProgressReporter(s.url, "n1", tok, nil, nil)
	report := func(p api.Progress) {
		t.Helper()
		p.Image, p.Version = "web", 3
		if err := rep.Report(ctx, p); err != nil {
			t.Fatal(err)
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := rep.Flush(fctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []string{api.StageStart, api.StagePartition, api.StageMkfs} {
		report(api.Progress{Stage: st, State: api.StateInstalling})
	}
	last := -1.0
	const total = 800 << 20
	for _, pct := range []float64{5, 20, 35, 50, 65, 80, 95, 100} {
		report(api.Progress{Stage: api.StageTransfer, State: api.StateInstalling, Percent: pct,
			Bytes: int64(pct / 100 * total), Total: total, Rate: 40 << 20, ETASeconds: (100 - pct) / 5})
		st := status("n1")
		if st.State != api.StateInstalling || st.Stage != api.StageTransfer || st.Percent != pct || st.Percent <= last || st.Image != "web" || st.Version != 3 {
			t.Errorf("after reporting %v%%: %+v (percent before %v)", pct, st, last)
		}
		last = st.Percent
	}
	report(api.Progress{Stage: api.StageSysconf, State: api.StateInstalling, Percent: 100})
	report(api.Progress{Stage: api.StageBootloader, State: api.StateInstalling, Percent: 100})
	report(api.Progress{Stage: api.StageDone, State: api.StateInstalled, Percent: 100})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rep.Close(cctx); err != nil {
		t.Fatal(err)
	}

	code, out := w1.wait(t)
	if code != 0 || !strings.Contains(out, "installing") || !strings.Contains(out, "transfer") || !strings.Contains(out, "installed") {
		t.Errorf("status n1 --watch --until: exit %d, output:\n%s", code, out)
	}
	if st := status("n1"); st.State != api.StateInstalled || st.Percent != 100 || st.Image != "web" || st.Version != 3 {
		t.Errorf("n1 after the install: %+v", st)
	}
	conf, _ := os.ReadFile(filepath.Join(data, "goldcast.yaml"))
	if want := strings.Replace(cfg, "  - name: n1 # web tier\n    boot: install\n", "  - name: n1 # web tier\n    boot: local\n", 1); string(conf) != want {
		t.Errorf("goldcast.yaml after the install:\n%s\nwant:\n%s", conf, want)
	}

	// The history, through goldcast events.
	r := ok(t, s.args("events", "n1", "--json")...)
	var evs []client.Event
	if err := json.Unmarshal([]byte(r.stdout), &evs); err != nil {
		t.Fatalf("events --json: %v\n%s", err, r.stdout)
	}
	var stages []string
	for _, e := range evs {
		if e.Kind == "install" && (len(stages) == 0 || stages[len(stages)-1] != e.Stage) {
			stages = append(stages, e.Stage)
		}
	}
	wantStages := []string{"start", "partition", "mkfs", "transfer", "sysconf", "bootloader", "done", "boot-local"}
	if strings.Join(stages, " ") != strings.Join(wantStages, " ") {
		t.Errorf("install stages in events n1 --json: %v, want %v", stages, wantStages)
	}
	// The table lists the node with its image.
	if r := ok(t, s.args("status")...); !strings.Contains(r.stdout, "LAST-EVENT") || !regexpLine(r.stdout, `^n1\s+installed\s+web@3\s+done\s+100%`) {
		t.Errorf("status table:\n%s", r.stdout)
	}

	// n2 fails: the watch ends with exit 1, boot stays install, and the
	// events carry the error and the log tail.
	tok2, err := server.IssueNodeToken(data, "n2")
	if err != nil {
		t.Fatal(err)
	}
	rep2 := client.NewProgressReporter(s.url, "n2", tok2, nil, nil)
	rep2.Report(ctx, api.Progress{Stage: api.StageStart, State: api.StateInstalling, Image: "web", Version: 3})
	rep2.Report(ctx, api.Progress{Stage: api.StagePartition, State: api.StateFailed, Image: "web", Version: 3,
		Error: "no disk matches the rule size>=500G", LogTail: []string{"found sda 20G", "found sdb 40G"}})
	if err := rep2.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if code, out := w2.wait(t); code != 1 || !strings.Contains(out, "failed") {
		t.Errorf("status n2 --watch --until: exit %d, output:\n%s", code, out)
	}
	conf, _ = os.ReadFile(filepath.Join(data, "goldcast.yaml"))
	if !strings.Contains(string(conf), "  - name: n2\n    boot: install\n") {
		t.Errorf("n2's boot changed after a failed install:\n%s", conf)
	}
	r = ok(t, s.args("events", "n2")...)
	for _, want := range []string{"no disk matches the rule size>=500G", "    found sda 20G\n    found sdb 40G"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("events n2 lacks %q:\n%s", want, r.stdout)
		}
	}

	// A stock client reads the live stream.
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Log("curl not installed: the stream was read by goldcast only")
		return
	}
	b, _ := exec.Command(curl, "-sN", "--max-time", "2", s.url+"/api/v1/events?follow=1&node=n1").Output()
	if !strings.Contains(string(b), "\nid: ") || !strings.Contains(string(b), `"stage":"boot-local"`) {
		t.Errorf("curl read from the event stream:\n%s", b)
	}
}

// regexpLine reports whether a line of s matches the pattern.
func regexpLine(s, pattern string) bool {
	return regexp.MustCompile(`(?m)` + pattern).MatchString(s)
}

// TestStatusHealthTimeoutFlag runs `goldcast server --health-timeout`:
// a node that reports installed and then nothing is marked unhealthy,
// which `status --watch --until unhealthy` sees; one that reports its
// first boot in time is healthy.
func TestStatusHealthTimeoutFlag(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte("nodes:\n  - name: quiet\n    boot: install\n  - name: fine\n    boot: install\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, goldcast.path, "server", "--data", data, "--http", "127.0.0.1:0", "--rsync", "", "--health-timeout", "1s")
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	})
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, found := strings.CutPrefix(strings.TrimSpace(sc.Text()), "API:"); found {
				urlCh <- strings.TrimSpace(u)
			}
		}
	}()
	var url string
	select {
	case url = <-urlCh:
	case <-time.After(30 * time.Second):
		t.Fatal("the server printed no API address")
	}
	tokenFile := filepath.Join(data, "admin.token")
	for _, node := range []string{"quiet", "fine"} {
		tok, err := server.IssueNodeToken(data, node)
		if err != nil {
			t.Fatal(err)
		}
		rep := client.NewProgressReporter(url, node, tok, nil, nil)
		rep.Report(ctx, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Image: "web", Version: 1})
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		if err := rep.Close(cctx); err != nil {
			t.Fatal(err)
		}
		ccancel()
		if node == "fine" {
			c, err := client.New(client.Options{URL: url, NodeToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			if err := postHealth(ctx, c, node); err != nil {
				t.Fatal(err)
			}
		}
	}
	w := startWatch(t, "status", "quiet", "--server", url, "--token-file", tokenFile, "--watch", "--until", "unhealthy,healthy")
	if code, out := w.wait(t); code != 0 || !strings.Contains(out, "unhealthy") {
		t.Errorf("watch quiet --until unhealthy: exit %d\n%s", code, out)
	}
	r := ok(t, "status", "--server", url, "--token-file", tokenFile)
	if !regexpLine(r.stdout, `^fine\s+healthy\s`) || !regexpLine(r.stdout, `^quiet\s+unhealthy\s`) {
		t.Errorf("status after the health timeout:\n%s", r.stdout)
	}
}

// postHealth sends node's first-boot report.
func postHealth(ctx context.Context, c *client.Client, node string) error {
	return c.ReportHealth(ctx, node, api.HealthReport{Hostname: node, BootID: "b-" + node, Kernel: "6.1.0", Image: "web", Version: 1})
}
