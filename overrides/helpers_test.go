package overrides

import (
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/store"
)

// tree describes files to create: path -> content. A path ending in "/"
// is a directory; content "->T" makes a symlink to T and "=>P" a hard
// link to the file P (created first).
type tree map[string]string

// writeTree creates the files of tr under dir.
func writeTree(t *testing.T, dir string, tr tree) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := slices.Sorted(maps.Keys(tr))
	var links []string
	for _, p := range paths {
		abs := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		c := tr[p]
		switch {
		case strings.HasSuffix(p, "/"):
			if err := os.MkdirAll(abs, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "->"):
			if err := os.Symlink(c[2:], abs); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "=>"):
			links = append(links, p)
		default:
			if err := os.WriteFile(abs, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range links {
		if err := os.Link(filepath.Join(dir, tr[p][2:]), filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
}

// env is an image store and an override store in one data directory.
type env struct {
	t      *testing.T
	data   string
	images *store.Store
	ovs    *Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	images, err := store.Open(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	ovs, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, data: data, images: images, ovs: ovs}
}

// image imports tr as the next version of image name.
func (e *env) image(name string, tr tree) *store.Version {
	e.t.Helper()
	src := filepath.Join(e.t.TempDir(), "src")
	writeTree(e.t, src, tr)
	res, err := e.images.ImportDir(context.Background(), src, name, store.ImportOptions{PublishUnchanged: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Version
}

// src writes tr into a fresh directory and returns it.
func (e *env) src(tr tree) string {
	e.t.Helper()
	src := filepath.Join(e.t.TempDir(), "src")
	writeTree(e.t, src, tr)
	return src
}

// override creates the override name from tr.
func (e *env) override(name string, tr tree, opts CreateOptions) *Override {
	e.t.Helper()
	if err := e.ovs.Create(context.Background(), name, e.src(tr), opts); err != nil {
		e.t.Fatal(err)
	}
	o, err := e.ovs.Get(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o
}

// input returns the Input planning node with cfg.
func (e *env) input(cfg *config.Config, node string, extra ...string) Input {
	return Input{Config: cfg, Node: node, Image: e.images.Resolve, Overrides: e.ovs, Extra: extra}
}

// plan computes the plan for node, failing the test on error.
func (e *env) plan(cfg *config.Config, node string, extra ...string) *Plan {
	e.t.Helper()
	p, err := Compute(context.Background(), e.input(cfg, node, extra...))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// entry returns the plan's entry at path, or nil.
func entry(p *Plan, path string) *manifest.Entry {
	for i := range p.Manifest.Entries {
		if p.Manifest.Entries[i].Path == path {
			return &p.Manifest.Entries[i]
		}
	}
	return nil
}

// content reads the content the plan delivers at path ("<absent>" when
// the plan has no such path).
func content(t *testing.T, p *Plan, path string) string {
	t.Helper()
	e := entry(p, path)
	if e == nil {
		return "<absent>"
	}
	r, err := p.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
