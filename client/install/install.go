// Package install is `goldcast install`: it turns a machine into a node.
// It fetches the node's install plan from the server, runs the pre-install
// scripts, partitions the chosen disk like the golden client's (scaled to
// the disk), makes the filesystems with the captured labels and UUIDs,
// mounts them under a target directory, lays down the node's tree (its
// image with its overrides) by the node's transport, makes the tree the
// node's (fstab, host name, network, machine-id, SSH keys, bootloader),
// installs a one-shot first-boot unit that reports the installed system
// healthy, runs the post-install scripts chrooted into the target, and
// reports every step to the server. Finish then carries out the post
// action (reboot, poweroff, shell or kexec).
//
// It runs as PID 1 in the goldcast initramfs, or by hand from a rescue
// shell with --server, --node and --token.
package install

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/goldcast/goldcast/client/disks"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/transport/multicast"
	"github.com/goldcast/goldcast/transport/torrent"
)

// DefaultTarget is where the node's filesystems are mounted during the
// install.
const DefaultTarget = "/target"

// transportMulticast is the node transport that receives the image in a
// multicast session.
const transportMulticast = "multicast"

// transportTorrent is the node transport that fetches the image from a
// BitTorrent swarm of the server and the other installing nodes.
const transportTorrent = "torrent"

// progressEvery is the longest time between two progress reports during
// the transfer.
const progressEvery = 2 * time.Second

// Reporter receives the install's progress. client.ProgressReporter is
// one; it decides how often to send.
type Reporter interface {
	Report(ctx context.Context, p api.Progress) error
}

// Config says which node to install and how to reach the server.
type Config struct {
	// Server is the goldcast server's URL; Node the node's name; Token
	// its node token (from the kernel command line or --token).
	Server, Node, Token string
	// TLSFingerprint pins a self-signed server certificate.
	TLSFingerprint string
	// Target is where the filesystems are mounted (DefaultTarget when
	// empty).
	Target string
	// Transport overrides the plan's transport (http or rsync).
	Transport string
	// Reporter receives progress reports; nil sends none.
	Reporter Reporter
	// Log receives the installer's log; nil discards it. The last 50
	// lines go with a failure report either way.
	Log *slog.Logger
	// Self is the goldcast binary the installed system's first-boot unit
	// runs; empty means this executable.
	Self string
	// BootID is this boot's kernel boot ID, sent with every report.
	BootID string
	// Interface is the network interface the machine booted from: the
	// multicast transport listens on it.
	Interface string
}

// Result is a finished install, ready for Finish.
type Result struct {
	// Plan is the install plan the server gave.
	Plan *api.InstallPlan
	// Disk is the disk installed on.
	Disk disks.Disk
	// Target is where its filesystems are mounted.
	Target string
	// RootUUID is the installed root filesystem's UUID.
	RootUUID string
	// unmount unmounts the target.
	unmount func(context.Context) error
}

// Unmount unmounts the installed filesystems (after Finish needs them no
// more). It may be called more than once.
func (r *Result) Unmount(ctx context.Context) error {
	if r == nil || r.unmount == nil {
		return nil
	}
	unix.Sync()
	return r.unmount(ctx)
}

// installer is one run.
type installer struct {
	cfg    Config
	c      *client.Client
	log    *slog.Logger
	tail   *tailHandler
	plan   *api.InstallPlan
	stage  string
	target string
}

// Run installs the node cfg names and reports the outcome to the server:
// installed with the image version, or failed with the error and the last
// log lines. On failure the disk is left as it is for the admin to look
// at, and the target is unmounted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	tail := newTailHandler(50, cfg.Log)
	in := &installer{cfg: cfg, log: slog.New(tail), tail: tail, target: cfg.Target}
	if in.target == "" {
		in.target = DefaultTarget
	}
	res, err := in.run(ctx)
	if err != nil {
		in.log.Error("install failed", "stage", in.stage, "err", err)
		p := api.Progress{Stage: api.StageFailed, State: api.StateFailed, Error: fmt.Sprintf("%s: %v", in.stage, err),
			Message: "install failed during " + in.stage, LogTail: tail.lines()}
		if in.plan != nil {
			p.Image, p.Version = in.plan.Image, in.plan.Version
		}
		in.report(ctx, p)
		if res != nil {
			if uerr := res.Unmount(context.WithoutCancel(ctx)); uerr != nil {
				in.log.Warn("unmount after the failure", "err", uerr)
			}
		}
		return nil, err
	}
	return res, nil
}

// report sends p (stamped with the boot ID) when there is a reporter.
func (in *installer) report(ctx context.Context, p api.Progress) {
	if p.BootID == "" {
		p.BootID = in.cfg.BootID
	}
	if p.State == "" {
		p.State = api.StateInstalling
	}
	if in.plan != nil && p.Image == "" {
		p.Image, p.Version = in.plan.Image, in.plan.Version
	}
	if in.cfg.Reporter != nil {
		if err := in.cfg.Reporter.Report(ctx, p); err != nil {
			in.log.Debug("progress report not sent", "err", err)
		}
	}
}

// enter starts a stage: logged and reported.
func (in *installer) enter(ctx context.Context, stage, msg string) {
	in.stage = stage
	in.log.Info(msg, "stage", stage)
	in.report(ctx, api.Progress{Stage: stage, Message: msg})
}

func (in *installer) run(ctx context.Context) (*Result, error) {
	in.stage = api.StageStart
	if in.cfg.Server == "" || in.cfg.Node == "" {
		return nil, errors.New("install needs the server URL and the node name (goldcast.server= and goldcast.node= on the kernel command line, or --server and --node)")
	}
	c, err := client.New(client.Options{URL: in.cfg.Server, NodeToken: in.cfg.Token, TLSFingerprint: in.cfg.TLSFingerprint})
	if err != nil {
		return nil, err
	}
	in.c = c
	plan, err := c.InstallPlan(ctx, in.cfg.Node)
	if err != nil {
		return nil, err
	}
	in.plan = plan
	transport := plan.Transport
	if in.cfg.Transport != "" {
		transport = in.cfg.Transport
	}
	in.enter(ctx, api.StageStart, fmt.Sprintf("installing %s@%d on node %s (transport %s, then %s)", plan.Image, plan.Version, plan.Node, transport, plan.PostAction))

	if err := in.runScripts(ctx, api.PhasePreInstall, ""); err != nil {
		return nil, err
	}

	// Disks.
	in.enter(ctx, api.StagePartition, "choosing the disk")
	layout, override, err := layouts(plan)
	if err != nil {
		return nil, err
	}
	disk, err := disks.Select(ctx, disks.Rule(plan.Disk))
	if err != nil {
		return nil, fmt.Errorf("choose the disk (rule %q): %w", plan.Disk, err)
	}
	dplan, err := disks.NewPlan(layout, []disks.Disk{disk}, disks.PlanOptions{Override: override})
	if err != nil {
		return nil, fmt.Errorf("plan the disk %s: %w", disk.Path, err)
	}
	// The table's ID marks the disk as this node's goldcast install.
	wipe := plan.Wipe
	for i := range dplan.Disks {
		if dplan.Disks[i].Table == "" {
			continue
		}
		id := nodeDiskID(plan.Node, dplan.Disks[i].Table)
		if !wipe && sameDiskID(diskTableID(ctx, dplan.Disks[i].Path), id) {
			in.log.Info("the disk holds an earlier goldcast install of this node: installing over it", "disk", dplan.Disks[i].Path)
			wipe = true
		}
		dplan.Disks[i].ID = id
	}
	in.log.Info("disk plan", "disk", disk.Path, "size", disk.SizeBytes, "plan", dplan.String())
	in.report(ctx, api.Progress{Stage: api.StagePartition, Message: fmt.Sprintf("partitioning %s (%d MiB)", disk.Path, disk.SizeBytes>>20)})
	if err := os.MkdirAll(in.target, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", in.target, err)
	}
	applied, err := disks.Apply(ctx, dplan, disks.Options{Wipe: wipe, Target: in.target, Log: in.log,
		Progress: func(step string) {
			if strings.HasPrefix(step, "mkfs") && in.stage != api.StageMkfs {
				in.enter(ctx, api.StageMkfs, "making filesystems")
			}
			in.log.Info(step)
		}})
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: plan, Disk: disk, Target: in.target, unmount: applied.Unmount}
	for _, f := range applied.Layout.Filesystems {
		if f.Mountpoint == "/" {
			res.RootUUID = f.UUID
		}
	}

	if err := in.transfer(ctx, transport); err != nil {
		return res, err
	}

	in.enter(ctx, api.StageSysconf, "making the tree the node's: fstab, host name, network, machine-id, SSH host keys")
	changes, err := c.Configure(ctx, client.ConfigureOptions{Node: plan.Node, Root: in.target, Disk: disk.Path,
		Layout: applied.Layout, NoBootloader: true, Log: in.log})
	if err != nil {
		return res, err
	}
	for _, ch := range changes {
		in.log.Info("sysconf", "step", ch.Step, "path", ch.Path, "what", ch.What)
	}
	if err := in.writeFirstBoot(); err != nil {
		return res, err
	}
	in.enter(ctx, api.StageBootloader, "installing the bootloader on "+disk.Path)
	changes, err = c.Configure(ctx, client.ConfigureOptions{Node: plan.Node, Root: in.target, Disk: disk.Path, Layout: applied.Layout,
		NoNetwork: true, NoFstab: true, NoHostname: true, NoMachineID: true, NoSSHKeys: true, Log: in.log})
	if err != nil {
		return res, err
	}
	for _, ch := range changes {
		in.log.Info("bootloader", "path", ch.Path, "what", ch.What)
	}

	if err := in.runScripts(ctx, api.PhasePostInstall, disk.Path); err != nil {
		return res, err
	}
	unix.Sync()
	in.stage = api.StageDone
	in.log.Info("install complete", "image", fmt.Sprintf("%s@%d", plan.Image, plan.Version), "disk", disk.Path)
	in.report(ctx, api.Progress{Stage: api.StageDone, State: api.StateInstalled, Percent: 100,
		Message: fmt.Sprintf("installed %s@%d on %s; next: %s", plan.Image, plan.Version, disk.Path, plan.PostAction)})
	return res, nil
}

// layouts decodes the plan's captured layout and the admin's override.
func layouts(p *api.InstallPlan) (*disklayout.Layout, *disks.Override, error) {
	var l *disklayout.Layout
	if len(p.Layout) > 0 && string(p.Layout) != "null" {
		l = &disklayout.Layout{}
		if err := json.Unmarshal(p.Layout, l); err != nil {
			return nil, nil, fmt.Errorf("disk layout of %s@%d: %w", p.Image, p.Version, err)
		}
	}
	var o *disks.Override
	if len(p.LayoutOverride) > 0 && string(p.LayoutOverride) != "null" {
		o = &disks.Override{}
		if err := json.Unmarshal(p.LayoutOverride, o); err != nil {
			return nil, nil, fmt.Errorf("layout override of node %s: %w", p.Node, err)
		}
	}
	if l == nil && o == nil {
		return nil, nil, fmt.Errorf("image %s@%d records no disk layout (capture it from a running golden client, or give the node a layout override)", p.Image, p.Version)
	}
	return l, o, nil
}

// transfer lays the node's tree into the target by transport, reporting
// progress at least every progressEvery.
func (in *installer) transfer(ctx context.Context, transport string) error {
	src := client.Source{Node: in.plan.Node}
	info, err := in.c.Info(ctx, src)
	if err != nil {
		return err
	}
	total := info.Totals.Bytes
	in.enter(ctx, api.StageTransfer, fmt.Sprintf("receiving %d files, %d MB by %s", info.Totals.Entries, total/1e6, transport))

	var mu sync.Mutex
	var done int64
	// detail is what the transport adds to the progress message (a
	// swarm's peers, say).
	var detail string
	start := time.Now()
	progress := func(_ int, n int64) {
		mu.Lock()
		done += n
		mu.Unlock()
	}
	// withDetail adds the transport's detail to a progress message.
	withDetail := func(msg string) string {
		mu.Lock()
		defer mu.Unlock()
		if detail == "" {
			return msg
		}
		return msg + "; " + detail
	}
	snapshot := func() api.Progress {
		mu.Lock()
		d := done
		mu.Unlock()
		p := api.Progress{Stage: api.StageTransfer, Bytes: d, Total: total}
		if total > 0 {
			p.Percent = min(100, 100*float64(d)/float64(total))
		}
		if el := time.Since(start).Seconds(); el > 0 {
			p.Rate = float64(d) / el
			if p.Rate > 0 && total > d {
				p.ETASeconds = float64(total-d) / p.Rate
			}
		}
		p.Message = withDetail(fmt.Sprintf("%.0f%% of %d MB at %.1f MB/s", p.Percent, total/1e6, p.Rate/1e6))
		return p
	}
	tick := time.NewTicker(progressEvery)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				in.report(ctx, snapshot())
			}
		}
	}()
	defer func() { tick.Stop(); close(stop); wg.Wait() }()

	httpStream := func(ctx context.Context) error {
		body, err := in.c.Stream(ctx, "/nodes/"+in.plan.Node)
		if err != nil {
			return err
		}
		defer body.Close()
		res, err := stream.Extract(ctx, body, in.target, stream.ExtractOptions{
			MountedTarget: true, Progress: progress, Logger: in.log,
		})
		if err != nil {
			return fmt.Errorf("receive the tree of node %s: %w", in.plan.Node, err)
		}
		if res.Digest != info.ManifestDigest {
			return fmt.Errorf("received tree has manifest digest %s, the plan says %s", res.Digest, info.ManifestDigest)
		}
		return nil
	}
	switch transport {
	case "", client.TransportHTTP:
		if err := httpStream(ctx); err != nil {
			return err
		}
	case transportMulticast:
		// The image version comes by multicast (a session the admin
		// starts with goldcast multicast send); the node's overrides
		// then come by an update pass. An evicted receiver falls back to
		// the HTTP stream of the node's tree.
		if in.cfg.Interface == "" {
			return errors.New("the multicast transport needs the boot interface (Config.Interface)")
		}
		fellBack := false
		_, err := multicast.Receive(ctx, multicast.ReceiverConfig{
			Interface: in.cfg.Interface, Target: in.target, Name: in.plan.Node,
			Image: in.plan.Image, Version: in.plan.Version, Digest: in.plan.ImageDigest,
			Extract: stream.ExtractOptions{MountedTarget: true, Progress: progress, Logger: in.log},
			Fallback: func(ctx context.Context, image string, version int, reason string) error {
				in.log.Warn("multicast session left; fetching over HTTP", "reason", reason)
				fellBack = true
				return httpStream(ctx)
			},
			Log: in.log,
		})
		if err != nil {
			return fmt.Errorf("receive %s@%d by multicast: %w", in.plan.Image, in.plan.Version, err)
		}
		if !fellBack {
			if err := in.updatePass(ctx, nil); err != nil {
				return fmt.Errorf("apply the overrides of node %s: %w", in.plan.Node, err)
			}
		}
	case transportTorrent:
		// The image version comes from the swarm (the server seeds it and
		// every installing node shares what it has); the node's
		// overrides then come by an update pass.
		res, err := torrent.Fetch(ctx, torrent.FetchConfig{
			ServerURL: in.cfg.Server, Node: in.plan.Node, NodeToken: in.cfg.Token,
			Ref: fmt.Sprintf("%s@%d", in.plan.Image, in.plan.Version), Target: in.target, MountedTarget: true,
			Progress: func(tp torrent.Progress) {
				// Percent by the stream's verified bytes.
				mu.Lock()
				if tp.Total > 0 {
					done = total * tp.Bytes / tp.Total
				}
				detail = fmt.Sprintf("BitTorrent %s: %d peers (%d seeding), %d MB from peers, %d MB from the server",
					tp.Stage, tp.Peers, tp.Seeders, tp.FromPeers/1e6, tp.FromServer/1e6)
				if tp.Message != "" && tp.Stage == torrent.StageStalled {
					detail += ": " + tp.Message
				}
				mu.Unlock()
				in.log.Debug("torrent", "stage", tp.Stage, "bytes", tp.Bytes, "total", tp.Total, "peers", tp.Peers, "from_peers", tp.FromPeers)
			},
			Logger: in.log,
		})
		if err != nil {
			return fmt.Errorf("receive %s@%d by BitTorrent: %w", in.plan.Image, in.plan.Version, err)
		}
		mu.Lock()
		detail = fmt.Sprintf("BitTorrent: %d MB from %d peers, %d MB from the server, %d MB sent to others",
			res.FromPeers/1e6, res.PeersServed, res.FromServer/1e6, res.Uploaded/1e6)
		mu.Unlock()
		if err := in.updatePass(ctx, nil); err != nil {
			return fmt.Errorf("apply the overrides of node %s: %w", in.plan.Node, err)
		}
	case client.TransportRsync:
		if err := in.updatePass(ctx, progress); err != nil {
			return fmt.Errorf("receive the tree of node %s by rsync: %w", in.plan.Node, err)
		}
	default:
		return fmt.Errorf("transport %q is not one install can use (http, rsync, multicast, torrent)", transport)
	}
	p := snapshot()
	p.Percent, p.Bytes, p.ETASeconds = 100, total, 0
	p.Message = withDetail(fmt.Sprintf("received %d MB in %s (%.1f MB/s)", total/1e6, time.Since(start).Round(time.Second), p.Rate/1e6))
	in.log.Info(p.Message)
	in.report(ctx, p)
	return nil
}

// updatePass brings the target to the node's tree (its image with its
// overrides) by the update engine: rsync deltas for what differs, then
// the manifest's metadata. After a fan-out transport laid down the image
// it fetches just the overrides; into an empty target, everything.
func (in *installer) updatePass(ctx context.Context, progress func(int, int64)) error {
	_, err := in.c.Update(ctx, client.UpdateOptions{Node: in.plan.Node, Root: in.target, NoDefaultExcludes: true,
		NoRecord: true, Log: in.log, Progress: progress})
	return err
}

// tailHandler is a slog.Handler that keeps the last lines it formats (for
// failure reports) and passes every record on to next, when set.
type tailHandler struct {
	mu    *sync.Mutex
	buf   *[]string
	max   int
	next  slog.Handler
	attrs []slog.Attr
}

func newTailHandler(max int, next *slog.Logger) *tailHandler {
	h := &tailHandler{mu: &sync.Mutex{}, buf: &[]string{}, max: max}
	if next != nil {
		h.next = next.Handler()
	}
	return h
}

func (h *tailHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || (h.next != nil && h.next.Enabled(ctx, l))
}

func (h *tailHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Time.Format("15:04:05 "))
	b.WriteString(r.Level.String())
	b.WriteString(" ")
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	h.mu.Lock()
	for _, line := range strings.Split(b.String(), "\n") {
		*h.buf = append(*h.buf, line)
	}
	if over := len(*h.buf) - h.max; over > 0 {
		*h.buf = append((*h.buf)[:0], (*h.buf)[over:]...)
	}
	h.mu.Unlock()
	if h.next != nil && h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *tailHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), attrs...)
	if h.next != nil {
		c.next = h.next.WithAttrs(attrs)
	}
	return &c
}

func (h *tailHandler) WithGroup(name string) slog.Handler {
	c := *h
	if h.next != nil {
		c.next = h.next.WithGroup(name)
	}
	return &c
}

// lines returns a copy of the kept lines, oldest first.
func (h *tailHandler) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), *h.buf...)
}

// targetPath is p inside the target.
func (in *installer) targetPath(p string) string {
	return filepath.Join(in.target, strings.TrimPrefix(p, "/"))
}
