package client

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
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/transport/delta"
	"github.com/goldcast/goldcast/transport/treesync"
)

// CaptureOptions describe one capture.
type CaptureOptions struct {
	// Image is the image to publish a new version of.
	Image string
	// Root is the tree to capture ("/" for the running system).
	Root string
	// Excludes and ExcludeFrom add to DefaultCaptureExcludes.
	Excludes    []string
	ExcludeFrom string
	// Comment is recorded in image.json.
	Comment string
	// DryRun lists what would change and sends nothing.
	DryRun bool
	// Host names the golden client (default: the host name).
	Host string
	// SkipLayout does not record the disk layout (a tree that is not a
	// running system's root).
	SkipLayout bool
	// Log receives progress notes; Progress counts hashed and sent files.
	Log      *slog.Logger
	Progress manifest.Progress
	// Out receives the dry-run listing.
	Out io.Writer
}

// CaptureResult reports a capture.
type CaptureResult struct {
	// Published is the server's answer (nil for a dry run).
	Published *api.Published
	// Full is set when the capture travelled as a whole stream.
	Full bool
	// Changes lists what differs from the base version.
	Changes []manifest.Change
	// New is set by a dry run when the image does not exist yet.
	New bool
	// Files and Bytes count what was scanned.
	Files int
	Bytes int64
	// LiteralBytes is file content sent as is; MatchedBytes was
	// rebuilt on the server from the base version.
	LiteralBytes, MatchedBytes int64
}

// Capture reads the tree at o.Root and publishes it as the next version
// of o.Image: the first version as a whole stream, later ones as a
// manifest patch and rsync deltas against the latest version.
func (c *Client) Capture(ctx context.Context, o CaptureOptions) (*CaptureResult, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	ex, err := excluder(DefaultCaptureExcludes(), o.Excludes, o.ExcludeFrom, false)
	if err != nil {
		return nil, err
	}
	log.Debug("scanning", "root", o.Root)
	local, _, err := scanRoot(ctx, o.Root, ex, log, o.Progress)
	if err != nil {
		return nil, fmt.Errorf("capture %q: %w", o.Root, err)
	}
	t := local.Totals()
	res := &CaptureResult{Files: t.Files, Bytes: t.Bytes}
	var layout json.RawMessage
	if !o.SkipLayout {
		if l, err := disklayout.Capture(ctx, o.Root); err != nil {
			log.Warn("disk layout not recorded", "err", err)
		} else if layout, err = json.Marshal(l); err != nil {
			return nil, err
		}
	}
	if o.DryRun {
		return c.captureDryRun(ctx, o, local, res)
	}
	var sess api.CaptureSession
	err = c.postJSON(ctx, "/captures", api.CaptureRequest{
		Image: o.Image, Host: o.Host, Root: o.Root, Comment: o.Comment, Excludes: ex.Patterns(), Layout: layout,
	}, &sess)
	if err != nil {
		return nil, fmt.Errorf("start capture of %q: %w", o.Image, err)
	}
	ctx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	go c.keepAlive(ctx, sess.ID, log)
	done := false
	defer func() {
		if !done {
			// Tell the server at once, so the next capture need not wait
			// for this session to expire.
			actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if resp, err := c.do(actx, http.MethodDelete, "/captures/"+sess.ID, nil, nil); err == nil {
				resp.Body.Close()
			}
		}
	}()
	if sess.BaseVersion == 0 {
		res.Full = true
		pub, err := c.captureStream(ctx, o.Root, sess.ID, local)
		if err != nil {
			return nil, err
		}
		done = true
		res.Published = pub
		return res, nil
	}
	pub, err := c.captureDelta(ctx, o, sess, local, res)
	if err != nil {
		return nil, err
	}
	done = true
	res.Published = pub
	return res, nil
}

// keepAlive touches the session while the capture works locally, so the
// server knows the client is alive.
func (c *Client) keepAlive(ctx context.Context, id string, log *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			resp, err := c.do(ctx, http.MethodPost, "/captures/"+id+"/touch", nil, nil)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("capture keep-alive failed", "err", err)
				}
				continue
			}
			resp.Body.Close()
		}
	}
}

// captureStream sends the whole tree as a stream (the image's first
// version).
func (c *Client) captureStream(ctx context.Context, root, id string, m *manifest.Manifest) (*api.Published, error) {
	pr, pw := io.Pipe()
	go func() {
		err := stream.Write(ctx, pw, m, stream.Meta{Manifest: m.Bytes()}, func(e *manifest.Entry) (io.ReadCloser, error) {
			return os.Open(materialize.Path(root, e.Path))
		}, stream.WriteOptions{Level: zstd.SpeedFastest})
		pw.CloseWithError(err)
	}()
	resp, err := c.do(ctx, http.MethodPut, "/captures/"+id+"/stream", pr, map[string]string{"Content-Type": "application/zstd"})
	pr.CloseWithError(errors.New("upload ended"))
	if err != nil {
		return nil, fmt.Errorf("upload capture: %w", err)
	}
	defer resp.Body.Close()
	var pub api.Published
	if err := json.NewDecoder(resp.Body).Decode(&pub); err != nil {
		return nil, fmt.Errorf("read capture result: %w", err)
	}
	return &pub, nil
}

// lister asks the server for directory listings of the tree at base
// (an API path such as /images/NAME@N).
func (c *Client) lister(base string) treesync.Lister {
	return func(ctx context.Context, paths []string) ([]treesync.Listing, error) {
		var tr api.TreeResponse
		if err := c.postJSON(ctx, base+"/tree", api.TreeRequest{Paths: manifest.WirePaths(paths)}, &tr); err != nil {
			return nil, err
		}
		return tr.Listings, nil
	}
}

// entries fetches manifest entries of the tree at base.
func (c *Client) entries(ctx context.Context, base string, paths []string, subtree bool) ([]manifest.Entry, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	var buf strings.Builder
	body, err := c.postStream(ctx, http.MethodPost, base+"/entries", func(w io.Writer) error {
		return json.NewEncoder(w).Encode(api.EntriesRequest{Paths: manifest.WirePaths(paths), Subtree: subtree})
	})
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if _, err := io.Copy(&buf, io.LimitReader(body, manifest.MaxSize)); err != nil {
		return nil, err
	}
	var out []manifest.Entry
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		e, err := manifest.ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("entry from the server: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// patchFor turns a treesync result into the manifest patch that makes
// the base version's manifest equal local.
func patchFor(local *manifest.Manifest, diff *treesync.Result) api.ManifestPatch {
	p := api.ManifestPatch{Digest: local.Digest(), Removes: manifest.WirePaths(diff.RemoteOnly), Upserts: []string{}}
	idx := local.Index()
	for _, path := range diff.Changed {
		p.Upserts = append(p.Upserts, local.Entries[idx[path]].Line())
	}
	for _, path := range diff.LocalOnly {
		for _, e := range local.EntriesUnder(path) {
			p.Upserts = append(p.Upserts, e.Line())
		}
	}
	return p
}

func (c *Client) captureDelta(ctx context.Context, o CaptureOptions, sess api.CaptureSession, local *manifest.Manifest, res *CaptureResult) (*api.Published, error) {
	ref := fmt.Sprintf("%s@%d", o.Image, sess.BaseVersion)
	diff, err := treesync.Compare(ctx, local, sess.BaseTree, c.lister("/images/"+ref), nil)
	if err != nil {
		return nil, fmt.Errorf("compare with %s: %w", ref, err)
	}
	var pr api.PatchResult
	if err := c.postJSON(ctx, "/captures/"+sess.ID+"/manifest", patchFor(local, diff), &pr); err != nil {
		return nil, fmt.Errorf("send manifest changes: %w", err)
	}
	var bases []manifest.WirePath
	for _, n := range pr.Need {
		if n.Basis != "" {
			bases = append(bases, n.Basis)
		}
	}
	sigs := map[string]*delta.Signature{}
	if len(bases) > 0 {
		body, err := c.postStream(ctx, http.MethodPost, "/captures/"+sess.ID+"/signatures", func(w io.Writer) error {
			return json.NewEncoder(w).Encode(api.SignatureRequest{Paths: bases})
		})
		if err != nil {
			return nil, fmt.Errorf("fetch signatures: %w", err)
		}
		fr := api.NewFrameReader(body)
		for {
			_, p, payload, err := fr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				body.Close()
				return nil, fmt.Errorf("read signatures: %w", err)
			}
			if sigs[p], err = delta.DecodeSignature(payload); err != nil {
				body.Close()
				return nil, fmt.Errorf("signature of %q: %w", p, err)
			}
		}
		body.Close()
	}
	body, err := c.postStream(ctx, http.MethodPost, "/captures/"+sess.ID+"/content", func(w io.Writer) error {
		fw := api.NewFrameWriter(w)
		for _, n := range pr.Need {
			lit, matched, err := sendFile(ctx, fw, o.Root, string(n.Path), sigs[string(n.Basis)])
			if err != nil {
				return err
			}
			res.LiteralBytes += lit
			res.MatchedBytes += matched
			if o.Progress != nil {
				o.Progress(1, lit)
			}
		}
		return fw.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("send content: %w", err)
	}
	defer body.Close()
	var pub api.Published
	if err := json.NewDecoder(body).Decode(&pub); err != nil {
		return nil, fmt.Errorf("read capture result: %w", err)
	}
	return &pub, nil
}

// sendFile writes one needed file as a delta against sig, or whole.
func sendFile(ctx context.Context, fw *api.FrameWriter, root, path string, sig *delta.Signature) (literal, matched int64, err error) {
	if !manifest.ValidPath(path) {
		return 0, 0, fmt.Errorf("server asked for %q: %w", path, manifest.ErrUnsafePath)
	}
	f, err := os.Open(materialize.Path(root, path))
	if err != nil {
		return 0, 0, fmt.Errorf("read %q: %w", path, err)
	}
	defer f.Close()
	if sig == nil {
		w, err := fw.Begin(api.KindFull, path)
		if err != nil {
			return 0, 0, err
		}
		k, err := io.Copy(w, f)
		if err != nil {
			return k, 0, fmt.Errorf("send %q: %w", path, err)
		}
		return k, 0, w.Close()
	}
	w, err := fw.Begin(api.KindDelta, path)
	if err != nil {
		return 0, 0, err
	}
	dw := delta.NewDeltaWriter(w)
	st, err := delta.Diff(ctx, f, sig, dw.Write)
	if err != nil {
		return 0, 0, fmt.Errorf("delta of %q: %w", path, err)
	}
	if err := dw.Close(); err != nil {
		return 0, 0, err
	}
	return st.LiteralBytes, st.MatchedBytes, w.Close()
}

// captureDryRun lists what a capture would change without starting one.
func (c *Client) captureDryRun(ctx context.Context, o CaptureOptions, local *manifest.Manifest, res *CaptureResult) (*CaptureResult, error) {
	info, err := c.Info(ctx, Source{Image: o.Image})
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		fmt.Fprintf(o.Out, "%s is a new image: all %d entries (%d files) would be sent\n", o.Image, len(local.Entries), res.Files)
		res.New = true
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("/images/%s@%d", o.Image, info.Version)
	diff, err := treesync.Compare(ctx, local, info.TreeDigest, c.lister(base), nil)
	if err != nil {
		return nil, err
	}
	res.Changes, err = c.itemize(ctx, base, local, diff)
	if err != nil {
		return nil, err
	}
	for _, ch := range res.Changes {
		fmt.Fprintln(o.Out, ch.Itemize())
	}
	return res, nil
}

// itemize turns a treesync result into manifest changes from the remote
// version (old) to local (new), fetching the remote entries involved.
func (c *Client) itemize(ctx context.Context, base string, local *manifest.Manifest, diff *treesync.Result) ([]manifest.Change, error) {
	changed, err := c.entries(ctx, base, diff.Changed, false)
	if err != nil {
		return nil, err
	}
	removed, err := c.entries(ctx, base, diff.RemoteOnly, true)
	if err != nil {
		return nil, err
	}
	old := &manifest.Manifest{Entries: append(changed, removed...)}
	old.Sort()
	cur := &manifest.Manifest{}
	idx := local.Index()
	for _, p := range diff.Changed {
		cur.Entries = append(cur.Entries, local.Entries[idx[p]])
	}
	for _, p := range diff.LocalOnly {
		cur.Entries = append(cur.Entries, local.EntriesUnder(p)...)
	}
	cur.Sort()
	return manifest.Diff(old, cur, manifest.DiffOptions{}), nil
}
