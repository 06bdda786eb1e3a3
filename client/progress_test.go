package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/api"
)

// stage is a shorthand report.
func stage(st string, pct float64) api.Progress {
	return api.Progress{Stage: st, State: api.StateInstalling, Percent: pct}
}

// TestReportQueue drives the reporter's policy with a made-up clock:
// changes at once and in order, reports within a stage at most every
// interval with the latest winning, the stage's last report before the
// next stage, and a bound on what waits.
func TestReportQueue(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		add  []api.Progress // queued first
		at   float64        // then, at this second, send all that is due
		want []float64      // percents (or -1 per stage-only report) sent
		// wait is how long until the next report is due afterwards.
		wait time.Duration
	}
	key := func(p api.Progress) float64 {
		if p.Stage == api.StageTransfer {
			return p.Percent
		}
		return -1
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"changes go at once", []step{
			{add: []api.Progress{stage("start", 0), stage("partition", 0), stage("mkfs", 0)}, at: 0, want: []float64{-1, -1, -1}},
		}},
		{"latest wins within the interval", []step{
			{add: []api.Progress{stage("transfer", 1), stage("transfer", 2), stage("transfer", 3)}, at: 0, want: []float64{1}, wait: 2 * time.Second},
			{add: []api.Progress{stage("transfer", 4)}, at: 1.5, want: nil, wait: 500 * time.Millisecond},
			{at: 2, want: []float64{4}},
			{add: []api.Progress{stage("transfer", 5), stage("transfer", 6)}, at: 3, want: nil, wait: time.Second},
			{at: 4.5, want: []float64{6}},
			{at: 10, want: nil},
		}},
		{"the stage's last report precedes the change", []step{
			{add: []api.Progress{stage("transfer", 10), stage("transfer", 90), stage("transfer", 100), stage("sysconf", 100)}, at: 0, want: []float64{10, 100, -1}},
		}},
		{"a failure is a change", []step{
			{add: []api.Progress{stage("transfer", 10), stage("transfer", 20), {Stage: "transfer", State: api.StateFailed, Percent: 20}}, at: 0, want: []float64{10, 20, 20}},
		}},
		{"bounded while the server is away", []step{
			{add: func() []api.Progress {
				var ps []api.Progress
				for i := range maxPendingChanges + 8 {
					ps = append(ps, stage(fmt.Sprint("s", i), 0))
				}
				return append(ps, stage("last", 0))
			}(), at: 0, want: func() []float64 {
				out := make([]float64, maxPendingChanges)
				for i := range out {
					out[i] = -1
				}
				return out
			}()},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := reportQueue{interval: 2 * time.Second}
			var all []api.Progress
			for i, st := range tc.steps {
				for _, p := range st.add {
					q.add(p)
				}
				var got []float64
				for {
					p, gen, ok, wait := q.next(at(st.at))
					if !ok {
						if wait != st.wait {
							t.Errorf("step %d: wait %s, want %s", i, wait, st.wait)
						}
						break
					}
					got = append(got, key(p))
					all = append(all, p)
					q.sent(gen, at(st.at))
				}
				if diff := cmp.Diff(st.want, got); diff != "" {
					t.Errorf("step %d sent (-want +got):\n%s", i, diff)
				}
			}
			if tc.name == "bounded while the server is away" && all[len(all)-1].Stage != "last" {
				t.Errorf("the newest change was dropped: last sent %+v", all[len(all)-1])
			}
		})
	}
}

// progressSink is a server taking progress reports; fail(i) decides the
// status of request i (0-based), 0 meaning take it.
type progressSink struct {
	mu    sync.Mutex
	got   []api.Progress
	calls int
	fail  func(i int) int
	token string
}

func (s *progressSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := s.calls
	s.calls++
	s.mu.Unlock()
	if r.URL.Path != "/api/v1/nodes/n7/progress" || r.Header.Get(api.NodeTokenHeader) != s.token {
		http.Error(w, "wrong path or token", http.StatusForbidden)
		return
	}
	if s.fail != nil {
		if code := s.fail(i); code != 0 {
			http.Error(w, "not now", code)
			return
		}
	}
	var p api.Progress
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.got = append(s.got, p)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *progressSink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.got {
		out = append(out, fmt.Sprintf("%s/%s/%v", p.Stage, p.State, p.Percent))
	}
	return out
}

// install reports a whole install: stages, a transfer of 100 steps,
// the end.
func install(t *testing.T, r *ProgressReporter) {
	t.Helper()
	ctx := t.Context()
	for _, st := range []string{api.StageStart, api.StagePartition, api.StageMkfs} {
		if err := r.Report(ctx, stage(st, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 100; i++ {
		if err := r.Report(ctx, stage(api.StageTransfer, float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	r.Report(ctx, stage(api.StageSysconf, 100))
	r.Report(ctx, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Percent: 100})
}

// TestProgressReporterDelivers: with an interval no install reaches, the
// server gets every stage change, the transfer's first and last report
// and the end, in order, after Close.
func TestProgressReporterDelivers(t *testing.T) {
	sink := &progressSink{token: "tok"}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	r := newProgressReporter(srv.URL, "n7", "tok", nil, nil, time.Hour)
	install(t, r)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"start/installing/0", "partition/installing/0", "mkfs/installing/0", "transfer/installing/1", "transfer/installing/100", "sysconf/installing/100", "done/installed/100"}
	if diff := cmp.Diff(want, sink.received()); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}
	if err := r.Report(t.Context(), stage("start", 0)); err != ErrReporterClosed {
		t.Errorf("Report after Close: %v", err)
	}
}

// TestProgressReporterRetries: a server that fails the first requests
// (503) still gets everything, in order; one that refuses (403) makes
// Close say so.
func TestProgressReporterRetries(t *testing.T) {
	sink := &progressSink{token: "tok", fail: func(i int) int {
		if i < 3 {
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	r := newProgressReporter(srv.URL, "n7", "tok", nil, nil, time.Hour)
	install(t, r)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"start/installing/0", "partition/installing/0", "mkfs/installing/0", "transfer/installing/1", "transfer/installing/100", "sysconf/installing/100", "done/installed/100"}
	if diff := cmp.Diff(want, sink.received()); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}

	refusing := &progressSink{token: "other"}
	srv2 := httptest.NewServer(refusing)
	defer srv2.Close()
	r2 := newProgressReporter(srv2.URL, "n7", "tok", nil, nil, time.Hour)
	r2.Report(t.Context(), stage("start", 0))
	err := r2.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "refused 1 progress report") || !strings.Contains(err.Error(), "403") {
		t.Errorf("Close after a refusal: %v", err)
	}
}

// TestProgressReporterUnreachable: while the server does not answer,
// Report still returns at once and the queue stays bounded; Close gives
// up when its context ends and names what was not delivered.
func TestProgressReporterUnreachable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	r := newProgressReporter(srv.URL, "n7", "tok", nil, nil, time.Hour)
	for i := range 200 {
		if err := r.Report(t.Context(), stage(fmt.Sprint("s", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	n := r.q.len()
	r.mu.Unlock()
	if n > maxPendingChanges {
		t.Errorf("%d reports queued, bound is %d", n, maxPendingChanges)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := r.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "not delivered") {
		t.Errorf("Close with the server away: %v", err)
	}
}

// TestClientProgressReporterTLS: a reporter made from a Client pinning a
// self-signed certificate reaches that server; a plain one is refused by
// the TLS check and Close says the report was not delivered.
func TestClientProgressReporterTLS(t *testing.T) {
	sink := &progressSink{token: "tok"}
	srv := httptest.NewTLSServer(sink)
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	c, err := New(Options{URL: srv.URL, TLSFingerprint: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r := c.NewProgressReporter("n7", "tok", nil)
	r.Report(ctx, stage(api.StageStart, 0))
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"start/installing/0"}, sink.received()); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}

	plain := NewProgressReporter(srv.URL, "n7", "tok", nil, nil)
	plain.Report(ctx, stage(api.StageStart, 0))
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if err := plain.Close(short); err == nil || !strings.Contains(err.Error(), "not delivered") {
		t.Errorf("unpinned reporter against a self-signed server: %v", err)
	}
}
