package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExpandHosts(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"node001", []string{"node001"}},
		{"node[001-003]", []string{"node001", "node002", "node003"}},
		{"n[8-10]", []string{"n8", "n9", "n10"}},
		{"n[08-10]", []string{"n08", "n09", "n10"}},
		{"n[1-2]x", []string{"n1x", "n2x"}},
		{"r[1-2]n[01-03]", []string{"r1n01", "r1n02", "r1n03", "r2n01", "r2n02", "r2n03"}},
		{"n[1,3,5-7]", []string{"n1", "n3", "n5", "n6", "n7"}},
		{"n[ 1 , 3 ]", []string{"n1", "n3"}},
		{"a,b,c[1-2]", []string{"a", "b", "c1", "c2"}},
		{"a, b ,c", []string{"a", "b", "c"}},
		{"[1-2]", []string{"1", "2"}},
		{"n[7]", []string{"n7"}},
		{"n[1-2].example.com", []string{"n1.example.com", "n2.example.com"}},
		{"a,a", []string{"a", "a"}},
		{"n[18446744073709551614-18446744073709551615]", []string{"n18446744073709551614", "n18446744073709551615"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := ExpandHosts(tt.expr)
			if err != nil {
				t.Fatalf("ExpandHosts(%q): %v", tt.expr, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ExpandHosts(%q) mismatch (-want +got):\n%s", tt.expr, diff)
			}
		})
	}
}

func TestExpandHostsLimit(t *testing.T) {
	got, err := ExpandHosts("n[1-100000]")
	if err != nil {
		t.Fatalf("ExpandHosts: %v", err)
	}
	if len(got) != MaxHosts || got[0] != "n1" || got[MaxHosts-1] != "n100000" {
		t.Errorf("ExpandHosts gave %d names from %q to %q, want %d from n1 to n100000", len(got), got[0], got[len(got)-1], MaxHosts)
	}
}

func TestExpandHostsErrors(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"", `host range "": empty`},
		{" ", `host range " ": empty`},
		{"a,,b", `host range "a,,b": empty name in list`},
		{"a,", `host range "a,": empty name in list`},
		{"n[1-2", `host range "n[1-2": "[" at offset 1 is never closed`},
		{"n1-2]", `host range "n1-2]": "]" without "[" at offset 4`},
		{"n[[1]]", `host range "n[[1]]": nested "[" at offset 2`},
		{"n[]", `host range "n[]": empty "[]"`},
		{"n[1,]", `host range "n[1,]": "" in brackets is not a number or a range of numbers`},
		{"n[a-b]", `host range "n[a-b]": "a-b" in brackets is not a number or a range of numbers`},
		{"n[-1]", `host range "n[-1]": "-1" in brackets is not a number or a range of numbers`},
		{"n[1-]", `host range "n[1-]": "1-" in brackets is not a number or a range of numbers`},
		{"n[1-2-3]", `host range "n[1-2-3]": "1-2-3" in brackets is not a number or a range of numbers`},
		{"n[3-1]", `host range "n[3-1]": range "3-1" runs backwards`},
		{"n[1-100001]", `host range "n[1-100001]": expands to more than 100000 names`},
		{"n[0-18446744073709551615]", `host range "n[0-18446744073709551615]": expands to more than 100000 names`},
		{"n[1-1000]m[1-1000]", `host range "n[1-1000]m[1-1000]": expands to more than 100000 names`},
		{"a[1-60000],b[1-60000]", `host range "a[1-60000],b[1-60000]": expands to more than 100000 names`},
		{"n[1-50000,1-50001]", `host range "n[1-50000,1-50001]": expands to more than 100000 names`},
		{"n[99999999999999999999]", `host range "n[99999999999999999999]": number "99999999999999999999" in brackets: strconv.ParseUint: parsing "99999999999999999999": value out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := ExpandHosts(tt.expr)
			if err == nil {
				t.Fatalf("ExpandHosts(%q) = %q, want error %q", tt.expr, got, tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("ExpandHosts(%q) error mismatch (-want +got):\n%s", tt.expr, diff)
			}
		})
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "goldcast.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodConfig = `# goldcast test configuration
server:
  listen: "127.0.0.1:9000"
  allow_networks: [10.0.0.0/8, "2001:DB8::/32"]

nodes:
  - name: head
    macs: ["52-54-00-AB-CD-EF", "52:54:00:ab:cd:f0"]
    ips: [10.0.0.1, "2001:DB8::1"]
    image: rocky9@3
    boot: install
    vars: &rack1 {rack: r1}
  - name: node[001-003]
    macs: [52:54:00:00:00:01, 52:54:00:00:00:02, 52:54:00:00:00:03]
    ips: [10.0.1.1, 10.0.1.2, 10.0.1.3]
    groups: [compute, gpu]
    overrides: [extra1]
    transport: multicast
    vars:
      <<: *rack1
      slot: 7
  - name: "login1, login2"
    groups: [login]
    <<: {transport: torrent, kernel_args: console=ttyS0}

groups:
  - name: compute
    priority: 10
    image: rocky9
    overrides: [compute-base]
    vars: {}
  - name: gpu
    priority: 0
    image: rocky9-cuda@2
  - name: login
    nodes: "login[1-2]"
    priority: ~
`

func TestLoad(t *testing.T) {
	path := writeConfig(t, goodConfig)
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Server: Server{
			Listen:        "127.0.0.1:9000",
			RsyncListen:   ":873",
			AllowNetworks: []string{"10.0.0.0/8", "2001:db8::/32"},
		},
		Nodes: []Node{
			{
				Name:      "head",
				MACs:      []string{"52:54:00:ab:cd:ef", "52:54:00:ab:cd:f0"},
				IPs:       []string{"10.0.0.1", "2001:db8::1"},
				Image:     "rocky9@3",
				Boot:      BootInstall,
				Transport: TransportRsync,
				Vars:      map[string]string{"rack": "r1"},
			},
			{
				Name:      "node[001-003]",
				MACs:      []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"},
				IPs:       []string{"10.0.1.1", "10.0.1.2", "10.0.1.3"},
				Groups:    []string{"compute", "gpu"},
				Boot:      BootLocal,
				Transport: TransportMulticast,
				Overrides: []string{"extra1"},
				Vars:      map[string]string{"rack": "r1", "slot": "7"},
			},
			{
				Name:       "login1, login2",
				Groups:     []string{"login"},
				Boot:       BootLocal,
				Transport:  TransportTorrent,
				KernelArgs: "console=ttyS0",
			},
		},
		Groups: []Group{
			{Name: "compute", Priority: 10, Image: "rocky9", Overrides: []string{"compute-base"}, Vars: map[string]string{}},
			{Name: "gpu", Priority: 0, Image: "rocky9-cuda@2"},
			{Name: "login", Priority: DefaultPriority, Nodes: "login[1-2]"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadEmpty(t *testing.T) {
	for _, content := range []string{"", "\n", "# only a comment\n", "---\n", "null\n", "~\n"} {
		t.Run(content, func(t *testing.T) {
			got, err := Load(writeConfig(t, content))
			if err != nil {
				t.Fatalf("Load(%q): %v", content, err)
			}
			if diff := cmp.Diff(Default(), got); diff != "" {
				t.Errorf("Load(%q) mismatch (-want +got):\n%s", content, diff)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	want := &Config{Server: Server{Listen: ":8080", RsyncListen: ":873"}}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Errorf("Default mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "goldcast.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: got error %v, want one matching fs.ErrNotExist", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string // every line of the error, without the directory
	}{
		{
			name: "bad boot",
			content: `nodes:
  - name: n0
  - name: n1
  - name: n2
  - name: n3
    macs:
      - 52:54:00:12:34:56
    ips:
      - 10.0.0.11
    image: rocky9
    groups: []
    boot: instal
`,
			want: []string{`goldcast.yaml:12: nodes[3].boot: "instal" is not one of install, local, rescue`},
		},
		{
			name:    "bad transport",
			content: "nodes:\n  - {name: n1, transport: ftp}\n",
			want:    []string{`goldcast.yaml:2: nodes[0].transport: "ftp" is not one of rsync, http, multicast, torrent`},
		},
		{
			name: "unknown fields",
			content: `server:
  listen: ":80"
  port: 80
nodes:
  - name: n1
    mac: 52:54:00:12:34:56
colour: blue
`,
			want: []string{
				`goldcast.yaml:3: server.port: unknown field; known fields are listen, rsync_listen, allow_networks, tftp_listen, boot_dir, unknown_nodes, dhcp`,
				`goldcast.yaml:6: nodes[0].mac: unknown field; known fields are name, macs, ips, uuid, image, groups, boot, transport, kernel_args, overrides, vars, install`,
				`goldcast.yaml:7: colour: unknown field; known fields are server, nodes, groups, overrides`,
			},
		},
		{
			name: "wrong kinds",
			content: `nodes:
  - name: n1
    macs: 52:54:00:12:34:56
    vars: [a]
  - [n2]
groups:
  - name: g
    priority: high
  - name: h
    priority: 1.5
  - name: [i]
`,
			want: []string{
				`goldcast.yaml:3: nodes[0].macs: want a list, not "52:54:00:12:34:56"`,
				`goldcast.yaml:4: nodes[0].vars: want a mapping, not a list`,
				`goldcast.yaml:5: nodes[1]: want a mapping, not a list`,
				`goldcast.yaml:8: groups[0].priority: "high" is not an integer`,
				`goldcast.yaml:10: groups[1].priority: "1.5" is not an integer`,
				`goldcast.yaml:11: groups[2].name: want a single value, not a list`,
			},
		},
		{
			name:    "not a mapping",
			content: "- a\n- b\n",
			want:    []string{`goldcast.yaml:1: want a mapping, not a list`},
		},
		{
			name: "duplicate keys",
			content: `nodes:
  - name: n1
    image: a
    image: b
    vars:
      x: 1
      x: 2
`,
			want: []string{
				`goldcast.yaml:4: nodes[0].image: duplicate key "image"; first given at line 3`,
				`goldcast.yaml:7: nodes[0].vars.x: duplicate key "x"; first given at line 6`,
			},
		},
		{
			name: "names",
			content: `nodes:
  - image: rocky9
  - name: node[1-3]
  - name: node[3-4]
  - name: "node1,node2"
  - name: "x,x"
  - name: "node[1-"
  - name: "bad_-"
  - name: "a..b"
groups:
  - priority: 1
  - name: compute
  - name: compute
  - name: .hidden
`,
			want: []string{
				`goldcast.yaml:2: nodes[0].name: required`,
				`goldcast.yaml:4: nodes[2].name: node "node3" already declared at line 3`,
				`goldcast.yaml:5: nodes[3].name: node "node1" and 1 more already declared, the first at line 3`,
				`goldcast.yaml:6: nodes[4].name: node "x" declared twice`,
				`goldcast.yaml:7: nodes[5].name: host range "node[1-": "[" at offset 4 is never closed`,
				`goldcast.yaml:8: nodes[6].name: host name "bad_-" has a label starting or ending with "-"`,
				`goldcast.yaml:9: nodes[7].name: host name "a..b" has an empty label`,
				`goldcast.yaml:11: groups[0].name: required`,
				`goldcast.yaml:13: groups[2].name: group "compute" already declared at line 12`,
				`goldcast.yaml:14: groups[3].name: group name ".hidden" starts with '.'`,
			},
		},
		{
			name: "addresses",
			content: `server:
  listen: "8080"
  rsync_listen: ":rsync"
  allow_networks:
    - 10.0.0.0/8
    - 10.0.0.1/8
    - 10.0.0.1
nodes:
  - name: a
    macs: [52:54:00:12:34:56, "zz:54:00:12:34:56"]
    ips: [10.0.0.11, 10.0.0.300, "fe80::1%eth0"]
  - name: b
    macs: [52-54-00-12-34-56, 52:54:00:12:34:57, 52:54:00:12:34:57]
    ips: [10.0.0.11]
  - name: c[1-3]
    macs: [52:54:00:00:00:01, 52:54:00:00:00:02]
    ips: [10.0.2.1, 10.0.2.2, 10.0.0.11]
`,
			want: []string{
				`goldcast.yaml:2: server.listen: "8080" is not a host:port address: address 8080: missing port in address`,
				`goldcast.yaml:3: server.rsync_listen: ":rsync": port "rsync" is not a number from 0 to 65535`,
				`goldcast.yaml:6: server.allow_networks[1]: "10.0.0.1/8" has address bits set beyond the prefix length; did you mean "10.0.0.0/8"?`,
				`goldcast.yaml:7: server.allow_networks[2]: "10.0.0.1" is not a network in CIDR notation such as 10.0.0.0/8`,
				`goldcast.yaml:10: nodes[0].macs[1]: "zz:54:00:12:34:56" is not a MAC address`,
				`goldcast.yaml:11: nodes[0].ips[1]: "10.0.0.300" is not an IP address`,
				`goldcast.yaml:11: nodes[0].ips[2]: "fe80::1%eth0" has a zone; zones are not allowed`,
				`goldcast.yaml:13: nodes[1].macs[0]: MAC 52:54:00:12:34:56 already belongs to a at line 10`,
				`goldcast.yaml:13: nodes[1].macs[2]: MAC 52:54:00:12:34:57 given twice for b`,
				`goldcast.yaml:14: nodes[1].ips[0]: IP 10.0.0.11 already belongs to a at line 11`,
				`goldcast.yaml:16: nodes[2].macs: 2 addresses for the 3 nodes "c[1-3]" declares; give one per node, in order, or none`,
				`goldcast.yaml:17: nodes[2].ips[2]: IP 10.0.0.11 already belongs to a at line 11`,
			},
		},
		{
			name: "netboot settings",
			content: `server:
  tftp_listen: ":tftp"
  unknown_nodes: adopt
  dhcp:
    mode: relay
    range: 10.0.0.200-10.0.0.100
    router: gateway
    dns: [10.0.0.1, "::1"]
    lease_time: 10s
`,
			want: []string{
				`goldcast.yaml:2: server.tftp_listen: ":tftp": port "tftp" is not a number from 0 to 65535`,
				`goldcast.yaml:3: server.unknown_nodes: "adopt": want menu or register`,
				`goldcast.yaml:5: server.dhcp.mode: "relay": want full, proxy or off`,
				`goldcast.yaml:6: server.dhcp.range: "10.0.0.200-10.0.0.100": the last address is below the first`,
				`goldcast.yaml:7: server.dhcp.router: "gateway" is not an IPv4 address`,
				`goldcast.yaml:8: server.dhcp.dns[1]: "::1" is not an IPv4 address`,
				`goldcast.yaml:9: server.dhcp.lease_time: "10s": want a duration of at least 1m, such as 1h or 30m`,
			},
		},
		{
			name: "uuids",
			content: `nodes:
  - name: a
    uuid: 4C4C4544-0042-3510-8052-B4C04F564433
  - name: b
    uuid: 4c4c4544-0042-3510-8052-b4c04f564433
  - name: c
    uuid: not-a-uuid
  - name: d[1-2]
    uuid: 11111111-2222-3333-4444-555555555555
`,
			want: []string{
				`goldcast.yaml:5: nodes[1].uuid: UUID 4c4c4544-0042-3510-8052-b4c04f564433 already belongs to a at line 3`,
				`goldcast.yaml:7: nodes[2].uuid: "not-a-uuid" is not a UUID such as 4c4c4544-0042-3510-8052-b4c04f564433`,
				`goldcast.yaml:9: nodes[3].uuid: a UUID names one machine, but "d[1-2]" declares 2 nodes`,
			},
		},
		{
			name: "full mode needs an interface and a range",
			content: `server:
  dhcp:
    mode: full
`,
			want: []string{
				`goldcast.yaml:3: server.dhcp.interface: a DHCP server must know which interface it serves: set server.dhcp.interface`,
				`goldcast.yaml:3: server.dhcp.range: full mode needs an address pool, such as 10.0.0.100-10.0.0.199`,
			},
		},
		{
			name: "references",
			content: `nodes:
  - name: n1
    image: rocky9@0
    groups: [compute, gpu, compute]
    overrides: [ok, "../etc"]
  - name: n2
    image: .rocky
groups:
  - name: compute
    image: rocky9@newest
    nodes: "n[1-"
    overrides: [""]
`,
			want: []string{
				`goldcast.yaml:3: nodes[0].image: image reference "rocky9@0": version "0" is not a positive integer without leading zeros`,
				`goldcast.yaml:4: nodes[0].groups[1]: unknown group "gpu"`,
				`goldcast.yaml:4: nodes[0].groups[2]: group "compute" listed twice`,
				`goldcast.yaml:5: nodes[0].overrides[1]: override name "../etc" starts with '.'`,
				`goldcast.yaml:7: nodes[1].image: image reference ".rocky": image name ".rocky" starts with '.'`,
				`goldcast.yaml:10: groups[0].image: image reference "rocky9@newest": version "newest" is not a positive integer`,
				`goldcast.yaml:11: groups[0].nodes: host range "n[1-": "[" at offset 1 is never closed`,
				`goldcast.yaml:12: groups[0].overrides[0]: override name is empty`,
			},
		},
		{
			name: "merge keys",
			content: `nodes:
  - name: a
    <<: {colour: red}
  - name: b
    <<: [x]
  - name: c
    vars: {<<: {k: [v]}}
`,
			want: []string{
				`goldcast.yaml:3: nodes[0].colour: unknown field; known fields are name, macs, ips, uuid, image, groups, boot, transport, kernel_args, overrides, vars, install`,
				`goldcast.yaml:5: nodes[1]: merge key "<<" needs a mapping or a list of mappings, not "x"`,
				`goldcast.yaml:7: nodes[2].vars.k: want a single value, not a list`,
			},
		},
		{
			name: "merged values",
			content: `nodes:
  - name: a
    boot: local
    <<: {boot: instal, transport: ftp}
`,
			want: []string{
				`goldcast.yaml:4: nodes[0].transport: "ftp" is not one of rsync, http, multicast, torrent`,
			},
		},
		{
			name:    "second document",
			content: "nodes: []\n---\nnodes: []\n",
			want:    []string{`goldcast.yaml:2: a second YAML document; the file must hold one`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.content)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded with %+v, want errors", c)
			}
			got := strings.ReplaceAll(err.Error(), filepath.Dir(path)+string(filepath.Separator), "")
			if diff := cmp.Diff(tt.want, strings.Split(got, "\n")); diff != "" {
				t.Errorf("Load error mismatch (-want +got):\n%s", diff)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path {
				t.Errorf("Load error %v: want an *Error for file %s", err, path)
			}
		})
	}
}

func TestLoadSyntaxError(t *testing.T) {
	path := writeConfig(t, "nodes:\n  - name: a\n    bad: [\n")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path+": yaml: line ") {
		t.Errorf("Load of bad YAML: got error %v, want one naming %s and the line", err, path)
	}
}

func TestExpandedNodes(t *testing.T) {
	c := &Config{Nodes: []Node{
		{Name: "head", MACs: []string{"52:54:00:00:00:0a", "52:54:00:00:00:0b"}, IPs: []string{"10.0.0.1"}, Boot: BootLocal},
		{Name: "n[1-2]", MACs: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, Groups: []string{"g"}, Vars: map[string]string{"k": "v"}},
		{Name: "x,y", IPs: []string{"10.0.0.9"}},
	}}
	want := []Node{
		{Name: "head", MACs: []string{"52:54:00:00:00:0a", "52:54:00:00:00:0b"}, IPs: []string{"10.0.0.1"}, Boot: BootLocal},
		{Name: "n1", MACs: []string{"52:54:00:00:00:01"}, Groups: []string{"g"}, Vars: map[string]string{"k": "v"}},
		{Name: "n2", MACs: []string{"52:54:00:00:00:02"}, Groups: []string{"g"}, Vars: map[string]string{"k": "v"}},
		{Name: "x"},
		{Name: "y"},
	}
	got := c.ExpandedNodes()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExpandedNodes mismatch (-want +got):\n%s", diff)
	}
	got[1].Vars["k"] = "changed"
	got[1].Groups[0] = "changed"
	if c.Nodes[1].Vars["k"] != "v" || c.Nodes[1].Groups[0] != "g" {
		t.Errorf("changing a node ExpandedNodes returned changed the Config")
	}
}

func TestNodesUsingImage(t *testing.T) {
	const content = `nodes:
  - {name: own, image: ubuntu, groups: [compute]}
  - {name: "c[1-3]", groups: [compute]}
  - {name: gpu1, groups: [compute, gpu]}
  - {name: gpu2, groups: [gpu, compute]}
  - {name: "r[1-2]"}
  - {name: tie, groups: [second, first]}
  - {name: none, groups: [noimage]}
  - {name: bare}
groups:
  - {name: compute, priority: 10, image: rocky9@2}
  - {name: gpu, priority: 5, image: rocky9-cuda}
  - {name: noimage, priority: 1, nodes: "c[1-3],gpu1"}
  - {name: ranged, image: alma, nodes: "r[1-2],c1,ghost"}
  - {name: first, image: debian}
  - {name: second, image: ubuntu@1}
`
	c, err := Load(writeConfig(t, content))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tests := []struct {
		image string
		want  []string
	}{
		{"rocky9", []string{"c1", "c2", "c3"}},
		{"rocky9@7", []string{"c1", "c2", "c3"}},
		{"rocky9-cuda", []string{"gpu1", "gpu2"}},
		{"ubuntu", []string{"own"}},
		{"alma", []string{"r1", "r2"}},
		{"debian", []string{"tie"}},
		{"centos", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, c.NodesUsingImage(tt.image)); diff != "" {
				t.Errorf("NodesUsingImage(%q) mismatch (-want +got):\n%s", tt.image, diff)
			}
		})
	}
}
