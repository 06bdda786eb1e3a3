package overrides

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/store"
	"github.com/goldcast/goldcast/internal/testtree"
)

// TestRender lays the torture tree, overridden, into a directory and
// scans the result: it must be exactly the plan's manifest.
func TestRender(t *testing.T) {
	ctx := context.Background()
	tt := testtree.Build(t, filepath.Join(t.TempDir(), "src"))
	e := newEnv(t)
	if _, err := e.images.ImportDir(ctx, tt.Root, "torture", store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	leader := tt.Hardlinks[0][0]
	e.override("over", tree{
		leader: "replaced the leader of a hard-link group\n",
		filepath.Dir(tt.Small) + "/.wh." + filepath.Base(tt.Small): "",
		"etc/motd.tmpl":  "{{.Hostname}} runs {{.Image}}\n",
		"etc/hard1":      "pair",
		"etc/hard2":      "=>etc/hard1",
		"etc/link":       "->motd",
		"etc/empty.tmpl": "",
	}, CreateOptions{})
	cfg := &config.Config{Nodes: []config.Node{{Name: "n1", Image: "torture", Overrides: []string{"over"}}}}
	p := e.plan(cfg, "n1")
	if entry(p, tt.Small) != nil {
		t.Fatalf("whiteout of %s had no effect", tt.Small)
	}

	dir := filepath.Join(t.TempDir(), "out")
	if err := p.Render(ctx, dir); err != nil {
		t.Fatal(err)
	}
	got, err := scanTree(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != p.Manifest.Digest() {
		t.Errorf("rendered tree digest %s, plan manifest digest %s", got.Digest(), p.Manifest.Digest())
		if diff := cmp.Diff(p.Manifest, got); diff != "" {
			t.Errorf("rendered tree (-plan +scanned):\n%s", diff)
		}
	}
	motd, err := os.ReadFile(filepath.Join(dir, "etc", "motd"))
	if err != nil || string(motd) != "n1 runs torture@1\n" {
		t.Errorf("etc/motd = %q, %v", motd, err)
	}

	// A non-empty target is refused and left alone.
	if err := p.Render(ctx, dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("render into a non-empty directory: err = %v", err)
	}
	// An override edited since Compute fails the render, which takes
	// back what it wrote.
	o, err := e.ovs.Get("over")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "etc", "hard1"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	err = p.Render(ctx, target)
	if err == nil || !strings.Contains(err.Error(), `"etc/hard1" changed since it was scanned`) {
		t.Errorf("render after an edit: err = %v", err)
	}
	if empty, _ := dirEmpty(target); !empty {
		t.Errorf("a failed render left files in %s", target)
	}
}

func dirEmpty(dir string) (bool, error) {
	names, err := os.ReadDir(dir)
	return len(names) == 0, err
}

func TestOpenNonRegular(t *testing.T) {
	e := newEnv(t)
	e.image("img", tree{"etc/motd": "hi"})
	p := e.plan(&config.Config{Nodes: []config.Node{{Name: "n1", Image: "img"}}}, "n1")
	if _, err := p.Open(entry(p, "etc")); err == nil {
		t.Errorf("Open of a directory succeeded")
	}
	if _, err := p.Open(&manifest.Entry{Path: "nope", Type: manifest.TypeRegular}); err == nil {
		t.Errorf("Open of a path outside the plan succeeded")
	}
}
