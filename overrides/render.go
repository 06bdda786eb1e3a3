package overrides

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
)

// Render lays the plan's effective tree into dir, which must be empty (a
// fresh filesystem's lost+found is allowed) or not exist yet, the way a
// version stream is extracted: directories first, then regular files (in
// parallel), hard links, symlinks, devices and FIFOs, and directory
// metadata last, deepest first; dir itself takes the image root's
// metadata. Every file's size and sha256 are checked as it is written, so
// an override edited since Compute fails the render instead of
// delivering content the plan does not describe. On failure dir is
// emptied again. Without root, owners and device nodes are skipped (the
// manifest still records them).
func (p *Plan) Render(ctx context.Context, dir string) error {
	if err := p.render(ctx, dir); err != nil {
		return fmt.Errorf("render plan for node %q into %q: %w", p.Node, dir, err)
	}
	return nil
}

func (p *Plan) render(ctx context.Context, dir string) (err error) {
	if err := p.Manifest.Validate(); err != nil {
		return err
	}
	created := false
	var keep []string
	if _, statErr := os.Lstat(dir); errors.Is(statErr, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		created = true
	} else {
		empty, err := materialize.IsEmptyDir(dir, true)
		if err != nil {
			return err
		}
		if !empty {
			return errors.New("target is not empty")
		}
		if _, err := os.Lstat(filepath.Join(dir, "lost+found")); err == nil {
			keep = append(keep, "lost+found")
		}
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			if materialize.RemoveContents(dir) == nil {
				os.Remove(dir)
			}
			return
		}
		materialize.RemoveContents(dir, keep...)
	}()

	mopts := materialize.Options{Unprivileged: os.Geteuid() != 0}
	entries := p.Manifest.Entries
	var leaders, links, specials []int
	for i := range entries {
		e := &entries[i]
		switch {
		case e.Type == manifest.TypeDir:
			if err := materialize.CreateDir(dir, e); err != nil {
				return err
			}
		case e.Type == manifest.TypeRegular && e.LinkTo == "":
			leaders = append(leaders, i)
		case e.Type == manifest.TypeRegular:
			links = append(links, i)
		default:
			specials = append(specials, i)
		}
	}
	err = manifest.ParallelEach(ctx, len(leaders), 0, func(j int) error {
		e := &entries[leaders[j]]
		r, err := p.Open(e)
		if err != nil {
			return err
		}
		defer r.Close()
		return writeChecked(dir, e, r, mopts)
	})
	if err != nil {
		return err
	}
	for _, i := range links {
		if err := materialize.Link(dir, &entries[i]); err != nil {
			return err
		}
	}
	for _, i := range specials {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := materialize.CreateSpecial(dir, &entries[i], mopts); err != nil && !errors.Is(err, materialize.ErrSkipped) {
			return err
		}
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if e := &entries[i]; e.Type == manifest.TypeDir {
			if err := materialize.FinishDir(dir, e, mopts); err != nil {
				return err
			}
		}
	}
	return nil
}
