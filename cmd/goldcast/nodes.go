package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/config"
)

// configFile returns the path of the cluster configuration, --config or
// DATA/goldcast.yaml, and whether --config gave it.
func (a *app) configFile() (string, bool) {
	if a.configPath != "" {
		return a.configPath, true
	}
	return filepath.Join(a.dataDir, "goldcast.yaml"), false
}

// editConfig opens the cluster configuration for editing.
func (a *app) editConfig() (*config.Editor, error) {
	path, _ := a.configFile()
	return config.OpenEditor(path)
}

// saveConfig saves an edited configuration, creating the data directory
// for the default path (an explicit --config's directory must exist).
func (a *app) saveConfig(ed *config.Editor) error {
	path, explicit := a.configFile()
	if !explicit {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
	}
	return ed.Save()
}

// completeNodes offers the node names of the configuration.
func completeNodes(a *app) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		c, err := a.config()
		if len(args) > 0 || err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, n := range c.Nodes {
			names = append(names, n.Name)
		}
		for _, n := range c.ExpandedNodes() {
			names = append(names, n.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeGroups offers the group names of the configuration.
func completeGroups(a *app) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		c, err := a.config()
		if len(args) > 0 || err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, g := range c.Groups {
			names = append(names, g.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func newNodeCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Declare, change and list the nodes of goldcast.yaml",
		Long: `The nodes goldcast images are declared in goldcast.yaml (--config, default
DATA/goldcast.yaml). These commands edit that file for you: they keep its
comments, order and formatting, check the result as the server would load
it, and replace the file atomically, or leave it untouched and say what is
wrong, file:line: field: problem.

A node entry may declare many nodes at once with a host range as its name:
node[001-032] is node001 to node032; "a,b" is a and b. Such an entry is
changed or removed as a whole: give its whole range.

node plan and node token concern a node's install: the image and override
layers it gets, and the token it reads them with.`,
	}
	cmd.AddCommand(nodeAddCmd(a), nodeSetCmd(a), nodeRmCmd(a), nodeLsCmd(a), nodeShowCmd(a), nodePlanCmd(a), nodeTokenCmd(a))
	return cmd
}

func newGroupCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Declare, change and list the groups of goldcast.yaml",
		Long: `A group gives its member nodes an image, override trees and variables. A node
belongs to the groups it lists (node add --group) and to every group whose
--nodes range takes it in. Where groups disagree, the more important one
wins: the lower --priority (default 50), then the one declared first.

These commands edit goldcast.yaml as the node commands do: comments and
formatting kept, the result checked, the file replaced atomically.`,
	}
	cmd.AddCommand(groupAddCmd(a), groupSetCmd(a), groupRmCmd(a), groupLsCmd(a))
	return cmd
}

// nodeFlags are the settings node add and node set take.
type nodeFlags struct {
	macs, ips, groups, overrides, vars []string
	macFrom, image, boot, transport    string
	kernelArgs                         string
	clearMACs                          bool
}

// register adds the flags to cmd; set adds those only node set has.
func (f *nodeFlags) register(cmd *cobra.Command, set bool, a *app) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.macs, "mac", nil, "MAC address (repeatable; for a range, one per node in order)")
	fl.StringVar(&f.macFrom, "mac-from", "", "file of MAC addresses, one per line, '#' comments (for a range, one per node in order)")
	fl.StringSliceVar(&f.ips, "ip", nil, "IP address (repeatable; for a range, one per node, or the first node's and the next ones count up)")
	fl.StringVar(&f.image, "image", "", "image the node is installed with, NAME or NAME@VERSION (default: its groups')")
	fl.StringSliceVar(&f.groups, "group", nil, "group the node belongs to (repeatable, or comma-separated)")
	fl.StringVar(&f.boot, "boot", "", "what the node does when it next network-boots: install, local or rescue (default local)")
	fl.StringVar(&f.transport, "transport", "", "how it fetches its image: rsync, http, multicast or torrent (default rsync)")
	fl.StringArrayVar(&f.vars, "var", nil, "variable for install scripts and templates, KEY=VALUE (repeatable)")
	fl.StringVar(&f.kernelArgs, "kernel-args", "", "extra kernel command line for the installer and rescue system")
	fl.StringSliceVar(&f.overrides, "override", nil, "override tree laid over the image, after the groups' (repeatable, in order)")
	if set {
		fl.BoolVar(&f.clearMACs, "clear-macs", false, "remove every MAC (before --mac or --mac-from, if given)")
	}
	_ = cmd.RegisterFlagCompletionFunc("image", completeImages(a))
	_ = cmd.RegisterFlagCompletionFunc("boot", cobra.FixedCompletions([]string{"install", "local", "rescue"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("transport", cobra.FixedCompletions([]string{"rsync", "http", "multicast", "torrent"}, cobra.ShellCompDirectiveNoFileComp))
}

// change turns the flags given to cmd into a change.
func (f *nodeFlags) change(cmd *cobra.Command) (config.NodeChange, error) {
	fl := cmd.Flags()
	ch := config.NodeChange{ClearMACs: f.clearMACs}
	if fl.Changed("mac") || fl.Changed("mac-from") {
		ch.MACs = append([]string{}, f.macs...)
		if f.macFrom != "" {
			macs, err := config.ReadMACs(f.macFrom)
			if err != nil {
				return ch, fmt.Errorf("--mac-from: %w", err)
			}
			ch.MACs = append(ch.MACs, macs...)
		}
	}
	if fl.Changed("ip") {
		ch.IPs = append([]string{}, f.ips...)
	}
	if fl.Changed("image") {
		ch.Image = &f.image
	}
	if fl.Changed("group") {
		ch.Groups = append([]string{}, f.groups...)
	}
	if fl.Changed("boot") {
		b := config.Boot(f.boot)
		ch.Boot = &b
	}
	if fl.Changed("transport") {
		t := config.Transport(f.transport)
		ch.Transport = &t
	}
	if fl.Changed("kernel-args") {
		ch.KernelArgs = &f.kernelArgs
	}
	if fl.Changed("override") {
		ch.Overrides = append([]string{}, f.overrides...)
	}
	vars, err := config.ParseVars(f.vars)
	if err != nil {
		return ch, fmt.Errorf("--var: %w", err)
	}
	ch.Vars = vars
	return ch, nil
}

func nodeAddCmd(a *app) *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "add NAME|RANGE",
		Short: "Declare a node, or a range of nodes in one entry",
		Long: `Adds an entry for NAME to the nodes of goldcast.yaml. NAME may be a host
range, node[001-032], which declares every node of the range in one entry
sharing every setting; then MACs and IPs are given one per node, in the
order of the names:

  --mac-from FILE   reads one MAC per line ('#' starts a comment); the file
                    must give exactly as many MACs as the range has nodes
  --ip START        one address gives the first node's; the next nodes get
                    the addresses after it: --ip 10.0.0.11 for node[001-032]
                    gives node001 10.0.0.11 up to node032 10.0.0.42

A single node may have several MACs and IPs (one per interface). A name
another entry already declares is refused. Groups must be declared first
(goldcast group add). The file is checked as the server would load it and
left unchanged if the result is invalid.`,
		Example: `  goldcast node add head --mac 52:54:00:12:34:56 --ip 10.0.0.1 --image rocky9 --group infra --var rack=r1
  goldcast node add 'node[001-032]' --mac-from rack1.macs --ip 10.0.0.11 --group compute --boot install
  goldcast --config /etc/goldcast/goldcast.yaml node add gpu1 --group gpu --transport multicast`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := f.change(cmd)
			if err != nil {
				return err
			}
			n := config.Node{Name: args[0]}
			if _, err := ch.Apply(&n); err != nil {
				return fmt.Errorf("add node %s: %w", args[0], err)
			}
			ed, err := a.editConfig()
			if err != nil {
				return err
			}
			if err := ed.AddNode(n); err != nil {
				return err
			}
			if err := a.saveConfig(ed); err != nil {
				return err
			}
			path, _ := a.configFile()
			hosts, _ := config.ExpandHosts(n.Name)
			what := "node " + n.Name
			if len(hosts) > 1 {
				what = fmt.Sprintf("%d nodes %s (%s)", len(hosts), n.Name, summarize(hosts))
			}
			a.printf("added %s to %s\n", what, path)
			for _, line := range describeNode(n) {
				a.printf("  %s\n", line)
			}
			return nil
		},
	}
	f.register(cmd, false, a)
	return cmd
}

// describeNode lists the settings of a new entry, one per line.
func describeNode(n config.Node) []string {
	var out []string
	add := func(key string, list []string) {
		if len(list) > 0 {
			out = append(out, key+": "+summarize(list))
		}
	}
	add("macs", n.MACs)
	add("ips", n.IPs)
	if n.Image != "" {
		out = append(out, "image: "+n.Image)
	}
	add("groups", n.Groups)
	if n.Boot != "" {
		out = append(out, "boot: "+string(n.Boot))
	}
	if n.Transport != "" {
		out = append(out, "transport: "+string(n.Transport))
	}
	if n.KernelArgs != "" {
		out = append(out, "kernel_args: "+n.KernelArgs)
	}
	add("overrides", n.Overrides)
	add("vars", varList(n.Vars))
	return out
}

// summarize lists names, shortened to the first and last when many.
func summarize(names []string) string {
	if len(names) > 4 {
		return fmt.Sprintf("%s, %s … %s", names[0], names[1], names[len(names)-1])
	}
	return strings.Join(names, ", ")
}

// varList formats variables as sorted KEY=VALUE.
func varList(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func nodeSetCmd(a *app) *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "set NAME|RANGE",
		Short: "Change the settings of nodes",
		Long: `Changes the entries declaring NAME, a node, a list (a,b) or a host range.
Only the settings given change; the rest of each entry keeps its text and
comments.

A list flag replaces the list: --mac, --mac-from, --ip, --group and
--override give the whole new list (--group '' empties it); --clear-macs
removes every MAC. --var KEY=VALUE sets one variable and --var KEY=
removes it; other variables stay. --image '' (likewise --boot,
--transport, --kernel-args) removes the setting, falling back to the
default or the groups'.

A node declared by a range entry is changed with the whole entry: to
change node005 of node[001-032], give node[001-032] (MACs and IPs then are
one per node, or one start IP, as for node add), or split the entry by
editing the file.`,
		Example: `  goldcast node set node001 --boot install
  goldcast node set 'node[001-032]' --image rocky9@4 --var rack=r2
  goldcast node set head --clear-macs --mac 52:54:00:12:34:57
  goldcast node set gpu1 --var cuda= --group ''`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNodes(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := f.change(cmd)
			if err != nil {
				return err
			}
			ed, err := a.editConfig()
			if err != nil {
				return err
			}
			type changed struct {
				name  string
				lines []string
			}
			var report []changed
			err = ed.SetNode(args[0], func(n *config.Node) error {
				lines, err := ch.Apply(n)
				report = append(report, changed{n.Name, lines})
				return err
			})
			if err != nil {
				return err
			}
			if err := a.saveConfig(ed); err != nil {
				return err
			}
			for _, r := range report {
				if len(r.lines) == 0 {
					a.printf("node %s: nothing to change\n", r.name)
					continue
				}
				a.printf("changed node %s:\n", r.name)
				for _, l := range r.lines {
					a.printf("  %s\n", l)
				}
			}
			return nil
		},
	}
	f.register(cmd, true, a)
	return cmd
}

func nodeRmCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NAME|RANGE",
		Aliases: []string{"remove"},
		Short:   "Remove nodes",
		Long: `Removes the entries declaring NAME, a node, a list (a,b) or a host range,
with their comments. A node declared by a range entry is removed with the
whole entry only: give the whole range. Group ranges (group --nodes) that
named the nodes stay; names they give that match no node are ignored.`,
		Example: `  goldcast node rm node017
  goldcast node rm 'node[001-032]'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNodes(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			ed, err := a.editConfig()
			if err != nil {
				return err
			}
			names, err := ed.RemoveNodes(args[0])
			if err != nil {
				return err
			}
			if err := a.saveConfig(ed); err != nil {
				return err
			}
			path, _ := a.configFile()
			if len(names) == 1 {
				a.printf("removed node %s from %s\n", names[0], path)
			} else {
				a.printf("removed %d nodes (%s) from %s\n", len(names), summarize(names), path)
			}
			return nil
		},
	}
	return cmd
}

func nodeLsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List nodes, one row per node",
		Long: `Lists every node declared, one row per node (a range entry gives one row
per name), with its effective image (its own or its groups'), every group
it belongs to (listed or through a group's --nodes range, most important
first), boot mode, transport, MACs and IPs. --json gives the full
effective record of each node, as node show does.`,
		Example: `  goldcast node ls
  goldcast --config /etc/goldcast/goldcast.yaml node ls --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.config()
			if err != nil {
				return err
			}
			nodes := c.EffectiveNodes()
			if a.jsonOut {
				if nodes == nil {
					nodes = []config.EffectiveNode{}
				}
				return a.printJSON(nodes)
			}
			rows := make([][]string, 0, len(nodes))
			for _, n := range nodes {
				rows = append(rows, []string{n.Name, dash(n.Image), dash(strings.Join(n.Groups, ",")), string(n.Boot),
					string(n.Transport), dash(strings.Join(n.MACs, ",")), dash(strings.Join(n.IPs, ","))})
			}
			a.table([]string{"NODE", "IMAGE", "GROUPS", "BOOT", "TRANSPORT", "MACS", "IPS"}, rows)
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

// dash shows an empty cell as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nodeShowCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show NAME|RANGE",
		Short: "Show the effective settings of nodes",
		Long: `Shows what the node NAME (one host name, also one of a range) ends up with:
the entry declaring it, its MACs and IPs, its image (its own or that of its
most important group that sets one, and which group), every group it
belongs to, listed or through a group's --nodes range, most important
first, its boot mode and transport, the override trees laid over its image
in order (global, its groups' from least to most important, its own) and
its variables (groups' then its own, later ones winning).`,
		Example: `  goldcast node show node007
  goldcast node show node007 --json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNodes(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.config()
			if err != nil {
				return err
			}
			names, err := config.ExpandHosts(args[0])
			if err != nil {
				return err
			}
			var shown []config.EffectiveNode
			for _, name := range names {
				n, err := c.Effective(name)
				if err != nil {
					path, _ := a.configFile()
					return fmt.Errorf("%w in %s", err, path)
				}
				shown = append(shown, n)
			}
			if a.jsonOut {
				if len(shown) == 1 {
					return a.printJSON(shown[0])
				}
				return a.printJSON(shown)
			}
			for i, n := range shown {
				if i > 0 {
					a.printf("\n")
				}
				a.showNode(n)
			}
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

// showNode prints one node's effective settings.
func (a *app) showNode(n config.EffectiveNode) {
	image := dash(n.Image)
	if n.ImageGroup != "" {
		image += " (from group " + n.ImageGroup + ")"
	}
	a.printf("node:        %s\n", n.Name)
	if n.Entry != n.Name {
		a.printf("entry:       %s\n", n.Entry)
	}
	a.printf("image:       %s\n", image)
	a.printf("groups:      %s\n", dash(strings.Join(n.Groups, ", ")))
	a.printf("macs:        %s\n", dash(strings.Join(n.MACs, ", ")))
	a.printf("ips:         %s\n", dash(strings.Join(n.IPs, ", ")))
	a.printf("boot:        %s\n", n.Boot)
	a.printf("transport:   %s\n", n.Transport)
	a.printf("kernel args: %s\n", dash(n.KernelArgs))
	a.printf("overrides:   %s\n", dash(strings.Join(n.Overrides, ", ")))
	a.printf("vars:        %s\n", dash(strings.Join(varList(n.Vars), " ")))
}

// groupFlags are the settings group add and group set take.
type groupFlags struct {
	priority        int
	image, nodes    string
	overrides, vars []string
}

// register adds the flags to cmd.
func (f *groupFlags) register(cmd *cobra.Command, a *app) {
	fl := cmd.Flags()
	fl.IntVar(&f.priority, "priority", config.DefaultPriority, "importance among a node's groups: lower wins")
	fl.StringVar(&f.image, "image", "", "image of member nodes that set none, NAME or NAME@VERSION")
	fl.StringSliceVar(&f.overrides, "overrides", nil, "override trees laid over members' images, comma-separated, in order")
	fl.StringVar(&f.nodes, "nodes", "", "host range of nodes belonging to the group without listing it, such as node[001-032]")
	fl.StringArrayVar(&f.vars, "var", nil, "variable for members' install scripts and templates, KEY=VALUE (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("image", completeImages(a))
}

// change turns the flags given to cmd into a change.
func (f *groupFlags) change(cmd *cobra.Command) (config.GroupChange, error) {
	fl := cmd.Flags()
	var ch config.GroupChange
	if fl.Changed("priority") {
		ch.Priority = &f.priority
	}
	if fl.Changed("image") {
		ch.Image = &f.image
	}
	if fl.Changed("overrides") {
		ch.Overrides = append([]string{}, f.overrides...)
	}
	if fl.Changed("nodes") {
		ch.Nodes = &f.nodes
	}
	vars, err := config.ParseVars(f.vars)
	if err != nil {
		return ch, fmt.Errorf("--var: %w", err)
	}
	ch.Vars = vars
	return ch, nil
}

func groupAddCmd(a *app) *cobra.Command {
	var f groupFlags
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Declare a group",
		Long: `Adds the group NAME to goldcast.yaml. Nodes join it by listing it
(node add --group NAME) or by being in its --nodes range. --priority ranks
it against a node's other groups (lower wins, default 50); --image is the
image of members that set none; --overrides are override trees laid over
their images.`,
		Example: `  goldcast group add compute --priority 10 --overrides base,hpc --nodes 'node[001-128]'
  goldcast group add gpu --priority 5 --image rocky9-cuda --var cuda=12`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := f.change(cmd)
			if err != nil {
				return err
			}
			g := config.Group{Name: args[0], Priority: config.DefaultPriority}
			ch.Apply(&g)
			ed, err := a.editConfig()
			if err != nil {
				return err
			}
			if err := ed.AddGroup(g); err != nil {
				return err
			}
			if err := a.saveConfig(ed); err != nil {
				return err
			}
			path, _ := a.configFile()
			a.printf("added group %s (priority %d) to %s\n", g.Name, g.Priority, path)
			if g.Image != "" {
				a.printf("  image: %s\n", g.Image)
			}
			if len(g.Overrides) > 0 {
				a.printf("  overrides: %s\n", strings.Join(g.Overrides, ", "))
			}
			if g.Nodes != "" {
				a.printf("  nodes: %s\n", g.Nodes)
			}
			if len(g.Vars) > 0 {
				a.printf("  vars: %s\n", strings.Join(varList(g.Vars), " "))
			}
			return nil
		},
	}
	f.register(cmd, a)
	return cmd
}

func groupSetCmd(a *app) *cobra.Command {
	var f groupFlags
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Change the settings of a group",
		Long: `Changes the group NAME. Only the settings given change; the rest of the
entry keeps its text and comments. --overrides gives the whole new list
(--overrides '' empties it); --var KEY=VALUE sets one variable and
--var KEY= removes it; --image '' and --nodes '' remove those settings.`,
		Example: `  goldcast group set compute --priority 20
  goldcast group set compute --image rocky9@5 --nodes 'node[001-256]' --var slurm=on`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeGroups(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := f.change(cmd)
			if err != nil {
				return err
			}
			ed, err := a.editConfig()
			if err != nil {
				return err
			}
			var lines []string
			err = ed.SetGroup(args[0], func(g *config.Group) error {
				lines = ch.Apply(g)
				return nil
			})
			if err != nil {
				return err
			}
			if err := a.saveConfig(ed); err != nil {
				return err
			}
			if len(lines) == 0 {
				a.printf("group %s: nothing to change\n", args[0])
				return nil
			}
			a.printf("changed group %s:\n", args[0])
			for _, l := range lines {
				a.printf("  %s\n", l)
			}
			return nil
		},
	}
	f.register(cmd, a)
	return cmd
}

func groupRmCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a group",
		Long: `Removes the group NAME. While nodes list it in their groups it refuses,
naming them; --force removes it from their lists as well. Nodes that were
members only through the group's --nodes range need nothing changed.`,
		Example: `  goldcast group rm gpu
  goldcast group rm compute --force`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeGroups(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			ed, err := a.editConfig()
			if err != nil {
				return err
			}
			users := ed.GroupUsers(args[0])
			if err := ed.RemoveGroup(args[0], force); err != nil {
				if !force && len(users) > 0 {
					return fmt.Errorf("%w (--force)", err)
				}
				return err
			}
			if err := a.saveConfig(ed); err != nil {
				return err
			}
			path, _ := a.configFile()
			a.printf("removed group %s from %s\n", args[0], path)
			if len(users) > 0 {
				a.printf("  and from the groups of nodes %s\n", strings.Join(users, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove the group even though nodes list it, taking it out of their lists")
	return cmd
}

func groupLsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List groups",
		Long: `Lists every group in the order declared, with its priority (lower wins),
image, override trees, its --nodes range and how many declared nodes belong
to it, by listing it or through the range. --json adds the member names
and the variables.`,
		Example: `  goldcast group ls
  goldcast group ls --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.config()
			if err != nil {
				return err
			}
			groups := c.GroupSummaries()
			if a.jsonOut {
				return a.printJSON(groups)
			}
			rows := make([][]string, 0, len(groups))
			for _, g := range groups {
				rows = append(rows, []string{g.Name, strconv.Itoa(g.Priority), dash(g.Image),
					dash(strings.Join(g.Overrides, ",")), dash(g.Nodes), strconv.Itoa(len(g.Members))})
			}
			a.table([]string{"GROUP", "PRIORITY", "IMAGE", "OVERRIDES", "NODES", "MEMBERS"}, rows)
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}
