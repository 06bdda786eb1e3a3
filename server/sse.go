package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// events answers GET /events: the stored events as a JSON list, or with
// ?follow=1 a live stream of server-sent events (see follow).
func (s *installService) events(w http.ResponseWriter, r *http.Request) {
	switch f := r.URL.Query().Get("follow"); f {
	case "", "0", "false":
		eventsHandler(s.state)(w, r)
	case "1", "true":
		s.follow(w, r)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("follow=%q: give follow=1 for a live stream", f))
	}
}

// follow streams events as server-sent events (text/event-stream): first
// those after ?since=SEQ (or the Last-Event-ID a reconnecting client
// sends), then every new event as it is stored, each as
//
//	id: SEQ
//	data: {JSON event}
//
// with ?node=NAME keeping one node's. A comment line every heartbeat
// keeps idle connections (and proxies) open. The stream ends when the
// client goes away or the server shuts down.
func (s *installService) follow(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since := q.Get("since")
	if since == "" {
		since = r.Header.Get("Last-Event-ID")
	}
	var from uint64
	if since != "" {
		n, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since=%q is not a sequence number", since))
			return
		}
		from = n
	}
	node := q.Get("node")
	rc := http.NewResponseController(w)
	// A stream outlives any write deadline the server sets.
	rc.SetWriteDeadline(time.Time{})

	ctx := r.Context()
	events := s.state.Watch(ctx, from)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// Open the stream at once, so the client knows it is following.
	if _, err := fmt.Fprint(w, ": goldcast events\n\n"); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.streams.Done():
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		case e, ok := <-events:
			if !ok {
				return // the state store closed
			}
			if node != "" && e.Node != node {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				s.log.Warn("encode event for a stream", "seq", e.Seq, "err", err)
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.Seq, data); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}
