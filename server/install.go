package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/internal/progress"
	"github.com/goldcast/goldcast/server/state"
)

// Event kinds the install monitoring records.
const (
	// KindInstall marks a node's install progress reports.
	KindInstall = "install"
	// KindHealth marks first-boot health reports and health timeouts.
	KindHealth = "health"
)

// StateUnknown is the state of a declared node that never reported
// anything.
const StateUnknown = "unknown"

// EventSeqHeader, on the answer to GET /status, is the number of the last
// event the states include: follow the events after it
// (/events?follow=1&since=SEQ) to keep them current.
const EventSeqHeader = "X-Goldcast-Event-Seq"

// maxLogTail is how many log lines of a failed install are kept.
const maxLogTail = 50

// lastEventDepth bounds how far back the status listing looks for each
// node's last event.
const lastEventDepth = 20000

// installService receives what installing and installed nodes report:
// progress (stored as events and as the node's state; at the end the
// node's boot action flips to local) and first-boot health, and marks
// installed nodes that never report healthy as unhealthy. It also serves
// the node states and the live event stream.
type installService struct {
	dataDir string
	cluster *cluster
	state   *state.Store
	log     *slog.Logger
	// healthTimeout is how long an installed node has to report healthy
	// (0: no limit).
	healthTimeout time.Duration
	// now is the clock (time.Now outside tests).
	now func() time.Time
	// heartbeat is the interval of keep-alive comments on event streams.
	heartbeat time.Duration
	// streams ends the live event streams when the server shuts down
	// (the HTTP server waits for running requests, which a stream never
	// stops being on its own).
	streams    context.Context
	stopStream context.CancelFunc
}

func newInstallService(dataDir string, cl *cluster, db *state.Store, log *slog.Logger, healthTimeout time.Duration) *installService {
	ctx, cancel := context.WithCancel(context.Background())
	return &installService{
		dataDir: dataDir, cluster: cl, state: db, log: log,
		healthTimeout: healthTimeout, now: time.Now, heartbeat: 15 * time.Second,
		streams: ctx, stopStream: cancel,
	}
}

// stopStreams ends every live event stream (registered with
// http.Server.RegisterOnShutdown).
func (s *installService) stopStreams() { s.stopStream() }

// routes registers the progress, health, status and event routes.
func (s *installService) routes(route func(string, http.HandlerFunc), auth *authenticator) {
	p := api.Prefix
	route("POST "+p+api.ProgressPath, auth.node(s.dataDir, s.progress))
	route("POST "+p+api.HealthPath, auth.node(s.dataDir, s.health))
	route("GET "+p+api.NodeStatesPath, auth.read(s.nodeStates))
	route("GET "+p+"/events", auth.read(s.events))
}

// decodeReport reads a JSON request body (zstd-compressed or not) into v.
func decodeReport(r *http.Request, v any) error {
	body, err := requestBody(r)
	if err != nil {
		return err
	}
	defer body.Close()
	return json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(v)
}

// progress takes a Progress report: POST /nodes/{node}/progress.
func (s *installService) progress(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	var p api.Progress
	if err := decodeReport(r, &p); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("decode progress report of node %q: %v", node, err))
		return
	}
	switch p.State {
	case api.StateInstalling, api.StateInstalled, api.StateFailed:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("progress report of node %q: state %q is not %s, %s or %s", node, p.State, api.StateInstalling, api.StateInstalled, api.StateFailed))
		return
	}
	if p.Stage == "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("progress report of node %q names no stage", node))
		return
	}
	if math.IsNaN(p.Percent) || p.Percent < 0 || p.Percent > 100 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("progress report of node %q: percent %v is not between 0 and 100", node, p.Percent))
		return
	}
	if len(p.LogTail) > maxLogTail {
		p.LogTail = p.LogTail[len(p.LogTail)-maxLogTail:]
	}
	if err := s.recordProgress(node, p); err != nil {
		s.log.Error("record install progress", "node", node, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// progressMessage says what a report means, for people.
func progressMessage(p api.Progress) string {
	if p.Message != "" && p.State != api.StateFailed {
		return p.Message
	}
	switch p.State {
	case api.StateFailed:
		msg := "install failed in stage " + p.Stage
		if p.Error != "" {
			msg += ": " + p.Error
		}
		if p.Message != "" {
			msg += " (" + p.Message + ")"
		}
		return msg
	case api.StateInstalled:
		return fmt.Sprintf("installed %s@%d", p.Image, p.Version)
	}
	if p.Stage == api.StageTransfer && p.Total > 0 {
		msg := fmt.Sprintf("transfer %.0f%%: %s of %s", p.Percent, progress.Bytes(p.Bytes), progress.Bytes(p.Total))
		if p.Rate > 0 {
			msg += fmt.Sprintf(", %s/s", progress.Bytes(int64(p.Rate)))
		}
		if p.ETASeconds > 0 {
			msg += ", " + (time.Duration(p.ETASeconds) * time.Second).String() + " left"
		}
		return msg
	}
	return "stage " + p.Stage
}

// recordProgress stores a report as an event and as the node's state,
// and flips the node to local boot when it reports installed.
func (s *installService) recordProgress(node string, p api.Progress) error {
	fields := map[string]string{"state": p.State}
	set := func(k, v string) {
		if v != "" {
			fields[k] = v
		}
	}
	set("image", p.Image)
	if p.Version > 0 {
		set("version", strconv.Itoa(p.Version))
	}
	if p.Total > 0 {
		set("total", strconv.FormatInt(p.Total, 10))
	}
	if p.ETASeconds > 0 {
		set("eta", strconv.FormatFloat(p.ETASeconds, 'f', 0, 64))
	}
	set("error", p.Error)
	set("log_tail", strings.Join(p.LogTail, "\n"))
	set("boot_id", p.BootID)
	now := s.now()
	ev := state.Event{
		Time: now, Node: node, Kind: KindInstall, Stage: p.Stage,
		Percent: p.Percent, Bytes: p.Bytes, Rate: p.Rate, Message: progressMessage(p), Fields: fields,
	}
	// The event and the node's record change together.
	_, err := s.state.AppendNodeEvent(ev, func(st *state.NodeStatus, _ bool) bool {
		if p.State == api.StateInstalling && st.State != api.StateInstalling {
			// A new install: start from a clean record.
			*st = state.NodeStatus{Node: node, Kernel: st.Kernel, BootID: st.BootID, Hostname: st.Hostname}
		}
		st.State, st.Stage, st.Updated, st.Message = p.State, p.Stage, now.UTC(), ev.Message
		if p.Image != "" {
			st.Image, st.Version = p.Image, p.Version
		}
		// The percent of a stage before the transfer is 0; after it,
		// the transfer's 100 stays.
		st.Percent = max(st.Percent, p.Percent)
		if p.State == api.StateInstalled {
			st.Percent = 100
		}
		st.Rate, st.ETA = p.Rate, p.ETASeconds
		return true
	})
	if err != nil {
		return err
	}
	if p.State == api.StateInstalled {
		s.bootLocal(node, p)
	}
	return nil
}

// bootLocal sets the node's boot action to local in goldcast.yaml after a
// successful install, as SystemImager's si_netbootmond did. The editor
// changes a whole entry only, so a node declared by a host range entry
// (node[001-004]) cannot be changed alone: the node's state records the
// local boot instead (LocalBoot) and a warning event says so. Failures are
// events too: the install itself succeeded.
func (s *installService) bootLocal(node string, p api.Progress) {
	warn := func(msg string, err error) {
		s.log.Warn(msg, "node", node, "err", err)
		fields := map[string]string{}
		if err != nil {
			fields["error"] = err.Error()
		}
		if _, aerr := s.state.AppendEvent(state.Event{Time: s.now(), Node: node, Kind: KindInstall, Stage: "boot-local", Message: msg, Fields: fields}); aerr != nil {
			s.log.Warn("record event", "node", node, "err", aerr)
		}
		if _, uerr := s.state.UpdateNodeStatus(node, func(st *state.NodeStatus, _ bool) bool {
			st.LocalBoot = true
			return true
		}); uerr != nil {
			s.log.Warn("record local boot in the node's state", "node", node, "err", uerr)
		}
	}
	entry, declared := declaringEntry(s.cluster.Get(), node)
	switch {
	case !declared:
		warn(fmt.Sprintf("node %s is not declared in goldcast.yaml: its boot action was not changed; it should boot from its disk now", node), nil)
		return
	case entry != node:
		warn(fmt.Sprintf("node %s is declared by the entry %q of goldcast.yaml, which declares several nodes: its boot action stays as the entry says; the server recorded that %s boots from its disk (split the entry, or set the whole entry to boot local once all its nodes are installed)", node, entry, node), nil)
		return
	}
	var was config.Boot
	changed := false
	edit := func(ed *config.Editor) (bool, error) {
		changed = false
		err := ed.SetNode(node, func(n *config.Node) error {
			was = n.Boot
			if n.Boot == config.BootLocal {
				return nil
			}
			n.Boot, changed = config.BootLocal, true
			return nil
		})
		return changed, err
	}
	err := s.cluster.Edit(edit)
	var conflict *config.ConflictError
	if errors.As(err, &conflict) {
		// Someone else wrote the file meanwhile: redo the edit on theirs.
		err = s.cluster.Edit(edit)
	}
	if err != nil {
		warn(fmt.Sprintf("node %s installed, but its boot action could not be set to local in goldcast.yaml; the server recorded that it boots from its disk", node), err)
		return
	}
	if changed {
		msg := fmt.Sprintf("boot action of %s set to local in goldcast.yaml (was %s) after installing %s@%d", node, orDefault(string(was), "unset"), p.Image, p.Version)
		if _, err := s.state.AppendEvent(state.Event{Time: s.now(), Node: node, Kind: KindInstall, Stage: "boot-local", Message: msg, Fields: map[string]string{"was": string(was)}}); err != nil {
			s.log.Warn("record event", "node", node, "err", err)
		}
		s.log.Info("node installed; boot action set to local", "node", node, "image", p.Image, "version", p.Version)
	}
}

// declaringEntry returns the name of the goldcast.yaml entry declaring
// node (the node's own name, or a host range holding it).
func declaringEntry(c *config.Config, node string) (string, bool) {
	for _, n := range c.Nodes {
		if n.Name == node {
			return node, true
		}
		hosts, err := config.ExpandHosts(n.Name)
		if err == nil && slices.Contains(hosts, node) {
			return n.Name, true
		}
	}
	return "", false
}

// LocalBootRecorded reports whether node finished an install whose flip to
// local boot could not be written to goldcast.yaml (see
// state.NodeStatus.LocalBoot): the boot script should send it to its disk.
func LocalBootRecorded(db *state.Store, node string) bool {
	st, err := db.NodeStatus(node)
	return err == nil && st.LocalBoot
}

// health takes the HealthReport of an installed node's first boot: POST
// /nodes/{node}/health.
func (s *installService) health(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	var h api.HealthReport
	if err := decodeReport(r, &h); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("decode health report of node %q: %v", node, err))
		return
	}
	msg := fmt.Sprintf("first boot of %s: healthy, kernel %s", orDefault(h.Hostname, node), orDefault(h.Kernel, "unknown"))
	if h.Image != "" {
		msg += fmt.Sprintf(", image %s@%d", h.Image, h.Version)
	}
	fields := map[string]string{"hostname": h.Hostname, "boot_id": h.BootID, "kernel": h.Kernel, "image": h.Image}
	if h.Version > 0 {
		fields["version"] = strconv.Itoa(h.Version)
	}
	for k, v := range fields {
		if v == "" {
			delete(fields, k)
		}
	}
	now := s.now()
	ev := state.Event{Time: now, Node: node, Kind: KindHealth, Stage: api.StateHealthy, Message: msg, Fields: fields}
	_, err := s.state.AppendNodeEvent(ev, func(st *state.NodeStatus, _ bool) bool {
		st.State, st.Updated, st.Message = api.StateHealthy, now.UTC(), msg
		st.Hostname, st.BootID, st.Kernel = h.Hostname, h.BootID, h.Kernel
		if h.Image != "" {
			st.Image, st.Version = h.Image, h.Version
		}
		st.Rate, st.ETA = 0, 0
		return true
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// watchHealth marks nodes unhealthy that stay installed (no health
// report) longer than the health timeout, until ctx ends. It looks at
// the stored states, so installs from before a restart count too.
func (s *installService) watchHealth(ctx context.Context) error {
	if s.healthTimeout <= 0 {
		return nil
	}
	every := min(max(s.healthTimeout/10, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.checkHealth(); err != nil {
				s.log.Warn("check installed nodes' health reports", "err", err)
			}
		}
	}
}

// checkHealth marks every node installed for longer than the health
// timeout unhealthy, with an event.
func (s *installService) checkHealth() error {
	all, err := s.state.NodeStatuses()
	if err != nil {
		return err
	}
	now := s.now()
	for _, st := range all {
		if st.State != api.StateInstalled || now.Sub(st.Updated) < s.healthTimeout {
			continue
		}
		var marked bool
		installed := st.Updated
		_, err := s.state.UpdateNodeStatus(st.Node, func(cur *state.NodeStatus, _ bool) bool {
			// Re-check inside the transaction: a report may just have
			// arrived.
			if cur.State != api.StateInstalled || !cur.Updated.Equal(installed) {
				return false
			}
			cur.State, cur.Updated = api.StateUnhealthy, now.UTC()
			cur.Message = fmt.Sprintf("no health report within %s of the install", s.healthTimeout)
			marked = true
			return true
		})
		if err != nil {
			return err
		}
		if !marked {
			continue
		}
		msg := fmt.Sprintf("no health report from %s's first boot within %s of the install (installed %s): check its console", st.Node, s.healthTimeout, installed.Local().Format(time.DateTime))
		if _, err := s.state.AppendEvent(state.Event{Time: now, Node: st.Node, Kind: KindHealth, Stage: api.StateUnhealthy, Message: msg,
			Fields: map[string]string{"timeout": s.healthTimeout.String(), "installed": installed.Format(time.RFC3339)}}); err != nil {
			return err
		}
		s.log.Warn("installed node did not report healthy", "node", st.Node, "timeout", s.healthTimeout)
	}
	return nil
}

// nodeStates answers GET /status: every declared node and every node with
// a status record, or those ?node= names (each a name or a host range).
func (s *installService) nodeStates(w http.ResponseWriter, r *http.Request) {
	var filter []string
	for _, expr := range r.URL.Query()["node"] {
		hosts, err := config.ExpandHosts(expr)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("node=%q: %v", expr, err))
			return
		}
		filter = append(filter, hosts...)
	}
	// The event number first: a client following the events after it
	// misses nothing the states do not already hold.
	seq, err := s.state.LastSeq()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	states, err := s.states(filter)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set(EventSeqHeader, strconv.FormatUint(seq, 10))
	writeJSON(w, http.StatusOK, states)
}

// states lists the NodeState of the named nodes (of every known node when
// names is nil), sorted by name.
func (s *installService) states(names []string) ([]api.NodeState, error) {
	all, err := s.state.NodeStatuses()
	if err != nil {
		return nil, err
	}
	byName := map[string]state.NodeStatus{}
	for _, st := range all {
		byName[st.Node] = st
	}
	var nodes []string
	if names != nil {
		nodes = slices.Clone(names)
	} else {
		for _, n := range s.cluster.Get().ExpandedNodes() {
			nodes = append(nodes, n.Name)
		}
		for _, st := range all {
			nodes = append(nodes, st.Node)
		}
	}
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	last, err := s.state.LastEvents(nodes, lastEventDepth)
	if err != nil {
		return nil, err
	}
	out := make([]api.NodeState, 0, len(nodes))
	for _, n := range nodes {
		ns := api.NodeState{Node: n, State: StateUnknown}
		if st, ok := byName[n]; ok {
			ns = api.NodeState{
				Node: n, State: st.State, Stage: st.Stage, Image: st.Image, Version: st.Version,
				Percent: st.Percent, Rate: st.Rate, ETA: st.ETA, Updated: st.Updated, Message: st.Message,
				Hostname: st.Hostname, BootID: st.BootID, Kernel: st.Kernel,
			}
		}
		if e, ok := last[n]; ok {
			ns.Message = e.Message
			if ns.Updated.IsZero() {
				ns.Updated = e.Time
			}
		}
		out = append(out, ns)
	}
	return out, nil
}
