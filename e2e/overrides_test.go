package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goldcast/goldcast/internal/testtree"
)

// overrideCluster makes an image, two nodes in a group, a group override
// with a template, and a private host override for node01.
func overrideCluster(t *testing.T, data string) (image string) {
	t.Helper()
	image = t.TempDir()
	os.MkdirAll(filepath.Join(image, "etc/ssh"), 0o755)
	os.WriteFile(filepath.Join(image, "etc/motd"), []byte("stock\n"), 0o644)
	os.WriteFile(filepath.Join(image, "etc/issue"), []byte("remove me\n"), 0o644)
	os.WriteFile(filepath.Join(image, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	ok(t, "--data", data, "image", "import", image, "--image", "base")

	group := t.TempDir()
	os.MkdirAll(filepath.Join(group, "etc"), 0o755)
	os.WriteFile(filepath.Join(group, "etc/motd.tmpl"), []byte("node {{.Node}} rack {{.Vars.rack}}\n"), 0o640)
	os.WriteFile(filepath.Join(group, "etc/.wh.issue"), nil, 0o644)
	ok(t, "--data", data, "override", "create", "compute", "--from", group)

	secret := t.TempDir()
	os.MkdirAll(filepath.Join(secret, "etc/ssh"), 0o755)
	os.WriteFile(filepath.Join(secret, "etc/ssh/ssh_host_ed25519_key"), []byte("node01 private key\n"), 0o600)
	ok(t, "--data", data, "override", "create", "node01", "--from", secret, "--private")

	cfg := `# two compute nodes
nodes:
  - name: node[01-02]
    image: base
    groups: [compute]
    vars: {rack: r7}
groups:
  - name: compute
    priority: 10
    overrides: [compute]
`
	if err := os.WriteFile(filepath.Join(data, "goldcast.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return image
}

func TestNodePlanRenderAndPrivateOverrides(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	overrideCluster(t, data)

	var plan struct {
		Image   string `json:"image"`
		Version int    `json:"version"`
		Layers  []struct {
			Name    string `json:"name"`
			Kind    string `json:"kind"`
			Private bool   `json:"private"`
		} `json:"layers"`
		Paths []struct {
			Path, Layer string
		} `json:"paths"`
	}
	r := ok(t, "--data", data, "node", "plan", "node01", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatalf("node plan --json: %v\n%s", err, r.stdout)
	}
	winners := map[string]string{}
	for _, p := range plan.Paths {
		winners[p.Path] = p.Layer
	}
	if plan.Image != "base" || plan.Version != 1 || len(plan.Layers) != 3 || !plan.Layers[2].Private {
		t.Errorf("plan layers: %+v", plan)
	}
	for p, want := range map[string]string{"etc/motd": "compute", "etc/ssh/ssh_host_ed25519_key": "node01", "etc/passwd": "base@1", "etc": "node01"} {
		if winners[p] != want {
			t.Errorf("winner of %s = %q, want %q", p, winners[p], want)
		}
	}
	if _, ok := winners["etc/issue"]; ok {
		t.Error("the whiteout did not remove etc/issue")
	}

	// A range plans every node; templates make their plans differ.
	var plans []struct {
		Node, Digest string
	}
	if err := json.Unmarshal([]byte(ok(t, "--data", data, "node", "plan", "node[01-02]", "--json").stdout), &plans); err != nil || len(plans) != 2 || plans[0].Digest == plans[1].Digest {
		t.Errorf("node plan over a range: %v %+v", err, plans)
	}

	out := filepath.Join(t.TempDir(), "node01")
	ok(t, "--data", data, "override", "render", "node01", "--out", out)
	if b, _ := os.ReadFile(filepath.Join(out, "etc/motd")); string(b) != "node node01 rack r7\n" {
		t.Errorf("rendered motd = %q", b)
	}
	if fi, err := os.Stat(filepath.Join(out, "etc/motd")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("rendered motd keeps the template's mode: %v %v", fi.Mode(), err)
	}

	// Over the API: each node reads its own plan with its own token; the
	// other node's token cannot read node01's private override.
	s := startServerConfigured(t, data, 0, nil)
	tokens := t.TempDir()
	ok(t, "--data", data, "node", "token", "node01", "--out", filepath.Join(tokens, "node01"))
	ok(t, "--data", data, "node", "token", "node02", "--out", filepath.Join(tokens, "node02"))
	dst1 := filepath.Join(t.TempDir(), "n1")
	ok(t, "deploy", "--server", s.url, "--node", "node01", "--node-token-file", filepath.Join(tokens, "node01"), "--target", dst1)
	testtree.Oracle(t, out, dst1)
	r = run(t, "deploy", "--server", s.url, "--node", "node01", "--node-token-file", filepath.Join(tokens, "node02"), "--target", filepath.Join(t.TempDir(), "x"))
	if r.code == 0 || !strings.Contains(r.stderr, "403") {
		t.Fatalf("node02's token read node01's plan: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, "deploy", "--server", s.url, "--node", "node01", "--target", filepath.Join(t.TempDir(), "y")); r.code == 0 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("a node plan without a token: exit %d %s", r.code, r.stderr)
	}
	dst2 := filepath.Join(t.TempDir(), "n2")
	ok(t, "deploy", "--server", s.url, "--node", "node02", "--node-token-file", filepath.Join(tokens, "node02"), "--target", dst2)
	if _, err := os.Stat(filepath.Join(dst2, "etc/ssh/ssh_host_ed25519_key")); err == nil {
		t.Fatal("node02 received node01's private host key")
	}
	if b, _ := os.ReadFile(filepath.Join(dst2, "etc/motd")); string(b) != "node node02 rack r7\n" {
		t.Errorf("node02 motd = %q", b)
	}

	// The configurator makes a deployed root the node's own, and keeps
	// host keys that came from a private override.
	r = ok(t, "sysconf", "--server", s.url, "--node", "node02", "--node-token-file", filepath.Join(tokens, "node02"), "--root", dst2)
	if b, _ := os.ReadFile(filepath.Join(dst2, "etc/hostname")); strings.TrimSpace(string(b)) != "node02" {
		t.Errorf("sysconf hostname = %q\n%s", b, r.stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(dst2, "etc/machine-id")); len(strings.TrimSpace(string(b))) != 32 {
		t.Errorf("sysconf machine-id = %q", b)
	}
	dst3 := filepath.Join(t.TempDir(), "n1c")
	ok(t, "deploy", "--server", s.url, "--node", "node01", "--node-token-file", filepath.Join(tokens, "node01"), "--target", dst3, "--configure")
	if b, _ := os.ReadFile(filepath.Join(dst3, "etc/ssh/ssh_host_ed25519_key")); string(b) != "node01 private key\n" {
		t.Errorf("deploy --configure replaced the host key from the private override: %q", b)
	}

	// Update re-applies overrides and leaves node-local excluded files.
	os.WriteFile(filepath.Join(dst1, "etc/motd"), []byte("drifted\n"), 0o644)
	os.MkdirAll(filepath.Join(dst1, "home/alice"), 0o755)
	os.WriteFile(filepath.Join(dst1, "home/alice/notes"), []byte("mine"), 0o644)
	ok(t, "update", "--server", s.url, "--node", "node01", "--node-token-file", filepath.Join(tokens, "node01"), "--root", dst1)
	if b, _ := os.ReadFile(filepath.Join(dst1, "etc/motd")); string(b) != "node node01 rack r7\n" {
		t.Errorf("update did not re-apply the override: motd = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dst1, "home/alice/notes")); string(b) != "mine" {
		t.Error("update removed a node-local file under an excluded path")
	}
	// Without --node the next update remembers it.
	os.WriteFile(filepath.Join(dst1, "etc/motd"), []byte("drifted again\n"), 0o644)
	ok(t, "update", "--server", s.url, "--node-token-file", filepath.Join(tokens, "node01"), "--root", dst1)
	if b, _ := os.ReadFile(filepath.Join(dst1, "etc/motd")); string(b) != "node node01 rack r7\n" {
		t.Errorf("a second update without --node did not use the node's plan: motd = %q", b)
	}
}
