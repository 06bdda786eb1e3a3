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

// Event kinds and stages the monitoring reads (the server's names).
const (
	kindInstall = "install"
	kindHealth  = "health"
	kindBoot    = "boot"
)

// ApplyEvent brings st up to date with e, an event of st's node, the way
// the server changes its own record: install reports set the state,
// stage, percent (never going back within one install), rate and ETA;
// health reports make the node healthy or unhealthy; a booted report
// starts it afresh as booted. Every event's message becomes st.Message.
// It reports whether st changed.
func ApplyEvent(st *api.NodeState, e Event) bool {
	before := *st
	if e.Message != "" {
		st.Message = e.Message
	}
	if !e.Time.IsZero() {
		st.Updated = e.Time
	}
	switch e.Kind {
	case kindInstall:
		state := e.Fields["state"]
		if state == "" {
			break // a note about the install, such as the boot flip
		}
		if state == api.StateInstalling && st.State != api.StateInstalling {
			*st = api.NodeState{Node: st.Node, Updated: st.Updated, Message: st.Message, Hostname: st.Hostname, BootID: st.BootID, Kernel: st.Kernel}
		}
		st.State, st.Stage = state, e.Stage
		st.Percent = max(st.Percent, e.Percent)
		if state == api.StateInstalled {
			st.Percent = 100
		}
		st.Rate = e.Rate
		st.ETA, _ = strconv.ParseFloat(e.Fields["eta"], 64)
		if img := e.Fields["image"]; img != "" {
			st.Image = img
			st.Version, _ = strconv.Atoi(e.Fields["version"])
		}
	case kindHealth:
		if e.Stage != api.StateHealthy && e.Stage != api.StateUnhealthy {
			break
		}
		st.State = e.Stage
		if e.Stage == api.StateHealthy {
			st.Hostname, st.BootID, st.Kernel = e.Fields["hostname"], e.Fields["boot_id"], e.Fields["kernel"]
			if img := e.Fields["image"]; img != "" {
				st.Image = img
				st.Version, _ = strconv.Atoi(e.Fields["version"])
			}
			st.Rate, st.ETA = 0, 0
		}
	case kindBoot:
		if e.Stage == api.StateBooted {
			// The server starts the node's record afresh.
			*st = api.NodeState{Node: st.Node, State: api.StateBooted, Kernel: e.Fields["kernel"], Updated: st.Updated, Message: st.Message}
		}
	}
	return *st != before
}

// WatchNodes follows the states of the named nodes (names or host
// ranges; every node the server knows when none is named): it calls fn
// with all of them at once, then again after every event that changes
// one, with that event. It returns when ctx ends (nil), or when fn
// returns an error (nil for ErrStopFollowing).
func (c *Client) WatchNodes(ctx context.Context, nodes []string, fn func(states []api.NodeState, e *Event) error) error {
	states, seq, err := c.NodeStates(ctx, nodes...)
	if err != nil {
		return err
	}
	index := map[string]int{}
	for i, st := range states {
		index[st.Node] = i
	}
	if err := fn(states, nil); err != nil {
		if errors.Is(err, ErrStopFollowing) {
			return nil
		}
		return err
	}
	filter := ""
	if len(states) == 1 && len(nodes) > 0 {
		filter = states[0].Node
	}
	return c.FollowEvents(ctx, filter, seq, func(e Event) error {
		if e.Node == "" {
			return nil
		}
		i, ok := index[e.Node]
		if !ok {
			if len(nodes) > 0 {
				return nil // not one of ours
			}
			// A node that appeared since: watch it too.
			states = append(states, api.NodeState{Node: e.Node, State: "unknown"})
			i = len(states) - 1
			index[e.Node] = i
		}
		if !ApplyEvent(&states[i], e) {
			return nil
		}
		return fn(states, &e)
	})
}
