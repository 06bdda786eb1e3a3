package client

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/goldcast/goldcast/client/disklayout"
	"github.com/goldcast/goldcast/client/sysconf"
	"github.com/goldcast/goldcast/overrides"
)

// NodePlanInfo is the server's answer for a node: where its tree starts
// (ImageInfo) and the node's record.
type NodePlanInfo struct {
	ImageInfo
	Node         string                  `json:"node"`
	PlanDigest   string                  `json:"plan_digest"`
	Data         *overrides.TemplateData `json:"data"`
	PrivatePaths []string                `json:"private_paths"`
}

// NodePlan fetches a node's plan description.
func (c *Client) NodePlan(ctx context.Context, node string) (*NodePlanInfo, error) {
	var p NodePlanInfo
	if err := c.getJSON(ctx, Source{Node: node}.infoPath(), &p); err != nil {
		return nil, err
	}
	if p.Data == nil {
		return nil, fmt.Errorf("plan of node %q carries no node record", node)
	}
	return &p, nil
}

// ConfigureOptions say which root to make a node's, and which steps to
// skip.
type ConfigureOptions struct {
	Node string
	Root string
	// Disk is the target disk for the bootloader (e.g. /dev/sda).
	Disk                                                                 string
	NoBootloader, NoNetwork, NoFstab, NoHostname, NoMachineID, NoSSHKeys bool
	// Layout, when set, is the layout of the disks the root was laid on
	// (what an installer made), used instead of the image's captured one.
	Layout *disklayout.Layout
	Log    *slog.Logger
}

// Configure runs the system configurator on a root laid down for a node:
// fstab from the image's captured layout, hostname, network, machine-id,
// SSH host keys (kept when the node's plan provides them in a private
// override), bootloader.
func (c *Client) Configure(ctx context.Context, o ConfigureOptions) ([]sysconf.Change, error) {
	p, err := c.NodePlan(ctx, o.Node)
	if err != nil {
		return nil, err
	}
	layout := o.Layout
	if layout == nil && len(p.DiskLayout) > 0 {
		layout = &disklayout.Layout{}
		if err := json.Unmarshal(p.DiskLayout, layout); err != nil {
			return nil, fmt.Errorf("disk layout of %s@%d: %w", p.Image, p.Version, err)
		}
	}
	d := p.Data
	node := sysconf.Node{
		Name: d.Node, Hostname: d.Hostname, Domain: d.Domain, IPs: d.IPs, MACs: d.MACs,
		Gateway: d.Vars["gateway"], DHCP: len(d.IPs) == 0 || d.Vars["network"] == "dhcp",
	}
	if dns := d.Vars["dns"]; dns != "" {
		node.DNS = strings.FieldsFunc(dns, func(r rune) bool { return r == ',' || r == ' ' })
	}
	return sysconf.Configure(ctx, sysconf.Options{
		Root: o.Root, Layout: layout, Node: node, Disk: o.Disk,
		NoBootloader: o.NoBootloader || o.Disk == "", NoNetwork: o.NoNetwork, NoFstab: o.NoFstab,
		NoHostname: o.NoHostname, NoMachineID: o.NoMachineID, NoSSHKeys: o.NoSSHKeys,
		KeepSSHKeys: planHasPrivateSSHKeys(p), Log: o.Log,
	})
}

// planHasPrivateSSHKeys reports whether a private override of the node
// provides SSH host keys, which the configurator must then keep.
func planHasPrivateSSHKeys(p *NodePlanInfo) bool {
	for _, path := range p.PrivatePaths {
		if strings.HasPrefix(path, "etc/ssh/ssh_host_") {
			return true
		}
	}
	return false
}
