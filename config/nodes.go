package config

import (
	"maps"
	"slices"
)

// ExpandedNodes returns one Node per host name declared, in the order
// declared. A node whose Name is a host range is copied once per name it
// expands to, with Name set to that name and, when the node gives one MAC
// (or IP) per name, MACs (or IPs) set to the one at the name's position.
//
// The Nodes returned share nothing with c. A Name that does not expand,
// which Load never lets through, is returned as it is; so are MACs and IPs
// whose count does not match a range's size, which are dropped from each
// copy instead.
func (c *Config) ExpandedNodes() []Node {
	var out []Node
	for _, n := range c.Nodes {
		hosts, err := ExpandHosts(n.Name)
		if err != nil {
			out = append(out, n.clone())
			continue
		}
		for j, h := range hosts {
			e := n.clone()
			e.Name = h
			if len(hosts) > 1 {
				e.MACs = nth(n.MACs, j, len(hosts))
				e.IPs = nth(n.IPs, j, len(hosts))
			}
			out = append(out, e)
		}
	}
	return out
}

// clone returns a deep copy of n.
func (n Node) clone() Node {
	n.MACs = slices.Clone(n.MACs)
	n.IPs = slices.Clone(n.IPs)
	n.Groups = slices.Clone(n.Groups)
	n.Overrides = slices.Clone(n.Overrides)
	n.Vars = maps.Clone(n.Vars)
	return n
}

// nth returns a list holding list[j] if list has one entry for each of
// count names, and nil otherwise.
func nth(list []string, j, count int) []string {
	if len(list) != count {
		return nil
	}
	return []string{list[j]}
}

// NodesUsingImage returns the names of the nodes, one per host name in the
// order of ExpandedNodes, whose effective image is the image called name.
// Versions are ignored, both in the images of nodes and groups and in name
// itself: a node using rocky9@3 uses rocky9. An empty name matches nothing.
//
// A node's effective image is its own Image if it sets one. Otherwise it is
// the Image of the most important of its groups that sets one: the group
// with the lowest Priority, or among those with equal priority, the one
// declared first. A node belongs to the groups it lists in Groups and to
// every group whose Nodes range includes its name.
func (c *Config) NodesUsingImage(name string) []string {
	name = imageName(name)
	if name == "" {
		return nil
	}
	members := make([]map[string]bool, len(c.Groups)) // host names in each group's Nodes range
	for i, g := range c.Groups {
		members[i] = map[string]bool{}
		if g.Nodes == "" {
			continue
		}
		hosts, _ := ExpandHosts(g.Nodes) // Load has checked it; a bad range names no one
		for _, h := range hosts {
			members[i][h] = true
		}
	}
	var out []string
	for _, n := range c.ExpandedNodes() {
		image := n.Image
		if image == "" {
			best := -1
			for i, g := range c.Groups {
				if g.Image == "" || !(members[i][n.Name] || slices.Contains(n.Groups, g.Name)) {
					continue
				}
				if best < 0 || g.Priority < c.Groups[best].Priority {
					best = i
				}
			}
			if best >= 0 {
				image = c.Groups[best].Image
			}
		}
		if image != "" && imageName(image) == name {
			out = append(out, n.Name)
		}
	}
	return out
}
