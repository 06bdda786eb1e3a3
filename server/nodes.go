package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/overrides"
)

// nodeHandler serves each node its plan: its image with its overrides,
// through the same read endpoints an image version has. Plans are
// computed per request (cheap) and their served trees cached by plan
// digest, so the requests of one update see one tree.
type nodeHandler struct {
	store     *store.Store
	overrides *overrides.Store
	cluster   *cluster
	images    *imageHandler
	log       *slog.Logger

	mu    sync.Mutex
	trees map[string]*servedTree
	order []string
}

// NodePlan is the body of GET /nodes/{node}/plan: what deploy and update
// need to start (ImageInfo's fields), plus the layers.
type NodePlan struct {
	ImageInfo
	Node       string            `json:"node"`
	PlanDigest string            `json:"plan_digest"`
	Layers     []overrides.Layer `json:"layers"`
	Warnings   []string          `json:"warnings,omitempty"`
	// Data is the node's record as its templates see it (addresses,
	// groups, variables): what the system configurator needs.
	Data *overrides.TemplateData `json:"data"`
	// PrivatePaths are the paths private overrides provide (the
	// configurator keeps SSH host keys that come this way).
	PrivatePaths []string `json:"private_paths,omitempty"`
}

// plan computes the node's plan and its served tree.
func (h *nodeHandler) plan(w http.ResponseWriter, r *http.Request) (*overrides.Plan, *servedTree, bool) {
	node := r.PathValue("node")
	p, err := overrides.Compute(r.Context(), overrides.Input{
		Config: h.cluster.Get(), Node: node, Image: h.store.Resolve, Overrides: h.overrides,
	})
	if err != nil {
		code := http.StatusUnprocessableEntity
		if errors.Is(err, overrides.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, code, fmt.Sprintf("plan for node %q: %v", node, err))
		return nil, nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.trees[p.Digest]; ok {
		return p, st, true
	}
	st := newServedTree("node "+node, p.Manifest, p.Open)
	h.trees[p.Digest] = st
	h.order = append(h.order, p.Digest)
	if len(h.order) > 16 {
		delete(h.trees, h.order[0])
		h.order = h.order[1:]
	}
	return p, st, true
}

func (h *nodeHandler) info(w http.ResponseWriter, r *http.Request) {
	p, st, ok := h.plan(w, r)
	if !ok {
		return
	}
	v, err := h.store.Resolve(fmt.Sprintf("%s@%d", p.Image, p.Version))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	private := map[string]bool{}
	for _, name := range p.Private() {
		private[name] = true
	}
	var privatePaths []string
	if len(private) > 0 {
		for _, e := range p.Manifest.Entries {
			if private[p.Winner(e.Path)] && e.Type != manifest.TypeDir {
				privatePaths = append(privatePaths, e.Path)
			}
		}
	}
	info := v.Info
	info.ManifestDigest = p.Manifest.Digest()
	info.Totals = p.Manifest.Totals()
	info.Path = ""
	writeJSON(w, http.StatusOK, NodePlan{
		ImageInfo: ImageInfo{Info: info, TreeDigest: st.ix.RootDigest()},
		Node:      p.Node, PlanDigest: p.Digest, Layers: p.Layers, Warnings: p.Warnings, Data: p.Data,
		PrivatePaths: privatePaths,
	})
}

func (h *nodeHandler) tree(w http.ResponseWriter, r *http.Request) {
	if _, st, ok := h.plan(w, r); ok {
		serveTree(w, r, st)
	}
}

func (h *nodeHandler) entries(w http.ResponseWriter, r *http.Request) {
	if _, st, ok := h.plan(w, r); ok {
		serveEntries(w, r, st)
	}
}

func (h *nodeHandler) delta(w http.ResponseWriter, r *http.Request) {
	if _, st, ok := h.plan(w, r); ok {
		h.images.serveDelta(w, r, st)
	}
}

// stream sends the node's whole effective tree as a stream.
func (h *nodeHandler) stream(w http.ResponseWriter, r *http.Request) {
	p, _, ok := h.plan(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/zstd")
	w.Header().Set("X-Goldcast-Manifest-Digest", p.Manifest.Digest())
	cw := &countingWriter{w: w}
	err := stream.Write(r.Context(), cw, p.Manifest, stream.Meta{Manifest: p.Manifest.Bytes()}, func(e *manifest.Entry) (io.ReadCloser, error) {
		return p.Open(e)
	}, stream.WriteOptions{})
	if err != nil {
		h.log.Error("node stream failed", "node", p.Node, "remote", r.RemoteAddr, "err", err)
	}
	h.images.metrics.bytesOut.WithLabelValues("stream").Add(float64(cw.n))
}
