package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"

	"github.com/gokrazy/rsync/rsynccmd"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/transport/rsyncd"
)

// Transports a deploy can use.
const (
	TransportHTTP  = "http"
	TransportRsync = "rsync"
)

// DeployOptions describe laying a version into an empty root.
type DeployOptions struct {
	// Image is NAME (latest) or NAME@N; or Node names a node whose plan
	// (its image with its overrides) is laid down instead.
	Image string
	Node  string
	// Target is the root to fill; it must be empty unless Force.
	Target string
	// Transport is "http" (the verified tar.zst stream, default) or
	// "rsync" (the server's rsync daemon, then metadata from the
	// manifest).
	Transport string
	// Force deploys into a non-empty target by updating it in place
	// (deleting what the image lacks).
	Force    bool
	Log      *slog.Logger
	Progress manifest.Progress
}

// DeployResult reports a deploy.
type DeployResult struct {
	// Version is the NAME@N deployed.
	Version string
	// Entries and Bytes count what the version holds.
	Entries int
	Bytes   int64
}

// Deploy lays a version into o.Target and verifies it against the
// version's manifest.
func (c *Client) Deploy(ctx context.Context, o DeployOptions) (*DeployResult, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src := Source{Image: o.Image, Node: o.Node}
	info, err := c.Info(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", src, err)
	}
	ref := fmt.Sprintf("%s@%d", info.Image, info.Version)
	base := src.pinned(info)
	res := &DeployResult{Version: ref, Entries: info.Totals.Entries, Bytes: info.Totals.Bytes}
	if o.Node != "" {
		res.Version = fmt.Sprintf("%s (%s with overrides)", src, ref)
	}
	empty := true
	if _, err := os.Stat(o.Target); err == nil {
		if empty, err = materialize.IsEmptyDir(o.Target, true); err != nil {
			return nil, fmt.Errorf("deploy into %q: %w", o.Target, err)
		}
	}
	if !empty && !o.Force {
		return nil, fmt.Errorf("deploy into %q: %w: deploy needs an empty root (pass --force to update it in place, deleting what the image lacks)", o.Target, stream.ErrTargetNotEmpty)
	}
	update := UpdateOptions{Image: ref, Root: o.Target, NoDefaultExcludes: true, NoRecord: true, Log: log, Progress: o.Progress}
	if o.Node != "" {
		update.Image, update.Node = "", o.Node
	}
	if !empty {
		log.Info("target is not empty: updating it in place", "target", o.Target)
		if _, err := c.Update(ctx, update); err != nil {
			return nil, err
		}
		return res, nil
	}
	switch o.Transport {
	case "", TransportHTTP:
		body, err := c.Stream(ctx, base)
		if err != nil {
			return nil, err
		}
		defer body.Close()
		_, err = stream.Extract(ctx, body, o.Target, stream.ExtractOptions{
			Progress: o.Progress, Logger: log,
			Materialize: materialize.Options{Unprivileged: os.Geteuid() != 0},
		})
		if err != nil {
			return nil, fmt.Errorf("deploy %s into %q: %w", ref, o.Target, err)
		}
		return res, nil
	case TransportRsync:
		if err := c.rsyncPull(ctx, ref, o.Target, log); err != nil {
			// The protocol-27 client stops at names it cannot handle
			// (its temporary names overflow 255-byte file names); what
			// it did not bring, the manifest pass below fetches.
			log.Warn("rsync pull incomplete; fetching the rest over the API", "err", err)
		}
		// The rsync protocol drops setuid bits, hard links, xattrs and
		// nanoseconds; the update pass restores all of it from the
		// manifest and checks the result.
		if _, err := c.Update(ctx, update); err != nil {
			return nil, fmt.Errorf("apply manifest metadata after rsync: %w", err)
		}
		return res, nil
	}
	return nil, fmt.Errorf("deploy: unknown transport %q (use http or rsync)", o.Transport)
}

// rsyncPull copies a version's tree from the server's rsync daemon with
// the in-process rsync client (no rsync binary needed on the node).
func (c *Client) rsyncPull(ctx context.Context, ref, target string, log *slog.Logger) error {
	var si api.ServerInfo
	if err := c.getJSON(ctx, "/server", &si); err != nil {
		return fmt.Errorf("ask the server for its rsync daemon: %w", err)
	}
	if si.RsyncAddr == "" {
		return errors.New("the server runs no rsync daemon (start it with --rsync ADDR) ")
	}
	_, port, err := net.SplitHostPort(si.RsyncAddr)
	if err != nil {
		return fmt.Errorf("server rsync address %q: %w", si.RsyncAddr, err)
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return err
	}
	src := fmt.Sprintf("rsync://%s/%s/", net.JoinHostPort(u.Hostname(), port), ref)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create %q: %w", target, err)
	}
	var stderr bytes.Buffer
	rsyncd.RouteLibraryLogs(log)
	// Owners, modes and times are set again from the manifest afterwards;
	// the daemon refuses --numeric-ids and filter rules (see
	// transport/rsyncd), so the plainest archive pull it is.
	cmd := rsynccmd.Command("rsync", "-rlptgoD", src, target+"/")
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	log.Info("rsync pull", "from", src, "to", target)
	if _, err := cmd.Run(ctx); err != nil {
		return fmt.Errorf("rsync from %s: %w: %s", src, err, stderr.String())
	}
	return nil
}
