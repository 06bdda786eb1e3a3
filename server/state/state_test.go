package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// baseTime is the fixed "now" the tests count from.
func baseTime() time.Time { return time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC) }

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

// captureOp is one step of a capture-session scenario.
type captureOp struct {
	op      string // begin, touch, finish
	label   string // names the session begun, touched or finished
	image   string
	host    string
	at      time.Duration // offset from base
	stale   time.Duration // staleAfter for begin; 10m when zero
	state   string        // for finish
	version int           // for finish
	wantErr error
}

func TestCaptureSessions(t *testing.T) {
	base := baseTime()
	const stale = 10 * time.Minute
	cases := []struct {
		name       string
		ops        []captureOp
		wantActive map[string]string // image -> host
		wantStates map[string]string // label -> state
	}{
		{
			name:       "first capture",
			ops:        []captureOp{{op: "begin", label: "a1", image: "a", host: "h1"}},
			wantActive: map[string]string{"a": "h1"},
			wantStates: map[string]string{"a1": CaptureActive},
		},
		{
			name: "second capture of the same image refused",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "begin", label: "a2", image: "a", host: "h2", at: time.Minute, wantErr: ErrCaptureActive},
			},
			wantActive: map[string]string{"a": "h1"},
			wantStates: map[string]string{"a1": CaptureActive},
		},
		{
			name: "different image allowed",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "begin", label: "b1", image: "b", host: "h2", at: time.Minute},
			},
			wantActive: map[string]string{"a": "h1", "b": "h2"},
			wantStates: map[string]string{"a1": CaptureActive, "b1": CaptureActive},
		},
		{
			name: "stale session abandoned and replaced",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "begin", label: "a2", image: "a", host: "h2", at: stale},
			},
			wantActive: map[string]string{"a": "h2"},
			wantStates: map[string]string{"a1": CaptureAbandoned, "a2": CaptureActive},
		},
		{
			name: "touch keeps a session from going stale",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "touch", label: "a1", at: 9 * time.Minute},
				{op: "begin", label: "a2", image: "a", host: "h2", at: 15 * time.Minute, wantErr: ErrCaptureActive},
			},
			wantActive: map[string]string{"a": "h1"},
			wantStates: map[string]string{"a1": CaptureActive},
		},
		{
			name: "touching a replaced session fails",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "begin", label: "a2", image: "a", host: "h2", at: time.Hour},
				{op: "touch", label: "a1", at: time.Hour, wantErr: ErrNotActive},
			},
			wantActive: map[string]string{"a": "h2"},
			wantStates: map[string]string{"a1": CaptureAbandoned, "a2": CaptureActive},
		},
		{
			name: "zero staleAfter never goes stale",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1", stale: -1},
				{op: "begin", label: "a2", image: "a", host: "h2", at: 1000 * time.Hour, stale: -1, wantErr: ErrCaptureActive},
			},
			wantActive: map[string]string{"a": "h1"},
			wantStates: map[string]string{"a1": CaptureActive},
		},
		{
			name: "published allows a new capture",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "finish", label: "a1", at: time.Minute, state: CapturePublished, version: 3},
				{op: "begin", label: "a2", image: "a", host: "h2", at: 2 * time.Minute},
			},
			wantActive: map[string]string{"a": "h2"},
			wantStates: map[string]string{"a1": CapturePublished, "a2": CaptureActive},
		},
		{
			name: "failed allows a new capture",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "finish", label: "a1", at: time.Minute, state: CaptureFailed},
				{op: "begin", label: "a2", image: "a", host: "h1", at: 2 * time.Minute},
			},
			wantActive: map[string]string{"a": "h1"},
			wantStates: map[string]string{"a1": CaptureFailed, "a2": CaptureActive},
		},
		{
			name: "finishing twice fails",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "finish", label: "a1", at: time.Minute, state: CaptureFailed},
				{op: "finish", label: "a1", at: 2 * time.Minute, state: CapturePublished, version: 1, wantErr: ErrNotActive},
			},
			wantActive: map[string]string{},
			wantStates: map[string]string{"a1": CaptureFailed},
		},
		{
			name: "a replaced session cannot clear its successor",
			ops: []captureOp{
				{op: "begin", label: "a1", image: "a", host: "h1"},
				{op: "begin", label: "a2", image: "a", host: "h2", at: time.Hour},
				{op: "finish", label: "a1", at: time.Hour, state: CaptureFailed, wantErr: ErrNotActive},
			},
			wantActive: map[string]string{"a": "h2"},
			wantStates: map[string]string{"a1": CaptureAbandoned, "a2": CaptureActive},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ids := map[string]string{}
			for i, op := range tc.ops {
				now := base.Add(op.at)
				var err error
				switch op.op {
				case "begin":
					staleAfter := op.stale
					if staleAfter == 0 {
						staleAfter = stale
					}
					var sess *CaptureSession
					sess, err = s.BeginCapture(op.image, op.host, now, staleAfter)
					if err == nil {
						ids[op.label] = sess.ID
					}
				case "touch":
					err = s.TouchCapture(ids[op.label], now, int64(i))
				case "finish":
					err = s.FinishCapture(ids[op.label], op.state, op.version, "", now)
				default:
					t.Fatalf("unknown op %q", op.op)
				}
				if !errors.Is(err, op.wantErr) {
					t.Fatalf("step %d (%s %s): error %v, want %v", i, op.op, op.label, err, op.wantErr)
				}
			}

			active, err := s.ActiveCaptures()
			if err != nil {
				t.Fatal(err)
			}
			gotActive := map[string]string{}
			for _, a := range active {
				gotActive[a.Image] = a.Host
			}
			if diff := cmp.Diff(tc.wantActive, gotActive); diff != "" {
				t.Errorf("active captures (-want +got):\n%s", diff)
			}
			gotStates := map[string]string{}
			for label, id := range ids {
				sess, err := s.Capture(id)
				if err != nil {
					t.Fatal(err)
				}
				gotStates[label] = sess.State
			}
			if diff := cmp.Diff(tc.wantStates, gotStates); diff != "" {
				t.Errorf("session states (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCaptureRecord(t *testing.T) {
	base := baseTime()
	s, _ := openTemp(t)
	sess, err := s.BeginCapture("debian12", "golden1", base, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(sess.ID) {
		t.Errorf("session ID %q is not 32 hex digits", sess.ID)
	}
	want := CaptureSession{ID: sess.ID, Image: "debian12", Host: "golden1", Started: base, Updated: base, State: CaptureActive}
	if diff := cmp.Diff(want, *sess); diff != "" {
		t.Errorf("BeginCapture (-want +got):\n%s", diff)
	}

	// The refusal names the host and start of the active session.
	_, err = s.BeginCapture("debian12", "golden2", base.Add(time.Second), time.Minute)
	if !errors.Is(err, ErrCaptureActive) {
		t.Fatalf("second BeginCapture: %v, want ErrCaptureActive", err)
	}
	for _, s := range []string{"golden1", base.Format(time.RFC3339)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}

	if err := s.TouchCapture(sess.ID, base.Add(30*time.Second), 4096); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishCapture(sess.ID, CapturePublished, 7, "", base.Add(40*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Capture(sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	want.Updated = base.Add(40 * time.Second)
	want.BytesIn = 4096
	want.State = CapturePublished
	want.Version = 7
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("published session (-want +got):\n%s", diff)
	}
}

func TestCaptureErrors(t *testing.T) {
	base := baseTime()
	s, _ := openTemp(t)
	sess, err := s.BeginCapture("img", "h", base, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		call    func() error
		wantErr error // nil: any error
	}{
		{"empty image", func() error { _, err := s.BeginCapture("", "h", base, time.Minute); return err }, nil},
		{"capture of unknown id", func() error { _, err := s.Capture("nope"); return err }, ErrNotFound},
		{"touch unknown id", func() error { return s.TouchCapture("nope", base, 0) }, ErrNotFound},
		{"finish unknown id", func() error { return s.FinishCapture("nope", CaptureFailed, 0, "x", base) }, ErrNotFound},
		{"finish as active", func() error { return s.FinishCapture(sess.ID, CaptureActive, 0, "", base) }, nil},
		{"finish in unknown state", func() error { return s.FinishCapture(sess.ID, "done", 0, "", base) }, nil},
		{"publish without version", func() error { return s.FinishCapture(sess.ID, CapturePublished, 0, "", base) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
	// None of the refused calls ended the session.
	if got, err := s.Capture(sess.ID); err != nil || got.State != CaptureActive {
		t.Fatalf("session after refused calls: %+v, %v", got, err)
	}
}

func TestAbandonAll(t *testing.T) {
	base := baseTime()
	s, path := openTemp(t)
	ids := map[string]string{}
	for _, img := range []string{"c", "a", "b"} {
		sess, err := s.BeginCapture(img, "host-"+img, base, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ids[img] = sess.ID
	}
	if err := s.FinishCapture(ids["b"], CapturePublished, 1, "", base.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// A restart: the store is closed and opened again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	later := base.Add(time.Hour)
	got, err := s.AbandonAll(later)
	if err != nil {
		t.Fatal(err)
	}
	var gotImages []string
	for _, sess := range got {
		gotImages = append(gotImages, sess.Image)
		if sess.State != CaptureAbandoned || !sess.Updated.Equal(later) || sess.Error == "" {
			t.Errorf("returned session %+v not abandoned at %s with a reason", sess, later)
		}
	}
	if diff := cmp.Diff([]string{"a", "c"}, gotImages); diff != "" {
		t.Errorf("abandoned images (-want +got):\n%s", diff)
	}

	wantStates := map[string]string{"a": CaptureAbandoned, "b": CapturePublished, "c": CaptureAbandoned}
	gotStates := map[string]string{}
	for img, id := range ids {
		sess, err := s.Capture(id)
		if err != nil {
			t.Fatal(err)
		}
		gotStates[img] = sess.State
	}
	if diff := cmp.Diff(wantStates, gotStates); diff != "" {
		t.Errorf("stored states (-want +got):\n%s", diff)
	}
	if active, err := s.ActiveCaptures(); err != nil || len(active) != 0 {
		t.Errorf("ActiveCaptures after AbandonAll = %v, %v; want none", active, err)
	}
	if again, err := s.AbandonAll(later); err != nil || len(again) != 0 {
		t.Errorf("second AbandonAll = %v, %v; want none", again, err)
	}
	// The images can be captured again at once.
	if _, err := s.BeginCapture("a", "host-a", later, time.Minute); err != nil {
		t.Errorf("BeginCapture after AbandonAll: %v", err)
	}
}

func TestNodeStatus(t *testing.T) {
	base := baseTime()
	s, path := openTemp(t)
	in := []NodeStatus{
		{Node: "node10", State: "installing", Image: "debian12", Version: 4, Updated: base, Message: "stage 2", BootID: "b-10", Kernel: "6.1.0-18-amd64"},
		{Node: "node02", State: "idle", Updated: base.Add(time.Minute)},
		{Node: "node01", State: "deployed", Image: "rocky9", Version: 1, Updated: base.Add(2 * time.Minute), BootID: "b-1"},
	}
	for _, st := range in {
		if err := s.PutNodeStatus(st); err != nil {
			t.Fatal(err)
		}
	}
	// A newer report replaces the old one.
	in[1].State = "rebooting"
	in[1].Updated = base.Add(time.Hour)
	if err := s.PutNodeStatus(in[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNodeStatus(NodeStatus{State: "x"}); err == nil {
		t.Error("PutNodeStatus without a node name succeeded")
	}

	// Survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for _, tc := range []struct {
		name    string
		want    *NodeStatus
		wantErr error
	}{
		{"node10", &in[0], nil},
		{"node02", &in[1], nil},
		{"node01", &in[2], nil},
		{"node99", nil, ErrNotFound},
	} {
		got, err := s.NodeStatus(tc.name)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("NodeStatus(%q) error %v, want %v", tc.name, err, tc.wantErr)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("NodeStatus(%q) (-want +got):\n%s", tc.name, diff)
		}
	}
	all, err := s.NodeStatuses()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]NodeStatus{in[2], in[1], in[0]}, all); diff != "" {
		t.Errorf("NodeStatuses (-want +got):\n%s", diff)
	}
}

func seqs(events []Event) []uint64 {
	out := []uint64{}
	for _, e := range events {
		out = append(out, e.Seq)
	}
	return out
}

func TestEvents(t *testing.T) {
	base := baseTime()
	s, _ := openTemp(t)
	nodes := []string{"n1", "n2", ""}
	var appended []Event
	for i := range 9 {
		e, err := s.AppendEvent(Event{
			Time:    base.Add(time.Duration(i) * time.Second),
			Node:    nodes[i%3],
			Kind:    "deploy",
			Stage:   "rsync",
			Percent: float64(i) * 10,
			Bytes:   int64(i) << 20,
			Rate:    1.5,
			Message: fmt.Sprint("step ", i),
			Fields:  map[string]string{"i": strconv.Itoa(i)},
			Seq:     1000, // ignored
		})
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d got Seq %d", i, e.Seq)
		}
		appended = append(appended, e)
	}

	all, err := s.Events(0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(appended, all); diff != "" {
		t.Errorf("stored events differ from appended (-want +got):\n%s", diff)
	}

	cases := []struct {
		name  string
		since uint64
		node  string
		limit int
		want  []uint64
	}{
		{"all", 0, "", 0, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"since", 5, "", 0, []uint64{6, 7, 8, 9}},
		{"limit", 0, "", 3, []uint64{1, 2, 3}},
		{"since and limit", 2, "", 2, []uint64{3, 4}},
		{"node", 0, "n1", 0, []uint64{1, 4, 7}},
		{"node since", 1, "n2", 0, []uint64{2, 5, 8}},
		{"node since limit", 4, "n1", 1, []uint64{7}},
		{"node without events", 0, "n3", 0, []uint64{}},
		{"since last", 9, "", 0, []uint64{}},
		{"since max", ^uint64(0), "", 0, []uint64{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Events(tc.since, tc.node, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, seqs(got)); diff != "" {
				t.Errorf("Seqs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPruneEvents(t *testing.T) {
	cases := []struct {
		name string
		keep int
		want []uint64
	}{
		{"keep none", 0, []uint64{}},
		{"keep some", 3, []uint64{8, 9, 10}},
		{"keep one", 1, []uint64{10}},
		{"keep all exactly", 10, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"keep more than there are", 50, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			for range 10 {
				if _, err := s.AppendEvent(Event{Kind: "update"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.PruneEvents(tc.keep); err != nil {
				t.Fatal(err)
			}
			got, err := s.Events(0, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, seqs(got)); diff != "" {
				t.Errorf("Seqs after prune (-want +got):\n%s", diff)
			}
			// Sequence numbers are not reused.
			e, err := s.AppendEvent(Event{Kind: "update"})
			if err != nil {
				t.Fatal(err)
			}
			if e.Seq != 11 {
				t.Errorf("Seq after prune = %d, want 11", e.Seq)
			}
		})
	}
	s, _ := openTemp(t)
	if err := s.PruneEvents(-1); err == nil {
		t.Error("PruneEvents(-1) succeeded")
	}
}

// receive reads n events from ch, failing the test after timeout.
func receive(t *testing.T, ch <-chan Event, n int, timeout time.Duration, slowEvery int) []Event {
	t.Helper()
	var got []Event
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(got), n)
			}
			got = append(got, e)
			if slowEvery > 0 && len(got)%slowEvery == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		case <-deadline:
			t.Fatalf("timed out after %d of %d events", len(got), n)
		}
	}
	return got
}

// checkConsecutive fails unless events are exactly first, first+1, ….
func checkConsecutive(t *testing.T, events []Event, first uint64) {
	t.Helper()
	for i, e := range events {
		if want := first + uint64(i); e.Seq != want {
			t.Fatalf("event %d has Seq %d, want %d (gap or duplicate)", i, e.Seq, want)
		}
	}
}

func TestWatchCatchUpThenLive(t *testing.T) {
	const (
		writers   = 4
		perWriter = 250
	)
	cases := []struct {
		name      string
		prefill   int    // events stored before anything else
		since     uint64 // passed to Watch
		startAt   int64  // concurrent appends done before Watch is called
		buffer    int    // live queue capacity
		slowEvery int    // the reader pauses every slowEvery events
	}{
		{name: "from start", prefill: 100, buffer: defaultWatchBuffer},
		{name: "from middle", prefill: 100, since: 40, buffer: defaultWatchBuffer},
		{name: "watch while appends run", prefill: 100, since: 10, startAt: 300, buffer: defaultWatchBuffer},
		{name: "empty log", buffer: defaultWatchBuffer},
		{name: "tiny buffer slow reader", prefill: 600, startAt: 200, buffer: 2, slowEvery: 25},
		{name: "unbuffered live queue", prefill: 10, since: 3, buffer: 0, slowEvery: 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			s.watchBuffer = tc.buffer
			for range tc.prefill {
				if _, err := s.AppendEvent(Event{Kind: "prefill"}); err != nil {
					t.Fatal(err)
				}
			}

			var (
				done    atomic.Int64
				wg      sync.WaitGroup
				errs    = make(chan error, writers)
				reached = make(chan struct{})
				once    sync.Once
			)
			if tc.startAt == 0 {
				close(reached)
			}
			start := make(chan struct{})
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for i := range perWriter {
						_, err := s.AppendEvent(Event{Kind: "deploy", Node: fmt.Sprint("node", w), Message: strconv.Itoa(i)})
						if err != nil {
							errs <- err
							return
						}
						if done.Add(1) == tc.startAt {
							once.Do(func() { close(reached) })
						}
					}
				}()
			}

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var ch <-chan Event
			if tc.startAt == 0 {
				ch = s.Watch(ctx, tc.since)
				close(start)
			} else {
				close(start)
				<-reached
				ch = s.Watch(ctx, tc.since)
			}

			total := uint64(tc.prefill + writers*perWriter)
			got := receive(t, ch, int(total-tc.since), 60*time.Second, tc.slowEvery)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			checkConsecutive(t, got, tc.since+1)

			// Nothing further (no duplicate) arrives, and the next
			// append is delivered live.
			e, err := s.AppendEvent(Event{Kind: "after"})
			if err != nil {
				t.Fatal(err)
			}
			next := receive(t, ch, 1, 10*time.Second, 0)
			if diff := cmp.Diff(e, next[0]); diff != "" {
				t.Errorf("live event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWatchDoesNotBlockAppend(t *testing.T) {
	s, _ := openTemp(t)
	s.watchBuffer = 4
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := s.Watch(ctx, 0) // not read until all appends are done

	finished := make(chan error, 1)
	go func() {
		for range 500 {
			if _, err := s.AppendEvent(Event{Kind: "update"}); err != nil {
				finished <- err
				return
			}
		}
		finished <- nil
	}()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("AppendEvent blocked on a watcher that is not read")
	}
	got := receive(t, ch, 500, 30*time.Second, 0)
	checkConsecutive(t, got, 1)
}

// drainUntilClosed waits for ch to be closed, discarding events.
func drainUntilClosed(t *testing.T, ch <-chan Event, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed")
		}
	}
}

func TestWatchClose(t *testing.T) {
	cases := []struct {
		name string
		stop func(cancel context.CancelFunc, s *Store)
	}{
		{"context canceled", func(cancel context.CancelFunc, _ *Store) { cancel() }},
		{"store closed", func(_ context.CancelFunc, s *Store) { s.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openTemp(t)
			for range 3 {
				if _, err := s.AppendEvent(Event{Kind: "update"}); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			idle := s.Watch(ctx, 0)    // read up to date, then waiting
			blocked := s.Watch(ctx, 0) // never read: blocked delivering
			receive(t, idle, 3, 10*time.Second, 0)

			tc.stop(cancel, s)
			drainUntilClosed(t, idle, 10*time.Second)
			drainUntilClosed(t, blocked, 10*time.Second)

			s.mu.Lock()
			n := len(s.watchers)
			s.mu.Unlock()
			if n != 0 {
				t.Errorf("%d watchers still registered", n)
			}
		})
	}

	t.Run("watch after close", func(t *testing.T) {
		s, _ := openTemp(t)
		s.Close()
		drainUntilClosed(t, s.Watch(t.Context(), 0), 10*time.Second)
		if _, err := s.AppendEvent(Event{}); !errors.Is(err, ErrClosed) {
			t.Errorf("AppendEvent after Close: %v, want ErrClosed", err)
		}
	})
}

func TestOpenInUse(t *testing.T) {
	s, path := openTemp(t)

	start := time.Now()
	second, err := Open(path)
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second Open on the same file succeeded")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("error %v does not wrap ErrInUse", err)
	}
	want := fmt.Sprintf("state database %q is in use by another goldcast server", path)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if elapsed > lockTimeout+2*time.Second {
		t.Errorf("second Open took %s, lock timeout is %s", elapsed, lockTimeout)
	}

	// Once the first server is gone, the database opens again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	third.Close()
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(dir, "missing", "state.db"),
		garbage,
	} {
		if s, err := Open(path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", path)
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%q) error %q does not name the file", path, err)
		}
	}
}

// crashChildEnv, when set to a database path, turns the test binary into
// the child of TestCrashKeepsAcknowledgedEvents.
const crashChildEnv = "GOLDCAST_STATE_CRASH_CHILD_DB"

// crashChild appends events to the database at path, printing each
// acknowledged Seq, until it is killed.
func crashChild(path string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	s, err := Open(path)
	if err != nil {
		fail(err)
	}
	sess, err := s.BeginCapture("crash-image", "crash-host", time.Now(), time.Hour)
	if err != nil {
		fail(err)
	}
	fmt.Printf("capture %s\n", sess.ID)
	deadline := time.Now().Add(2 * time.Minute) // never outlive a lost parent for long
	for i := 0; time.Now().Before(deadline); i++ {
		e, err := s.AppendEvent(Event{Kind: "capture", Node: "crash-host", Bytes: int64(i), Message: "chunk"})
		if err != nil {
			fail(err)
		}
		fmt.Printf("seq %d\n", e.Seq) // stdout is unbuffered
		if i%10 == 0 {
			if err := s.TouchCapture(sess.ID, time.Now(), int64(i)); err != nil {
				fail(err)
			}
		}
	}
	os.Exit(4)
}

func TestCrashKeepsAcknowledgedEvents(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "state.db")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedEvents$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	const killAfter = 300
	var (
		acked     []uint64
		captureID string
		killed    bool
	)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "capture "):
			captureID = strings.TrimPrefix(line, "capture ")
		case strings.HasPrefix(line, "seq "):
			seq, err := strconv.ParseUint(strings.TrimPrefix(line, "seq "), 10, 64)
			if err != nil {
				t.Fatalf("child printed %q: %v", line, err)
			}
			acked = append(acked, seq)
		}
		if !killed && len(acked) == killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	// Every line the child wrote before dying has been read: those are
	// all the acknowledged events.
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d events: %v\n%s", len(acked), err, stderr.String())
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", err, stderr.String())
	}
	t.Logf("child acknowledged %d events before SIGKILL", len(acked))

	s, err := Open(path)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	stored, err := s.Events(0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	have := map[uint64]bool{}
	for _, e := range stored {
		have[e.Seq] = true
	}
	for _, seq := range acked {
		if !have[seq] {
			t.Errorf("acknowledged event %d lost", seq)
		}
	}
	// The log is intact: 1..n without holes, at least up to the last ack.
	checkConsecutive(t, stored, 1)
	if last := acked[len(acked)-1]; uint64(len(stored)) < last {
		t.Errorf("%d events stored, last acknowledged was %d", len(stored), last)
	}
	// New events continue the sequence.
	e, err := s.AppendEvent(Event{Kind: "capture"})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(stored)) + 1; e.Seq != want {
		t.Errorf("first Seq after crash = %d, want %d", e.Seq, want)
	}

	// The interrupted capture is abandoned at restart.
	abandoned, err := s.AbandonAll(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(abandoned) != 1 || abandoned[0].ID != captureID || abandoned[0].Image != "crash-image" {
		t.Errorf("AbandonAll after crash = %+v, want session %s of crash-image", abandoned, captureID)
	}
}
