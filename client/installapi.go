package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/goldcast/goldcast/api"
)

// nodePath fills the {node} (and other) placeholders of an api route.
func nodePath(route string, values ...string) string {
	r := route
	for i := 0; i+1 < len(values); i += 2 {
		r = strings.Replace(r, "{"+values[i]+"}", url.PathEscape(values[i+1]), 1)
	}
	return r
}

// InstallPlan fetches the install plan of node.
func (c *Client) InstallPlan(ctx context.Context, node string) (*api.InstallPlan, error) {
	var p api.InstallPlan
	if err := c.getJSON(ctx, nodePath(api.InstallPlanPath, "node", node), &p); err != nil {
		return nil, fmt.Errorf("install plan of %s: %w", node, err)
	}
	return &p, nil
}

// InstallScript downloads one of node's install scripts and checks it
// against the digest the plan gave.
func (c *Client) InstallScript(ctx context.Context, node string, s api.InstallScript) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, nodePath(api.ScriptPath, "node", node, "phase", s.Phase, "name", s.Name), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s script %s: %w", s.Phase, s.Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s script %s: %w", s.Phase, s.Name, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != s.SHA256 {
		return nil, fmt.Errorf("%s script %s: sha256 %s, the plan says %s (changed on the server during the install?)", s.Phase, s.Name, got, s.SHA256)
	}
	return data, nil
}

// ReportHealth sends an installed node's first-boot report.
func (c *Client) ReportHealth(ctx context.Context, node string, h api.HealthReport) error {
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, nodePath(api.HealthPath, "node", node), bytes.NewReader(body), map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return fmt.Errorf("health report of %s: %w", node, err)
	}
	resp.Body.Close()
	return nil
}
