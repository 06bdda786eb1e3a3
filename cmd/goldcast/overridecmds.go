package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/overrides"
	"github.com/goldcast/goldcast/server"
)

func newOverrideCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "override",
		Short: "Manage override trees laid over images per group and per host",
		Long: `An override is a file tree under DATA/overrides/NAME/tree laid over a node's
image: global overrides, then its groups' (least important first), then the
override named after the node, then the node's own list, then any named
with --override. Files ending in .tmpl are Go templates rendered with the
node's variables; a file .wh.NAME removes NAME from the layers below. See
docs/overrides.md.`,
	}
	cmd.AddCommand(overrideCreateCmd(a), overrideLsCmd(a), overrideRmCmd(a), overrideEditCmd(a), overrideRenderCmd(a))
	return cmd
}

func (a *app) overrides() (*overrides.Store, error) {
	if _, err := os.Stat(a.dataDir); err != nil {
		return nil, fmt.Errorf("no data directory at %q: pass --data (or set GOLDCAST_DATA)", a.dataDir)
	}
	return overrides.Open(a.dataDir)
}

func overrideCreateCmd(a *app) *cobra.Command {
	var from, comment string
	var private bool
	cmd := &cobra.Command{
		Use:   "create NAME [--from DIR] [--private]",
		Short: "Create an override, copying a tree in with all its metadata",
		Long: `Copies DIR (modes, owners, xattrs, times, links kept) into a new override,
or makes an empty one. --private marks it private to its node: name it
after the node (the host override); the server then serves it only with
that node's token (goldcast node token NAME), e.g. for SSH host keys.`,
		Example: "  goldcast override create compute-base --from /srv/overrides/compute\n  goldcast override create node007 --from ./node007-keys --private",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.overrides()
			if err != nil {
				return err
			}
			if err := s.Create(cmd.Context(), args[0], from, overrides.CreateOptions{Private: private, Comment: comment}); err != nil {
				return err
			}
			a.printf("created override %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "tree to copy in (default: an empty override)")
	cmd.Flags().BoolVar(&private, "private", false, "serve only to the node the override is named after")
	cmd.Flags().StringVar(&comment, "comment", "", "note kept with the override")
	return cmd
}

func overrideLsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List overrides",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.overrides()
			if err != nil {
				return err
			}
			list, err := s.List()
			if err != nil {
				return err
			}
			if a.jsonOut {
				if list == nil {
					list = []overrides.Info{}
				}
				return a.printJSON(list)
			}
			var rows [][]string
			for _, o := range list {
				rows = append(rows, []string{o.Name, yesNo(o.Private), o.Created.Local().Format("2006-01-02 15:04"), o.Comment})
			}
			a.table([]string{"OVERRIDE", "PRIVATE", "CREATED", "COMMENT"}, rows)
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

func overrideRmCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove overrides",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.overrides()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := s.Remove(n); err != nil {
					return err
				}
				a.printf("removed override %s\n", n)
			}
			return nil
		},
	}
}

func overrideEditCmd(a *app) *cobra.Command {
	var command string
	cmd := &cobra.Command{
		Use:   "edit NAME",
		Short: "Open a shell in an override's tree",
		Long: `Starts a shell (or --command) whose working directory is the override's
tree. Overrides are not versioned: changes apply to every plan computed
afterwards (the server picks them up on the next request).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.overrides()
			if err != nil {
				return err
			}
			o, err := s.Get(args[0])
			if err != nil {
				return err
			}
			shell := os.Getenv("SHELL")
			if shell == "" || command != "" {
				shell = "/bin/sh"
			}
			var c *exec.Cmd
			if command != "" {
				c = exec.CommandContext(cmd.Context(), shell, "-c", command)
			} else {
				c = exec.CommandContext(cmd.Context(), shell)
				fmt.Fprintf(a.errOut, "editing override %s in %s; exit when done\n", o.Name, o.Dir)
			}
			c.Dir, c.Stdin, c.Stdout, c.Stderr = o.Dir, os.Stdin, a.out, a.errOut
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return exitCode(ee.ExitCode())
				}
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&command, "command", "c", "", "run this shell command instead of an interactive shell")
	return cmd
}

// computePlan plans a node locally from the data directory and config.
func (a *app) computePlan(cmd *cobra.Command, node string, extra []string) (*overrides.Plan, error) {
	c, err := a.config()
	if err != nil {
		return nil, err
	}
	st, err := a.existingStore()
	if err != nil {
		return nil, err
	}
	ov, err := a.overrides()
	if err != nil {
		return nil, err
	}
	p, err := overrides.Compute(cmd.Context(), overrides.Input{Config: c, Node: node, Image: st.Resolve, Overrides: ov, Extra: extra})
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings {
		a.log.Warn(w)
	}
	return p, nil
}

func overrideRenderCmd(a *app) *cobra.Command {
	var out string
	var extra []string
	cmd := &cobra.Command{
		Use:     "render NODE --out DIR",
		Short:   "Materialize a node's effective tree (image plus overrides) into DIR",
		Example: "  goldcast override render node007 --out /tmp/node007",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			p, err := a.computePlan(cmd, args[0], extra)
			if err != nil {
				return err
			}
			if err := p.Render(cmd.Context(), out); err != nil {
				return err
			}
			a.printf("rendered node %s (%s@%d + %d overrides, plan %s) into %s\n", p.Node, p.Image, p.Version, len(p.Layers)-1, p.Digest[:16], out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "empty directory to render into (required)")
	cmd.Flags().StringArrayVar(&extra, "override", nil, "extra override applied last (repeatable)")
	return cmd
}

// PlanJSON is the output of node plan --json.
type PlanJSON struct {
	Node     string            `json:"node"`
	Image    string            `json:"image"`
	Version  int               `json:"version"`
	Digest   string            `json:"digest"`
	Layers   []overrides.Layer `json:"layers"`
	Warnings []string          `json:"warnings,omitempty"`
	Paths    []PlanPath        `json:"paths"`
}

// PlanPath is one path of a plan and the layer that provided it.
type PlanPath struct {
	Path  string `json:"path"`
	Layer string `json:"layer"`
}

func nodePlanCmd(a *app) *cobra.Command {
	var extra []string
	cmd := &cobra.Command{
		Use:   "plan NAME|RANGE",
		Short: "Show a node's effective plan: image version, layers, and the layer each path comes from",
		Long: `Computes what the node receives: its image version with every override laid
over it, in order, and for each path the layer that provided it. A range
(node[001-040]) prints one summary line per node (plan digest, image,
layers); --json then gives a list.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := config.ExpandHosts(args[0])
			if err != nil {
				return err
			}
			if len(names) > 1 {
				return planSummaries(a, cmd, names, extra)
			}
			p, err := a.computePlan(cmd, args[0], extra)
			if err != nil {
				return err
			}
			out := PlanJSON{Node: p.Node, Image: p.Image, Version: p.Version, Digest: p.Digest, Layers: p.Layers, Warnings: p.Warnings}
			for _, e := range p.Manifest.Entries {
				out.Paths = append(out.Paths, PlanPath{Path: e.Path, Layer: p.Winner(e.Path)})
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			a.printf("node:    %s\nimage:   %s@%d\nplan:    %s\nlayers (lowest first):\n", p.Node, p.Image, p.Version, p.Digest)
			for i, l := range p.Layers {
				var notes []string
				if l.Group != "" {
					notes = append(notes, fmt.Sprintf("group %s, priority %d", l.Group, l.Priority))
				}
				if l.Private {
					notes = append(notes, "private")
				}
				if l.Missing {
					notes = append(notes, "MISSING")
				}
				a.printf("  %d. %-24s %-6s %s\n", i, l.Name, l.Kind, strings.Join(notes, "; "))
			}
			a.printf("paths:\n")
			for _, pp := range out.Paths {
				a.printf("  %-24s %s\n", pp.Layer, pp.Path)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&extra, "override", nil, "extra override applied last (repeatable)")
	a.addJSONFlag(cmd)
	return cmd
}

func nodeTokenCmd(a *app) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "token NAME|RANGE [--out FILE|DIR]",
		Short: "Issue nodes their own tokens (replacing any earlier ones)",
		Long: `Creates the credential a node uses to read its own plan, private overrides
included (goldcast deploy/update --node NAME --node-token-file FILE). Run it
on the server host; only a hash is kept in DATA/nodes/NAME.token. The token
is printed, or written to FILE (mode 0600). For a range, --out names a
directory that receives one file per node (NAME.token); without --out each
line is "NAME TOKEN".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := config.ExpandHosts(args[0])
			if err != nil {
				return err
			}
			if len(names) > 1 {
				return issueTokens(a, names, out)
			}
			tok, err := server.IssueNodeToken(a.dataDir, args[0])
			if err != nil {
				return err
			}
			if out == "" {
				a.printf("%s\n", tok)
				return nil
			}
			if err := os.WriteFile(out, []byte(tok+"\n"), 0o600); err != nil {
				return fmt.Errorf("write token: %w", err)
			}
			a.printf("token for node %s written to %s (%s)\n", args[0], out, time.Now().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the token to this file (mode 0600) instead of printing it")
	return cmd
}

// planSummaries prints one line (or JSON object) per node of a range.
func planSummaries(a *app, cmd *cobra.Command, names []string, extra []string) error {
	var out []PlanJSON
	var rows [][]string
	for _, n := range names {
		p, err := a.computePlan(cmd, n, extra)
		if err != nil {
			return err
		}
		out = append(out, PlanJSON{Node: p.Node, Image: p.Image, Version: p.Version, Digest: p.Digest, Layers: p.Layers, Warnings: p.Warnings})
		var layers []string
		for _, l := range p.Layers[1:] {
			layers = append(layers, l.Name)
		}
		rows = append(rows, []string{p.Node, fmt.Sprintf("%s@%d", p.Image, p.Version), p.Digest[:16], strings.Join(layers, " < ")})
	}
	if a.jsonOut {
		return a.printJSON(out)
	}
	a.table([]string{"NODE", "IMAGE", "PLAN", "OVERRIDES (lowest first)"}, rows)
	return nil
}

// issueTokens issues tokens for many nodes.
func issueTokens(a *app, names []string, dir string) error {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %q: %w", dir, err)
		}
	}
	for _, n := range names {
		tok, err := server.IssueNodeToken(a.dataDir, n)
		if err != nil {
			return err
		}
		if dir == "" {
			a.printf("%s %s\n", n, tok)
			continue
		}
		path := filepath.Join(dir, n+".token")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("write token: %w", err)
		}
	}
	if dir != "" {
		a.printf("tokens for %d nodes written to %s\n", len(names), dir)
	}
	return nil
}
