package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// effectiveNode is the part of `node ls --json` and `node show --json`
// the tests read.
type effectiveNode struct {
	Name       string            `json:"name"`
	Entry      string            `json:"entry"`
	MACs       []string          `json:"macs"`
	IPs        []string          `json:"ips"`
	Image      string            `json:"image"`
	ImageGroup string            `json:"image_group"`
	Groups     []string          `json:"groups"`
	Boot       string            `json:"boot"`
	Transport  string            `json:"transport"`
	Overrides  []string          `json:"overrides"`
	Vars       map[string]string `json:"vars"`
}

// readFile returns the contents of path.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The node and group commands edit goldcast.yaml as the acceptance
// spellings write them, through --data and --config alike, keeping the
// file's comments and refusing edits that would make it invalid.
func TestNodeAndGroupCommands(t *testing.T) {
	data := t.TempDir()
	conf := filepath.Join(data, "goldcast.yaml")
	const header = "# cluster of the test lab\n# keep this comment\nserver:\n  listen: \":8080\"   # default port\n"
	if err := os.WriteFile(conf, []byte(header), 0o644); err != nil {
		t.Fatal(err)
	}

	// Groups first: nodes may only list declared groups.
	r := ok(t, "--data", data, "group", "add", "compute", "--priority", "10", "--overrides", "base,hpc", "--nodes", "node[001-004]")
	if !strings.Contains(r.stdout, "added group compute") {
		t.Errorf("group add printed %q", r.stdout)
	}
	ok(t, "--config", conf, "group", "add", "gpu", "--priority", "5", "--image", "rocky9-cuda", "--nodes", "node[003-004]")
	ok(t, "--data", data, "group", "add", "infra")

	// A single node, as the acceptance spelling gives it.
	r = ok(t, "--config", conf, "node", "add", "head", "--mac", "52:54:00:AA:00:01", "--ip", "10.0.0.1",
		"--image", "rocky9", "--group", "infra", "--var", "rack=r1")
	if !strings.Contains(r.stdout, "added node head") {
		t.Errorf("node add printed %q", r.stdout)
	}

	// A range in one entry, its MACs from a file, its IPs counted up.
	macs := filepath.Join(t.TempDir(), "rack1.macs")
	if err := os.WriteFile(macs, []byte("# rack 1, slot order\n52:54:00:00:00:01\n52:54:00:00:00:02  # slot 2\n\n52:54:00:00:00:03\n52:54:00:00:00:04\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, "--data", data, "node", "add", "node[001-004]", "--mac-from", macs, "--ip", "10.0.1.11", "--group", "compute")
	if got := strings.Count(readFile(t, conf), "- name: node[001-004]"); got != 1 {
		t.Errorf("the range has %d entries, want one:\n%s", got, readFile(t, conf))
	}

	// A MAC file that does not match the range is refused, naming both counts.
	short := filepath.Join(t.TempDir(), "short.macs")
	if err := os.WriteFile(short, []byte("52:54:00:00:01:01\n52:54:00:00:01:02\n52:54:00:00:01:03\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, "--data", data, "node", "add", "spare[1-4]", "--mac-from", short)
	if r.code == 0 || !strings.Contains(r.stderr, `3 MACs for the 4 nodes "spare[1-4]" declares`) {
		t.Errorf("a short MAC file: exit %d, stderr %q", r.code, r.stderr)
	}

	// node ls --json: one record per node, in order.
	var nodes []effectiveNode
	r = ok(t, "--data", data, "node", "ls", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &nodes); err != nil {
		t.Fatalf("node ls --json: %v\n%s", err, r.stdout)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if strings.Join(names, " ") != "head node001 node002 node003 node004" {
		t.Fatalf("node ls --json lists %q", names)
	}
	if n := nodes[0]; n.Image != "rocky9" || strings.Join(n.MACs, ",") != "52:54:00:aa:00:01" || strings.Join(n.IPs, ",") != "10.0.0.1" ||
		strings.Join(n.Groups, ",") != "infra" || n.Vars["rack"] != "r1" || n.Boot != "local" || n.Transport != "rsync" {
		t.Errorf("head: %+v", n)
	}
	if n := nodes[2]; n.Entry != "node[001-004]" || strings.Join(n.MACs, ",") != "52:54:00:00:00:02" || strings.Join(n.IPs, ",") != "10.0.1.12" {
		t.Errorf("node002: %+v", n)
	}
	if ips := nodes[4].IPs; strings.Join(ips, ",") != "10.0.1.14" {
		t.Errorf("node004 has IPs %q, want 10.0.1.14", ips)
	}

	// node show --json: the effective record, groups through ranges included.
	var show effectiveNode
	r = ok(t, "--config", conf, "node", "show", "node003", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &show); err != nil {
		t.Fatalf("node show --json: %v\n%s", err, r.stdout)
	}
	if show.Image != "rocky9-cuda" || show.ImageGroup != "gpu" || strings.Join(show.Groups, ",") != "gpu,compute" ||
		strings.Join(show.Overrides, ",") != "base,hpc" || strings.Join(show.MACs, ",") != "52:54:00:00:00:03" {
		t.Errorf("node show node003: %+v", show)
	}
	r = ok(t, "--data", data, "node", "show", "node001")
	if !strings.Contains(r.stdout, "entry:       node[001-004]") || !strings.Contains(r.stdout, "groups:      compute") {
		t.Errorf("node show node001:\n%s", r.stdout)
	}

	// node set: on a whole range; a name inside the range is refused.
	r = ok(t, "--data", data, "node", "set", "node[001-004]", "--boot", "install", "--var", "slot=7")
	if !strings.Contains(r.stdout, "boot: (none) -> install") {
		t.Errorf("node set printed %q", r.stdout)
	}
	r = run(t, "--data", data, "node", "set", "node002", "--boot", "rescue")
	if r.code == 0 || !regexp.MustCompile(`node "node002" is declared by the entry "node\[001-004\]" at line \d+`).MatchString(r.stderr) {
		t.Errorf("node set inside a range: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, "--config", conf, "node", "set", "head", "--var", "rack=", "--clear-macs", "--mac", "52:54:00:aa:00:02")
	r = ok(t, "--config", conf, "node", "show", "head", "--json")
	show = effectiveNode{}
	if err := json.Unmarshal([]byte(r.stdout), &show); err != nil {
		t.Fatal(err)
	}
	if _, has := show.Vars["rack"]; has || strings.Join(show.MACs, ",") != "52:54:00:aa:00:02" {
		t.Errorf("head after node set: %+v", show)
	}

	// An invalid edit is refused with file:line: field, the file unchanged.
	before := readFile(t, conf)
	r = run(t, "--data", data, "node", "add", "bad", "--mac", "52:54:00:zz:00:01")
	want := regexp.MustCompile(regexp.QuoteMeta(conf) + `:\d+: nodes\[2\]\.macs\[0\]: "52:54:00:zz:00:01" is not a MAC address`)
	if r.code == 0 || !want.MatchString(r.stderr) {
		t.Errorf("a bad MAC: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, "--config", conf, "node", "add", "lost", "--group", "nosuch")
	if r.code == 0 || !regexp.MustCompile(`goldcast\.yaml:\d+: nodes\[2\]\.groups\[0\]: unknown group "nosuch"`).MatchString(r.stderr) {
		t.Errorf("an unknown group: exit %d, stderr %q", r.code, r.stderr)
	}
	if after := readFile(t, conf); after != before {
		t.Errorf("refused edits changed the file:\n%s", after)
	}

	// group rm refuses while nodes list the group, and --force takes it out of them.
	r = run(t, "--data", data, "group", "rm", "compute")
	if r.code == 0 || !strings.Contains(r.stderr, `nodes list it: "node[001-004]"`) {
		t.Errorf("group rm of a used group: exit %d, stderr %q", r.code, r.stderr)
	}
	if after := readFile(t, conf); after != before {
		t.Errorf("a refused group rm changed the file:\n%s", after)
	}
	ok(t, "--data", data, "group", "rm", "gpu") // members through its range only
	ok(t, "--data", data, "group", "rm", "infra", "--force")

	var groups []struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	r = ok(t, "--data", data, "group", "ls", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &groups); err != nil {
		t.Fatalf("group ls --json: %v\n%s", err, r.stdout)
	}
	if len(groups) != 1 || groups[0].Name != "compute" || len(groups[0].Members) != 4 {
		t.Errorf("group ls --json: %+v", groups)
	}

	// node rm: a whole range, or nothing of it.
	r = run(t, "--data", data, "node", "rm", "node004")
	if r.code == 0 || !strings.Contains(r.stderr, "give the whole entry (node[001-004])") {
		t.Errorf("node rm inside a range: exit %d, stderr %q", r.code, r.stderr)
	}
	r = ok(t, "--data", data, "node", "rm", "node[001-004]")
	if !strings.Contains(r.stdout, "removed 4 nodes") {
		t.Errorf("node rm printed %q", r.stdout)
	}
	r = ok(t, "--data", data, "node", "ls")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "head ") {
		t.Errorf("node ls after the removals:\n%s", r.stdout)
	}

	// The comments the file started with are still there.
	if got := readFile(t, conf); !strings.HasPrefix(got, header) {
		t.Errorf("the file lost its comments:\n%s", got)
	}
}

// TestRangesWhereNodeNamesGo checks that show and token take host ranges.
func TestRangesWhereNodeNamesGo(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	ok(t, "--data", data, "node", "add", "r[1-3]", "--image", "img")
	var shown []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(ok(t, "--data", data, "node", "show", "r[2-3]", "--json").stdout), &shown); err != nil || len(shown) != 2 || shown[1].Name != "r3" {
		t.Fatalf("node show over a range: %v %+v", err, shown)
	}
	dir := filepath.Join(t.TempDir(), "tokens")
	ok(t, "--data", data, "node", "token", "r[1-3]", "--out", dir)
	for _, n := range []string{"r1", "r2", "r3"} {
		if fi, err := os.Stat(filepath.Join(dir, n+".token")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("token file of %s: %v", n, err)
		}
	}
}
