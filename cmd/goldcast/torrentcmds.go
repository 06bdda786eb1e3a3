package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/internal/progress"
	"github.com/goldcast/goldcast/transport/torrent"
)

// torrentAuth are the server and credential flags of the torrent
// commands.
type torrentAuth struct {
	server, token, tokenFile, node, nodeTokenFile string
}

func (t *torrentAuth) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.server, "server", os.Getenv("GOLDCAST_SERVER"), "server URL, e.g. http://imageserver:8080 (env GOLDCAST_SERVER)")
	f.StringVar(&t.token, "token", "", "admin token (prefer --token-file: a command line is visible to other users)")
	f.StringVar(&t.tokenFile, "token-file", os.Getenv("GOLDCAST_TOKEN_FILE"), "file holding the admin token (env GOLDCAST_TOKEN_FILE)")
	f.StringVar(&t.node, "node", "", "this node's name, with --node-token-file")
	f.StringVar(&t.nodeTokenFile, "node-token-file", os.Getenv("GOLDCAST_NODE_TOKEN_FILE"), "file holding this node's own token (goldcast node token NAME; env GOLDCAST_NODE_TOKEN_FILE)")
}

func (t *torrentAuth) list() (torrent.ListConfig, error) {
	if t.server == "" {
		return torrent.ListConfig{}, errors.New("--server URL is required (or set GOLDCAST_SERVER)")
	}
	c := torrent.ListConfig{ServerURL: t.server, Token: t.token, Node: t.node}
	if t.tokenFile != "" {
		tok, err := client.ReadToken(t.tokenFile)
		if err != nil {
			return c, err
		}
		c.Token = tok
	}
	if t.nodeTokenFile != "" {
		if t.node == "" {
			return c, errors.New("--node-token-file needs --node NAME")
		}
		tok, err := client.ReadToken(t.nodeTokenFile)
		if err != nil {
			return c, err
		}
		c.NodeToken = tok
	}
	return c, nil
}

func newTorrentCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "torrent",
		Short: "Fetch image versions peer to peer by BitTorrent",
		Long: `The goldcast server publishes a private torrent for each image version's
stream, runs its tracker, seeds the stream and serves it as a web seed.
Nodes fetch a version from the server and from each other at once, so a
wave of hundreds of nodes takes barely longer than one node. Nothing is
announced anywhere but the goldcast server's tracker: no DHT, no PEX, no
UPnP. See docs/torrent.md.`,
	}
	cmd.AddCommand(torrentLsCmd(a), torrentFetchCmd(a))
	return cmd
}

func torrentLsCmd(a *app) *cobra.Command {
	var auth torrentAuth
	cmd := &cobra.Command{
		Use:   "ls --server URL",
		Short: "List the torrents a server serves, with their swarms",
		Long: `Lists every version the server has made a torrent for: its info hash,
stream size and pieces, the peers the tracker knows (seeders have the
whole stream, leechers are fetching) and what the server's own seeder has
sent. Torrents are made when a version is published for images that
nodes install by torrent, and on first request for any other version.`,
		Example: `  goldcast torrent ls --server http://imageserver:8080
  goldcast torrent ls --server http://imageserver:8080 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc, err := auth.list()
			if err != nil {
				return err
			}
			ts, err := torrent.List(cmd.Context(), lc)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSONOut(a, ts)
			}
			var rows [][]string
			for _, t := range ts {
				rows = append(rows, []string{t.Ref, t.InfoHash, progress.Bytes(t.Size),
					fmt.Sprintf("%d x %s", t.Pieces, progress.Bytes(t.PieceLength)),
					strconv.Itoa(t.Swarm.Seeders), strconv.Itoa(t.Swarm.Leechers), progress.Bytes(t.ServerUploaded)})
			}
			a.table([]string{"VERSION", "INFO HASH", "SIZE", "PIECES", "SEEDERS", "LEECHERS", "SERVER SENT"}, rows)
			return nil
		},
	}
	auth.add(cmd)
	a.addJSONFlag(cmd)
	return cmd
}

func writeJSONOut(a *app, v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func torrentFetchCmd(a *app) *cobra.Command {
	var auth torrentAuth
	var o torrent.FetchConfig
	var rate, pubkey string
	cmd := &cobra.Command{
		Use:   "fetch NAME[@V] --server URL --target DIR",
		Short: "Fetch an image version by BitTorrent into an empty directory",
		Long: `Downloads the version's .torrent from the server, joins its swarm (the
server's seeder and the other nodes fetching the same version), and
extracts the stream into DIR while it arrives: pieces are fetched rarest
first in an order of the node's own, so nodes hold different pieces to
trade, and the stream is extracted in order as far as its pieces have
arrived. The server's web seed is a fallback, asked once no piece has
come for --web-seed-after. The manifest must match the digest the server announced
(and, with --pubkey, carry a valid signature); every file is hashed as it
lands. --staged downloads the whole stream first (into --stage-dir, or
a temporary directory) and extracts it afterwards.

After the whole stream has arrived, the node keeps seeding to the others
until the deploy wave ends (the tracker knows no node still fetching) or
--seed-time passes. If the server goes away, the nodes finish from each
other when they hold every piece among them; otherwise the fetch reports
that it is stalled and resumes when the server returns.

Progress goes to stderr; with --json, one JSON object a line on stderr and
the result (bytes from peers and from the server, hash failures, banned
peers) as JSON on stdout.`,
		Example: `  goldcast torrent fetch web --server http://imageserver:8080 --target /mnt/root
  goldcast torrent fetch web@4 --server URL --target /mnt/root --seed-time 5m --rate-limit 50M --json
  goldcast torrent fetch web --server URL --target /mnt/root --staged --stage-dir /mnt/.stage`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := auth.list()
			if err != nil {
				return err
			}
			if o.Target == "" {
				return errors.New("--target DIR is required")
			}
			if o.RateLimit, err = parseRate(rate); err != nil {
				return err
			}
			if o.PublicKey, err = loadPubKey(pubkey); err != nil {
				return err
			}
			o.ServerURL, o.Token, o.Node, o.NodeToken = lc.ServerURL, lc.Token, lc.Node, lc.NodeToken
			o.Ref, o.Logger = args[0], a.log
			enc := json.NewEncoder(a.errOut)
			last := ""
			o.Progress = func(p torrent.Progress) {
				if a.jsonOut {
					enc.Encode(p)
					return
				}
				line := fmt.Sprintf("%s: %s %s/%s, %d peers (%d seeders), from peers %s, from server %s, sent %s",
					p.Ref, p.Stage, progress.Bytes(p.Bytes), progress.Bytes(p.Total), p.Peers, p.Seeders,
					progress.Bytes(p.FromPeers), progress.Bytes(p.FromServer), progress.Bytes(p.Uploaded))
				if p.Message != "" {
					line += ": " + p.Message
				}
				if line != last {
					fmt.Fprintln(a.errOut, line)
					last = line
				}
			}
			res, err := torrent.Fetch(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return writeJSONOut(a, res)
			}
			fmt.Fprintf(a.out, "%s: %d entries verified in %s; %s from peers (%.0f%%), %s from the server; sent %s to peers; seeded %s\n",
				res.Ref, res.Entries, res.Download.Round(time.Millisecond), progress.Bytes(res.FromPeers), 100*res.PeerShare(),
				progress.Bytes(res.FromServer), progress.Bytes(res.Uploaded), res.Seed.Round(time.Second))
			if res.HashFailures > 0 {
				fmt.Fprintf(a.out, "  %d pieces failed their hash check and were fetched again; banned peers: %s\n", res.HashFailures, strings.Join(res.BannedPeers, ", "))
			}
			return nil
		},
	}
	auth.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Target, "target", "", "empty directory to extract into (required)")
	f.DurationVar(&o.SeedTime, "seed-time", 10*time.Minute, "keep seeding after completion at most this long (stops earlier when the wave ends; 0: leave at once)")
	f.BoolVar(&o.SeedFull, "seed-full", false, "seed for the whole --seed-time even when no node is fetching (to seed a wave that starts later)")
	f.StringVar(&rate, "rate-limit", "", "cap download and upload: bytes per second with K/M/G suffixes (50M), or bits (100mbit)")
	f.StringVar(&o.ListenAddr, "listen", ":0", "peer listen address HOST:PORT (port 0: any free port)")
	f.StringVar(&o.StageDir, "stage-dir", "", "keep the stream's pieces here (default: a temporary directory, removed at the end)")
	f.BoolVar(&o.Staged, "staged", false, "download the whole stream (into --stage-dir, or a temporary directory) before extracting")
	f.BoolVar(&o.NoWebSeed, "no-web-seed", false, "do not use the server's web seed (its bytes come from its BitTorrent seeder only)")
	f.DurationVar(&o.WebSeedAfter, "web-seed-after", 3*time.Second, "ask the server's web seed too after this long without a new piece")
	f.StringVar(&pubkey, "pubkey", "", "require a valid signature of the manifest by this public key")
	f.DurationVar(&o.StallAfter, "stall-after", 10*time.Second, "report the fetch as stalled after this long without progress")
	f.DurationVar(&o.StallTimeout, "stall-timeout", 0, "give up after this long without progress (0: wait for the server or peers as long as it takes)")
	f.BoolVar(&a.jsonOut, "json", false, "progress as JSON lines on stderr, the result as JSON on stdout")
	return cmd
}

// parseRate reads a rate: bytes per second with an optional K, M or G
// suffix (powers of 1024), or bits per second ending in "bit" (kbit,
// mbit, gbit: powers of 1000).
func parseRate(s string) (int64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	l := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	mul, div := 1.0, 1.0
	if num, ok := strings.CutSuffix(l, "bit"); ok {
		l, div = num, 8
		for suf, m := range map[string]float64{"k": 1e3, "m": 1e6, "g": 1e9} {
			if n, ok := strings.CutSuffix(l, suf); ok {
				l, mul = n, m
			}
		}
	} else {
		l = strings.TrimSuffix(l, "b")
		for suf, m := range map[string]float64{"k": 1 << 10, "m": 1 << 20, "g": 1 << 30} {
			if n, ok := strings.CutSuffix(l, suf); ok {
				l, mul = n, m
			}
		}
	}
	v, err := strconv.ParseFloat(l, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("--rate-limit %q: use bytes per second like 50M, or bits like 100mbit", s)
	}
	return int64(v * mul / div), nil
}
