package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/api"
)

// TestFollowEvents reads a server-sent event stream that breaks after two
// events: the client reconnects after the last event it saw, skips a
// repeat, hands the events on in order and stops when told.
func TestFollowEvents(t *testing.T) {
	var (
		mu      sync.Mutex
		queries []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		n := len(queries)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1:
			fmt.Fprint(w, ": hello\n\nid: 1\ndata: {\"seq\":1,\"node\":\"n1\",\"kind\":\"install\",\"stage\":\"start\"}\n\n")
			fmt.Fprint(w, ": keep-alive\n\n")
			fmt.Fprint(w, "id: 2\ndata: {\"seq\":2,\"node\":\"n1\",\"kind\":\"install\",\n")
			fmt.Fprint(w, "data: \"stage\":\"transfer\",\"percent\":12.5,\"rate\":1000}\n\n")
			// The connection ends here: the client comes back.
		default:
			fmt.Fprint(w, "id: 2\ndata: {\"seq\":2,\"node\":\"n1\",\"kind\":\"install\",\"stage\":\"transfer\"}\n\n")
			fmt.Fprint(w, "id: 3\ndata: {\"seq\":3,\"node\":\"n1\",\"kind\":\"install\",\"stage\":\"done\"}\n\n")
			fmt.Fprint(w, "id: 4\ndata: {\"seq\":4,\"node\":\"n1\",\"kind\":\"health\",\"stage\":\"healthy\"}\n\n")
		}
	}))
	defer srv.Close()
	c, err := New(Options{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = c.FollowEvents(t.Context(), "n1", 0, func(e Event) error {
		got = append(got, fmt.Sprintf("%d %s %v %v", e.Seq, e.Stage, e.Percent, e.Rate))
		if e.Stage == "done" {
			return ErrStopFollowing
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1 start 0 0", "2 transfer 12.5 1000", "3 done 0 0"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"follow=1&node=n1", "follow=1&node=n1&since=2"}, queries); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	// The callback's own error comes back as it is.
	mu.Lock()
	queries = nil
	mu.Unlock()
	boom := errors.New("boom")
	if err := c.FollowEvents(t.Context(), "", 0, func(Event) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: got %v", err)
	}
}

// TestFollowEventsRefused: a 4xx answer ends FollowEvents with the
// server's message; a server without streams is named as such.
func TestFollowEventsRefused(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"forbidden", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":"reads from 10.1.1.1 are not allowed"}`)
		}, "reads from 10.1.1.1 are not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c, _ := New(Options{URL: srv.URL})
			err := c.FollowEvents(t.Context(), "n1", 0, func(Event) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestNodeStates(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/status" {
			http.NotFound(w, r)
			return
		}
		query = r.URL.RawQuery
		w.Header().Set(eventSeqHeader, "42")
		fmt.Fprint(w, `[{"node":"n1","state":"installing","stage":"transfer","percent":50,"updated":"2026-01-02T03:04:05Z"}]`)
	}))
	defer srv.Close()
	c, _ := New(Options{URL: srv.URL})
	states, seq, err := c.NodeStates(t.Context(), "n1", "rack[01-02]")
	if err != nil {
		t.Fatal(err)
	}
	if seq != 42 || len(states) != 1 || states[0] != (api.NodeState{Node: "n1", State: "installing", Stage: "transfer", Percent: 50, Updated: states[0].Updated}) {
		t.Errorf("NodeStates = %+v, %d", states, seq)
	}
	if query != "node=n1&node=rack%5B01-02%5D" {
		t.Errorf("query %q", query)
	}
}

// TestApplyEvent follows a node through the events of an install, as
// status --watch does, starting from a record of an earlier install.
func TestApplyEvent(t *testing.T) {
	st := api.NodeState{Node: "n1", State: api.StateHealthy, Image: "web", Version: 1, Percent: 100, Hostname: "n1.lab", Kernel: "6.1"}
	inst := func(stage, state string, pct, rate float64, fields map[string]string) Event {
		f := map[string]string{"state": state}
		for k, v := range fields {
			f[k] = v
		}
		return Event{Node: "n1", Kind: "install", Stage: stage, Percent: pct, Rate: rate, Message: stage + " " + state, Fields: f}
	}
	steps := []struct {
		e    Event
		want api.NodeState
	}{
		{inst("start", api.StateInstalling, 0, 0, map[string]string{"image": "web", "version": "2"}),
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: "start", Image: "web", Version: 2, Message: "start installing", Hostname: "n1.lab", Kernel: "6.1"}},
		{inst("transfer", api.StateInstalling, 40, 1e6, map[string]string{"eta": "60"}),
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: "transfer", Image: "web", Version: 2, Percent: 40, Rate: 1e6, ETA: 60, Message: "transfer installing", Hostname: "n1.lab", Kernel: "6.1"}},
		{inst("sysconf", api.StateInstalling, 0, 0, nil),
			api.NodeState{Node: "n1", State: api.StateInstalling, Stage: "sysconf", Image: "web", Version: 2, Percent: 40, Message: "sysconf installing", Hostname: "n1.lab", Kernel: "6.1"}},
		{inst("done", api.StateInstalled, 0, 0, nil),
			api.NodeState{Node: "n1", State: api.StateInstalled, Stage: "done", Image: "web", Version: 2, Percent: 100, Message: "done installed", Hostname: "n1.lab", Kernel: "6.1"}},
		{Event{Node: "n1", Kind: "install", Stage: "boot-local", Message: "boot local"},
			api.NodeState{Node: "n1", State: api.StateInstalled, Stage: "done", Image: "web", Version: 2, Percent: 100, Message: "boot local", Hostname: "n1.lab", Kernel: "6.1"}},
		{Event{Node: "n1", Kind: "health", Stage: "healthy", Message: "ok", Fields: map[string]string{"hostname": "n1.x", "kernel": "6.12", "boot_id": "b1", "image": "web", "version": "2"}},
			api.NodeState{Node: "n1", State: api.StateHealthy, Stage: "done", Image: "web", Version: 2, Percent: 100, Message: "ok", Hostname: "n1.x", Kernel: "6.12", BootID: "b1"}},
		{Event{Node: "n1", Kind: "boot", Stage: "booted", Message: "booted", Fields: map[string]string{"kernel": "6.1-initrd"}},
			api.NodeState{Node: "n1", State: api.StateBooted, Message: "booted", Kernel: "6.1-initrd"}},
	}
	for i, s := range steps {
		ApplyEvent(&st, s.e)
		if diff := cmp.Diff(s.want, st); diff != "" {
			t.Errorf("after event %d (%s/%s) (-want +got):\n%s", i, s.e.Kind, s.e.Stage, diff)
		}
	}
}
