package client

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/transport/treesync"
)

func TestExcludedPath(t *testing.T) {
	ex, err := excluder(DefaultUpdateExcludes(), []string{"/srv/scratch/"}, "", true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path  string
		isDir bool
		want  bool
	}{
		{"home", true, false},
		{"home/alice", true, true},
		{"home/alice/thesis.tex", false, true},
		{"var/log/syslog", false, true},
		{"etc/hostname", false, true},
		{"etc/passwd", false, false},
		{"etc/ssh/ssh_host_ed25519_key", false, true},
		{"etc/ssh/sshd_config", false, false},
		{"srv/scratch/x/y", false, true},
		{"srv/scratchpad", false, false},
		{"usr/bin/.goldcast-tmp-0a1b", false, false}, // leftovers are seen, then deleted
	}
	for _, tc := range tests {
		if got := excludedPath(ex, tc.path, tc.isDir); got != tc.want {
			t.Errorf("excludedPath(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestCaptureExcludesKeepMountPoints(t *testing.T) {
	ex, err := excluder(DefaultCaptureExcludes(), nil, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"proc": false, "proc/1": true, "dev": false, "dev/null": true, "tmp/x": true,
		"var/lib/goldcast": true, "usr/bin/ls": false, "var/cache/apt/archives/x.deb": true, "etc/.goldcast-tmp-1": true} {
		if got := excludedPath(ex, p, p == "proc" || p == "dev" || p == "var/lib/goldcast"); got != want {
			t.Errorf("capture excludes %q = %v, want %v", p, got, want)
		}
	}
}

func TestPatchFor(t *testing.T) {
	m := &manifest.Manifest{Entries: []manifest.Entry{
		{Path: ".", Type: manifest.TypeDir, Mode: 0o755},
		{Path: "d", Type: manifest.TypeDir, Mode: 0o755},
		{Path: "d/f", Type: manifest.TypeRegular, Mode: 0o644, SHA256: "0000000000000000000000000000000000000000000000000000000000000001"},
		{Path: "g", Type: manifest.TypeRegular, Mode: 0o600, SHA256: "0000000000000000000000000000000000000000000000000000000000000002"},
	}}
	p := patchFor(m, &treesync.Result{Changed: []string{"g"}, LocalOnly: []string{"d"}, RemoteOnly: []string{"old"}})
	want := []string{m.Entries[3].Line(), m.Entries[1].Line(), m.Entries[2].Line()}
	if diff := cmp.Diff(want, p.Upserts); diff != "" {
		t.Errorf("upserts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"old"}, manifest.Strings(p.Removes)); diff != "" {
		t.Errorf("removes (-want +got):\n%s", diff)
	}
	if p.Digest != m.Digest() {
		t.Error("patch digest is not the local manifest's")
	}
}
