package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// smallConfig is the fixture of the exact-output tests: comments before,
// beside and after entries, a blank line between them, keys out of the
// format's order.
const smallConfig = `# cluster
nodes:
  # head node
  - name: head   # the boss
    image: rocky9
    macs:
      - 52:54:00:00:00:01

  # compute
  - name: node[1-2]
    groups: [compute]

groups:
  - name: compute  # batch
    priority: 10
`

// numbered returns count names, prefix followed by 1, 2 and so on.
func numbered(prefix string, count int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// openFixture writes content to a goldcast.yaml in a new directory and
// opens it for editing.
func openFixture(t *testing.T, content string) (*Editor, string) {
	t.Helper()
	path := writeConfig(t, content)
	e, err := OpenEditor(path)
	if err != nil {
		t.Fatalf("OpenEditor: %v", err)
	}
	return e, path
}

func TestEditorOutput(t *testing.T) {
	tests := []struct {
		name    string
		content string
		edit    func(e *Editor) error
		want    string
	}{
		{
			name:    "no edit",
			content: smallConfig,
			edit:    func(*Editor) error { return nil },
			want:    smallConfig,
		},
		{
			name:    "add node",
			content: smallConfig,
			edit: func(e *Editor) error {
				return e.AddNode(Node{Name: "gpu1", IPs: []string{"10.0.0.9"}, Groups: []string{"compute"}, Boot: BootInstall, Vars: map[string]string{"k": "v", "n": "1"}})
			},
			want: `# cluster
nodes:
  # head node
  - name: head   # the boss
    image: rocky9
    macs:
      - 52:54:00:00:00:01

  # compute
  - name: node[1-2]
    groups: [compute]
  - name: gpu1
    ips:
      - 10.0.0.9
    groups: [compute]
    boot: install
    vars:
      k: v
      n: "1"

groups:
  - name: compute  # batch
    priority: 10
`,
		},
		{
			name:    "set node",
			content: smallConfig,
			edit: func(e *Editor) error {
				return e.SetNode("head", func(n *Node) error {
					n.Image = "rocky10"
					n.Groups = []string{"compute"}
					n.Boot = BootRescue
					return nil
				})
			},
			want: `# cluster
nodes:
  # head node
  - name: head # the boss
    image: rocky10
    macs:
      - 52:54:00:00:00:01
    groups: [compute]
    boot: rescue

  # compute
  - name: node[1-2]
    groups: [compute]

groups:
  - name: compute  # batch
    priority: 10
`,
		},
		{
			name:    "set node removing settings",
			content: smallConfig,
			edit: func(e *Editor) error {
				return e.SetNode("head", func(n *Node) error {
					n.Image, n.MACs = "", nil
					return nil
				})
			},
			want: `# cluster
nodes:
  # head node
  - name: head # the boss

  # compute
  - name: node[1-2]
    groups: [compute]

groups:
  - name: compute  # batch
    priority: 10
`,
		},
		{
			name:    "remove first node",
			content: smallConfig,
			edit:    func(e *Editor) error { _, err := e.RemoveNodes("head"); return err },
			want: `# cluster
nodes:
  # compute
  - name: node[1-2]
    groups: [compute]

groups:
  - name: compute  # batch
    priority: 10
`,
		},
		{
			name:    "remove last node",
			content: smallConfig,
			edit:    func(e *Editor) error { _, err := e.RemoveNodes("node[1-2]"); return err },
			want: `# cluster
nodes:
  # head node
  - name: head   # the boss
    image: rocky9
    macs:
      - 52:54:00:00:00:01

groups:
  - name: compute  # batch
    priority: 10
`,
		},
		{
			name:    "add group, set group",
			content: smallConfig,
			edit: func(e *Editor) error {
				if err := e.AddGroup(Group{Name: "gpu", Priority: 5, Image: "cuda", Overrides: []string{"a", "b"}, Nodes: "gpu[1-4]"}); err != nil {
					return err
				}
				return e.SetGroup("compute", func(g *Group) error {
					g.Priority = DefaultPriority
					g.Image = "rocky9"
					return nil
				})
			},
			want: `# cluster
nodes:
  # head node
  - name: head   # the boss
    image: rocky9
    macs:
      - 52:54:00:00:00:01

  # compute
  - name: node[1-2]
    groups: [compute]

groups:
  - name: compute # batch
    priority: 50
    image: rocky9
  - name: gpu
    priority: 5
    image: cuda
    overrides: [a, b]
    nodes: gpu[1-4]
`,
		},
		{
			name:    "remove group by force",
			content: smallConfig,
			edit:    func(e *Editor) error { return e.RemoveGroup("compute", true) },
			want: `# cluster
nodes:
  # head node
  - name: head   # the boss
    image: rocky9
    macs:
      - 52:54:00:00:00:01

  # compute
  - name: node[1-2]

groups:
`,
		},
		{
			name:    "empty file",
			content: "",
			edit: func(e *Editor) error {
				if err := e.AddGroup(Group{Name: "compute", Priority: DefaultPriority}); err != nil {
					return err
				}
				return e.AddNode(Node{Name: "n[01-02]", MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, Groups: []string{"compute"}})
			},
			want: `groups:
  - name: compute
nodes:
  - name: n[01-02]
    macs:
      - 52:54:00:00:00:01
      - 52:54:00:00:00:02
    groups: [compute]
`,
		},
		{
			name:    "comments only, no final newline",
			content: "# to be filled in",
			edit:    func(e *Editor) error { return e.AddNode(Node{Name: "a"}) },
			want:    "# to be filled in\nnodes:\n  - name: a\n",
		},
		{
			name:    "empty lists",
			content: "server:\n  listen: :80\nnodes:    # none yet\ngroups: []\n",
			edit: func(e *Editor) error {
				if err := e.AddNode(Node{Name: "a"}); err != nil {
					return err
				}
				return e.AddGroup(Group{Name: "g", Priority: 1})
			},
			want: "server:\n  listen: :80\nnodes: # none yet\n  - name: a\ngroups:\n  - name: g\n    priority: 1\n",
		},
		{
			name: "anchors",
			content: `nodes:
  - name: a
    vars: &rack {rack: r1}
  - name: b
    vars:
      <<: *rack
      slot: 7
  - name: c
    vars: *rack
`,
			edit: func(e *Editor) error {
				if _, err := e.RemoveNodes("a"); err != nil {
					return err
				}
				return e.SetNode("b", func(n *Node) error {
					n.Vars["slot"] = "8"
					return nil
				})
			},
			want: `nodes:
  - name: b
    vars:
      <<: &rack {rack: r1}
      slot: "8"
  - name: c
    vars: *rack
`,
		},
		{
			name: "flow style list",
			content: `# nodes in flow style
nodes: [{name: a}, {name: b}] # two
`,
			edit: func(e *Editor) error { _, err := e.RemoveNodes("a"); return err },
			want: `# nodes in flow style
nodes: [{name: b}] # two
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, path := openFixture(t, tt.content)
			if err := tt.edit(e); err != nil {
				t.Fatalf("edit: %v", err)
			}
			got, err := e.Bytes()
			if err != nil {
				t.Fatalf("Bytes: %v", err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("Bytes mismatch (-want +got):\n%s", diff)
			}
			if err := e.Save(); err != nil {
				t.Fatalf("Save: %v", err)
			}
			saved, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(saved)); diff != "" {
				t.Errorf("saved file mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// commentedConfig is a goldcast.yaml as a person writes it: comments
// everywhere, anchors, merge keys, flow and block style.
const commentedConfig = `# goldcast cluster configuration
# maintained by the HPC team

server:
  listen: "127.0.0.1:9000"   # API
  allow_networks: [10.0.0.0/8]

# --- nodes ---
nodes:
  # the head node
  - name: head
    macs: ["52-54-00-AB-CD-EF"]
    ips: [10.0.0.1]
    image: rocky9@3
    boot: install
    vars: &rack1 {rack: r1}

  # compute rack 1
  - name: node[001-004]   # four of them
    macs:
      - 52:54:00:00:00:01
      - 52:54:00:00:00:02
      - 52:54:00:00:00:03
      - 52:54:00:00:00:04
    groups: [compute]
    vars:
      <<: *rack1
      slot: 7
    # end of rack 1

  - name: "login1, login2"   # logins
    groups: [login]

# --- groups ---
groups:
  - name: compute   # batch work
    priority: 10
    image: rocky9
    overrides: [compute-base]

  # the login group takes its nodes by range
  - name: login
    nodes: "login[1-2]"

overrides: [site]   # everyone
`

// commentLines returns the comment lines of text and the comments at the
// ends of lines, trimmed.
func commentLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "# "); i >= 0 {
			out = append(out, strings.TrimSpace(l[i:]))
		}
	}
	return out
}

func TestEditorKeepsComments(t *testing.T) {
	e, path := openFixture(t, commentedConfig)
	steps := []func() error{
		func() error { return e.AddGroup(Group{Name: "gpu", Priority: 5, Image: "rocky9-cuda"}) },
		func() error {
			return e.AddNode(Node{Name: "gpu[1-2]", MACs: []string{"52:54:00:00:01:01", "52:54:00:00:01:02"}, Groups: []string{"gpu", "compute"}})
		},
		func() error {
			return e.SetNode("node[001-004]", func(n *Node) error {
				n.Boot = BootInstall
				n.Vars["slot"] = "8"
				return nil
			})
		},
		func() error {
			return e.SetGroup("compute", func(g *Group) error { g.Image = "rocky9@4"; return nil })
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := e.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	if diff := cmp.Diff(commentLines(commentedConfig), commentLines(got)); diff != "" {
		t.Errorf("comments changed (-want +got):\n%s\nfile:\n%s", diff, got)
	}
	// Untouched entries keep their text exactly.
	for _, part := range []string{
		"# goldcast cluster configuration\n# maintained by the HPC team\n\nserver:\n  listen: \"127.0.0.1:9000\"   # API\n",
		"  # the head node\n  - name: head\n    macs: [\"52-54-00-AB-CD-EF\"]\n    ips: [10.0.0.1]\n    image: rocky9@3\n    boot: install\n    vars: &rack1 {rack: r1}\n\n",
		"  - name: \"login1, login2\"   # logins\n    groups: [login]\n",
		"  # the login group takes its nodes by range\n  - name: login\n    nodes: \"login[1-2]\"\n",
		"\noverrides: [site]   # everyone\n",
	} {
		if !strings.Contains(got, part) {
			t.Errorf("file lost the text %q:\n%s", part, got)
		}
	}
	// Entries stay in order; new ones come last.
	var order []string
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "- name:") {
			order = append(order, strings.TrimSpace(l))
		}
	}
	wantOrder := []string{
		"- name: head", "- name: node[001-004] # four of them", `- name: "login1, login2"   # logins`, "- name: gpu[1-2]",
		"- name: compute # batch work", "- name: login", "- name: gpu",
	}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("entry order (-want +got):\n%s", diff)
	}

	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load of the edited file: %v", err)
	}
	want := Node{
		Name: "node[001-004]", MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:00:00:04"},
		Groups: []string{"compute"}, Boot: BootInstall, Transport: TransportRsync, Vars: map[string]string{"rack": "r1", "slot": "8"},
	}
	if diff := cmp.Diff(want, c.Nodes[1]); diff != "" {
		t.Errorf("edited node (-want +got):\n%s", diff)
	}
	if got := c.NodesUsingImage("rocky9-cuda"); !cmp.Equal(got, []string{"gpu1", "gpu2"}) {
		t.Errorf("NodesUsingImage(rocky9-cuda) = %q, want gpu1 and gpu2", got)
	}
}

func TestEditorRemoveKeepsAnchors(t *testing.T) {
	e, path := openFixture(t, commentedConfig)
	if _, err := e.RemoveNodes("head"); err != nil {
		t.Fatalf("RemoveNodes: %v", err)
	}
	if err := e.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"rack": "r1", "slot": "7"}, c.Nodes[0].Vars); diff != "" {
		t.Errorf("vars merged from the removed node's anchor (-want +got):\n%s", diff)
	}
}

func TestEditorRanges(t *testing.T) {
	tests := []struct {
		name string
		edit func(e *Editor) error
		want string // the error, without the directory
	}{
		{
			name: "set a name inside a range",
			edit: func(e *Editor) error { return e.SetNode("node002", func(*Node) error { return nil }) },
			want: `change node node002: node "node002" is declared by the entry "node[001-004]" at line 19, which declares 4 nodes; to change it, give the whole entry (node[001-004]) or split the entry by hand`,
		},
		{
			name: "remove part of a range",
			edit: func(e *Editor) error { _, err := e.RemoveNodes("node[003-005]"); return err },
			want: `remove node node[003-005]: node "node003" is declared by the entry "node[001-004]" at line 19, which declares 4 nodes; to remove it, give the whole entry (node[001-004]) or split the entry by hand`,
		},
		{
			name: "part of a list",
			edit: func(e *Editor) error { return e.SetNode("login2", func(*Node) error { return nil }) },
			want: `change node login2: node "login2" is declared by the entry "login1, login2" at line 31, which declares 2 nodes; to change it, give the whole entry (login1, login2) or split the entry by hand`,
		},
		{
			name: "unknown node",
			edit: func(e *Editor) error { return e.SetNode("head,nope", func(*Node) error { return nil }) },
			want: `change node head,nope: no node "nope" is declared in goldcast.yaml`,
		},
		{
			name: "unknown nodes",
			edit: func(e *Editor) error { _, err := e.RemoveNodes("x[1-3]"); return err },
			want: `remove node x[1-3]: nodes "x1" and 2 more are not declared in goldcast.yaml`,
		},
		{
			name: "bad range",
			edit: func(e *Editor) error { _, err := e.RemoveNodes("node[1-"); return err },
			want: `remove node node[1-: host range "node[1-": "[" at offset 4 is never closed`,
		},
		{
			name: "add overlapping range",
			edit: func(e *Editor) error { return e.AddNode(Node{Name: "node[004-008]"}) },
			want: `add node node[004-008]: node "node004" is already declared by the entry "node[001-004]" at line 19`,
		},
		{
			name: "add twice in one edit",
			edit: func(e *Editor) error {
				if err := e.AddNode(Node{Name: "x"}); err != nil {
					return err
				}
				return e.AddNode(Node{Name: "w,x"})
			},
			want: `add node w,x: node "x" is already declared by the entry "x" (added in this edit)`,
		},
		{
			name: "add group twice",
			edit: func(e *Editor) error { return e.AddGroup(Group{Name: "login"}) },
			want: `add group login: already declared at line 42`,
		},
		{
			name: "change unknown group",
			edit: func(e *Editor) error { return e.SetGroup("gpu", func(*Group) error { return nil }) },
			want: `change group gpu: no group "gpu" is declared in goldcast.yaml`,
		},
		{
			name: "remove used group",
			edit: func(e *Editor) error { return e.RemoveGroup("compute", false) },
			want: `remove group compute: nodes list it: "node[001-004]" at line 19; take it out of their groups first, or force the removal, which takes it out of them`,
		},
		{
			name: "fn fails",
			edit: func(e *Editor) error {
				return e.SetNode("node[001-004]", func(*Node) error { return errors.New("no") })
			},
			want: `change node node[001-004]: no`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, path := openFixture(t, commentedConfig)
			err := tt.edit(e)
			if err == nil {
				t.Fatalf("edit succeeded, want error %q", tt.want)
			}
			got := strings.ReplaceAll(err.Error(), filepath.Dir(path)+string(filepath.Separator), "")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEditorWholeRanges(t *testing.T) {
	e, path := openFixture(t, commentedConfig)
	var seen []string
	err := e.SetNode("head,node[001-004],login[1-2]", func(n *Node) error {
		seen = append(seen, n.Name)
		n.Transport = TransportMulticast
		return nil
	})
	if err != nil {
		t.Fatalf("SetNode: %v", err)
	}
	if diff := cmp.Diff([]string{"head", "node[001-004]", "login1, login2"}, seen); diff != "" {
		t.Errorf("entries changed (-want +got):\n%s", diff)
	}
	names, err := e.RemoveNodes("login1,login2")
	if err != nil {
		t.Fatalf("RemoveNodes: %v", err)
	}
	if diff := cmp.Diff([]string{"login1", "login2"}, names); diff != "" {
		t.Errorf("RemoveNodes names (-want +got):\n%s", diff)
	}
	if err := e.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, n := range c.ExpandedNodes() {
		got = append(got, n.Name+" "+string(n.Transport))
	}
	want := []string{"head multicast", "node001 multicast", "node002 multicast", "node003 multicast", "node004 multicast"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodes after the edit (-want +got):\n%s", diff)
	}
}

func TestSaveRefusesInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(e *Editor) error
		want string // the error, without the directory
	}{
		{
			name: "bad MAC",
			edit: func(e *Editor) error { return e.AddNode(Node{Name: "n9", MACs: []string{"52:54:00:zz:00:01"}}) },
			want: "goldcast.yaml left unchanged: the edit would make it invalid:\n" +
				`goldcast.yaml:35: nodes[3].macs[0]: "52:54:00:zz:00:01" is not a MAC address`,
		},
		{
			name: "unknown group",
			edit: func(e *Editor) error {
				return e.SetNode("head", func(n *Node) error { n.Groups = []string{"gpu"}; return nil })
			},
			want: "goldcast.yaml left unchanged: the edit would make it invalid:\n" +
				`goldcast.yaml:15: nodes[0].groups[0]: unknown group "gpu"`,
		},
		{
			name: "MAC taken",
			edit: func(e *Editor) error {
				return e.AddNode(Node{Name: "n9", MACs: []string{"52:54:00:00:00:03"}})
			},
			want: "goldcast.yaml left unchanged: the edit would make it invalid:\n" +
				`goldcast.yaml:35: nodes[3].macs[0]: MAC 52:54:00:00:00:03 already belongs to node003 at line 23`,
		},
		{
			name: "group renamed under its nodes",
			edit: func(e *Editor) error {
				return e.SetGroup("compute", func(g *Group) error { g.Name = "batch"; return nil })
			},
			want: "goldcast.yaml left unchanged: the edit would make it invalid:\n" +
				`goldcast.yaml:25: nodes[1].groups[0]: unknown group "compute"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, path := openFixture(t, commentedConfig)
			if err := tt.edit(e); err != nil {
				t.Fatalf("edit: %v", err)
			}
			err := e.Save()
			if err == nil {
				t.Fatalf("Save succeeded, want error %q", tt.want)
			}
			got := strings.ReplaceAll(err.Error(), filepath.Dir(path)+string(filepath.Separator), "")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Save error mismatch (-want +got):\n%s", diff)
			}
			var le *Error
			if !errors.As(err, &le) || le.File != path {
				t.Errorf("Save error %v: want a *Error for %s", err, path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != commentedConfig {
				t.Errorf("the file changed:\n%s", data)
			}
			entries, err := os.ReadDir(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("the directory holds %d files, want only goldcast.yaml: %v", len(entries), entries)
			}
		})
	}
}

// inode returns the inode number of the file at path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestSaveReplacesAtomically(t *testing.T) {
	e, path := openFixture(t, smallConfig)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	before := inode(t, path)
	// A reader holding the old file keeps reading the old contents.
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	if err := e.AddNode(Node{Name: "n9"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if inode(t, path) == before {
		t.Errorf("Save wrote the file in place; want a new file renamed over it")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after Save, want the file's 0600", fi.Mode().Perm())
	}
	buf := make([]byte, len(smallConfig)+100)
	n, _ := old.Read(buf)
	if string(buf[:n]) != smallConfig {
		t.Errorf("the old file's contents changed under a reader: %q", buf[:n])
	}

	// The Editor goes on from what it saved.
	if err := e.SetNode("n9", func(n *Node) error { n.Image = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(); err != nil {
		t.Fatalf("second Save: %v", err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Nodes[len(c.Nodes)-1]; got.Name != "n9" || got.Image != "x" {
		t.Errorf("last node %+v, want n9 with image x", got)
	}
}

func TestSaveMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goldcast.yaml")
	e, err := OpenEditor(path)
	if err != nil {
		t.Fatalf("OpenEditor of a missing file: %v", err)
	}
	if err := e.AddNode(Node{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "nodes:\n  - name: a\n" {
		t.Errorf("new file holds %q", data)
	}
}

func TestSaveConflict(t *testing.T) {
	path := writeConfig(t, smallConfig)
	first, err := OpenEditor(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := OpenEditor(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.AddNode(Node{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := second.AddNode(Node{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := first.Save(); err != nil {
		t.Fatalf("first Save: %v", err)
	}
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	err = second.Save()
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Path != path {
		t.Fatalf("second Save: got %v, want a *ConflictError for %s", err, path)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(saved) {
		t.Errorf("the refused Save changed the file:\n%s", after)
	}
}

func TestConcurrentSaves(t *testing.T) {
	path := writeConfig(t, smallConfig)
	const editors = 8
	var wg sync.WaitGroup
	errs := make([]error, editors)
	for i := range editors {
		wg.Go(func() {
			for {
				e, err := OpenEditor(path)
				if err != nil {
					errs[i] = err
					return
				}
				if err := e.AddNode(Node{Name: fmt.Sprintf("c%d", i)}); err != nil {
					errs[i] = err
					return
				}
				err = e.Save()
				var ce *ConflictError
				if errors.As(err, &ce) {
					continue // another editor saved first: redo the edit
				}
				errs[i] = err
				return
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("editor %d: %v", i, err)
		}
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Nodes) != 2+editors {
		t.Errorf("%d nodes after %d concurrent additions to 2, want %d", len(c.Nodes), editors, 2+editors)
	}
}

func TestNodeChangeApply(t *testing.T) {
	tests := []struct {
		name    string
		node    Node
		change  NodeChange
		want    Node
		changes []string
		err     string
	}{
		{
			name:   "range with MACs and a start IP",
			node:   Node{Name: "n[01-03]"},
			change: NodeChange{MACs: []string{"m1", "m2", "m3"}, IPs: []string{"10.0.0.254"}},
			want:   Node{Name: "n[01-03]", MACs: []string{"m1", "m2", "m3"}, IPs: []string{"10.0.0.254", "10.0.0.255", "10.0.1.0"}},
			changes: []string{
				"macs: (none) -> [m1 m2 m3]",
				"ips: (none) -> [10.0.0.254 10.0.0.255 10.0.1.0]",
			},
		},
		{
			name:   "range with one IP per node",
			node:   Node{Name: "a,b"},
			change: NodeChange{IPs: []string{"10.0.0.9", "10.0.0.1"}},
			want:   Node{Name: "a,b", IPs: []string{"10.0.0.9", "10.0.0.1"}},
			changes: []string{
				"ips: (none) -> [10.0.0.9 10.0.0.1]",
			},
		},
		{
			name:   "MAC count",
			node:   Node{Name: "node[001-032]"},
			change: NodeChange{MACs: numbered("m", 30)},
			err:    `30 MACs for the 32 nodes "node[001-032]" declares; give one per node, in the order of the names`,
		},
		{
			name:   "IP count",
			node:   Node{Name: "n[1-3]"},
			change: NodeChange{IPs: []string{"10.0.0.1", "10.0.0.2"}},
			err:    `2 IPs for the 3 nodes "n[1-3]" declares; give one per node, in the order of the names, or the first node's only`,
		},
		{
			name:   "IPv6 start",
			node:   Node{Name: "n[1-2]"},
			change: NodeChange{IPs: []string{"2001:db8::ffff"}},
			want:   Node{Name: "n[1-2]", IPs: []string{"2001:db8::ffff", "2001:db8::1:0"}},
			changes: []string{
				"ips: (none) -> [2001:db8::ffff 2001:db8::1:0]",
			},
		},
		{
			name:   "bad start",
			node:   Node{Name: "n[1-2]"},
			change: NodeChange{IPs: []string{"10.0.0"}},
			err:    `IPs for "n[1-2]": start address "10.0.0" is not an IP address`,
		},
		{
			name: "single node replaces and clears",
			node: Node{Name: "h", MACs: []string{"m1"}, Image: "a", Groups: []string{"g"}, Boot: BootInstall,
				Vars: map[string]string{"k": "v", "x": "y"}},
			change: NodeChange{ClearMACs: true, Image: ptr(""), Groups: []string{""}, Boot: ptr(BootLocal),
				KernelArgs: ptr("console=ttyS0"), Vars: map[string]string{"k": "", "z": "1"}},
			want: Node{Name: "h", Groups: []string{}, Boot: BootLocal, KernelArgs: "console=ttyS0",
				Vars: map[string]string{"x": "y", "z": "1"}},
			changes: []string{
				"macs: [m1] -> (none)",
				"image: a -> (none)",
				"groups: [g] -> (none)",
				"boot: install -> local",
				"kernel_args: (none) -> console=ttyS0",
				"vars.k: v -> (none)",
				"vars.z: (none) -> 1",
			},
		},
		{
			name:   "several MACs for one node",
			node:   Node{Name: "h", MACs: []string{"m1"}},
			change: NodeChange{MACs: []string{"m2", "m3"}, Transport: ptr(TransportHTTP), Overrides: []string{"o1", "o2"}},
			want:   Node{Name: "h", MACs: []string{"m2", "m3"}, Transport: TransportHTTP, Overrides: []string{"o1", "o2"}},
			changes: []string{
				"macs: [m1] -> [m2 m3]",
				"transport: (none) -> http",
				"overrides: (none) -> [o1 o2]",
			},
		},
		{
			name:   "bad boot",
			node:   Node{Name: "h"},
			change: NodeChange{Boot: ptr(Boot("instal"))},
			err:    `boot "instal" is not one of install, local, rescue`,
		},
		{
			name:   "bad transport",
			node:   Node{Name: "h"},
			change: NodeChange{Transport: ptr(Transport("ftp"))},
			err:    `transport "ftp" is not one of rsync, http, multicast, torrent`,
		},
		{
			name:   "nothing",
			node:   Node{Name: "h", Image: "a"},
			change: NodeChange{},
			want:   Node{Name: "h", Image: "a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.node.clone()
			changes, err := tt.change.Apply(&n)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Apply: got error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.want, n); diff != "" {
				t.Errorf("node (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.changes, changes); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGroupChangeApply(t *testing.T) {
	g := Group{Name: "g", Priority: DefaultPriority, Overrides: []string{"a"}, Vars: map[string]string{"k": "v"}}
	changes := GroupChange{Priority: ptr(0), Image: ptr("rocky9"), Overrides: []string{""}, Nodes: ptr("n[1-4]"), Vars: map[string]string{"k": "w"}}.Apply(&g)
	want := Group{Name: "g", Priority: 0, Image: "rocky9", Overrides: []string{}, Nodes: "n[1-4]", Vars: map[string]string{"k": "w"}}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
	wantChanges := []string{"priority: 50 -> 0", "image: (none) -> rocky9", "overrides: [a] -> (none)", "nodes: (none) -> n[1-4]", "vars.k: v -> w"}
	if diff := cmp.Diff(wantChanges, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestParseVars(t *testing.T) {
	tests := []struct {
		in   []string
		want map[string]string
		err  string
	}{
		{nil, nil, ""},
		{[]string{"rack=r1", "empty=", "eq=a=b", " sp =x"}, map[string]string{"rack": "r1", "empty": "", "eq": "a=b", "sp": "x"}, ""},
		{[]string{"novalue"}, nil, `variable "novalue": want KEY=VALUE, or KEY= to remove KEY`},
		{[]string{"=v"}, nil, `variable "=v": want KEY=VALUE, or KEY= to remove KEY`},
	}
	for _, tt := range tests {
		got, err := ParseVars(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseVars(%q): got error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseVars(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseVars(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestReadMACs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("# rack 1, in slot order\n52:54:00:00:00:01\n\n  52-54-00-00-00-0A  # slot 2\n5254.0000.0003\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMACs(good)
	if err != nil {
		t.Fatalf("ReadMACs: %v", err)
	}
	if diff := cmp.Diff([]string{"52:54:00:00:00:01", "52:54:00:00:00:0a", "52:54:00:00:00:03"}, got); diff != "" {
		t.Errorf("ReadMACs (-want +got):\n%s", diff)
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("52:54:00:00:00:01\n# next\nnot-a-mac\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMACs(bad); err == nil || err.Error() != bad+`:3: "not-a-mac" is not a MAC address` {
		t.Errorf("ReadMACs of a bad file: got %v", err)
	}
}

func TestAddressRange(t *testing.T) {
	got, err := AddressRange("10.0.0.11", 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 32 || got[0] != "10.0.0.11" || got[31] != "10.0.0.42" {
		t.Errorf("AddressRange(10.0.0.11, 32) = %q, want 10.0.0.11 to 10.0.0.42", got)
	}
	if _, err := AddressRange("255.255.255.254", 3); err == nil || err.Error() != "3 addresses from 255.255.255.254 run past the end of the address space after 2" {
		t.Errorf("AddressRange past the end: got %v", err)
	}
}

func TestEffectiveNodes(t *testing.T) {
	c, err := Load(writeConfig(t, commentedConfig+`
`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Effective("node003")
	if err != nil {
		t.Fatal(err)
	}
	want := EffectiveNode{
		Name: "node003", Entry: "node[001-004]", MACs: []string{"52:54:00:00:00:03"}, IPs: []string{},
		Image: "rocky9", ImageGroup: "compute", Groups: []string{"compute"}, Boot: BootLocal, Transport: TransportRsync,
		Overrides: []string{"site", "compute-base"}, Vars: map[string]string{"rack": "r1", "slot": "7"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Effective(node003) (-want +got):\n%s", diff)
	}
	got, err = c.Effective("login2")
	if err != nil {
		t.Fatal(err)
	}
	want = EffectiveNode{
		Name: "login2", Entry: "login1, login2", MACs: []string{}, IPs: []string{},
		Groups: []string{"login"}, Boot: BootLocal, Transport: TransportRsync,
		Overrides: []string{"site"}, Vars: map[string]string{},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Effective(login2) (-want +got):\n%s", diff)
	}
	if _, err := c.Effective("node[001-004]"); err == nil {
		t.Errorf("Effective of a range: want an error")
	}
}

func TestEffectiveGroups(t *testing.T) {
	const content = `nodes:
  - {name: own, image: ubuntu, groups: [low], overrides: [mine], vars: {k: node}}
  - {name: "r[1-2]", groups: [low]}
groups:
  - {name: low, priority: 90, image: debian, overrides: [l], vars: {k: low, only: low}}
  - {name: high, priority: 1, image: rocky9, overrides: [h], vars: {k: high}, nodes: "r2,own,ghost"}
  - {name: empty}
overrides: [global]
`
	c, err := Load(writeConfig(t, content))
	if err != nil {
		t.Fatal(err)
	}
	var got []EffectiveNode
	for _, n := range c.EffectiveNodes() {
		n.MACs, n.IPs = nil, nil
		got = append(got, n)
	}
	want := []EffectiveNode{
		{Name: "own", Entry: "own", Image: "ubuntu", Groups: []string{"high", "low"}, Boot: BootLocal, Transport: TransportRsync,
			Overrides: []string{"global", "l", "h", "mine"}, Vars: map[string]string{"k": "node", "only": "low"}},
		{Name: "r1", Entry: "r[1-2]", Image: "debian", ImageGroup: "low", Groups: []string{"low"}, Boot: BootLocal, Transport: TransportRsync,
			Overrides: []string{"global", "l"}, Vars: map[string]string{"k": "low", "only": "low"}},
		{Name: "r2", Entry: "r[1-2]", Image: "rocky9", ImageGroup: "high", Groups: []string{"high", "low"}, Boot: BootLocal, Transport: TransportRsync,
			Overrides: []string{"global", "l", "h"}, Vars: map[string]string{"k": "high", "only": "low"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EffectiveNodes (-want +got):\n%s", diff)
	}
	wantGroups := []GroupSummary{
		{Name: "low", Priority: 90, Image: "debian", Overrides: []string{"l"}, Vars: map[string]string{"k": "low", "only": "low"}, Members: []string{"own", "r1", "r2"}},
		{Name: "high", Priority: 1, Image: "rocky9", Overrides: []string{"h"}, Nodes: "r2,own,ghost", Vars: map[string]string{"k": "high"}, Members: []string{"own", "r2"}},
		{Name: "empty", Priority: DefaultPriority, Overrides: []string{}, Vars: map[string]string{}, Members: []string{}},
	}
	if diff := cmp.Diff(wantGroups, c.GroupSummaries()); diff != "" {
		t.Errorf("GroupSummaries (-want +got):\n%s", diff)
	}
}

func TestOpenEditorErrors(t *testing.T) {
	tests := []struct {
		content string
		want    string // the error, without the file's path
	}{
		{"- a\n", "line 1: the top level is a list, not a mapping"},
		{"nodes: []\n---\nnodes: []\n", "line 2: a second YAML document; the file must hold one"},
		{"<<: {nodes: []}\n", "line 1: the top level uses a merge key (<<), which the editor cannot change safely; edit the file by hand"},
		{"nodes: [\n", "yaml: line 1: did not find expected node content"},
	}
	for _, tt := range tests {
		path := writeConfig(t, tt.content)
		_, err := OpenEditor(path)
		want := "open config " + path + " for editing: " + tt.want
		if err == nil || err.Error() != want {
			t.Errorf("OpenEditor(%q): got error %v, want %q", tt.content, err, want)
		}
	}
}

func TestEditorInstallSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goldcast.yaml")
	if err := os.WriteFile(path, []byte("# lab\nnodes:\n  - name: n1 # keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ed, err := OpenEditor(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ed.AddNode(Node{Name: "n2", Install: Install{Disk: "/dev/vda", Wipe: true, PostAction: "poweroff"}}); err != nil {
		t.Fatal(err)
	}
	if err := ed.SetNode("n1", func(n *Node) error { n.Install.Wipe = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := ed.Save(); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		data, _ := os.ReadFile(path)
		t.Fatalf("%v\n%s", err, data)
	}
	got := map[string]Install{}
	for _, n := range c.ExpandedNodes() {
		got[n.Name] = n.Install
	}
	want := map[string]Install{"n1": {Wipe: true}, "n2": {Disk: "/dev/vda", Wipe: true, PostAction: "poweroff"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("install settings (-want +got):\n%s", diff)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "# keep me") {
		t.Errorf("the edit lost a comment:\n%s", data)
	}
	if _, err := parse("goldcast.yaml", []byte("nodes:\n  - name: n1\n    install: {post_action: explode}\n")); err == nil || !strings.Contains(err.Error(), `nodes[0].install.post_action: "explode" is not one of reboot, poweroff, shell, kexec`) {
		t.Errorf("bad post_action: %v", err)
	}
}
