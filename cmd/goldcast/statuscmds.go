package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/client"
	"github.com/goldcast/goldcast/internal/progress"
)

func newStatusCommand(a *app) *cobra.Command {
	var (
		sf    serverFlags
		watch bool
		until string
	)
	cmd := &cobra.Command{
		Use:   "status [NODE...] --server URL [--watch [--until STATE,...]] [--json]",
		Short: "Show where each node stands: state, image, install progress, last event",
		Long: `Shows the state the server keeps for each node named (a name or a host range
such as node[001-016]), or for every node of goldcast.yaml and every node
that reported, as a table:

  NODE  STATE  IMAGE@V  STAGE  PROGRESS  RATE  ETA  LAST-EVENT

States, in the order an install goes through them: unknown (never
reported), booted (the installer's initramfs is up), installing (STAGE is
start, pre-install, partition, mkfs, transfer, sysconf, bootloader,
post-install), installed (the node now boots from its disk), healthy (its
first boot reported) or unhealthy (no report within the server's
--health-timeout); failed when an install stopped on an error (see
goldcast events NODE for the error and the installer's last log lines).

--watch follows the server's live event stream and redraws a progress bar
per node in place (on a terminal; otherwise it prints a line per change)
until Ctrl-C. --until STATE[,STATE] ends the watch once every node shown
is in one of those states: exit status 0, or 1 if any node failed.

With NODE arguments, the nodes' last events follow the table.

--json prints {"nodes": [states], "events": [the events of the named
nodes, or all]}; with --watch, one JSON state per line at each change.`,
		Example: `  goldcast status --server http://imageserver:8080
  goldcast status node007 --server URL --json
  goldcast status 'node[001-016]' --server URL --watch
  goldcast status node007 --server URL --watch --until installed,healthy,failed`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			var stopAt []string
			if until != "" {
				for s := range strings.SplitSeq(until, ",") {
					if s = strings.TrimSpace(s); s != "" {
						stopAt = append(stopAt, s)
					}
				}
				watch = true
			}
			if watch {
				return watchStatus(cmd, a, c, args, stopAt)
			}
			states, _, err := c.NodeStates(cmd.Context(), args...)
			if err != nil {
				return err
			}
			if a.jsonOut {
				evs, err := nodeEvents(cmd, c, states, len(args) > 0)
				if err != nil {
					return err
				}
				out := map[string]any{"nodes": states, "events": evs}
				if len(args) == 1 {
					out["node"] = args[0] // as this command printed before
				}
				return a.printJSON(out)
			}
			var rows [][]string
			for _, st := range states {
				rows = append(rows, statusRow(st))
			}
			a.table([]string{"NODE", "STATE", "IMAGE@V", "STAGE", "PROGRESS", "RATE", "ETA", "LAST-EVENT"}, rows)
			if len(args) == 0 {
				return nil
			}
			// Named nodes: their recent history too.
			evs, err := nodeEvents(cmd, c, states, true)
			if err != nil {
				return err
			}
			if n := len(evs) - recentEvents; n > 0 {
				evs = evs[n:]
				a.printf("\nlast %d events (goldcast events NODE shows all %d):\n", recentEvents, n+recentEvents)
			} else {
				a.printf("\nevents:\n")
			}
			printEvents(a, evs)
			return nil
		},
	}
	sf.add(cmd)
	a.addJSONFlag(cmd)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow live: redraw per-node progress bars until Ctrl-C")
	cmd.Flags().StringVar(&until, "until", "", "with --watch: stop once every node is in one of these states (comma-separated); exit 1 if any failed")
	return cmd
}

// recentEvents is how many events status NODE shows below the states.
const recentEvents = 20

// nodeEvents returns the events of the nodes in states (all events when
// no node was named), oldest first.
func nodeEvents(cmd *cobra.Command, c *client.Client, states []api.NodeState, named bool) ([]client.Event, error) {
	evs := []client.Event{}
	if !named {
		all, err := allEvents(cmd, c, "")
		if err != nil {
			return nil, err
		}
		return append(evs, all...), nil
	}
	for _, st := range states {
		e, err := allEvents(cmd, c, st.Node)
		if err != nil {
			return nil, err
		}
		evs = append(evs, e...)
	}
	slices.SortFunc(evs, func(x, y client.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	return evs, nil
}

// allEvents pages through the stored events of node ("" for all).
func allEvents(cmd *cobra.Command, c *client.Client, node string) ([]client.Event, error) {
	var out []client.Event
	var since uint64
	for {
		evs, err := c.Events(cmd.Context(), node, since)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			return out, nil
		}
		out = append(out, evs...)
		since = evs[len(evs)-1].Seq
	}
}

// imageRef is NAME@V, or a dash.
func imageRef(st api.NodeState) string {
	if st.Image == "" {
		return "-"
	}
	if st.Version == 0 {
		return st.Image
	}
	return fmt.Sprintf("%s@%d", st.Image, st.Version)
}

func percentText(st api.NodeState) string {
	if st.Percent == 0 && st.State != api.StateInstalling {
		return "-"
	}
	return strconv.FormatFloat(st.Percent, 'f', 0, 64) + "%"
}

func rateText(r float64) string {
	if r <= 0 {
		return "-"
	}
	return progress.Bytes(int64(r)) + "/s"
}

func etaText(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s) * time.Second).String()
}

func statusRow(st api.NodeState) []string {
	return []string{st.Node, st.State, imageRef(st), orDash(st.Stage), percentText(st), rateText(st.Rate), etaText(st.ETA), oneLine(st.Message)}
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return orDash(first)
}

// terminalWidth returns the width of the terminal w is, or 0 when w is
// no terminal.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return max(int(ws.Col), 20)
}

// fit cuts s to width columns (runes), so that a redrawn line never
// wraps.
func fit(s string, width int) string {
	r := []rune(s)
	if len(r) < width {
		return s
	}
	return string(r[:width-1])
}

// progressBar draws percent as a bar of width cells.
func progressBar(percent float64, width int) string {
	n := int(percent / 100 * float64(width))
	n = min(max(n, 0), width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// barLine is one node's line of the live view.
func barLine(st api.NodeState) string {
	return fmt.Sprintf("%-14s %-11s %-12s %s %4s %11s ETA %-8s %s", st.Node, st.State, orDash(st.Stage), progressBar(st.Percent, 24),
		percentText(st), rateText(st.Rate), etaText(st.ETA), oneLine(st.Message))
}

// watchStatus follows the nodes' states live until Ctrl-C or until every
// node is in one of stopAt.
func watchStatus(cmd *cobra.Command, a *app, c *client.Client, nodes, stopAt []string) error {
	width := terminalWidth(a.out)
	term := width > 0 && !a.jsonOut
	drawn := 0
	var result error
	err := c.WatchNodes(cmd.Context(), nodes, func(states []api.NodeState, e *client.Event) error {
		switch {
		case a.jsonOut:
			enc := json.NewEncoder(a.out)
			for _, st := range states {
				if e == nil || st.Node == e.Node {
					if err := enc.Encode(st); err != nil {
						return err
					}
				}
			}
		case term:
			var b strings.Builder
			if drawn > 0 {
				fmt.Fprintf(&b, "\x1b[%dA", drawn) // back to the first line
			}
			for _, st := range states {
				b.WriteString("\r\x1b[2K" + fit(barLine(st), width) + "\n")
			}
			drawn = len(states)
			io.WriteString(a.out, b.String())
		default:
			for _, st := range states {
				if e == nil || st.Node == e.Node {
					a.printf("%s %s\n", st.Updated.Local().Format("15:04:05"), barLine(st))
				}
			}
		}
		if len(stopAt) == 0 || len(states) == 0 {
			return nil
		}
		var failed []string
		for _, st := range states {
			if !slices.Contains(stopAt, st.State) {
				return nil
			}
			if st.State == api.StateFailed {
				failed = append(failed, st.Node)
			}
		}
		if len(failed) > 0 {
			fmt.Fprintf(a.errOut, "failed: %s (goldcast events NODE shows why)\n", strings.Join(failed, " "))
			result = exitCode(1)
		}
		return client.ErrStopFollowing
	})
	if err != nil {
		return err
	}
	return result
}

func newEventsCommand(a *app) *cobra.Command {
	var (
		sf     serverFlags
		follow bool
		since  uint64
	)
	cmd := &cobra.Command{
		Use:   "events [NODE] --server URL [--follow] [--json]",
		Short: "Show a node's history: boot, install stages, errors, health",
		Long: `Lists the server's events for NODE (every node when none is given), oldest
first: DHCP and TFTP steps, the iPXE script, the booted report with the
machine's hardware, each install stage with its percent and rate, the
boot flip to local, first-boot health, captures.

A failed install's event carries the error and the installer's last log
lines; they are printed below the table.

--follow keeps printing new events as the server stores them, until
Ctrl-C. --json prints a JSON list; with --follow, one JSON event per line.`,
		Example: `  goldcast events node007 --server http://imageserver:8080
  goldcast events node007 --server URL --json
  goldcast events --server URL --follow`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			node := ""
			if len(args) == 1 {
				node = args[0]
			}
			var evs []client.Event
			for {
				page, err := c.Events(cmd.Context(), node, since)
				if err != nil {
					return err
				}
				if len(page) == 0 {
					break
				}
				evs = append(evs, page...)
				since = page[len(page)-1].Seq
			}
			if !follow {
				if a.jsonOut {
					return a.printJSON(append([]client.Event{}, evs...))
				}
				printEvents(a, evs)
				return nil
			}
			show := func(e client.Event) error {
				if a.jsonOut {
					return json.NewEncoder(a.out).Encode(e)
				}
				a.printf("%s\n", eventLine(e))
				if tail := e.Fields["log_tail"]; tail != "" {
					a.printf("%s\n", indent(tail))
				}
				return nil
			}
			for _, e := range evs {
				if err := show(e); err != nil {
					return err
				}
			}
			return c.FollowEvents(cmd.Context(), node, since, show)
		},
	}
	sf.add(cmd)
	a.addJSONFlag(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until Ctrl-C")
	cmd.Flags().Uint64Var(&since, "since", 0, "only events after this sequence number")
	return cmd
}

// printEvents prints events as a table, then the log tails of failures.
func printEvents(a *app, evs []client.Event) {
	var rows [][]string
	var tails []client.Event
	for _, e := range evs {
		pct := "-"
		if e.Percent > 0 {
			pct = strconv.FormatFloat(e.Percent, 'f', 0, 64) + "%"
		}
		rows = append(rows, []string{strconv.FormatUint(e.Seq, 10), e.Time.Local().Format("15:04:05"), orDash(e.Node), e.Kind, orDash(e.Stage), pct, oneLine(e.Message)})
		if e.Fields["log_tail"] != "" {
			tails = append(tails, e)
		}
	}
	a.table([]string{"SEQ", "TIME", "NODE", "KIND", "STAGE", "PERCENT", "MESSAGE"}, rows)
	for _, e := range tails {
		a.printf("\nlast log lines of %s's install (event %d):\n%s\n", e.Node, e.Seq, indent(e.Fields["log_tail"]))
	}
}

// eventLine is one event on one line.
func eventLine(e client.Event) string {
	s := fmt.Sprintf("%d %s %s %s", e.Seq, e.Time.Local().Format("15:04:05"), orDash(e.Node), e.Kind)
	if e.Stage != "" {
		s += "/" + e.Stage
	}
	if e.Percent > 0 {
		s += fmt.Sprintf(" %.0f%%", e.Percent)
	}
	if e.Message != "" {
		s += ": " + oneLine(e.Message)
	}
	return s
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
