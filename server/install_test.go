package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/server/state"
)

// installServer is a server on loopback with a goldcast.yaml.
type installServer struct {
	t      *testing.T
	url    string
	data   string
	config string
	admin  string
	stop   func()
}

// startInstallServer runs the server with goldcast.yaml holding yaml.
func startInstallServer(t *testing.T, yaml string, healthTimeout time.Duration) *installServer {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(data, "goldcast.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DataDir: data, HTTPAddr: "127.0.0.1:0", HealthTimeout: healthTimeout,
			Torrent: TorrentConfig{PeerAddr: "off"}, Ready: func(r Ready) { ready <- r }})
	}()
	var r Ready
	select {
	case r = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	}
	t.Cleanup(stop)
	tok, err := os.ReadFile(filepath.Join(data, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &installServer{t: t, url: r.URL, data: data, config: conf, admin: strings.TrimSpace(string(tok)), stop: stop}
}

// nodeToken issues node's token.
func (s *installServer) nodeToken(node string) string {
	s.t.Helper()
	tok, err := IssueNodeToken(s.data, node)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// post sends v as JSON to path with the given headers and returns the
// status code and body.
func (s *installServer) post(path string, v any, hdr map[string]string) (int, string) {
	s.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.url+api.Prefix+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// progress posts a Progress report of node with its token and fails
// unless the server took it.
func (s *installServer) progress(node, token string, p api.Progress) {
	s.t.Helper()
	if code, body := s.post("/nodes/"+node+"/progress", p, map[string]string{api.NodeTokenHeader: token}); code != http.StatusNoContent {
		s.t.Fatalf("progress %+v of %s: %d %s", p, node, code, body)
	}
}

// getJSON GETs path (with the admin token) into v.
func (s *installServer) getJSON(path string, v any) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+api.Prefix+path, nil)
	req.Header.Set(api.TokenHeader, s.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		s.t.Fatalf("GET %s: %v\n%s", path, err, b)
	}
}

// state returns node's NodeState from GET /status?node=.
func (s *installServer) state(node string) api.NodeState {
	s.t.Helper()
	var states []api.NodeState
	s.getJSON(api.NodeStatesPath+"?node="+node, &states)
	if len(states) != 1 || states[0].Node != node {
		s.t.Fatalf("status of %s: %+v", node, states)
	}
	return states[0]
}

// events returns node's stored events.
func (s *installServer) events(node string) []state.Event {
	s.t.Helper()
	var evs []state.Event
	s.getJSON("/events?node="+node, &evs)
	return evs
}

func (s *installServer) readConfig() string {
	s.t.Helper()
	b, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

// ignoreTimes leaves out what the clock decides.
var ignoreTimes = cmpopts.IgnoreFields(api.NodeState{}, "Updated")

const installYAML = `# the lab
nodes:
  # the first node
  - name: n1
    macs: ["52:54:00:00:00:01"]
    boot: install # reimage me
    image: web
  - name: n2
    boot: install
  # a rack
  - name: rack[01-03]
    boot: install
`

// TestInstallProgressAndBootLocal follows one install through its stages:
// each report becomes an install event and the node's state, and the
// installed report flips the node's boot action to local in goldcast.yaml,
// changing nothing else in the file.
func TestInstallProgressAndBootLocal(t *testing.T) {
	s := startInstallServer(t, installYAML, 0)
	tok := s.nodeToken("n1")
	steps := []struct {
		p    api.Progress
		want api.NodeState
	}{
		{
			api.Progress{Stage: api.StageStart, State: api.StateInstalling, Image: "web", Version: 3},
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: api.StageStart, Image: "web", Version: 3, Message: "stage start"},
		},
		{
			api.Progress{Stage: api.StagePartition, State: api.StateInstalling, Message: "sda: gpt, 3 partitions"},
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: api.StagePartition, Image: "web", Version: 3, Message: "sda: gpt, 3 partitions"},
		},
		{
			api.Progress{Stage: api.StageTransfer, State: api.StateInstalling, Percent: 25, Bytes: 250e6, Total: 1e9, Rate: 50e6, ETASeconds: 15},
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: api.StageTransfer, Image: "web", Version: 3, Percent: 25, Rate: 50e6, ETA: 15,
				Message: "transfer 25%: 250.0 MB of 1.0 GB, 50.0 MB/s, 15s left"},
		},
		{
			api.Progress{Stage: api.StageTransfer, State: api.StateInstalling, Percent: 100, Bytes: 1e9, Total: 1e9, Rate: 60e6},
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: api.StageTransfer, Image: "web", Version: 3, Percent: 100, Rate: 60e6,
				Message: "transfer 100%: 1.0 GB of 1.0 GB, 60.0 MB/s"},
		},
		{
			api.Progress{Stage: api.StageSysconf, State: api.StateInstalling},
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: api.StageSysconf, Image: "web", Version: 3, Percent: 100, Message: "stage sysconf"},
		},
		{
			api.Progress{Stage: api.StageDone, State: api.StateInstalled, Image: "web", Version: 3, Percent: 100},
			api.NodeState{Node: "n1", State: api.StateInstalled, Stage: api.StageDone, Image: "web", Version: 3, Percent: 100,
				Message: "boot action of n1 set to local in goldcast.yaml (was install) after installing web@3"},
		},
	}
	for i, st := range steps {
		s.progress("n1", tok, st.p)
		if diff := cmp.Diff(st.want, s.state("n1"), ignoreTimes); diff != "" {
			t.Errorf("after report %d (%s) state (-want +got):\n%s", i, st.p.Stage, diff)
		}
	}

	evs := s.events("n1")
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s/%s/%v/%s", e.Kind, e.Stage, e.Percent, e.Fields["state"]))
	}
	want := []string{
		"install/start/0/installing", "install/partition/0/installing", "install/transfer/25/installing",
		"install/transfer/100/installing", "install/sysconf/0/installing", "install/done/100/installed", "install/boot-local/0/",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if tr := evs[2]; tr.Bytes != 250e6 || tr.Rate != 50e6 || tr.Fields["total"] != "1000000000" || tr.Fields["eta"] != "15" {
		t.Errorf("transfer event lacks bytes, rate, total or eta: %+v", tr)
	}

	wantYAML := strings.Replace(installYAML, "boot: install # reimage me", "boot: local # reimage me", 1)
	if diff := cmp.Diff(wantYAML, s.readConfig()); diff != "" {
		t.Errorf("goldcast.yaml after the install (-want +got):\n%s", diff)
	}
	// A second install of the same node starts from a clean record.
	s.progress("n1", tok, api.Progress{Stage: api.StageStart, State: api.StateInstalling, Image: "web", Version: 4})
	if diff := cmp.Diff(api.NodeState{Node: "n1", State: api.StateInstalling, Stage: api.StageStart, Image: "web", Version: 4, Message: "stage start"}, s.state("n1"), ignoreTimes); diff != "" {
		t.Errorf("state at a new install (-want +got):\n%s", diff)
	}
}

// stopAndOpenState stops the server and opens its state database.
func (s *installServer) stopAndOpenState() *state.Store {
	s.t.Helper()
	s.stop()
	db, err := state.Open(filepath.Join(s.data, "state.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// TestInstallNodeOfRange installs one node of a host range entry: the
// editor changes whole entries only, so goldcast.yaml stays as it is, a
// warning event says why, and the state records the local boot.
func TestInstallNodeOfRange(t *testing.T) {
	s := startInstallServer(t, installYAML, 0)
	tok := s.nodeToken("rack02")
	s.progress("rack02", tok, api.Progress{Stage: api.StageStart, State: api.StateInstalling, Image: "web", Version: 1})
	s.progress("rack02", tok, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Image: "web", Version: 1, Percent: 100})
	if diff := cmp.Diff(installYAML, s.readConfig()); diff != "" {
		t.Errorf("goldcast.yaml changed (-want +got):\n%s", diff)
	}
	if st := s.state("rack02"); st.State != api.StateInstalled || st.Image != "web" || st.Version != 1 {
		t.Errorf("rack02 state %+v", st)
	}
	evs := s.events("rack02")
	last := evs[len(evs)-1]
	if last.Stage != "boot-local" || !strings.Contains(last.Message, `"rack[01-03]"`) || !strings.Contains(last.Message, "declares several nodes") {
		t.Errorf("no warning event naming the range entry: %+v", last)
	}
	// An undeclared node gets a warning too.
	otok := s.nodeToken("stray")
	s.progress("stray", otok, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Image: "web", Version: 1})
	if evs := s.events("stray"); !strings.Contains(evs[len(evs)-1].Message, "not declared in goldcast.yaml") {
		t.Errorf("undeclared node: last event %+v", evs[len(evs)-1])
	}
	db := s.stopAndOpenState()
	for node, want := range map[string]bool{"rack02": true, "stray": true, "rack01": false} {
		if got := LocalBootRecorded(db, node); got != want {
			t.Errorf("LocalBootRecorded(%s) = %v, want %v", node, got, want)
		}
	}
}

// TestInstallFailed: a failed install leaves the boot action install and
// its event carries the error and the last 50 log lines.
func TestInstallFailed(t *testing.T) {
	s := startInstallServer(t, installYAML, 0)
	tok := s.nodeToken("n1")
	var logLines []string
	for i := range 70 {
		logLines = append(logLines, fmt.Sprintf("log line %d", i))
	}
	s.progress("n1", tok, api.Progress{Stage: api.StageTransfer, State: api.StateInstalling, Image: "web", Version: 2, Percent: 40})
	s.progress("n1", tok, api.Progress{Stage: api.StageFailed, State: api.StateFailed, Image: "web", Version: 2, Percent: 40,
		Error: "write /mnt/target/usr/bin/x: no space left on device", LogTail: logLines})
	want := api.NodeState{Node: "n1", State: api.StateFailed, Stage: api.StageFailed, Image: "web", Version: 2, Percent: 40,
		Message: "install failed in stage failed: write /mnt/target/usr/bin/x: no space left on device"}
	if diff := cmp.Diff(want, s.state("n1"), ignoreTimes); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(installYAML, s.readConfig()); diff != "" {
		t.Errorf("goldcast.yaml changed by a failed install (-want +got):\n%s", diff)
	}
	evs := s.events("n1")
	last := evs[len(evs)-1]
	if last.Fields["error"] != "write /mnt/target/usr/bin/x: no space left on device" {
		t.Errorf("failed event error field %q", last.Fields["error"])
	}
	if diff := cmp.Diff(logLines[20:], strings.Split(last.Fields["log_tail"], "\n")); diff != "" {
		t.Errorf("failed event log tail (-want +got):\n%s", diff)
	}
}

// TestInstallReportsRejected: reports need the node's own token (or the
// admin's) and must make sense.
func TestInstallReportsRejected(t *testing.T) {
	s := startInstallServer(t, installYAML, 0)
	n1, n2 := s.nodeToken("n1"), s.nodeToken("n2")
	good := api.Progress{Stage: api.StageStart, State: api.StateInstalling}
	cases := []struct {
		name string
		path string
		body any
		hdr  map[string]string
		want int
	}{
		{"no token", "/nodes/n1/progress", good, nil, http.StatusUnauthorized},
		{"wrong node token", "/nodes/n1/progress", good, map[string]string{api.NodeTokenHeader: "00" + n1[2:]}, http.StatusForbidden},
		{"another node's token", "/nodes/n1/progress", good, map[string]string{api.NodeTokenHeader: n2}, http.StatusForbidden},
		{"health with another node's token", "/nodes/n1/health", api.HealthReport{Hostname: "n1"}, map[string]string{api.NodeTokenHeader: n2}, http.StatusForbidden},
		{"wrong admin token", "/nodes/n1/progress", good, map[string]string{api.TokenHeader: strings.Repeat("0", 64)}, http.StatusUnauthorized},
		{"unknown state", "/nodes/n1/progress", api.Progress{Stage: "start", State: "dancing"}, map[string]string{api.NodeTokenHeader: n1}, http.StatusBadRequest},
		{"no stage", "/nodes/n1/progress", api.Progress{State: api.StateInstalling}, map[string]string{api.NodeTokenHeader: n1}, http.StatusBadRequest},
		{"percent over 100", "/nodes/n1/progress", api.Progress{Stage: "transfer", State: api.StateInstalling, Percent: 101}, map[string]string{api.NodeTokenHeader: n1}, http.StatusBadRequest},
		{"not JSON", "/nodes/n1/progress", "just a string", map[string]string{api.NodeTokenHeader: n1}, http.StatusBadRequest},
		{"own token", "/nodes/n1/progress", good, map[string]string{api.NodeTokenHeader: n1}, http.StatusNoContent},
		{"admin token", "/nodes/n2/progress", good, map[string]string{api.TokenHeader: s.admin}, http.StatusNoContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := s.post(tc.path, tc.body, tc.hdr); code != tc.want {
				t.Errorf("POST %s: %d %s, want %d", tc.path, code, body, tc.want)
			}
		})
	}
	// Only the two accepted reports were recorded.
	var all []state.Event
	s.getJSON("/events", &all)
	var nodes []string
	for _, e := range all {
		if e.Kind == KindInstall {
			nodes = append(nodes, e.Node)
		}
	}
	if diff := cmp.Diff([]string{"n1", "n2"}, nodes); diff != "" {
		t.Errorf("install events recorded (-want +got):\n%s", diff)
	}
}

// TestHealth: a health report makes an installed node healthy; a node
// that does not report within the timeout becomes unhealthy, with an
// event.
func TestHealth(t *testing.T) {
	s := startInstallServer(t, installYAML, 300*time.Millisecond)
	n1, n2 := s.nodeToken("n1"), s.nodeToken("n2")
	for node, tok := range map[string]string{"n1": n1, "n2": n2} {
		s.progress(node, tok, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Image: "web", Version: 5, Percent: 100})
	}
	rep := api.HealthReport{Hostname: "n1.lab", BootID: "0c8e7c2f-0000-4000-8000-000000000001", Kernel: "6.1.0-28-amd64", Image: "web", Version: 5}
	if code, body := s.post("/nodes/n1/health", rep, map[string]string{api.NodeTokenHeader: n1}); code != http.StatusNoContent {
		t.Fatalf("health: %d %s", code, body)
	}
	wantN1 := api.NodeState{Node: "n1", State: api.StateHealthy, Stage: api.StageDone, Image: "web", Version: 5, Percent: 100,
		Hostname: "n1.lab", BootID: rep.BootID, Kernel: rep.Kernel, Message: "first boot of n1.lab: healthy, kernel 6.1.0-28-amd64, image web@5"}

	// n2 never reports.
	deadline := time.Now().Add(30 * time.Second)
	for s.state("n2").State != api.StateUnhealthy {
		if time.Now().After(deadline) {
			t.Fatalf("n2 not marked unhealthy: %+v", s.state("n2"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if diff := cmp.Diff(wantN1, s.state("n1"), ignoreTimes); diff != "" {
		t.Errorf("n1 (-want +got):\n%s", diff)
	}
	// The unhealthy event (the boot-local event of the install may come
	// after it: the flip runs on its own).
	// The event is stored just after the state.
	unhealthy := false
	for deadline := time.Now().Add(10 * time.Second); !unhealthy && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, e := range s.events("n2") {
			unhealthy = unhealthy || e.Kind == KindHealth && e.Stage == api.StateUnhealthy && e.Fields["timeout"] == "300ms"
		}
	}
	if !unhealthy {
		t.Errorf("n2 has no unhealthy event naming the timeout: %+v", s.events("n2"))
	}
	var healthEvents int
	for _, e := range s.events("n1") {
		// (A loaded machine may have marked n1 unhealthy before its
		// report arrived; the report wins all the same.)
		if e.Kind == KindHealth && e.Stage == api.StateHealthy {
			healthEvents++
			if e.Fields["kernel"] != rep.Kernel || e.Fields["boot_id"] != rep.BootID || e.Fields["version"] != "5" {
				t.Errorf("n1 health event %+v", e)
			}
		}
	}
	if healthEvents != 1 {
		t.Errorf("n1 has %d health events, want 1", healthEvents)
	}
	// A late report still counts.
	if code, body := s.post("/nodes/n2/health", api.HealthReport{Hostname: "n2", Kernel: "6.1"}, map[string]string{api.NodeTokenHeader: n2}); code != http.StatusNoContent {
		t.Fatalf("health: %d %s", code, body)
	}
	if st := s.state("n2"); st.State != api.StateHealthy {
		t.Errorf("n2 after a late report: %+v", st)
	}
}

// TestNodeStates lists declared nodes (unknown when they never reported)
// and nodes that only have a record, and filters by name or range.
func TestNodeStates(t *testing.T) {
	s := startInstallServer(t, installYAML, 0)
	s.progress("rack03", s.nodeToken("rack03"), api.Progress{Stage: api.StageMkfs, State: api.StateInstalling, Image: "web", Version: 1})
	s.progress("extra", s.nodeToken("extra"), api.Progress{Stage: api.StageStart, State: api.StateInstalling})
	names := func(st []api.NodeState) []string {
		var out []string
		for _, n := range st {
			out = append(out, n.Node+"="+n.State)
		}
		return out
	}
	cases := []struct {
		query string
		want  []string
	}{
		{"", []string{"extra=installing", "n1=unknown", "n2=unknown", "rack01=unknown", "rack02=unknown", "rack03=installing"}},
		{"?node=rack03", []string{"rack03=installing"}},
		{"?node=rack[02-03]&node=n1", []string{"n1=unknown", "rack02=unknown", "rack03=installing"}},
		{"?node=nosuch", []string{"nosuch=unknown"}},
	}
	// The answer names the last event it includes.
	resp, err := http.Get(s.url + api.Prefix + api.NodeStatesPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var all []state.Event
	s.getJSON("/events", &all)
	if got, want := resp.Header.Get(EventSeqHeader), fmt.Sprint(all[len(all)-1].Seq); got != want {
		t.Errorf("%s = %q, want %q", EventSeqHeader, got, want)
	}
	for _, tc := range cases {
		var got []api.NodeState
		s.getJSON(api.NodeStatesPath+tc.query, &got)
		if diff := cmp.Diff(tc.want, names(got)); diff != "" {
			t.Errorf("status%s (-want +got):\n%s", tc.query, diff)
		}
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id   string
	data state.Event
}

// readSSE reads server-sent events from r into ch (comments counted in
// comments) until the stream ends, then sends the error on done.
func readSSE(r io.Reader, ch chan<- sseEvent, comments chan<- string, done chan<- error) {
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.id != "" {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			if comments != nil {
				select {
				case comments <- line:
				default:
				}
			}
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				done <- fmt.Errorf("data line %q: %w", line, err)
				return
			}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	done <- err
}

// TestEventsFollow: ?follow=1 streams the backlog after since, then new
// events as they are stored, for one node; the stream ends cleanly when
// the server shuts down.
func TestEventsFollow(t *testing.T) {
	s := startInstallServer(t, installYAML, 0)
	n1, n2 := s.nodeToken("n1"), s.nodeToken("n2")
	s.progress("n1", n1, api.Progress{Stage: api.StageStart, State: api.StateInstalling})
	s.progress("n2", n2, api.Progress{Stage: api.StageStart, State: api.StateInstalling})
	s.progress("n1", n1, api.Progress{Stage: api.StagePartition, State: api.StateInstalling})
	s.progress("n1", n1, api.Progress{Stage: api.StageMkfs, State: api.StateInstalling})
	first := s.events("n1")[0].Seq

	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s/events?follow=1&node=n1&since=%d", s.url, api.Prefix, first), nil)
	req.Header.Set(api.TokenHeader, s.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("follow: %d %s", resp.StatusCode, ct)
	}
	ch := make(chan sseEvent, 16)
	done := make(chan error, 1)
	go readSSE(resp.Body, ch, nil, done)
	next := func() sseEvent {
		t.Helper()
		select {
		case e := <-ch:
			return e
		case err := <-done:
			t.Fatalf("stream ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no event")
		}
		return sseEvent{}
	}
	// The backlog: n1's events after the first.
	for _, stage := range []string{api.StagePartition, api.StageMkfs} {
		e := next()
		if e.data.Stage != stage || e.data.Node != "n1" || e.id != fmt.Sprint(e.data.Seq) {
			t.Errorf("backlog event %s %+v, want stage %s", e.id, e.data, stage)
		}
	}
	// Live: n2's event is left out, n1's arrives.
	s.progress("n2", n2, api.Progress{Stage: api.StageMkfs, State: api.StateInstalling})
	s.progress("n1", n1, api.Progress{Stage: api.StageTransfer, State: api.StateInstalling, Percent: 12.5, Total: 100, Bytes: 12})
	if e := next(); e.data.Stage != api.StageTransfer || e.data.Percent != 12.5 || e.data.Node != "n1" {
		t.Errorf("live event %+v", e.data)
	}
	s.stop()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("stream ended with %v, want a clean end", err)
		}
	case e := <-ch:
		t.Errorf("unexpected event after shutdown %+v", e)
	case <-time.After(30 * time.Second):
		t.Error("stream still open after the server stopped")
	}
}

// TestEventsFollowHeartbeat: an idle stream carries keep-alive comments.
func TestEventsFollowHeartbeat(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inst := newInstallService(t.TempDir(), nil, db, slog.New(slog.DiscardHandler), 0)
	inst.heartbeat = 20 * time.Millisecond
	ts := httptest.NewServer(http.HandlerFunc(inst.events))
	defer ts.Close()
	defer inst.stopStreams()
	resp, err := http.Get(ts.URL + "/events?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	comments := make(chan string, 8)
	go readSSE(resp.Body, make(chan sseEvent, 1), comments, make(chan error, 1))
	want := []string{": goldcast events", ": keep-alive", ": keep-alive"}
	var got []string
	for len(got) < len(want) {
		select {
		case c := <-comments:
			got = append(got, c)
		case <-time.After(30 * time.Second):
			t.Fatalf("comments so far %q", got)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("comments (-want +got):\n%s", diff)
	}
	// Without follow the route lists; a bad follow value is refused.
	for q, code := range map[string]int{"": http.StatusOK, "?follow=0": http.StatusOK, "?follow=yes": http.StatusBadRequest} {
		r, err := http.Get(ts.URL + "/events" + q)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != code {
			t.Errorf("/events%s: %d, want %d", q, r.StatusCode, code)
		}
	}
}
