package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/transport/delta"
	"github.com/goldcast/goldcast/transport/treesync"
)

// imageHandler serves image versions: listings, info, manifests, streams,
// tree listings for treesync, manifest entries and rsync deltas.
type imageHandler struct {
	store   *store.Store
	log     *slog.Logger
	metrics *metrics
	indexes *indexCache
}

// servedTree is what the read endpoints serve: an image version, or a
// node's plan (image plus overrides). It is immutable once built.
type servedTree struct {
	// label names it in errors and logs (NAME@N, node NAME).
	label string
	m     *manifest.Manifest
	ix    *treesync.Index
	// open reads a regular file's content.
	open func(e *manifest.Entry) (io.ReadCloser, error)
}

// versionIndex is kept as the name of an image version's servedTree.
type versionIndex = servedTree

func newServedTree(label string, m *manifest.Manifest, open func(e *manifest.Entry) (io.ReadCloser, error)) *servedTree {
	return &servedTree{label: label, m: m, ix: treesync.NewIndex(m), open: open}
}

// indexCache keeps the indexes of recently used versions, by manifest
// digest (a version's identity), so repeated listings do not re-read the
// manifest.
type indexCache struct {
	mu      sync.Mutex
	entries map[string]*versionIndex
	order   []string
	max     int
}

func newIndexCache(max int) *indexCache {
	return &indexCache{entries: map[string]*versionIndex{}, max: max}
}

func (c *indexCache) get(v *store.Version) (*versionIndex, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if vi, ok := c.entries[v.Info.ManifestDigest]; ok {
		return vi, nil
	}
	m, _, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	tree := v.TreePath()
	vi := newServedTree(v.Ref(), m, func(e *manifest.Entry) (io.ReadCloser, error) {
		return os.Open(materialize.Path(tree, e.Path))
	})
	c.entries[v.Info.ManifestDigest] = vi
	c.order = append(c.order, v.Info.ManifestDigest)
	if len(c.order) > c.max {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	return vi, nil
}

// ImageInfo is the body of GET /images/{ref}: image.json plus the tree
// digest treesync starts from.
type ImageInfo struct {
	store.Info
	TreeDigest string `json:"tree_digest"`
}

func (h *imageHandler) resolve(w http.ResponseWriter, r *http.Request) (*store.Version, bool) {
	v, err := h.store.Resolve(r.PathValue("ref"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	return v, true
}

// resolveIndexed resolves the version and its treesync index, answering
// the request itself on failure.
func (h *imageHandler) resolveIndexed(w http.ResponseWriter, r *http.Request) (*store.Version, *versionIndex, bool) {
	v, ok := h.resolve(w, r)
	if !ok {
		return nil, nil, false
	}
	vi, err := h.indexes.get(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return nil, nil, false
	}
	return v, vi, true
}

func (h *imageHandler) list(w http.ResponseWriter, _ *http.Request) {
	imgs, err := h.store.Images()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if imgs == nil {
		imgs = []store.ImageSummary{}
	}
	writeJSON(w, http.StatusOK, imgs)
}

func (h *imageHandler) info(w http.ResponseWriter, r *http.Request) {
	v, vi, ok := h.resolveIndexed(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, ImageInfo{Info: v.Info, TreeDigest: vi.ix.RootDigest()})
}

func (h *imageHandler) versions(w http.ResponseWriter, r *http.Request) {
	vs, err := h.store.Versions(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(vs) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("image %q: not found", r.PathValue("name")))
		return
	}
	infos := make([]store.Info, len(vs))
	for i, v := range vs {
		infos[i] = v.Info
	}
	writeJSON(w, http.StatusOK, infos)
}

func (h *imageHandler) manifest(w http.ResponseWriter, r *http.Request) {
	v, ok := h.resolve(w, r)
	if !ok {
		return
	}
	_, raw, err := v.Manifest()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Goldcast-Manifest-Digest", v.Info.ManifestDigest)
	w.Write(raw)
}

// stream sends the version as a tar.zst stream (see package stream).
func (h *imageHandler) stream(w http.ResponseWriter, r *http.Request) {
	v, ok := h.resolve(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/zstd")
	w.Header().Set("X-Goldcast-Version", v.Ref())
	w.Header().Set("X-Goldcast-Manifest-Digest", v.Info.ManifestDigest)
	cw := &countingWriter{w: w}
	if _, err := h.store.Export(r.Context(), v.Ref(), cw, stream.WriteOptions{}); err != nil {
		// Headers are gone; the client sees a truncated stream, which
		// extraction refuses.
		h.log.Error("stream failed", "image", v.Ref(), "remote", r.RemoteAddr, "err", err)
	}
	h.metrics.bytesOut.WithLabelValues("stream").Add(float64(cw.n))
}

func (h *imageHandler) tree(w http.ResponseWriter, r *http.Request) {
	if _, vi, ok := h.resolveIndexed(w, r); ok {
		serveTree(w, r, vi)
	}
}

// serveTree answers treesync listings.
func serveTree(w http.ResponseWriter, r *http.Request, vi *servedTree) {
	var req api.TreeRequest
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Paths) > 100000 {
		writeError(w, http.StatusBadRequest, "too many paths in one request")
		return
	}
	writeCompressedJSON(w, r, api.TreeResponse{Root: vi.ix.RootDigest(), Listings: vi.ix.List(manifest.Strings(req.Paths))})
}

func (h *imageHandler) entries(w http.ResponseWriter, r *http.Request) {
	if _, vi, ok := h.resolveIndexed(w, r); ok {
		serveEntries(w, r, vi)
	}
}

// serveEntries answers manifest lines.
func serveEntries(w http.ResponseWriter, r *http.Request, vi *servedTree) {
	var req api.EntriesRequest
	if !readJSON(w, r, &req) {
		return
	}
	idx := vi.m.Index()
	var b strings.Builder
	for _, p := range manifest.Strings(req.Paths) {
		i, ok := idx[p]
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("%s has no entry %q", vi.label, p))
			return
		}
		if req.Subtree && vi.m.Entries[i].Type == manifest.TypeDir {
			for _, e := range vi.m.EntriesUnder(p) {
				b.WriteString(e.Line() + "\n")
			}
			continue
		}
		b.WriteString(vi.m.Entries[i].Line() + "\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	zw := compressedWriter(w, r)
	io.WriteString(zw, b.String())
	zw.Close()
}

// delta answers a frame stream of signatures (one per file the client
// holds an old copy of; an empty payload when it holds none) with a frame
// stream of deltas or whole contents.
func (h *imageHandler) delta(w http.ResponseWriter, r *http.Request) {
	if _, vi, ok := h.resolveIndexed(w, r); ok {
		h.serveDelta(w, r, vi)
	}
}

func (h *imageHandler) serveDelta(w http.ResponseWriter, r *http.Request, vi *servedTree) {
	body, err := requestBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	defer body.Close()
	idx := vi.m.Index()
	w.Header().Set("Content-Type", "application/octet-stream")
	zw := compressedWriter(w, r)
	cw := &countingWriter{w: zw}
	err = serveDeltas(r.Context(), vi, idx, api.NewFrameReader(body), api.NewFrameWriter(cw))
	zw.Close()
	h.metrics.bytesOut.WithLabelValues("delta").Add(float64(cw.n))
	if err != nil {
		h.log.Warn("delta request failed", "tree", vi.label, "remote", r.RemoteAddr, "err", err)
	}
}

// serveDeltas reads signature frames and writes, for each, the file's
// delta against it (or its whole content when the signature is empty).
func serveDeltas(ctx context.Context, vi *servedTree, idx map[string]int, in *api.FrameReader, out *api.FrameWriter) error {
	m := vi.m
	for {
		kind, p, payload, err := in.Next()
		if err == io.EOF {
			return out.Close()
		}
		if err != nil {
			return err
		}
		i, ok := idx[p]
		if !ok || kind != api.KindSignature || m.Entries[i].Type != manifest.TypeRegular {
			return fmt.Errorf("delta request for %q: not a regular file of %s", p, vi.label)
		}
		e := &m.Entries[i]
		if e.LinkTo != "" {
			e = &m.Entries[idx[e.LinkTo]]
		}
		raw, err := io.ReadAll(io.LimitReader(payload, 64<<20))
		if err != nil {
			return err
		}
		f, err := vi.open(e)
		if err != nil {
			return fmt.Errorf("open %q: %w", e.Path, err)
		}
		err = writeFileDelta(ctx, f, p, raw, out)
		f.Close()
		if err != nil {
			return err
		}
	}
}

// writeFileDelta writes one frame: the delta of f against the encoded
// signature sig, or f whole when sig is empty.
func writeFileDelta(ctx context.Context, f io.Reader, p string, sig []byte, out *api.FrameWriter) error {
	if len(sig) == 0 {
		fw, err := out.Begin(api.KindFull, p)
		if err != nil {
			return err
		}
		if _, err := io.Copy(fw, f); err != nil {
			return fmt.Errorf("send %q: %w", p, err)
		}
		return fw.Close()
	}
	s, err := delta.DecodeSignature(strings.NewReader(string(sig)))
	if err != nil {
		return fmt.Errorf("signature of %q: %w", p, err)
	}
	fw, err := out.Begin(api.KindDelta, p)
	if err != nil {
		return err
	}
	dw := delta.NewDeltaWriter(fw)
	if _, err := delta.Diff(ctx, f, s, dw.Write); err != nil {
		return fmt.Errorf("delta of %q: %w", p, err)
	}
	if err := dw.Close(); err != nil {
		return err
	}
	return fw.Close()
}

// countingWriter counts bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError writes an api.Error.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}

// requestBody returns the body, decompressed when the client sent it
// with Content-Encoding: zstd.
func requestBody(r *http.Request) (io.ReadCloser, error) {
	if r.Header.Get("Content-Encoding") != "zstd" {
		return r.Body, nil
	}
	zr, err := zstd.NewReader(r.Body, zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	return zr.IOReadCloser(), nil
}

// readJSON decodes a (possibly compressed) JSON body, answering 400 on
// failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := requestBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	defer body.Close()
	dec := json.NewDecoder(io.LimitReader(body, 512<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "decode request: "+err.Error())
		return false
	}
	return true
}

// compressedWriter compresses the response with zstd when the client
// accepts it.
func compressedWriter(w http.ResponseWriter, r *http.Request) io.WriteCloser {
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "zstd") {
		return nopCloser{w}
	}
	w.Header().Set("Content-Encoding", "zstd")
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nopCloser{w}
	}
	return zw
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func writeCompressedJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	zw := compressedWriter(w, r)
	json.NewEncoder(zw).Encode(v)
	zw.Close()
}
