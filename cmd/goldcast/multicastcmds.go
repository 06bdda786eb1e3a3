package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/ref"
	"github.com/goldcast/goldcast/images/stream"
	"github.com/goldcast/goldcast/internal/progress"
	"github.com/goldcast/goldcast/transport/multicast"
)

// exitEvicted is the exit status of `multicast receive` when the sender
// evicted it and no fallback was configured.
const exitEvicted = 3

func newMulticastCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "multicast",
		Short: "Send an image version to many nodes at once over IP multicast",
		Long: `One sender streams a version's verified tar.zst stream once to a multicast
group; every receiver extracts it as it arrives and checks it against the
signed manifest. Lost packets are rebuilt from Reed-Solomon parity (sent
ahead when receivers report loss, and on request), a receiver that joins
late is served by another pass, and one that cannot keep up is evicted
without slowing the others and fetches the version by HTTP instead.
See docs/multicast.md for the protocol.`,
	}
	cmd.AddCommand(newMulticastSendCommand(a), newMulticastReceiveCommand(a))
	return cmd
}

// parseBitrate reads 200m, 1.5g, 800k, 200mbit or a plain number (bit/s).
func parseBitrate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "bit"), "bps")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1e6, strings.TrimSuffix(t, "m")
	case strings.HasSuffix(t, "g"):
		mult, t = 1e9, strings.TrimSuffix(t, "g")
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bit rate %q: use a number of bit/s with an optional k, m or g suffix, e.g. 200m", s)
	}
	return int64(v * mult), nil
}

// expectedNodes resolves --group-of: a group declared in goldcast.yaml,
// or host names and ranges separated by commas (node[01-08],spare1).
func expectedNodes(a *app, spec string) ([]string, error) {
	if c, err := a.config(); err == nil {
		for _, g := range c.Groups {
			if g.Name != spec {
				continue
			}
			var names []string
			for _, n := range c.EffectiveNodes() {
				if slices.Contains(n.Groups, spec) {
					names = append(names, n.Name)
				}
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("--group-of %q: the group has no nodes", spec)
			}
			return names, nil
		}
	}
	var names []string
	for _, part := range strings.Split(spec, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		hosts, err := config.ExpandHosts(part)
		if err != nil {
			return nil, fmt.Errorf("--group-of: %w", err)
		}
		names = append(names, hosts...)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--group-of %q names no nodes", spec)
	}
	return names, nil
}

func newMulticastSendCommand(a *app) *cobra.Command {
	var (
		cfg                 multicast.SenderConfig
		bitrate, minBitrate string
		fec, groupOf        string
		minReceivers        int
		minWait, maxWait    time.Duration
		jsonOut             bool
	)
	cmd := &cobra.Command{
		Use:   "send NAME[@VERSION] --interface IF (--min-receivers N | --group-of NODES)",
		Short: "Multicast a version to the receivers that join (udp-sender, flamethrower)",
		Long: `Exports the version's stream from the local store (--data) to a scratch file,
announces the session on 239.255.71.71:7171 on --interface, and waits for
receivers ("goldcast multicast receive") to register. It starts when
--group-of's nodes are all present, or --min-receivers have registered
(after at least --min-wait), or at --max-wait with whoever came.

It then sends the stream at --max-bitrate (--adaptive lowers the rate
when most receivers report loss and raises it again when loss clears),
answers loss reports with parity, makes more passes for late joiners, and
ends when every registered receiver has verified its copy, was evicted,
or went silent. A receiver that loses more than --max-loss of the packets
for two seconds is evicted (it falls back to unicast).

Per-receiver progress is printed every second; --json prints one JSON
event per line and the final report as JSON.`,
		Example: `  goldcast multicast send web --interface eth1 --min-receivers 8 --max-bitrate 800m
  goldcast multicast send web@4 --interface eth1 --group-of 'node[01-32]' --max-wait 5m --adaptive
  goldcast multicast send web --interface eth1 --group-of rack3 --min-wait 30s --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Interface == "" {
				return errors.New("--interface IF is required")
			}
			var err error
			if cfg.MaxBitrate, err = parseBitrate(bitrate); err != nil {
				return fmt.Errorf("--max-bitrate: %w", err)
			}
			if minBitrate != "" {
				if cfg.MinBitrate, err = parseBitrate(minBitrate); err != nil {
					return fmt.Errorf("--min-bitrate: %w", err)
				}
			}
			switch fec {
			case "auto":
				cfg.FEC = -1
			default:
				if cfg.FEC, err = strconv.Atoi(fec); err != nil || cfg.FEC < 0 {
					return fmt.Errorf("--fec %q: use auto or a number of parity packets per group", fec)
				}
			}
			cfg.Policy = multicast.Policy{MinReceivers: minReceivers, MinWait: minWait, MaxWait: maxWait}
			if groupOf != "" {
				if cfg.Policy.Expected, err = expectedNodes(a, groupOf); err != nil {
					return err
				}
			}
			s, err := a.existingStore()
			if err != nil {
				return err
			}
			v, err := s.Resolve(args[0])
			if err != nil {
				return err
			}
			scratch, err := s.NewScratch(v.Info.Image, "multicast send of "+v.Ref())
			if err != nil {
				return err
			}
			defer scratch.Discard()
			f, err := os.Create(filepath.Join(scratch.Dir, "stream.tar.zst"))
			if err != nil {
				return fmt.Errorf("multicast send: scratch stream: %w", err)
			}
			defer f.Close()
			if _, err := s.Export(cmd.Context(), v.Ref(), f, stream.WriteOptions{}); err != nil {
				return err
			}
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			cfg.Stream, cfg.Size = f, fi.Size()
			cfg.Digest, cfg.Image, cfg.Version = v.Info.ManifestDigest, v.Info.Image, v.Info.Version
			cfg.Log = a.log
			enc := json.NewEncoder(a.out)
			cfg.Events = func(e multicast.Event) {
				if jsonOut {
					enc.Encode(e)
					return
				}
				a.printf("%s\n", formatEvent(e))
			}
			res, err := multicast.Send(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if jsonOut {
				enc.Encode(res)
			} else {
				a.printf("%s: %d of %d receivers verified the stream in %s (%d packets, %d repairs, %d passes)\n",
					v.Ref(), res.Done(), len(res.Receivers), res.Took.Round(time.Millisecond), res.Packets, res.Repairs, res.Passes)
				for _, r := range res.Receivers {
					line := fmt.Sprintf("  %-16s %-8s %s", r.Name, r.State, progress.Bytes(r.Bytes))
					if r.Reason != "" {
						line += "  (" + r.Reason + ")"
					}
					a.printf("%s\n", line)
				}
			}
			if res.Done() < len(res.Receivers) {
				return exitCode(2)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Interface, "interface", "", "network interface to send on (required)")
	f.IntVar(&minReceivers, "min-receivers", 1, "start once this many receivers have registered")
	f.StringVar(&groupOf, "group-of", "", "start once all these nodes are present: a group from goldcast.yaml or host names/ranges, e.g. 'node[01-08]'")
	f.DurationVar(&minWait, "min-wait", 0, "collect receivers at least this long before starting")
	f.DurationVar(&maxWait, "max-wait", 0, "start anyway after this long with whoever registered (0: wait for ever)")
	f.StringVar(&bitrate, "max-bitrate", "100m", "send rate cap in bit/s (k, m, g suffixes)")
	f.BoolVar(&cfg.Adaptive, "adaptive", false, "lower the rate on widespread loss, raise it again when loss clears")
	f.StringVar(&minBitrate, "min-bitrate", "", "floor for --adaptive (default max/20)")
	f.StringVar(&fec, "fec", "auto", "parity packets sent ahead with each group: auto (from reported loss) or a number")
	f.IntVar(&cfg.BlockSize, "block-size", 0, "data bytes per packet (default: the most one frame of the interface's MTU holds, 1440 for 1500)")
	f.IntVar(&cfg.GroupSize, "group-size", multicast.DefaultGroupSize, "data packets per FEC group (at most 128)")
	f.StringVar(&cfg.DataGroup, "data-group", "", "multicast group for the data (default: random in 239.255.72.0/24)")
	f.IntVar(&cfg.DataPort, "data-port", multicast.DefaultDataPort, "UDP port for the data")
	f.StringVar(&cfg.AnnounceAddr, "announce", "", "announcement group:port (default 239.255.71.71:7171)")
	f.IntVar(&cfg.TTL, "ttl", 1, "multicast TTL (1 stays on the local network)")
	f.Float64Var(&cfg.MaxLoss, "max-loss", 0.5, "evict a receiver losing more than this fraction of packets for --evict-after")
	f.DurationVar(&cfg.EvictAfter, "evict-after", 2*time.Second, "how long a receiver may exceed --max-loss")
	f.DurationVar(&cfg.ReceiverTimeout, "receiver-timeout", 3*time.Second, "drop a receiver silent this long")
	f.BoolVar(&jsonOut, "json", false, "print events and the report as JSON lines")
	return cmd
}

// formatEvent renders an event as one human line.
func formatEvent(e multicast.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-10s", e.Time.Format("15:04:05.000"), e.Kind)
	if e.Receiver != "" {
		fmt.Fprintf(&b, " %s (%s)", e.Receiver, e.Addr)
	}
	if e.Kind == "progress" {
		fmt.Fprintf(&b, " %5.1f%% %s of %s, loss %.1f%%, rate %s/s", e.Percent, progress.Bytes(e.Bytes), progress.Bytes(e.Total), 100*e.Loss, bits(e.Rate))
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

func bits(r int64) string {
	switch {
	case r >= 1e9:
		return fmt.Sprintf("%.2f Gbit", float64(r)/1e9)
	case r >= 1e6:
		return fmt.Sprintf("%.1f Mbit", float64(r)/1e6)
	default:
		return fmt.Sprintf("%d kbit", r/1000)
	}
}

func newMulticastReceiveCommand(a *app) *cobra.Command {
	var (
		cfg      multicast.ReceiverConfig
		sf       serverFlags
		image    string
		pubkey   string
		fallback string
		jsonOut  bool
	)
	cmd := &cobra.Command{
		Use:   "receive --interface IF --target DIR [--image NAME[@VERSION]]",
		Short: "Join a multicast session and extract the version into an empty root",
		Long: `Listens for session announcements on --interface and joins the first one
(or the first for --image / --manifest-digest; sessions for other versions
are refused). The stream is extracted into --target as it arrives, with no
staging copy, and checked against the manifest (with --pubkey, its
signature too), exactly as "goldcast image extract" does.

If the sender evicts this receiver (it cannot keep up) or ends the
session without it, the target is emptied and, with --fallback-server,
the same version is deployed from that server over HTTP (also when the
sender goes silent); without it the command exits with status 3 so a
script can fall back itself.`,
		Example: `  goldcast multicast receive --interface eth0 --target /mnt/root
  goldcast multicast receive --interface eth0 --target /mnt/root --image web@4 --pubkey /etc/goldcast/image.pub \
      --fallback-server http://imageserver:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Interface == "" || cfg.Target == "" {
				return errors.New("--interface IF and --target DIR are required")
			}
			if image != "" {
				name, n, err := ref.Parse(image)
				if err != nil {
					return fmt.Errorf("--image: %w", err)
				}
				cfg.Image, cfg.Version = name, n
			}
			pub, err := loadPubKey(pubkey)
			if err != nil {
				return err
			}
			bar := progress.New(a.errOut, "multicast", 0, 0)
			cfg.Extract = stream.ExtractOptions{Verify: verifier(pub), Progress: bar.Add, Logger: a.log,
				Materialize: materialize.Options{Unprivileged: os.Geteuid() != 0}}
			cfg.Log = a.log
			if fallback != "" {
				sf.url = fallback
				c, err := sf.client()
				if err != nil {
					return err
				}
				cfg.Fallback = func(ctx context.Context, image string, version int, reason string) error {
					fmt.Fprintf(a.errOut, "%s; deploying %s@%d from %s\n", reason, image, version, fallback)
					_, err := c.Deploy(ctx, client.DeployOptions{Image: fmt.Sprintf("%s@%d", image, version), Target: cfg.Target, Log: a.log})
					return err
				}
			}
			res, err := multicast.Receive(cmd.Context(), cfg)
			bar.Finish()
			if err != nil {
				if errors.Is(err, multicast.ErrEvicted) && cfg.Fallback == nil {
					fmt.Fprintln(a.errOut, "goldcast:", err)
					return exitCode(exitEvicted)
				}
				return err
			}
			if jsonOut {
				return a.printJSON(res)
			}
			how := fmt.Sprintf("by multicast (%d packets, %d groups rebuilt from parity, %d stray packets ignored)", res.Packets, res.Rebuilt, res.Stray)
			if res.FellBack {
				how = "by HTTP after eviction (" + res.Evicted + ")"
			}
			a.printf("received %s@%d into %s: %s in %s %s; manifest sha256:%s\n",
				res.Image, res.Version, cfg.Target, progress.Bytes(res.Bytes), res.Took.Round(time.Millisecond), how, res.Digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Interface, "interface", "", "network interface to listen on (required)")
	f.StringVar(&cfg.Target, "target", "", "empty directory to extract into (required)")
	f.StringVar(&image, "image", "", "join only a session for NAME or NAME@VERSION")
	f.StringVar(&cfg.Digest, "manifest-digest", "", "join only a session whose manifest has this sha256")
	f.StringVar(&cfg.Name, "name", "", "name reported to the sender (default: host name)")
	f.StringVar(&pubkey, "pubkey", "", "require a valid signature by this public key")
	f.StringVar(&fallback, "fallback-server", "", "after an eviction (or a silent sender), deploy the version from this server over HTTP")
	f.StringVar(&sf.tokenFile, "token-file", os.Getenv("GOLDCAST_TOKEN_FILE"), "admin token for --fallback-server")
	f.StringVar(&sf.nodeTokenFile, "node-token-file", os.Getenv("GOLDCAST_NODE_TOKEN_FILE"), "this node's token for --fallback-server")
	f.StringVar(&cfg.AnnounceAddr, "announce", "", "announcement group:port (default 239.255.71.71:7171)")
	f.DurationVar(&cfg.JoinTimeout, "join-timeout", 0, "give up when no matching session is announced within this time (0: wait for ever)")
	f.DurationVar(&cfg.SenderTimeout, "sender-timeout", 10*time.Second, "give up when the sender is silent this long")
	f.Int64Var(&cfg.Window, "window", multicast.DefaultWindow, "bytes of the stream held ahead of extraction")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}
