package overrides

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/goldcast/goldcast/config"
)

// This file reimplements the little of the config package's group logic
// that config keeps internal (NodesUsingImage computes membership and the
// effective image but does not export them): which groups a node belongs
// to, ranked, and the image and variables that follow from them.

// findNode returns the declared node called name, host ranges expanded.
func findNode(c *config.Config, name string) (config.Node, bool) {
	for _, n := range c.ExpandedNodes() {
		if n.Name == name {
			return n, true
		}
	}
	return config.Node{}, false
}

// groupsOf returns the indexes in c.Groups of the groups n belongs to,
// most important first: lowest Priority first, equal priorities in the
// order declared. A node belongs to the groups it lists and to every group
// whose Nodes range includes its name.
func groupsOf(c *config.Config, n *config.Node) ([]int, error) {
	var out []int
	for i, g := range c.Groups {
		member := slices.Contains(n.Groups, g.Name)
		if !member && g.Nodes != "" {
			hosts, err := config.ExpandHosts(g.Nodes)
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", g.Name, err)
			}
			member = slices.Contains(hosts, n.Name)
		}
		if member {
			out = append(out, i)
		}
	}
	slices.SortStableFunc(out, func(a, b int) int { return cmp.Compare(c.Groups[a].Priority, c.Groups[b].Priority) })
	return out, nil
}

// imageOf returns the node's image reference: its own, else that of its
// most important group that sets one ("" when none does). groups is in
// importance order (see groupsOf).
func imageOf(c *config.Config, n *config.Node, groups []int) string {
	if n.Image != "" {
		return n.Image
	}
	for _, g := range groups {
		if c.Groups[g].Image != "" {
			return c.Groups[g].Image
		}
	}
	return ""
}

// varsOf merges the node's variables: its groups', least important first
// so a more important group's value wins, then its own.
func varsOf(c *config.Config, n *config.Node, groups []int) map[string]string {
	out := map[string]string{}
	for _, g := range slices.Backward(groups) {
		maps.Copy(out, c.Groups[g].Vars)
	}
	maps.Copy(out, n.Vars)
	return out
}
