package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/goldcast/goldcast/api"
)

// eventSeqHeader is the header of GET /status naming the last event the
// states include (server.EventSeqHeader).
const eventSeqHeader = "X-Goldcast-Event-Seq"

// NodeStates returns the state of the named nodes (names or host ranges
// such as node[01-04]), or of every node the server knows when none is
// named, sorted by name; and the number of the last event those states
// include, to follow the events after it (FollowEvents).
func (c *Client) NodeStates(ctx context.Context, nodes ...string) ([]api.NodeState, uint64, error) {
	q := url.Values{}
	for _, n := range nodes {
		q.Add("node", n)
	}
	path := api.NodeStatesPath
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, 0, err
	}
	body, err := responseBody(resp)
	if err != nil {
		return nil, 0, err
	}
	defer body.Close()
	var states []api.NodeState
	if err := json.NewDecoder(body).Decode(&states); err != nil {
		return nil, 0, fmt.Errorf("decode node states: %w", err)
	}
	seq, _ := strconv.ParseUint(resp.Header.Get(eventSeqHeader), 10, 64)
	return states, seq, nil
}

// ErrStopFollowing, returned by FollowEvents' callback, ends FollowEvents
// without an error.
var ErrStopFollowing = errors.New("stop following events")

// FollowEvents calls fn with every event after since (of node, or of all
// nodes when node is empty), first those stored, then each new one as the
// server stores it, from the server's live stream (GET
// /events?follow=1, server-sent events). When the stream breaks, it
// reconnects after a pause and goes on after the last event seen; it
// returns when ctx ends (nil), when fn returns an error (nil for
// ErrStopFollowing) or when the server refuses the request.
func (c *Client) FollowEvents(ctx context.Context, node string, since uint64, fn func(Event) error) error {
	pause := 500 * time.Millisecond
	for {
		start := time.Now()
		last, err := c.followOnce(ctx, node, since, fn)
		since = last
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrStopFollowing):
			return nil
		case err == nil:
		default:
			var se *StatusError
			var fe *callbackError
			if errors.As(err, &se) && se.Code/100 == 4 {
				return err
			}
			if errors.As(err, &fe) {
				return fe.err
			}
		}
		if time.Since(start) > time.Minute {
			pause = 500 * time.Millisecond // it ran a good while: a fresh break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}

// callbackError carries the error of FollowEvents' callback.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// followOnce reads one stream until it ends, returning the number of the
// last event handed to fn.
func (c *Client) followOnce(ctx context.Context, node string, since uint64, fn func(Event) error) (uint64, error) {
	q := url.Values{"follow": {"1"}}
	if node != "" {
		q.Set("node", node)
	}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	resp, err := c.do(ctx, http.MethodGet, "/events?"+q.Encode(), nil, map[string]string{"Accept": "text/event-stream"})
	if err != nil {
		return since, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return since, fmt.Errorf("follow events: the server answered %q, not an event stream (an older server?)", ct)
	}
	return readEventStream(resp.Body, since, fn)
}

// readEventStream decodes server-sent events ("id:" and "data:" lines, an
// empty line ending each event, ":" lines being comments) and hands each
// event's JSON data to fn.
func readEventStream(r io.Reader, since uint64, fn func(Event) error) (uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20) // a failed install's log tail is long
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var e Event
			if err := json.Unmarshal([]byte(data.String()), &e); err != nil {
				return since, fmt.Errorf("decode streamed event: %w", err)
			}
			data.Reset()
			if e.Seq <= since {
				continue // seen before a reconnect
			}
			since = e.Seq
			if err := fn(e); err != nil {
				if errors.Is(err, ErrStopFollowing) {
					return since, err
				}
				return since, &callbackError{err}
			}
		case strings.HasPrefix(line, ":"):
			// A comment: the stream's greeting or a keep-alive.
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			if field == "data" {
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(value)
			}
			// id: repeats the event's Seq, which the data holds too.
		}
	}
	if err := sc.Err(); err != nil {
		return since, fmt.Errorf("read event stream: %w", err)
	}
	return since, nil
}
