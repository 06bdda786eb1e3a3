package overrides

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/config"
)

// exampleYAML is the configuration of the worked example in
// docs/overrides.md; keep the two identical.
const exampleYAML = `overrides: [site]

groups:
  - name: compute
    priority: 50
    image: rocky9
    nodes: node[01-36]
    overrides: [compute]
    vars: {partition: batch}
  - name: gpu
    priority: 10
    nodes: node[33-36]
    overrides: [gpu, cuda]
    vars: {partition: gpu}
  - name: login
    priority: 20
    image: rocky9@1
    nodes: login[1-4]
    overrides: [login, ssh-keys]
    vars: {partition: interactive}

nodes:
  - name: node[01-36]
    vars: {domain: hpc.example.org}
  - name: login[1-4]
    vars: {domain: hpc.example.org}
`

// TestWorkedExampleMatchesDocs keeps the docs honest: the worked
// example's YAML block in docs/overrides.md is exactly exampleYAML.
func TestWorkedExampleMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "overrides.md"))
	if err != nil {
		t.Fatalf("read the docs: %v", err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Worked example")
	if !ok {
		t.Fatal("docs/overrides.md has no worked example section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the worked example has no yaml block")
	}
	if diff := cmp.Diff(exampleYAML, block); diff != "" {
		t.Errorf("docs/overrides.md worked example differs from the test (-test +docs):\n%s", diff)
	}
}

// TestWorkedExample is the worked example of docs/overrides.md: forty
// nodes in three groups.
func TestWorkedExample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goldcast.yaml")
	if err := os.WriteFile(path, []byte(exampleYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.ExpandedNodes()); n != 40 {
		t.Fatalf("the example declares %d nodes, want 40", n)
	}

	e := newEnv(t)
	e.image("rocky9", tree{"etc/motd": "Rocky Linux 9\n", "etc/os-release": "9.3\n"})
	e.image("rocky9", tree{"etc/motd": "Rocky Linux 9\n", "etc/os-release": "9.4\n"})
	e.override("site", tree{
		"etc/resolv.conf":          "nameserver 10.0.0.2\n",
		"etc/motd":                 "HPC cluster\n",
		"etc/slurm/node.conf.tmpl": "NodeName={{.Hostname}} Partition={{.Vars.partition}}\n",
	}, CreateOptions{})
	e.override("compute", tree{
		"etc/motd":                 "compute node: jobs only\n",
		"etc/sysctl.d/90-hpc.conf": "vm.swappiness = 1\n",
	}, CreateOptions{})
	e.override("gpu", tree{
		"etc/motd":                       "GPU node\n",
		"etc/sysctl.d/.wh.90-hpc.conf":   "",
		"etc/modules-load.d/nvidia.conf": "nvidia\n",
	}, CreateOptions{})
	e.override("cuda", tree{"usr/local/cuda/version.txt": "12.4\n"}, CreateOptions{})
	e.override("login", tree{"etc/motd": "login node: no jobs here\n"}, CreateOptions{})
	e.override("node07", tree{"etc/motd": "node07: DIMM B2 replaced, watch it\n"}, CreateOptions{})
	// ssh-keys is named by the login group but never created: a warning.

	tests := []struct {
		node     string
		image    string
		layers   []string
		winners  map[string]string
		contents map[string]string
		warnings int
	}{
		{
			node: "node01", image: "rocky9@2", layers: []string{"rocky9@2", "site", "compute"},
			winners: map[string]string{
				"etc/motd": "compute", "etc/resolv.conf": "site", "etc/os-release": "rocky9@2",
				"etc/sysctl.d/90-hpc.conf": "compute", "etc/slurm/node.conf": "site",
			},
			contents: map[string]string{"etc/slurm/node.conf": "NodeName=node01 Partition=batch\n"},
		},
		{
			node: "node07", image: "rocky9@2", layers: []string{"rocky9@2", "site", "compute", "node07"},
			winners: map[string]string{"etc/motd": "node07", "etc/sysctl.d/90-hpc.conf": "compute"},
		},
		{
			node: "node34", image: "rocky9@2", layers: []string{"rocky9@2", "site", "compute", "gpu", "cuda"},
			winners: map[string]string{
				"etc/motd": "gpu", "etc/sysctl.d/90-hpc.conf": "", "etc/modules-load.d/nvidia.conf": "gpu",
				"usr/local/cuda/version.txt": "cuda", "etc/resolv.conf": "site",
			},
			contents: map[string]string{"etc/slurm/node.conf": "NodeName=node34 Partition=gpu\n"},
		},
		{
			node: "login2", image: "rocky9@1", layers: []string{"rocky9@1", "site", "login", "ssh-keys"},
			winners: map[string]string{
				"etc/motd": "login", "etc/os-release": "rocky9@1", "etc/sysctl.d/90-hpc.conf": "",
				"usr/local/cuda/version.txt": "",
			},
			contents: map[string]string{"etc/slurm/node.conf": "NodeName=login2 Partition=interactive\n"},
			warnings: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.node, func(t *testing.T) {
			p := e.plan(cfg, tc.node)
			if got := p.Layers[0].Name; got != tc.image {
				t.Errorf("image = %s, want %s", got, tc.image)
			}
			var layers []string
			for _, l := range p.Layers {
				layers = append(layers, l.Name)
			}
			if diff := cmp.Diff(tc.layers, layers); diff != "" {
				t.Errorf("layers (-want +got):\n%s", diff)
			}
			for path, want := range tc.winners {
				if got := p.Winner(path); got != want {
					t.Errorf("Winner(%q) = %q, want %q", path, got, want)
				}
			}
			for path, want := range tc.contents {
				if got := content(t, p, path); got != want {
					t.Errorf("%s = %q, want %q", path, got, want)
				}
			}
			if len(p.Warnings) != tc.warnings {
				t.Errorf("warnings = %q, want %d", p.Warnings, tc.warnings)
			}
		})
	}
}
