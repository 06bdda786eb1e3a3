package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/goldcast/goldcast/api"
)

// Reporting limits of a ProgressReporter.
const (
	// ReportInterval is the least time between two reports of one stage:
	// reports in between are folded into the latest.
	ReportInterval = 2 * time.Second
	// maxPendingChanges bounds the stage and state changes waiting while
	// the server cannot be reached; beyond it the oldest are dropped.
	maxPendingChanges = 32
	// reportTimeout bounds one attempt to deliver a report.
	reportTimeout = 10 * time.Second
	// maxRetryPause is the longest pause between two attempts.
	maxRetryPause = 8 * time.Second
)

// ErrReporterClosed is returned by Report after Close.
var ErrReporterClosed = errors.New("progress reporter is closed")

// ProgressReporter sends an installing node's Progress reports to the
// server (POST /nodes/{node}/progress with the node's token) without
// holding up the install: Report only queues. A report whose stage or
// state differs from the one before goes out at once; reports within a
// stage go out at most every ReportInterval, the latest replacing any
// older one not sent yet. When the server cannot be reached, the reporter
// retries with growing pauses, keeping the pending stage changes (up to
// a bound) and the latest report. It needs no DNS and no files: give it
// the server's URL as the kernel command line has it.
//
// Close sends what is pending (the final installed or failed report
// among it) and stops the reporter; call it before the post action.
type ProgressReporter struct {
	url       string
	nodeToken string
	http      *http.Client
	log       *slog.Logger
	now       func() time.Time

	mu sync.Mutex
	q  reportQueue
	// closed is set by Close: Report refuses, the sender drains and stops.
	closed bool
	// lastErr is the last delivery failure; refused counts the reports
	// the server refused since the last Flush.
	lastErr error
	refused int

	wake    chan struct{} // capacity 1: something was queued
	stop    chan struct{} // closed to end the sender
	stopped chan struct{} // closed when the sender has ended
	drained chan struct{} // replaced and closed whenever the queue empties
	stopMu  sync.Once
}

// NewProgressReporter starts a reporter for node on the server at
// serverURL (http://10.0.0.1:8080), authenticating with the node's
// token. hc may be nil for a plain client; log may be nil to discard.
func NewProgressReporter(serverURL, node, nodeToken string, hc *http.Client, log *slog.Logger) *ProgressReporter {
	return newProgressReporter(serverURL, node, nodeToken, hc, log, ReportInterval)
}

// NewProgressReporter starts a reporter for node that sends through c's
// connection settings (its server URL and TLS pinning or CA), with the
// node's token.
func (c *Client) NewProgressReporter(node, nodeToken string, log *slog.Logger) *ProgressReporter {
	return NewProgressReporter(c.base, node, nodeToken, c.http, log)
}

func newProgressReporter(serverURL, node, nodeToken string, hc *http.Client, log *slog.Logger, interval time.Duration) *ProgressReporter {
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{}} // no proxy lookup, no /etc needed
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &ProgressReporter{
		url:       strings.TrimRight(serverURL, "/") + api.Prefix + "/nodes/" + node + "/progress",
		nodeToken: nodeToken,
		http:      hc,
		log:       log,
		now:       time.Now,
		q:         reportQueue{interval: interval},
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		drained:   make(chan struct{}),
	}
	close(r.drained) // nothing queued yet
	go r.run()
	return r
}

// Report queues p for the server and returns at once. ctx is checked
// only: a report is never waited for.
func (r *ProgressReporter) Report(ctx context.Context, p api.Progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrReporterClosed
	}
	if dropped, ok := r.q.add(p); ok {
		r.log.Warn("server unreachable: dropped an old progress report", "stage", dropped.Stage, "state", dropped.State)
	}
	if r.q.empty() {
		return nil
	}
	select {
	case <-r.drained:
		r.drained = make(chan struct{})
	default:
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Flush waits until every queued report has been delivered (the latest
// without waiting out the interval), or until ctx ends.
func (r *ProgressReporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	r.q.flush = true
	drained := r.drained
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	select {
	case <-drained:
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.q.flush = false
	refused := r.refused
	r.refused = 0
	if n := r.q.len(); n > 0 {
		return fmt.Errorf("%d progress reports not delivered to %s: %w", n, r.url, errors.Join(ctx.Err(), r.lastErr))
	}
	if refused > 0 {
		return fmt.Errorf("the server refused %d progress reports: %w", refused, r.lastErr)
	}
	return nil
}

// Close delivers what is queued (waiting at most until ctx ends), stops
// the reporter and returns an error naming what was not delivered.
func (r *ProgressReporter) Close(ctx context.Context) error {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	var err error
	if !already {
		err = r.Flush(ctx)
	}
	r.stopMu.Do(func() { close(r.stop) })
	<-r.stopped
	return err
}

// run delivers queued reports until stopped.
func (r *ProgressReporter) run() {
	defer close(r.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	pause := time.Duration(0) // after a failure
	for {
		r.mu.Lock()
		p, gen, ok, wait := r.q.next(r.now())
		if !ok && wait == 0 {
			// Nothing pending: tell Flush.
			select {
			case <-r.drained:
			default:
				close(r.drained)
			}
		}
		r.mu.Unlock()
		if !ok {
			var timer <-chan time.Time
			if wait > 0 {
				timer = time.After(wait)
			}
			select {
			case <-r.stop:
				return
			case <-r.wake:
			case <-timer:
			}
			continue
		}
		err := r.send(ctx, p)
		r.mu.Lock()
		switch {
		case err == nil:
			r.q.sent(gen, r.now())
			pause = 0
		case isPermanent(err):
			// The server refuses this report; retrying cannot help.
			r.log.Warn("server refused a progress report", "stage", p.Stage, "err", err)
			r.lastErr = err
			r.refused++
			r.q.sent(gen, r.now())
		default:
			r.lastErr = err
			pause = min(max(2*pause, 500*time.Millisecond), maxRetryPause)
			r.log.Debug("progress report not delivered; retrying", "stage", p.Stage, "pause", pause, "err", err)
		}
		r.mu.Unlock()
		if err != nil && !isPermanent(err) {
			select {
			case <-r.stop:
				return
			case <-time.After(pause):
			}
		}
	}
}

// send makes one attempt to deliver p.
func (r *ProgressReporter) send(ctx context.Context, p api.Progress) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	body, err := json.Marshal(p)
	if err != nil {
		return &permanentError{fmt.Errorf("encode progress report: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.NodeTokenHeader, r.nodeToken)
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("report progress: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = &StatusError{Code: resp.StatusCode, Method: http.MethodPost, Path: r.url, Message: strings.TrimSpace(string(msg))}
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
		return &permanentError{err}
	}
	return err
}

// permanentError is a failure that retrying cannot mend.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// reportQueue decides what a ProgressReporter sends and when: pending
// stage and state changes in order, then the latest report of the
// current stage once the interval since the last delivery has passed.
type reportQueue struct {
	interval time.Duration
	// changes are reports that changed the stage or state, oldest first.
	changes []api.Progress
	// latest is the newest report within the current stage, if not
	// sent; it is always newer than every change.
	latest *api.Progress
	// gen counts queued reports; it tells sent which one went out.
	gen uint64
	// latestGen and changesGen[i] are the generations of what is queued.
	latestGen  uint64
	changesGen []uint64
	// stage and state are those of the last report queued.
	stage, state string
	queuedAny    bool
	// lastSent is when the last report was delivered.
	lastSent time.Time
	// flush sends latest without waiting out the interval.
	flush bool
}

// add queues p; it returns a change it had to drop to stay bounded.
func (q *reportQueue) add(p api.Progress) (dropped api.Progress, ok bool) {
	q.gen++
	change := !q.queuedAny || p.Stage != q.stage || p.State != q.state
	q.queuedAny, q.stage, q.state = true, p.Stage, p.State
	if !change {
		q.latest, q.latestGen = &p, q.gen
		return api.Progress{}, false
	}
	// The unsent latest report of the stage before is that stage's last
	// word (the transfer's 100 %, say): it goes out before the change.
	if q.latest != nil {
		dropped, ok = q.push(*q.latest, q.latestGen)
		q.latest = nil
	}
	if d, dok := q.push(p, q.gen); dok {
		dropped, ok = d, true
	}
	return dropped, ok
}

// push appends p to the changes, dropping the oldest when they are at
// their bound.
func (q *reportQueue) push(p api.Progress, gen uint64) (dropped api.Progress, ok bool) {
	if len(q.changes) == maxPendingChanges {
		dropped, ok = q.changes[0], true
		q.changes, q.changesGen = q.changes[1:], q.changesGen[1:]
	}
	q.changes = append(q.changes, p)
	q.changesGen = append(q.changesGen, gen)
	return dropped, ok
}

func (q *reportQueue) len() int {
	n := len(q.changes)
	if q.latest != nil {
		n++
	}
	return n
}

func (q *reportQueue) empty() bool { return q.len() == 0 }

// next returns the report to send now (ok), or how long to wait before
// the latest is due (wait 0: nothing pending).
func (q *reportQueue) next(now time.Time) (p api.Progress, gen uint64, ok bool, wait time.Duration) {
	if len(q.changes) > 0 {
		return q.changes[0], q.changesGen[0], true, 0
	}
	if q.latest == nil {
		return api.Progress{}, 0, false, 0
	}
	interval := q.interval
	if interval == 0 {
		interval = ReportInterval
	}
	if due := q.lastSent.Add(interval); !q.flush && now.Before(due) {
		return api.Progress{}, 0, false, due.Sub(now)
	}
	return *q.latest, q.latestGen, true, 0
}

// sent records that the report of generation gen was delivered (or
// given up) at now.
func (q *reportQueue) sent(gen uint64, now time.Time) {
	q.lastSent = now
	if len(q.changes) > 0 && q.changesGen[0] == gen {
		q.changes, q.changesGen = q.changes[1:], q.changesGen[1:]
		return
	}
	if q.latest != nil && q.latestGen == gen {
		q.latest = nil
	}
}
