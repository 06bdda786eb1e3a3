package rsyncd

import (
	"context"
	"fmt"

	"github.com/goldcast/goldcast/images/store"
)

// StoreModules offers the versions of the images in s: a module "NAME@N"
// for each version N of image NAME, serving that version's tree, and a
// module "NAME" serving the tree of the image's latest version at the
// moment a client connects. Images come in name order, each as "NAME"
// followed by its versions, oldest first.
func StoreModules(s *store.Store) ModuleSource {
	return func(ctx context.Context) ([]Module, error) {
		images, err := s.Images()
		if err != nil {
			return nil, fmt.Errorf("list images of store %s: %w", s.Root(), err)
		}
		var mods []Module
		for _, img := range images {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("list image versions: %w", err)
			}
			versions, err := s.Versions(img.Name)
			if err != nil {
				return nil, fmt.Errorf("list versions of image %q: %w", img.Name, err)
			}
			if len(versions) == 0 {
				continue // removed since Images
			}
			latest := versions[len(versions)-1]
			mods = append(mods, Module{
				Name:    img.Name,
				Path:    latest.TreePath(),
				Comment: fmt.Sprintf("goldcast image %s, latest: version %d (%s)", img.Name, latest.Info.Version, shortDigest(latest.Info.ManifestDigest)),
			})
			for _, v := range versions {
				mods = append(mods, Module{
					Name:    v.Ref(),
					Path:    v.TreePath(),
					Comment: fmt.Sprintf("goldcast image %s version %d (%s)", img.Name, v.Info.Version, shortDigest(v.Info.ManifestDigest)),
				})
			}
		}
		return mods, nil
	}
}

// shortDigest abbreviates a hex manifest digest to "sha256:" and its
// first 12 digits.
func shortDigest(d string) string {
	if len(d) > 12 {
		d = d[:12] + "…"
	}
	return "sha256:" + d
}
