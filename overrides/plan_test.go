package overrides

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/manifest"
)

// precedenceConfig declares node n1 in every kind of layer: the global
// list (with an override that does not exist), four groups (g50 by the
// node's own list, the others by range; tieA and tieB share a priority),
// a group n1 is not in, the node's own list; the host override n1 and
// the extra override cli are created by the test.
func precedenceConfig() *config.Config {
	return &config.Config{
		Overrides: []string{"global", "absent"},
		Groups: []config.Group{
			{Name: "g50", Priority: 50, Image: "base", Overrides: []string{"g50"}},
			{Name: "tieA", Priority: 30, Nodes: "n[1-2]", Overrides: []string{"tieA"}},
			{Name: "tieB", Priority: 30, Nodes: "n1", Overrides: []string{"tieB"}},
			{Name: "g10", Priority: 10, Nodes: "n[1-3]", Overrides: []string{"g10"}},
			{Name: "other", Priority: 1, Nodes: "n2", Overrides: []string{"other"}},
		},
		Nodes: []config.Node{{Name: "n[1-2]", Groups: []string{"g50"}, Overrides: []string{"nodeov"}}},
	}
}

func TestPrecedence(t *testing.T) {
	// Each row is one file, p/NAME, present in the layers listed with
	// content naming the layer; the highest layer must win.
	rows := []struct {
		name   string
		layers []string
		winner string
	}{
		{"image-only", []string{"image"}, "base@1"},
		{"global-over-image", []string{"image", "global"}, "global"},
		{"group-over-global", []string{"global", "g50"}, "g50"},
		{"tie-b-over-low-group", []string{"image", "g50", "tieB"}, "tieB"},
		{"tie-declared-first-wins", []string{"tieA", "tieB"}, "tieA"},
		{"lowest-priority-number-wins", []string{"tieA", "g10", "g50"}, "g10"},
		{"host-over-groups", []string{"g10", "n1"}, "n1"},
		{"node-over-host", []string{"n1", "nodeov"}, "nodeov"},
		{"extra-over-node", []string{"nodeov", "cli"}, "cli"},
		{"extra-over-all", []string{"image", "global", "g50", "tieB", "tieA", "g10", "n1", "nodeov", "cli"}, "cli"},
		{"non-member-group-ignored", []string{"image", "other"}, "base@1"},
	}
	layers := map[string]tree{}
	for _, r := range rows {
		for _, l := range r.layers {
			if layers[l] == nil {
				layers[l] = tree{}
			}
			layers[l]["p/"+r.name] = "from " + l + "\n"
		}
	}
	// Type changes and directory metadata.
	layers["image"]["c/dir-to-file/x"] = "x"
	layers["g10"]["c/dir-to-file"] = "now a file"
	layers["image"]["c/file-to-dir"] = "a file"
	layers["global"]["c/file-to-dir/y"] = "y"
	layers["image"]["c/link-to-dir"] = "->elsewhere"
	layers["cli"]["c/link-to-dir/z"] = "z"

	e := newEnv(t)
	e.image("base", layers["image"])
	for _, l := range []string{"global", "g50", "tieA", "tieB", "g10", "other", "n1", "nodeov", "cli"} {
		e.override(l, layers[l], CreateOptions{})
	}
	// The highest override holding a directory sets its metadata; an
	// override's root never does.
	if err := os.Chmod(filepath.Join(e.ovs.Root(), "cli", "tree", "p"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(e.ovs.Root(), "cli", "tree"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := e.plan(precedenceConfig(), "n1", "cli")

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			path := "p/" + r.name
			if got := p.Winner(path); got != r.winner {
				t.Errorf("Winner(%q) = %q, want %q", path, got, r.winner)
			}
			want := "from " + strings.TrimSuffix(r.winner, "@1") + "\n"
			if r.winner == "base@1" {
				want = "from image\n"
			}
			if got := content(t, p, path); got != want {
				t.Errorf("content of %q = %q, want %q", path, got, want)
			}
		})
	}

	wantLayers := []Layer{
		{Name: "base@1", Kind: KindImage},
		{Name: "global", Kind: KindGlobal},
		{Name: "absent", Kind: KindGlobal, Missing: true},
		{Name: "g50", Kind: KindGroup, Group: "g50", Priority: 50},
		{Name: "tieB", Kind: KindGroup, Group: "tieB", Priority: 30},
		{Name: "tieA", Kind: KindGroup, Group: "tieA", Priority: 30},
		{Name: "g10", Kind: KindGroup, Group: "g10", Priority: 10},
		{Name: "n1", Kind: KindHost},
		{Name: "nodeov", Kind: KindNode},
		{Name: "cli", Kind: KindExtra},
	}
	if diff := cmp.Diff(wantLayers, p.Layers); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	wantWarnings := []string{`override "absent", named by the global overrides, does not exist`}
	if diff := cmp.Diff(wantWarnings, p.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}

	types := map[string]manifest.Type{}
	for _, en := range p.Manifest.Entries {
		types[en.Path] = en.Type
	}
	for path, want := range map[string]manifest.Type{
		"c/dir-to-file": manifest.TypeRegular, "c/file-to-dir": manifest.TypeDir, "c/file-to-dir/y": manifest.TypeRegular,
		"c/link-to-dir": manifest.TypeDir, "c/link-to-dir/z": manifest.TypeRegular,
	} {
		if types[path] != want {
			t.Errorf("%q is a %s, want a %s", path, types[path], want)
		}
	}
	if _, ok := types["c/dir-to-file/x"]; ok {
		t.Errorf("c/dir-to-file/x survived its directory being replaced by a file")
	}
	if got := entry(p, "p").Mode; got != 0o750 {
		t.Errorf("mode of p = %o, want 0750 from the cli override's directory", got)
	}
	if got := p.Winner("p"); got != "cli" {
		t.Errorf("Winner(p) = %q, want cli", got)
	}
	if got := entry(p, ".").Mode; got != 0o755 {
		t.Errorf("mode of the root = %o, want the image's 0755 (an override root never applies)", got)
	}
	if got := p.Winner("."); got != "base@1" {
		t.Errorf("Winner(.) = %q, want base@1", got)
	}
	if p.Image != "base" || p.Version != 1 {
		t.Errorf("plan image = %s@%d, want base@1", p.Image, p.Version)
	}

	// A missing extra override is an error, unlike the configuration's.
	_, err := Compute(context.Background(), e.input(precedenceConfig(), "n1", "nosuch"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `override "nosuch"`) {
		t.Errorf("missing extra override: err = %v, want ErrNotFound naming it", err)
	}
	// So is an undeclared node.
	if _, err := Compute(context.Background(), e.input(precedenceConfig(), "n9")); !errors.Is(err, ErrNotFound) {
		t.Errorf("undeclared node: err = %v, want ErrNotFound", err)
	}
}

func TestWhiteouts(t *testing.T) {
	e := newEnv(t)
	e.image("base", tree{
		"etc/old": "old", "etc/keep": "keep",
		"opt/app/a": "a", "opt/app/sub/b": "b", "opt/other": "other",
		"srv/old": "old",
	})
	e.override("global", tree{
		"etc/.wh.old": "", "opt/.wh.app": "", "extra/added": "added by global",
	}, CreateOptions{})
	// Removing a whole directory and providing a new one in one layer.
	e.override("grp", tree{".wh.srv": "", "srv/new": "new"}, CreateOptions{})
	// A higher layer removes what a lower override added.
	e.override("n1", tree{"extra/.wh.added": "", ".wh.not-there": ""}, CreateOptions{})
	cfg := &config.Config{
		Overrides: []string{"global"},
		Groups:    []config.Group{{Name: "grp", Priority: 50, Nodes: "n1", Overrides: []string{"grp"}}},
		Nodes:     []config.Node{{Name: "n1", Image: "base"}},
	}
	p := e.plan(cfg, "n1")

	var got []string
	for _, en := range p.Manifest.Entries {
		got = append(got, en.Path)
	}
	want := []string{".", "etc", "etc/keep", "extra", "opt", "opt/other", "srv", "srv/new"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	if w := p.Winner("srv"); w != "grp" {
		t.Errorf("Winner(srv) = %q, want grp", w)
	}

	// A whiteout marker must be a file naming something.
	e.override("bad", tree{"etc/.wh.dir/": ""}, CreateOptions{})
	_, err := Compute(context.Background(), e.input(cfg, "n1", "bad"))
	if err == nil || !strings.Contains(err.Error(), `override "bad": etc/.wh.dir: a whiteout marker must be a file`) {
		t.Errorf("directory whiteout: err = %v", err)
	}
}

func TestTemplates(t *testing.T) {
	cfg := &config.Config{
		Groups: []config.Group{
			{Name: "g", Priority: 10, Nodes: "n[1-2]", Image: "img", Overrides: []string{"tpl"},
				Vars: map[string]string{"role": "gpu", "rack": "r7"}},
			{Name: "h", Priority: 60, Nodes: "n[1-2]", Vars: map[string]string{"rack": "r1", "row": "3"}},
		},
		Nodes: []config.Node{
			{Name: "n1", IPs: []string{"10.0.0.5", "10.1.0.5"}, MACs: []string{"52:54:00:00:00:05"},
				Vars: map[string]string{"domain": "example.org", "role": "compute"}},
			{Name: "n2", Vars: map[string]string{"hostname": "alias", "domain": "example.net"}},
		},
	}
	const hosts = `{{first .IPs}} {{.Hostname}}.{{.Domain}} {{.Hostname}}
# {{upper .Vars.role}} {{.Vars.rack}} {{.Vars.row}} {{join "," .Groups}} {{.Image}} {{.Node}}
{{default "none" (index .Vars "missing")}} {{replace "." "-" .Domain}} {{lower "ABC"}} {{first .MACs}}
`
	tests := []struct {
		name    string
		node    string
		files   tree
		path    string
		want    string
		wantErr []string
	}{
		{
			name: "vars-and-ips", node: "n1", files: tree{"etc/hosts.tmpl": hosts}, path: "etc/hosts",
			want: "10.0.0.5 n1.example.org n1\n# COMPUTE r7 3 g,h img@1 n1\nnone example-org abc 52:54:00:00:00:05\n",
		},
		{
			name: "hostname-var-and-empty-lists", node: "n2", files: tree{"etc/hosts.tmpl": hosts}, path: "etc/hosts",
			want: " alias.example.net alias\n# GPU r7 3 g,h img@1 n2\nnone example-net abc \n",
		},
		{
			name: "parse-error-names-file-and-line", node: "n1",
			files: tree{"etc/bad.tmpl": "line one\nline two\n{{ .Node | nosuch }}\n"},
			wantErr: []string{
				`plan for node "n1": override "tpl": etc/bad.tmpl: template: etc/bad.tmpl:3:`,
				`function "nosuch" not defined`,
			},
		},
		{
			name: "missing-key", node: "n1", files: tree{"etc/m.tmpl": "ok\n{{.Vars.nope}}\n"},
			wantErr: []string{`override "tpl": etc/m.tmpl: template: etc/m.tmpl:2:`, `map has no entry for key "nope"`},
		},
		{
			name: "required", node: "n1", files: tree{"etc/r.tmpl": `{{required "set the zone variable" (index .Vars "zone")}}`},
			wantErr: []string{`override "tpl": etc/r.tmpl: template: etc/r.tmpl:1:`, "set the zone variable"},
		},
		{
			name: "template-and-file-clash", node: "n1", files: tree{"etc/a": "a", "etc/a.tmpl": "b"},
			wantErr: []string{`override "tpl": etc/a and etc/a.tmpl both give etc/a`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.image("img", tree{"etc/hosts": "127.0.0.1 localhost\n"})
			o := e.override("tpl", tc.files, CreateOptions{})
			p, err := Compute(context.Background(), e.input(cfg, tc.node))
			if tc.wantErr != nil {
				if p != nil {
					t.Errorf("Compute returned a plan with an error")
				}
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := content(t, p, tc.path); got != tc.want {
				t.Errorf("rendered %s:\n%s", tc.path, cmp.Diff(tc.want, got))
			}
			if w := p.Winner(tc.path); w != "tpl" {
				t.Errorf("Winner(%q) = %q, want tpl", tc.path, w)
			}
			if entry(p, tc.path+".tmpl") != nil {
				t.Errorf("the template file itself is in the plan")
			}
			// The output keeps the template's metadata.
			om, err := o.Manifest(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var src manifest.Entry
			for _, en := range om.Entries {
				if en.Path == tc.path+".tmpl" {
					src = en
				}
			}
			got := *entry(p, tc.path)
			want := src
			want.Path, want.Size, want.SHA256 = tc.path, int64(len(tc.want)), got.SHA256
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("rendered entry (-want +got):\n%s", diff)
			}
			if sum := sha256.Sum256([]byte(tc.want)); got.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("sha256 of rendered entry = %s, want %x", got.SHA256, sum)
			}
		})
	}
}

func TestHardLinksStayValid(t *testing.T) {
	e := newEnv(t)
	e.image("img", tree{
		"bin/a": "same", "bin/b": "=>bin/a", "bin/c": "=>bin/a",
		"lib/x": "pair", "lib/y": "=>lib/x",
	})
	// low replaces the leader of an image group and adds a group of its
	// own; high replaces that group's leader and one member of the
	// image's other group.
	e.override("low", tree{"bin/a": "new a", "share/p": "p", "share/q": "=>share/p", "share/r": "=>share/p"}, CreateOptions{})
	e.override("high", tree{"share/p": "high p", "lib/y": "y alone"}, CreateOptions{})
	cfg := &config.Config{Nodes: []config.Node{{Name: "n1", Image: "img", Overrides: []string{"low", "high"}}}}
	p := e.plan(cfg, "n1")

	links := map[string]string{}
	for _, en := range p.Manifest.Entries {
		if en.Type == manifest.TypeRegular {
			links[en.Path] = en.LinkTo
		}
	}
	want := map[string]string{
		"bin/a": "", "bin/b": "", "bin/c": "bin/b",
		"lib/x": "", "lib/y": "",
		"share/p": "", "share/q": "", "share/r": "share/q",
	}
	if diff := cmp.Diff(want, links); diff != "" {
		t.Errorf("LinkTo (-want +got):\n%s", diff)
	}
	if err := p.Manifest.Validate(); err != nil {
		t.Error(err)
	}
	for path, c := range map[string]string{"bin/a": "new a", "bin/c": "same", "share/r": "p", "share/p": "high p", "lib/y": "y alone"} {
		if got := content(t, p, path); got != c {
			t.Errorf("content of %s = %q, want %q", path, got, c)
		}
	}
}

func TestDigestDeterministic(t *testing.T) {
	e := newEnv(t)
	e.image("img", tree{"etc/motd": "hi"})
	e.override("site", tree{"etc/motd.tmpl": "welcome to {{.Hostname}} in {{.Vars.site}}\n", "etc/issue": "x"}, CreateOptions{})
	cfg := func(site string) *config.Config {
		return &config.Config{
			Overrides: []string{"site"},
			Nodes:     []config.Node{{Name: "n1", Image: "img", Vars: map[string]string{"site": site}}},
		}
	}
	a, b := e.plan(cfg("paris"), "n1"), e.plan(cfg("paris"), "n1")
	if a.Digest != b.Digest {
		t.Errorf("same inputs, different digests: %s and %s", a.Digest, b.Digest)
	}
	if diff := cmp.Diff(a.Manifest, b.Manifest); diff != "" {
		t.Errorf("same inputs, different manifests:\n%s", diff)
	}
	c := e.plan(cfg("lyon"), "n1")
	if c.Digest == a.Digest {
		t.Errorf("a changed template variable kept the digest %s", a.Digest)
	}
	if got := content(t, c, "etc/motd"); got != "welcome to n1 in lyon\n" {
		t.Errorf("rendered motd = %q", got)
	}
	// The layer names count even when the tree is the same.
	e.override("empty", tree{}, CreateOptions{})
	d := e.plan(cfg("paris"), "n1", "empty")
	if d.Manifest.Digest() != a.Manifest.Digest() || d.Digest == a.Digest {
		t.Errorf("an empty extra layer: manifest digest %s (want %s), plan digest %s (want different from %s)",
			d.Manifest.Digest(), a.Manifest.Digest(), d.Digest, a.Digest)
	}
}

func TestPrivateLayers(t *testing.T) {
	e := newEnv(t)
	e.image("img", tree{"etc/motd": "hi"})
	e.override("public", tree{"etc/motd": "public"}, CreateOptions{})
	e.override("secrets", tree{"etc/ssh/ssh_host_ed25519_key": "KEY"}, CreateOptions{Private: true, Comment: "host keys"})
	cfg := &config.Config{
		Overrides: []string{"public"},
		Groups:    []config.Group{{Name: "g", Priority: 50, Nodes: "n1", Overrides: []string{"secrets"}}},
		Nodes:     []config.Node{{Name: "n1", Image: "img"}},
	}
	p := e.plan(cfg, "n1")
	want := []Layer{
		{Name: "img@1", Kind: KindImage},
		{Name: "public", Kind: KindGlobal},
		{Name: "secrets", Kind: KindGroup, Group: "g", Priority: 50, Private: true},
	}
	if diff := cmp.Diff(want, p.Layers); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"secrets"}, p.Private()); diff != "" {
		t.Errorf("Private() (-want +got):\n%s", diff)
	}
	if dir := filepath.Join(e.ovs.Root(), "secrets"); mode(t, dir) != 0o700 {
		t.Errorf("private override directory %s has mode %o, want 0700", dir, mode(t, dir))
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestManyNodes computes the plans of a 200-node cluster: planning must
// stay cheap enough for a server to do per request.
func TestManyNodes(t *testing.T) {
	e := newEnv(t)
	base := tree{}
	for i := range 50 {
		base[fmt.Sprintf("usr/share/doc/pkg%02d/README", i)] = "readme"
	}
	base["etc/hosts"] = "127.0.0.1 localhost\n"
	e.image("img", base)
	e.override("site", tree{"etc/hosts.tmpl": "{{first .IPs}} {{.Hostname}}.{{.Domain}}\n", "etc/resolv.conf": "nameserver 10.0.0.1\n"}, CreateOptions{})
	e.override("rackA", tree{"etc/rack": "A"}, CreateOptions{})
	e.override("rackB", tree{"etc/rack": "B"}, CreateOptions{})
	e.override("gpu", tree{"etc/modules-load.d/nvidia.conf": "nvidia\n", "etc/rack.tmpl": "{{.Vars.rack}}-gpu"}, CreateOptions{})
	ips := make([]string, 200)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.0.%d.%d", i/100, i%100+1)
	}
	cfg := &config.Config{
		Overrides: []string{"site"},
		Groups: []config.Group{
			{Name: "rackA", Priority: 50, Image: "img", Nodes: "node[001-100]", Overrides: []string{"rackA"}, Vars: map[string]string{"rack": "A"}},
			{Name: "rackB", Priority: 50, Image: "img", Nodes: "node[101-200]", Overrides: []string{"rackB"}, Vars: map[string]string{"rack": "B"}},
			{Name: "gpu", Priority: 10, Nodes: "node[091-110]", Overrides: []string{"gpu"}},
		},
		Nodes: []config.Node{{Name: "node[001-200]", IPs: ips, Vars: map[string]string{"domain": "cluster"}}},
	}
	start := time.Now()
	plans := make([]*Plan, 0, 200)
	for i := 1; i <= 200; i++ {
		plans = append(plans, e.plan(cfg, fmt.Sprintf("node%03d", i)))
	}
	elapsed := time.Since(start)
	t.Logf("computed %d plans in %v (%v per plan)", len(plans), elapsed, elapsed/time.Duration(len(plans)))
	if elapsed > 5*time.Second {
		t.Errorf("computing 200 plans took %v, more than 5s", elapsed)
	}
	for _, c := range []struct{ node, hosts, rack string }{
		{"node001", "10.0.0.1 node001.cluster\n", "A"},
		{"node095", "10.0.0.95 node095.cluster\n", "A-gpu"},
		{"node105", "10.0.1.5 node105.cluster\n", "B-gpu"},
		{"node200", "10.0.1.100 node200.cluster\n", "B"},
	} {
		var n int
		fmt.Sscanf(c.node, "node%d", &n)
		p := plans[n-1]
		if got := content(t, p, "etc/hosts"); got != c.hosts {
			t.Errorf("%s: etc/hosts = %q, want %q", c.node, got, c.hosts)
		}
		if got := content(t, p, "etc/rack"); got != c.rack {
			t.Errorf("%s: etc/rack = %q, want %q", c.node, got, c.rack)
		}
	}
}
