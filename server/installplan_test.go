package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/api"
)

func TestScriptClasses(t *testing.T) {
	tests := []struct {
		image, hostname, node string
		groups                []string
		want                  []string
	}{
		{"rocky9", "node007", "node007", []string{"gpu", "compute"}, []string{"all", "rocky9", "node", "compute", "gpu", "node007"}},
		{"deb", "login.example.com", "login", nil, []string{"all", "deb", "login"}},
		{"deb", "web1.example.com", "web-a", nil, []string{"all", "deb", "web", "web1", "web-a"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, scriptClasses(tc.image, tc.hostname, tc.node, tc.groups)); diff != "" {
			t.Errorf("scriptClasses(%s, %s) (-want +got):\n%s", tc.image, tc.hostname, diff)
		}
	}
}

func TestListScripts(t *testing.T) {
	dir := t.TempDir()
	files := map[string]os.FileMode{
		"10all.first":         0o755,
		"90all.last":          0o755,
		"05node007.host":      0o755,
		"20compute.group":     0o755,
		"01rocky9.image":      0o755,
		"50other.notmine":     0o755,
		"30all.notexec":       0o644,
		"readme.txt":          0o755,
		".99all.hidden":       0o755,
		"40all":               0o755,
		"7gpu.more-important": 0o755,
	}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\necho "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	got, err := listScripts(dir, api.PhasePostInstall, scriptClasses("rocky9", "node007", "node007", []string{"gpu", "compute"}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
		if s.Phase != api.PhasePostInstall || len(s.SHA256) != 64 {
			t.Errorf("script %+v", s)
		}
	}
	want := []string{"10all.first", "40all", "90all.last", "01rocky9.image", "20compute.group", "7gpu.more-important", "05node007.host"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("scripts in run order (-want +got):\n%s", diff)
	}
	if s, err := listScripts(filepath.Join(dir, "missing"), api.PhasePreInstall, []string{"all"}); err != nil || s != nil {
		t.Errorf("missing directory: %v, %v", s, err)
	}
}

func TestReadLayoutOverride(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte("disks:\n  - table: dos\n    partitions:\n      - {size: grow, mountpoint: /}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "db.json"), []byte(`{"disks":[{"partitions":[{"size":"50%","mountpoint":"/"}]}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("disks: [\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "list.yaml"), []byte("- a\n"), 0o644)
	for name, want := range map[string]string{
		"web": `{"disks":[{"partitions":[{"mountpoint":"/","size":"grow"}],"table":"dos"}]}`,
		"db":  `{"disks":[{"partitions":[{"mountpoint":"/","size":"50%"}]}]}`,
	} {
		got, err := readLayoutOverride(dir, name)
		if err != nil || string(got) != want {
			t.Errorf("layout %s = %s, %v; want %s", name, got, err, want)
		}
	}
	for name, want := range map[string]string{"missing": "no ", "bad": "yaml", "list": "want a mapping"} {
		if _, err := readLayoutOverride(dir, name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("layout %s: error %v, want %q", name, err, want)
		}
	}
}
