package state

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestUpdateNodeStatus(t *testing.T) {
	s, _ := openTemp(t)
	base := baseTime()
	// A missing record: fn sees found false and the name set.
	got, err := s.UpdateNodeStatus("n1", func(st *NodeStatus, found bool) bool {
		if found || st.Node != "n1" {
			t.Errorf("new record: found %v, %+v", found, st)
		}
		st.State, st.Stage, st.Percent, st.Updated = "installing", "transfer", 10, base
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := NodeStatus{Node: "n1", State: "installing", Stage: "transfer", Percent: 10, Updated: base}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("returned (-want +got):\n%s", diff)
	}
	// fn sees what is stored; false writes nothing; the name cannot change.
	if _, err := s.UpdateNodeStatus("n1", func(st *NodeStatus, found bool) bool {
		if !found || st.Percent != 10 {
			t.Errorf("stored record: found %v, %+v", found, st)
		}
		st.Percent = 99
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateNodeStatus("n1", func(st *NodeStatus, _ bool) bool {
		st.Node, st.Percent, st.LocalBoot = "other", 20, true
		return true
	}); err != nil {
		t.Fatal(err)
	}
	stored, err := s.NodeStatus("n1")
	if err != nil {
		t.Fatal(err)
	}
	want.Percent, want.LocalBoot = 20, true
	if diff := cmp.Diff(&want, stored); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if _, err := s.NodeStatus("other"); err == nil {
		t.Error("fn renamed the record")
	}
	if _, err := s.UpdateNodeStatus("", func(*NodeStatus, bool) bool { return true }); err == nil {
		t.Error("empty node name accepted")
	}
}

func TestLastEvents(t *testing.T) {
	s, _ := openTemp(t)
	base := baseTime()
	for i, node := range []string{"a", "b", "a", "", "c", "b", "a"} {
		if _, err := s.AppendEvent(Event{Time: base.Add(time.Duration(i) * time.Second), Node: node, Kind: "k", Message: node + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if seq, err := s.LastSeq(); err != nil || seq != 7 {
		t.Errorf("LastSeq = %d, %v; want 7", seq, err)
	}
	msgs := func(m map[string]Event) map[string]string {
		out := map[string]string{}
		for n, e := range m {
			out[n] = e.Message
		}
		return out
	}
	cases := []struct {
		name  string
		nodes []string
		depth int
		want  map[string]string
	}{
		{"all nodes", nil, 0, map[string]string{"a": "a6", "b": "b5", "c": "c4"}},
		{"some nodes", []string{"b", "c", "z"}, 0, map[string]string{"b": "b5", "c": "c4"}},
		{"shallow", nil, 2, map[string]string{"a": "a6", "b": "b5"}},
		{"no nodes", []string{}, 0, map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.LastEvents(tc.nodes, tc.depth)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, msgs(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendNodeEvent(t *testing.T) {
	s, _ := openTemp(t)
	ch := s.Watch(t.Context(), 0)
	e, err := s.AppendNodeEvent(Event{Node: "n1", Kind: "install", Stage: "transfer", Percent: 30}, func(st *NodeStatus, found bool) bool {
		if found {
			t.Error("found a record of n1 before any")
		}
		st.State, st.Stage, st.Percent = "installing", "transfer", 30
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ch, 1, 10*time.Second, 0); got[0].Seq != e.Seq || got[0].Stage != "transfer" {
		t.Errorf("watcher got %+v, want %+v", got[0], e)
	}
	st, err := s.NodeStatus("n1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&NodeStatus{Node: "n1", State: "installing", Stage: "transfer", Percent: 30}, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// fn declining keeps the record; the event is stored all the same.
	if _, err := s.AppendNodeEvent(Event{Node: "n1", Kind: "install", Stage: "note"}, func(st *NodeStatus, found bool) bool {
		if !found || st.Percent != 30 {
			t.Errorf("fn saw %+v (found %v)", st, found)
		}
		st.Percent = 99
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.NodeStatus("n1"); st.Percent != 30 {
		t.Errorf("declined change stored: %+v", st)
	}
	if evs, _ := s.Events(0, "n1", 0); len(evs) != 2 {
		t.Errorf("%d events stored, want 2", len(evs))
	}
	if _, err := s.AppendNodeEvent(Event{Kind: "install"}, func(*NodeStatus, bool) bool { return true }); err == nil {
		t.Error("an event without a node accepted")
	}
}

// TestAppendNodeEventConcurrent: reports of many nodes at once (sharing
// transactions) all land, numbered without gaps, each node's record
// holding its last report, and a watcher sees every event in order.
func TestAppendNodeEventConcurrent(t *testing.T) {
	s, _ := openTemp(t)
	ch := s.Watch(t.Context(), 0)
	const nodes, reports = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint("n", n)
			for i := 1; i <= reports; i++ {
				pct := float64(i)
				_, err := s.AppendNodeEvent(Event{Node: name, Kind: "install", Percent: pct}, func(st *NodeStatus, _ bool) bool {
					st.Percent = max(st.Percent, pct)
					return true
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	got := receive(t, ch, nodes*reports, time.Minute, 0)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkConsecutive(t, got, 1)
	all, err := s.NodeStatuses()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != nodes {
		t.Fatalf("%d node records, want %d", len(all), nodes)
	}
	for _, st := range all {
		if st.Percent != reports {
			t.Errorf("%s: percent %v, want %d", st.Node, st.Percent, reports)
		}
	}
}

func TestAppendEvents(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := s.Watch(ctx, 0)
	if _, err := s.AppendEvent(Event{Kind: "capture", Stage: "started"}); err != nil {
		t.Fatal(err)
	}
	batch := []Event{
		{Node: "n1", Kind: "boot", Stage: "dhcp-discover", Time: baseTime()},
		{Node: "n1", Kind: "boot", Stage: "dhcp-offer", Time: baseTime()},
		{Node: "n2", Kind: "boot", Stage: "dhcp-ack", Time: baseTime(), Fields: map[string]string{"ip": "10.0.0.5"}},
	}
	if err := s.AppendEvents(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Events(1, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	for i, e := range got {
		stages = append(stages, e.Stage)
		if e.Seq != uint64(i+2) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
	}
	if diff := cmp.Diff([]string{"dhcp-discover", "dhcp-offer", "dhcp-ack"}, stages); diff != "" {
		t.Errorf("stored batch (-want +got):\n%s", diff)
	}
	if got[2].Fields["ip"] != "10.0.0.5" {
		t.Errorf("fields lost: %+v", got[2])
	}
	for want := uint64(1); want <= 4; want++ {
		select {
		case e := <-w:
			if e.Seq != want {
				t.Fatalf("watcher got seq %d, want %d", e.Seq, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("watcher did not get event %d", want)
		}
	}
}
