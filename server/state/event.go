package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// watchBatch is how many stored events a watcher reads per transaction
// while catching up; no transaction is held while events are delivered.
const watchBatch = 256

// Event is one entry of the event log: progress or an outcome reported by
// the server or a node.
type Event struct {
	// Seq is assigned by AppendEvent; it increases with every event and
	// is never reused, even after PruneEvents.
	Seq uint64 `json:"seq"`
	// Time is when the event happened.
	Time time.Time `json:"time"`
	// Node is the node the event is about, empty for server events.
	Node string `json:"node,omitempty"`
	// Kind is what the event is about, for example capture, deploy,
	// update or an install stage.
	Kind string `json:"kind"`
	// Stage is the step within Kind.
	Stage string `json:"stage,omitempty"`
	// Percent is the progress of Stage, 0 to 100.
	Percent float64 `json:"percent,omitempty"`
	// Bytes is how many bytes Stage has moved.
	Bytes int64 `json:"bytes,omitempty"`
	// Rate is the transfer rate in bytes per second.
	Rate float64 `json:"rate,omitempty"`
	// Message is free text.
	Message string `json:"message,omitempty"`
	// Fields holds further details.
	Fields map[string]string `json:"fields,omitempty"`
}

// seqKey is the bbolt key of sequence number seq: big-endian, so that keys
// sort in sequence order.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// AppendEvent assigns e the next sequence number, stores it durably and
// then hands it to the watchers. A zero e.Time becomes the current time;
// any Seq in e is ignored. It returns the stored event.
func (s *Store) AppendEvent(e Event) (Event, error) {
	return s.appendEvent(e, nil)
}

// AppendNodeEvent appends e (as AppendEvent does) and changes the status
// of e.Node (as UpdateNodeStatus does, fn deciding) in one transaction:
// both are stored or neither is, with one disk sync. It returns the
// stored event.
func (s *Store) AppendNodeEvent(e Event, fn func(st *NodeStatus, found bool) bool) (Event, error) {
	if e.Node == "" {
		return Event{}, fmt.Errorf("append %s event with a node status: node name is empty", e.Kind)
	}
	return s.appendEventBatched(e, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketNodes))
		var st NodeStatus
		found, err := getJSON(b, []byte(e.Node), &st)
		if err != nil {
			return err
		}
		st.Node = e.Node
		if !fn(&st, found) {
			return nil
		}
		st.Node = e.Node
		if err := putJSON(b, []byte(e.Node), &st); err != nil {
			return fmt.Errorf("store status of node %q: %w", e.Node, err)
		}
		return nil
	})
}

// appendEvent stores e, and runs also (when not nil) in the same
// transaction.
func (s *Store) appendEvent(e Event, also func(tx *bolt.Tx) error) (Event, error) {
	return s.appendEventWith(s.update, e, also)
}

// appendEventBatched is appendEvent in a transaction shared with
// concurrent callers (one disk sync for all of them; see batch).
func (s *Store) appendEventBatched(e Event, also func(tx *bolt.Tx) error) (Event, error) {
	return s.appendEventWith(s.batch, e, also)
}

// appendEventWith stores e through update, which runs its function in a
// transaction committed before it returns, possibly more than once.
func (s *Store) appendEventWith(update func(func(*bolt.Tx) error) error, e Event, also func(tx *bolt.Tx) error) (Event, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var key, data []byte
	err := update(func(tx *bolt.Tx) error {
		var err error
		if key, data, err = putEvent(tx.Bucket([]byte(bucketEvents)), &e); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return Event{}, fmt.Errorf("append %s event for node %q: %w", e.Kind, e.Node, err)
	}
	stored := storedEvent(key, data, e)
	s.notify(stored)
	return stored, nil
}

// putEvent numbers e with the bucket's next sequence number and stores
// it, returning its key and encoding.
func putEvent(b *bolt.Bucket, e *Event) (key, data []byte, err error) {
	seq, err := b.NextSequence()
	if err != nil {
		return nil, nil, fmt.Errorf("next sequence number: %w", err)
	}
	e.Seq = seq
	key = seqKey(seq)
	if data, err = json.Marshal(e); err != nil {
		return nil, nil, fmt.Errorf("encode event: %w", err)
	}
	if err := b.Put(key, data); err != nil {
		return nil, nil, fmt.Errorf("store event %d: %w", seq, err)
	}
	return key, data, nil
}

// storedEvent is e as Events reads it back from key and data (times lose
// their monotonic reading and local zone), for callers and watchers.
// Decoding what json.Marshal just produced cannot fail; should it, the
// event is committed all the same and is handed out as given.
func storedEvent(key, data []byte, e Event) Event {
	var stored Event
	if decodeJSON(key, data, &stored) != nil {
		stored = e
		stored.Time = stored.Time.Round(0)
		stored.Fields = maps.Clone(e.Fields)
	}
	return stored
}

// AppendEvents stores events in one transaction (one disk sync for all of
// them), in order, and tells watchers of each. It is for floods of
// events, such as a rack's DHCP traffic.
func (s *Store) AppendEvents(events []Event) error {
	if len(events) == 0 {
		return nil
	}
	events = slices.Clone(events)
	keys := make([][]byte, len(events))
	datas := make([][]byte, len(events))
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketEvents))
		for i := range events {
			if events[i].Time.IsZero() {
				events[i].Time = time.Now()
			}
			var err error
			if keys[i], datas[i], err = putEvent(b, &events[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d events: %w", len(events), err)
	}
	for i, e := range events {
		s.notify(storedEvent(keys[i], datas[i], e))
	}
	return nil
}

// readEvents returns up to limit events (all if limit <= 0) with Seq
// greater than since, for node (all nodes if node is empty), in order.
func readEvents(tx *bolt.Tx, since uint64, node string, limit int) ([]Event, error) {
	if since == math.MaxUint64 {
		return nil, nil
	}
	var out []Event
	c := tx.Bucket([]byte(bucketEvents)).Cursor()
	for k, v := c.Seek(seqKey(since + 1)); k != nil; k, v = c.Next() {
		var e Event
		if err := decodeJSON(k, v, &e); err != nil {
			return nil, err
		}
		if node != "" && e.Node != node {
			continue
		}
		e.Seq = binary.BigEndian.Uint64(k)
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// Events returns up to limit events (all if limit <= 0) with Seq greater
// than since, in order. A non-empty node keeps only that node's events.
func (s *Store) Events(since uint64, node string, limit int) ([]Event, error) {
	var out []Event
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = readEvents(tx, since, node, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read events after %d: %w", since, err)
	}
	return out, nil
}

// LastSeq returns the sequence number of the newest event appended (0
// when none ever was). Events pruned since keep their numbers used.
func (s *Store) LastSeq() (uint64, error) {
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error {
		seq = tx.Bucket([]byte(bucketEvents)).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read the last event number: %w", err)
	}
	return seq, nil
}

// LastEvents returns the newest event of each node in nodes (of every
// node when nodes is nil), looking back over at most depth events (all
// when depth <= 0). Nodes without an event in that window are absent.
func (s *Store) LastEvents(nodes []string, depth int) (map[string]Event, error) {
	var want map[string]bool
	if nodes != nil {
		want = make(map[string]bool, len(nodes))
		for _, n := range nodes {
			want[n] = true
		}
	}
	out := map[string]Event{}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketEvents)).Cursor()
		seen := 0
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if depth > 0 && seen >= depth {
				break
			}
			seen++
			var e Event
			if err := decodeJSON(k, v, &e); err != nil {
				return err
			}
			if e.Node == "" || (want != nil && !want[e.Node]) {
				continue
			}
			if _, ok := out[e.Node]; ok {
				continue
			}
			e.Seq = binary.BigEndian.Uint64(k)
			out[e.Node] = e
			if want != nil && len(out) == len(want) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the last events of nodes: %w", err)
	}
	return out, nil
}

// PruneEvents deletes all but the newest keep events. Sequence numbers
// keep increasing afterwards.
func (s *Store) PruneEvents(keep int) error {
	if keep < 0 {
		return fmt.Errorf("prune events: keep %d is negative", keep)
	}
	err := s.update(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketEvents)).Cursor()
		// Find the oldest event to keep; keys before it go.
		var cutoff []byte
		if keep > 0 {
			k, _ := c.Last()
			for i := 1; i < keep && k != nil; i++ {
				k, _ = c.Prev()
			}
			if k == nil {
				return nil // fewer than keep events
			}
			cutoff = bytes.Clone(k)
		}
		// Deleting while stepping a bbolt cursor can skip keys, so
		// seek to the first key afresh after each delete.
		for k, _ := c.First(); k != nil && (cutoff == nil || bytes.Compare(k, cutoff) < 0); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return fmt.Errorf("delete event %d: %w", binary.BigEndian.Uint64(k), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prune events to the newest %d: %w", keep, err)
	}
	return nil
}

// watcher is the live side of one Watch call.
type watcher struct {
	// live receives events as they are appended, possibly out of order
	// when appends race. AppendEvent never blocks on it: when it is full
	// the event is left out and wake is signalled instead.
	live chan Event
	// wake (capacity 1) tells the watcher it missed live events and
	// must re-read the log from the database.
	wake chan struct{}
}

// notify hands e to every watcher without blocking.
func (s *Store) notify(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		ev := e
		ev.Fields = maps.Clone(e.Fields) // each receiver gets its own map
		select {
		case w.live <- ev:
		default:
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Watch returns a channel that delivers the stored events with Seq greater
// than since and then, live, every event appended afterwards: all in Seq
// order, with no gaps and no duplicates, even while events are appended
// concurrently with the catch-up. (Events removed by PruneEvents before
// they are delivered are skipped.) A watcher that is not read promptly
// never blocks AppendEvent: once its bounded queue is full it re-reads
// the missed events from the database. The channel is closed when ctx
// ends, when the Store is closed, or if reading the log fails.
func (s *Store) Watch(ctx context.Context, since uint64) <-chan Event {
	out := make(chan Event)
	w := &watcher{
		live: make(chan Event, s.watchBuffer),
		wake: make(chan struct{}, 1),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(out)
		return out
	}
	// Register before the first read, so every event committed after
	// that read is also queued live.
	s.watchers[w] = struct{}{}
	s.watching.Add(1)
	s.mu.Unlock()

	go s.runWatcher(ctx, w, since, out)
	return out
}

// runWatcher feeds out for one Watch call until ctx ends or the Store is
// closed.
//
// Only committed events reach live, and AppendEvent transactions commit one
// at a time, so once event n has been queued every event before it can be
// read from the database. The watcher therefore delivers a live event only
// if it is the successor of the last one delivered; on a gap (an overflow
// or two appends notifying out of order) it re-reads from the database,
// and it drops anything it has already delivered.
func (s *Store) runWatcher(ctx context.Context, w *watcher, since uint64, out chan<- Event) {
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
		close(out)
		s.watching.Done()
	}()

	last := since
	send := func(e Event) bool {
		select {
		case out <- e:
			last = e.Seq
			return true
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		}
	}
	catchUp := func() bool {
		for {
			if ctx.Err() != nil {
				return false
			}
			var batch []Event
			err := s.db.View(func(tx *bolt.Tx) error {
				var err error
				batch, err = readEvents(tx, last, "", watchBatch)
				return err
			})
			if err != nil {
				return false
			}
			for _, e := range batch {
				if !send(e) {
					return false
				}
			}
			if len(batch) < watchBatch {
				return true
			}
		}
	}

	if !catchUp() {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-w.wake:
			if !catchUp() {
				return
			}
		case e := <-w.live:
			switch {
			case e.Seq <= last:
				// Already delivered by a catch-up.
			case e.Seq == last+1:
				if !send(e) {
					return
				}
			default:
				if !catchUp() {
					return
				}
			}
		}
	}
}
