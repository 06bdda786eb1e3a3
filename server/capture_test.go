package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/images/manifest"
)

func entry(path string, t manifest.Type, content string) manifest.Entry {
	e := manifest.Entry{Path: path, Type: t, Mode: 0o644, MtimeNS: 1}
	if t == manifest.TypeDir {
		e.Mode = 0o755
	}
	if t == manifest.TypeRegular {
		e.Size = int64(len(content))
		e.SHA256 = fmt.Sprintf("%064x", len(content)*131+int(content[0]))
	}
	return e
}

func TestPlanPatch(t *testing.T) {
	base := &manifest.Manifest{Entries: []manifest.Entry{
		entry(".", manifest.TypeDir, ""), entry("a", manifest.TypeRegular, "aaaa"),
		entry("b", manifest.TypeRegular, "bb"), entry("d", manifest.TypeDir, ""), entry("d/x", manifest.TypeRegular, "x"),
	}}
	changedA := entry("a", manifest.TypeRegular, "AAAAA")
	movedB := entry("c", manifest.TypeRegular, "bb") // b's content under a new name
	newF := entry("n", manifest.TypeRegular, "new")
	tests := []struct {
		name    string
		upserts []manifest.Entry
		removes []string
		want    []api.Need
		wantErr string
	}{
		{name: "content change needs a delta against the old file", upserts: []manifest.Entry{changedA},
			want: []api.Need{{Path: "a", Basis: "a"}}},
		{name: "content the base already has is not sent", upserts: []manifest.Entry{movedB}, removes: []string{"b"}},
		{name: "a new file is sent whole", upserts: []manifest.Entry{newF}, want: []api.Need{{Path: "n"}}},
		{name: "removing a directory removes its subtree", removes: []string{"d"}},
		{name: "an entry below a file is refused", upserts: []manifest.Entry{entry("a/evil", manifest.TypeRegular, "e")}, wantErr: "unsafe path"},
		{name: "the root cannot be removed", removes: []string{"."}, wantErr: "cannot remove"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := base.Patch(tc.upserts, tc.removes)
			p := api.ManifestPatch{Removes: manifest.WirePaths(tc.removes)}
			for _, e := range tc.upserts {
				p.Upserts = append(p.Upserts, e.Line())
			}
			if err == nil {
				p.Digest = want.Digest()
			}
			m, need, err := planPatch(base, p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Digest() != p.Digest {
				t.Error("planned manifest differs from the patch's digest")
			}
			if diff := cmp.Diff(tc.want, need); diff != "" {
				t.Errorf("need (-want +got):\n%s", diff)
			}
		})
	}
	// A digest that does not match the patched manifest is refused.
	p := api.ManifestPatch{Digest: strings.Repeat("0", 64), Upserts: []string{changedA.Line()}}
	if _, _, err := planPatch(base, p); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("wrong digest: %v", err)
	}
}

func TestAuthenticatorNetworks(t *testing.T) {
	nets, err := parseNetworks([]string{"10.0.0.0/8", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	a := &authenticator{token: strings.Repeat("t", 64)}
	a.networks.Store(&nets)
	for addr, want := range map[string]bool{
		"10.1.2.3:5000": true, "[fd00::1]:80": true, "127.0.0.1:1": false, "[::ffff:10.0.0.1]:9": true, "garbage": false,
	} {
		if got := a.allowedAddr(addr); got != want {
			t.Errorf("allowedAddr(%q) = %v, want %v", addr, got, want)
		}
	}
	if _, err := parseNetworks([]string{"10.0.0.1"}); err == nil {
		t.Error("a bare address was accepted as a network")
	}
}
