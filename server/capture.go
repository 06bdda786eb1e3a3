package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/server/state"
	"github.com/goldcast/goldcast/transport/delta"
)

// captureHandler runs capture sessions: a golden client uploads a new
// version of an image, whole (the first time, as a stream) or as a
// manifest patch plus rsync deltas against the image's latest version.
// One session per image at a time; the session is recorded in the state
// store and its uploads live in a scratch area until it publishes.
type captureHandler struct {
	store   *store.Store
	state   *state.Store
	log     *slog.Logger
	metrics *metrics
	// staleAfter is how long a session may go without a request (clients
	// send keep-alives) before another capture may take over the image.
	staleAfter time.Duration

	mu   sync.Mutex
	work map[string]*captureWork
}

// captureWork is the in-memory side of an active session.
type captureWork struct {
	mu       sync.Mutex // one request of a session at a time
	id       string
	req      api.CaptureRequest
	started  time.Time
	base     *store.Version
	baseM    *manifest.Manifest
	newM     *manifest.Manifest
	need     map[string]api.Need
	scratch  *store.Scratch
	uploaded map[string]string
	// bytesIn counts request bytes; keep-alives read it concurrently.
	bytesIn atomic.Int64
}

func (h *captureHandler) begin(w http.ResponseWriter, r *http.Request) {
	var req api.CaptureRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := store.ValidName(req.Image); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Host == "" {
		req.Host = r.RemoteAddr
	}
	base, err := h.store.Latest(req.Image)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	sess, err := h.state.BeginCapture(req.Image, req.Host, now, h.staleAfter)
	if errors.Is(err, state.ErrCaptureActive) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// A stale session this one replaced leaves its work behind: drop it.
	for id, old := range h.work {
		if old.req.Image == req.Image {
			old.discard()
			delete(h.work, id)
			h.log.Warn("capture session went silent and was replaced", "image", req.Image, "session", id, "host", old.req.Host)
			h.event(old, state.CaptureAbandoned, "went silent; replaced by a capture from "+req.Host)
		}
	}
	cw := &captureWork{id: sess.ID, req: req, started: now, base: base}
	resp := api.CaptureSession{ID: sess.ID, Image: req.Image}
	if base != nil {
		vi, err := newIndexCache(1).get(base)
		if err != nil {
			h.state.FinishCapture(sess.ID, state.CaptureFailed, 0, err.Error(), now)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		cw.baseM = vi.m
		resp.BaseVersion, resp.BaseDigest, resp.BaseTree = base.Info.Version, base.Info.ManifestDigest, vi.ix.RootDigest()
	}
	h.work[sess.ID] = cw
	h.log.Info("capture started", "image", req.Image, "host", req.Host, "session", sess.ID, "base", resp.BaseVersion)
	h.event(cw, "started", fmt.Sprintf("capture of %s started (base version %d)", req.Image, resp.BaseVersion))
	writeJSON(w, http.StatusCreated, resp)
}

// session finds the work of an active session and locks it.
func (h *captureHandler) session(w http.ResponseWriter, r *http.Request) (*captureWork, bool) {
	id := r.PathValue("id")
	h.mu.Lock()
	cw, ok := h.work[id]
	h.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("capture session %q is not active (finished, expired, or the server restarted); start the capture again", id))
		return nil, false
	}
	cw.mu.Lock()
	if err := h.state.TouchCapture(id, time.Now(), cw.bytesIn.Load()); err != nil {
		cw.mu.Unlock()
		writeError(w, http.StatusGone, fmt.Sprintf("capture session %q: %v", id, err))
		return nil, false
	}
	return cw, true
}

// touch is the client's keep-alive. It must not wait for the session's
// lock: a long upload holds it, and the session must stay alive meanwhile.
func (h *captureHandler) touch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h.mu.Lock()
	cw, ok := h.work[id]
	h.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("capture session %q is not active", id))
		return
	}
	if err := h.state.TouchCapture(id, time.Now(), cw.bytesIn.Load()); err != nil {
		writeError(w, http.StatusGone, fmt.Sprintf("capture session %q: %v", id, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// end finishes a session in the state store and forgets its work. label
// is the metrics result (published, unchanged, failed).
func (h *captureHandler) end(cw *captureWork, result string, version int, err error) {
	label := result
	if result == state.CaptureAbandoned {
		label = "failed"
	}
	h.endAs(cw, result, label, version, err)
}

func (h *captureHandler) endAs(cw *captureWork, result, label string, version int, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if ferr := h.state.FinishCapture(cw.id, result, version, msg, time.Now()); ferr != nil {
		h.log.Warn("record capture result", "session", cw.id, "err", ferr)
	}
	cw.discard()
	h.mu.Lock()
	delete(h.work, cw.id)
	h.mu.Unlock()
	h.metrics.captures.WithLabelValues(label).Inc()
	switch {
	case result == state.CapturePublished:
		h.event(cw, result, fmt.Sprintf("published %s@%d", cw.req.Image, version))
	default:
		h.event(cw, result, msg)
	}
	h.log.Info("capture finished", "image", cw.req.Image, "session", cw.id, "result", result, "version", version, "bytes_in", cw.bytesIn.Load(), "err", msg)
}

func (cw *captureWork) discard() {
	if cw.scratch != nil {
		cw.scratch.Discard()
		cw.scratch = nil
	}
}

func (h *captureHandler) abort(w http.ResponseWriter, r *http.Request) {
	cw, ok := h.session(w, r)
	if !ok {
		return
	}
	defer cw.mu.Unlock()
	h.end(cw, state.CaptureAbandoned, 0, errors.New("aborted by the client"))
	w.WriteHeader(http.StatusNoContent)
}

// countingReader counts the bytes of a request body.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (cw *captureWork) info() store.Info {
	return store.Info{
		CapturedAt: cw.started.UTC(), SourceHost: cw.req.Host, SourcePath: cw.req.Root,
		Comment: cw.req.Comment, Excludes: cw.req.Excludes, DiskLayout: []byte(cw.req.Layout),
	}
}

// stream publishes a whole version sent as a stream (the first capture).
func (h *captureHandler) stream(w http.ResponseWriter, r *http.Request) {
	cw, ok := h.session(w, r)
	if !ok {
		return
	}
	defer cw.mu.Unlock()
	body := countingReader{r: r.Body, n: &cw.bytesIn}
	info := cw.info()
	res, err := h.store.ImportStream(r.Context(), body, cw.req.Image, store.StreamImportOptions{Info: &info})
	h.metrics.bytesIn.Add(float64(cw.bytesIn.Load()))
	if err != nil {
		h.end(cw, state.CaptureFailed, 0, err)
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	h.finishPublished(w, cw, res)
}

func (h *captureHandler) finishPublished(w http.ResponseWriter, cw *captureWork, res *store.ImportResult) {
	v := res.Version
	result := state.CapturePublished
	if res.Unchanged {
		// Nothing new: the session ends without a version of its own.
		h.endAs(cw, state.CaptureAbandoned, "unchanged", 0, errors.New("unchanged: the capture equals the latest version"))
		result = "unchanged"
	} else {
		h.end(cw, result, v.Info.Version, nil)
	}
	writeJSON(w, http.StatusOK, api.Published{
		Image: v.Info.Image, Version: v.Info.Version, Digest: v.Info.ManifestDigest,
		Unchanged: res.Unchanged, Reused: res.Reused, BytesIn: cw.bytesIn.Load(),
	})
}

// manifest applies a manifest patch to the base version and answers with
// the content the server still needs.
func (h *captureHandler) manifest(w http.ResponseWriter, r *http.Request) {
	cw, ok := h.session(w, r)
	if !ok {
		return
	}
	defer cw.mu.Unlock()
	if cw.baseM == nil {
		writeError(w, http.StatusConflict, "the image has no version yet: send the capture as a stream")
		return
	}
	var p api.ManifestPatch
	body := r.Body
	r.Body = io.NopCloser(countingReader{r: body, n: &cw.bytesIn})
	if !readJSON(w, r, &p) {
		return
	}
	newM, need, err := planPatch(cw.baseM, p)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cw.newM, cw.need = newM, map[string]api.Need{}
	res := api.PatchResult{Need: []api.Need{}}
	for _, n := range need {
		cw.need[string(n.Path)] = n
		res.Need = append(res.Need, n)
	}
	writeCompressedJSON(w, r, res)
}

// planPatch builds the captured manifest from the base and a patch, checks
// its digest, and lists the files whose content the base cannot supply.
func planPatch(base *manifest.Manifest, p api.ManifestPatch) (*manifest.Manifest, []api.Need, error) {
	ups := make([]manifest.Entry, 0, len(p.Upserts))
	for i, line := range p.Upserts {
		e, err := manifest.ParseLine(line)
		if err != nil {
			return nil, nil, fmt.Errorf("manifest patch line %d: %w", i+1, err)
		}
		ups = append(ups, e)
	}
	m, err := base.Patch(ups, manifest.Strings(p.Removes))
	if err != nil {
		return nil, nil, err
	}
	if d := m.Digest(); d != p.Digest {
		return nil, nil, fmt.Errorf("the patched manifest has digest %s, the capture says %s: client and server disagree about the base version", d, p.Digest)
	}
	have := map[string]bool{}
	baseIdx := base.Index()
	for i := range base.Entries {
		if e := &base.Entries[i]; e.Type == manifest.TypeRegular {
			have[e.SHA256] = true
		}
	}
	var need []api.Need
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != manifest.TypeRegular || e.LinkTo != "" || e.Size == 0 || have[e.SHA256] {
			continue
		}
		n := api.Need{Path: manifest.WirePath(e.Path)}
		if j, ok := baseIdx[e.Path]; ok && base.Entries[j].Type == manifest.TypeRegular && base.Entries[j].Size > 0 {
			n.Basis = manifest.WirePath(e.Path)
		}
		need = append(need, n)
	}
	return m, need, nil
}

// signatures sends rsync signatures of base-version files.
func (h *captureHandler) signatures(w http.ResponseWriter, r *http.Request) {
	cw, ok := h.session(w, r)
	if !ok {
		return
	}
	defer cw.mu.Unlock()
	var req api.SignatureRequest
	if !readJSON(w, r, &req) {
		return
	}
	if cw.base == nil {
		writeError(w, http.StatusConflict, "the image has no version yet")
		return
	}
	idx := cw.baseM.Index()
	paths := manifest.Strings(req.Paths)
	for _, p := range paths {
		if i, ok := idx[p]; !ok || cw.baseM.Entries[i].Type != manifest.TypeRegular {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s has no regular file %q", cw.base.Ref(), p))
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	zw := compressedWriter(w, r)
	fw := api.NewFrameWriter(zw)
	err := func() error {
		for _, p := range paths {
			e := &cw.baseM.Entries[idx[p]]
			f, err := os.Open(materialize.Path(cw.base.TreePath(), e.Path))
			if err != nil {
				return err
			}
			sig, err := delta.Sign(r.Context(), f, e.Size, delta.BlockSizeFor(e.Size))
			f.Close()
			if err == nil {
				// 8 bytes of strong sum per block: the whole file's
				// sha256 is checked after the rebuild anyway.
				err = sig.Shorten(min(8, sig.StrongLen))
			}
			if err != nil {
				return fmt.Errorf("sign %q: %w", p, err)
			}
			pw, err := fw.Begin(api.KindSignature, p)
			if err != nil {
				return err
			}
			if err := delta.EncodeSignature(pw, sig); err != nil {
				return err
			}
			if err := pw.Close(); err != nil {
				return err
			}
		}
		return fw.Close()
	}()
	zw.Close()
	if err != nil {
		h.log.Warn("send signatures", "session", cw.id, "err", err)
	}
}

// content receives the needed files (whole or as deltas), then
// assembles and publishes the version.
func (h *captureHandler) content(w http.ResponseWriter, r *http.Request) {
	cw, ok := h.session(w, r)
	if !ok {
		return
	}
	defer cw.mu.Unlock()
	if cw.newM == nil {
		writeError(w, http.StatusConflict, "send the manifest patch first")
		return
	}
	r.Body = io.NopCloser(countingReader{r: r.Body, n: &cw.bytesIn})
	body, err := requestBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if cw.scratch == nil {
		if cw.scratch, err = h.store.NewScratch(cw.req.Image, "capture upload"); err != nil {
			h.end(cw, state.CaptureFailed, 0, err)
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		cw.uploaded = map[string]string{}
	}
	if err := h.receive(r.Context(), cw, api.NewFrameReader(body)); err != nil {
		h.metrics.bytesIn.Add(float64(cw.bytesIn.Load()))
		h.end(cw, state.CaptureFailed, 0, err)
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	h.metrics.bytesIn.Add(float64(cw.bytesIn.Load()))
	for p := range cw.need {
		if _, ok := cw.uploaded[p]; !ok {
			err := fmt.Errorf("content of %q was not sent", p)
			h.end(cw, state.CaptureFailed, 0, err)
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
	}
	res, err := h.store.Assemble(r.Context(), cw.req.Image, cw.newM, store.AssembleOptions{
		Base: cw.base, Info: cw.info(),
		Uploaded: func(e *manifest.Entry) string { return cw.uploaded[e.Path] },
	})
	if err != nil {
		h.end(cw, state.CaptureFailed, 0, err)
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	h.finishPublished(w, cw, res)
}

// receive stores each uploaded file in the scratch area, rebuilding
// deltas against the base version, and checks its digest at once.
func (h *captureHandler) receive(ctx context.Context, cw *captureWork, fr *api.FrameReader) error {
	idx := cw.newM.Index()
	for {
		kind, p, payload, err := fr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read upload: %w", err)
		}
		n, ok := cw.need[p]
		if !ok {
			return fmt.Errorf("upload of %q, which the server did not ask for", p)
		}
		e := &cw.newM.Entries[idx[p]]
		dst := filepath.Join(cw.scratch.Dir, strconv.Itoa(len(cw.uploaded)))
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		hash := sha256.New()
		out := io.MultiWriter(f, hash)
		var written int64
		switch kind {
		case api.KindFull:
			written, err = io.Copy(out, io.LimitReader(payload, e.Size+1))
		case api.KindDelta:
			if n.Basis == "" {
				err = fmt.Errorf("delta for %q, which has no basis", p)
				break
			}
			written, err = h.applyDelta(ctx, cw, string(n.Basis), payload, out, e.Size)
		default:
			err = fmt.Errorf("upload of %q: unknown frame kind %q", p, kind)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("receive %q: %w", p, err)
		}
		if sum := hex.EncodeToString(hash.Sum(nil)); written != e.Size || sum != e.SHA256 {
			return fmt.Errorf("received %q is %d bytes with sha256 %s, the manifest says %d bytes with %s", p, written, sum, e.Size, e.SHA256)
		}
		cw.uploaded[p] = dst
	}
}

func (h *captureHandler) applyDelta(ctx context.Context, cw *captureWork, basis string, payload io.Reader, out io.Writer, size int64) (int64, error) {
	be := &cw.baseM.Entries[cw.baseM.Index()[basis]]
	bf, err := os.Open(materialize.Path(cw.base.TreePath(), be.Path))
	if err != nil {
		return 0, err
	}
	defer bf.Close()
	dr := delta.NewDeltaReader(payload)
	return delta.Apply(ctx, bf, be.Size, delta.BlockSizeFor(be.Size), dr.Next, &limitWriter{w: out, left: size + 1})
}

// limitWriter fails a write past its limit, so a hostile delta cannot
// fill the disk.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errors.New("delta produces more data than the manifest says")
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// event records a capture step in the event log (best effort: a full
// disk must not turn a finished capture into a failed one).
func (h *captureHandler) event(cw *captureWork, stage, msg string) {
	_, err := h.state.AppendEvent(state.Event{
		Node: cw.req.Host, Kind: "capture", Stage: stage, Bytes: cw.bytesIn.Load(), Message: msg,
		Fields: map[string]string{"image": cw.req.Image, "session": cw.id},
	})
	if err != nil {
		h.log.Warn("record capture event", "session", cw.id, "err", err)
	}
}
