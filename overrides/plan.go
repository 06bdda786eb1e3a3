package overrides

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/config"
	"github.com/goldcast/goldcast/images/manifest"
	"github.com/goldcast/goldcast/images/materialize"
	"github.com/goldcast/goldcast/images/ref"
	"github.com/goldcast/goldcast/images/store"
)

// WhiteoutPrefix starts the name of a whiteout marker: an override file
// called .wh.NAME removes NAME, and everything below it, from the layers
// beneath the override. The marker itself is never delivered.
const WhiteoutPrefix = ".wh."

// Kind says where a layer of a plan comes from.
type Kind string

// The kinds of layer, lowest precedence first.
const (
	// KindImage is the node's image version, the bottom layer.
	KindImage Kind = "image"
	// KindGlobal is an override of the configuration's global list.
	KindGlobal Kind = "global"
	// KindGroup is an override of one of the node's groups.
	KindGroup Kind = "group"
	// KindHost is the override named after the node.
	KindHost Kind = "host"
	// KindNode is an override of the node's own list.
	KindNode Kind = "node"
	// KindExtra is an override named for this plan only (on the command
	// line).
	KindExtra Kind = "extra"
)

// Layer is one tree of a plan.
type Layer struct {
	// Name is the override's name; for the image layer, NAME@VERSION.
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Group and Priority say which group named the override (group
	// layers only).
	Group    string `json:"group,omitempty"`
	Priority int    `json:"priority,omitempty"`
	// Private is the override's private flag.
	Private bool `json:"private,omitempty"`
	// Missing is set when the configuration names an override that does
	// not exist; the layer contributes nothing and Plan.Warnings says so.
	Missing bool `json:"missing,omitempty"`
}

// Input is what Compute needs to know.
type Input struct {
	// Config declares the node, its groups and the global overrides.
	Config *config.Config
	// Node is the name of the node to plan for.
	Node string
	// Image resolves the node's image reference (NAME or NAME@VERSION)
	// to a version; the server passes its image store's Resolve.
	Image func(ref string) (*store.Version, error)
	// Overrides holds the override trees. Nil behaves as an empty store.
	Overrides *Store
	// Extra names overrides applied last, above everything the
	// configuration names (given on the command line). Unlike the
	// configuration's, a missing extra override is an error.
	Extra []string
}

// Plan is what one node receives: the effective tree of its image with
// its overrides laid over it, and where each path comes from.
type Plan struct {
	// Node is the node planned for.
	Node string `json:"node"`
	// Image and Version identify the image version at the bottom;
	// ImageDigest is its manifest digest.
	Image       string `json:"image"`
	Version     int    `json:"version"`
	ImageDigest string `json:"image_digest"`
	// Layers lists the layers lowest first: the image, then each
	// override in the order applied.
	Layers []Layer `json:"layers"`
	// Manifest is the effective tree: valid, sorted, hard-link groups
	// consistent. Its digest identifies the tree the node gets.
	Manifest *manifest.Manifest `json:"-"`
	// Digest is the sha256 over the effective manifest's digest and the
	// ordered names of the present layers: the same configuration and
	// trees give the same digest.
	Digest string `json:"digest"`
	// Warnings name the overrides the configuration mentions that do not
	// exist.
	Warnings []string `json:"warnings,omitempty"`
	// Data is what the node's templates saw: its name, addresses, groups
	// and variables (group variables merged under its own). The system
	// configurator uses it too.
	Data *TemplateData `json:"data"`

	// roots are the tree roots of Layers, by index.
	roots []string
	// srcs says where each path's content comes from, in manifest
	// order.
	srcs []source
}

// source is where one path of a plan comes from.
type source struct {
	path  string
	layer int
	// from is the path in the layer's tree (with its .tmpl suffix).
	from string
	// rendered is set for a template's output, held in data.
	rendered bool
	data     []byte
}

// item is one entry while layers are merged.
type item struct {
	e     manifest.Entry
	layer int
	from  string
	// link identifies the entry's hard-link group within its layer (the
	// group's leader path in that layer), "" for none.
	link     string
	rendered bool
	data     []byte
}

// layerSpec is an override the plan applies, before it is looked up.
type layerSpec struct {
	name     string
	kind     Kind
	group    string
	priority int
	// namedBy says who names it, for warnings.
	namedBy string
}

// Compute works out the plan for one node. The layers, lowest first:
//
//  1. the node's image version (the node's image, else that of its most
//     important group that sets one);
//  2. the global overrides, in list order;
//  3. the overrides of the node's groups, least important group first so
//     the most important (lowest priority number; equal priorities: the
//     one declared first) is applied last, each group's in list order;
//  4. the host override, the one named after the node, when it exists;
//  5. the node's own overrides, in list order;
//  6. the extra overrides of Input.Extra, in order.
//
// A layer's file replaces the same path below it (a file replacing a
// directory removes the directory's subtree); a layer's directory
// replaces a lower directory's metadata and keeps its contents; the
// override's root directory never replaces anything. Whiteout markers
// (.wh.NAME) remove NAME and its subtree from the layers below. Template
// files (NAME.tmpl) are rendered with the node's TemplateData and
// delivered as NAME; any template error fails the whole plan. An
// override the configuration names but that does not exist is a warning.
func Compute(ctx context.Context, in Input) (*Plan, error) {
	p, err := compute(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("plan for node %q: %w", in.Node, err)
	}
	return p, nil
}

func compute(ctx context.Context, in Input) (*Plan, error) {
	if in.Config == nil || in.Image == nil {
		return nil, errors.New("input needs a configuration and an image resolver")
	}
	c := in.Config
	node, ok := findNode(c, in.Node)
	if !ok {
		return nil, fmt.Errorf("node is not declared: %w", ErrNotFound)
	}
	groups, err := groupsOf(c, &node)
	if err != nil {
		return nil, err
	}
	imageRef := imageOf(c, &node, groups)
	if imageRef == "" {
		return nil, errors.New("no image: neither the node nor any of its groups sets one")
	}
	v, err := in.Image(imageRef)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", imageRef, err)
	}
	base, _, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Node: node.Name, Image: v.Info.Image, Version: v.Info.Version, ImageDigest: v.Info.ManifestDigest,
		Layers: []Layer{{Name: v.Ref(), Kind: KindImage}},
		roots:  []string{v.TreePath()},
	}
	data := templateDataOf(c, &node, groups, v.Ref())
	p.Data = data
	items := imageItems(base)

	loaded := map[string]*Override{}
	get := func(name string) (*Override, error) {
		if o, ok := loaded[name]; ok {
			return o, nil
		}
		if in.Overrides == nil {
			return nil, fmt.Errorf("override %q: %w", name, ErrNotFound)
		}
		o, err := in.Overrides.Get(name)
		if err != nil {
			return nil, err
		}
		loaded[name] = o
		return o, nil
	}
	for _, spec := range layerSpecs(c, &node, groups, in.Extra) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o, err := get(spec.name)
		if errors.Is(err, ErrNotFound) && spec.kind != KindExtra {
			if spec.kind == KindHost {
				continue // a host override is optional
			}
			p.Layers = append(p.Layers, Layer{Name: spec.name, Kind: spec.kind, Group: spec.group, Priority: spec.priority, Missing: true})
			p.roots = append(p.roots, "")
			p.Warnings = append(p.Warnings, fmt.Sprintf("override %q, named by %s, does not exist", spec.name, spec.namedBy))
			continue
		}
		if err != nil {
			return nil, err
		}
		idx := len(p.Layers)
		p.Layers = append(p.Layers, Layer{Name: spec.name, Kind: spec.kind, Group: spec.group, Priority: spec.priority, Private: o.Private})
		p.roots = append(p.roots, o.Dir)
		layer, whiteouts, err := overrideItems(ctx, o, idx, data)
		if err != nil {
			return nil, err
		}
		items = apply(items, layer, whiteouts)
	}
	relink(items)
	p.Manifest = &manifest.Manifest{Entries: make([]manifest.Entry, len(items))}
	p.srcs = make([]source, len(items))
	for i := range items {
		it := &items[i]
		p.Manifest.Entries[i] = it.e
		p.srcs[i] = source{path: it.e.Path, layer: it.layer, from: it.from, rendered: it.rendered, data: it.data}
	}
	if err := p.Manifest.Validate(); err != nil {
		return nil, fmt.Errorf("effective tree: %w", err)
	}
	p.Digest = p.digest()
	return p, nil
}

// layerSpecs lists the overrides to apply, lowest precedence first.
// groups is in importance order (see groupsOf).
func layerSpecs(c *config.Config, n *config.Node, groups []int, extra []string) []layerSpec {
	var out []layerSpec
	for _, name := range c.Overrides {
		out = append(out, layerSpec{name: name, kind: KindGlobal, namedBy: "the global overrides"})
	}
	for _, g := range slices.Backward(groups) {
		grp := &c.Groups[g]
		for _, name := range grp.Overrides {
			out = append(out, layerSpec{name: name, kind: KindGroup, group: grp.Name, priority: grp.Priority,
				namedBy: fmt.Sprintf("group %q", grp.Name)})
		}
	}
	if ref.CheckName("override", n.Name) == nil { // a long FQDN cannot name an override
		out = append(out, layerSpec{name: n.Name, kind: KindHost})
	}
	for _, name := range n.Overrides {
		out = append(out, layerSpec{name: name, kind: KindNode, namedBy: fmt.Sprintf("node %q", n.Name)})
	}
	for _, name := range extra {
		out = append(out, layerSpec{name: name, kind: KindExtra})
	}
	return out
}

// templateDataOf gathers what templates see for node n.
func templateDataOf(c *config.Config, n *config.Node, groups []int, image string) *TemplateData {
	vars := varsOf(c, n, groups)
	d := &TemplateData{
		Node: n.Name, Hostname: n.Name, Domain: vars["domain"],
		IPs: slices.Clone(n.IPs), MACs: slices.Clone(n.MACs), Image: image, Vars: vars,
	}
	if h := vars["hostname"]; h != "" {
		d.Hostname = h
	}
	for _, g := range groups {
		d.Groups = append(d.Groups, c.Groups[g].Name)
	}
	return d
}

// imageItems turns the image's manifest into the bottom layer.
func imageItems(m *manifest.Manifest) []item {
	grouped := m.HardLinked()
	out := make([]item, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		out[i] = item{e: *e, from: e.Path, link: linkKey(e, grouped)}
	}
	return out
}

// linkKey names the hard-link group of e by its leader's path.
func linkKey(e *manifest.Entry, grouped map[string]bool) string {
	switch {
	case e.Type != manifest.TypeRegular:
		return ""
	case e.LinkTo != "":
		return e.LinkTo
	case grouped[e.Path]:
		return e.Path
	}
	return ""
}

// overrideItems turns an override's tree into layer idx: its entries but
// the root, templates rendered, and the paths its whiteout markers
// remove. The items are in manifest order.
func overrideItems(ctx context.Context, o *Override, idx int, data *TemplateData) ([]item, []string, error) {
	m, err := o.Manifest(ctx)
	if err != nil {
		return nil, nil, err
	}
	grouped := m.HardLinked()
	var out []item
	var whiteouts []string
	given := map[string]string{} // delivered path -> path in the tree
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Path == "." {
			continue
		}
		name := e.Name()
		if target, ok := strings.CutPrefix(name, WhiteoutPrefix); ok {
			if target == "" || e.Type == manifest.TypeDir {
				return nil, nil, fmt.Errorf("override %q: %s: a whiteout marker must be a file named %sNAME", o.Name, e.Path, WhiteoutPrefix)
			}
			whiteouts = append(whiteouts, manifest.Join(manifest.Parent(e.Path), target))
			continue
		}
		it := item{e: *e, layer: idx, from: e.Path, link: linkKey(e, grouped)}
		if e.Type == manifest.TypeRegular && strings.HasSuffix(name, TemplateSuffix) && len(name) > len(TemplateSuffix) {
			text, err := renderTemplate(o, e, data)
			if err != nil {
				return nil, nil, err
			}
			sum := sha256.Sum256(text)
			it.e.Path = strings.TrimSuffix(e.Path, TemplateSuffix)
			it.e.Size, it.e.SHA256, it.e.LinkTo = int64(len(text)), hex.EncodeToString(sum[:]), ""
			it.link, it.rendered, it.data = "", true, text
		}
		if prev, dup := given[it.e.Path]; dup {
			return nil, nil, fmt.Errorf("override %q: %s and %s both give %s", o.Name, prev, e.Path, it.e.Path)
		}
		given[it.e.Path] = e.Path
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b item) int { return manifest.ComparePaths(a.e.Path, b.e.Path) })
	return out, whiteouts, nil
}

// renderTemplate reads and renders one template file of o. Its errors
// name the override, the file and (text/template's) the line.
func renderTemplate(o *Override, e *manifest.Entry, data *TemplateData) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("override %q: %s: %w", o.Name, e.Path, err)
	}
	if e.Size > MaxTemplateSize {
		return fail(fmt.Errorf("template is %d bytes, more than %d", e.Size, MaxTemplateSize))
	}
	f, err := os.OpenFile(materialize.Path(o.Dir, e.Path), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxTemplateSize+1))
	if err != nil {
		return fail(err)
	}
	if sum := sha256.Sum256(src); hex.EncodeToString(sum[:]) != e.SHA256 {
		return fail(errors.New("changed while the plan was computed"))
	}
	out, err := render(e.Path, src, data)
	if err != nil {
		return fail(err)
	}
	return out, nil
}

// apply lays one layer (in manifest order) over cur: the whiteouts'
// paths and their subtrees go, each layer entry replaces the entry at its
// path, and a non-directory replaces the subtree below its path too.
func apply(cur, layer []item, whiteouts []string) []item {
	if len(layer) == 0 && len(whiteouts) == 0 {
		return cur
	}
	roots := map[string]bool{} // paths whose whole subtree goes
	for _, w := range whiteouts {
		roots[w] = true
	}
	replaced := make(map[string]bool, len(layer))
	for i := range layer {
		replaced[layer[i].e.Path] = true
		if layer[i].e.Type != manifest.TypeDir {
			roots[layer[i].e.Path] = true
		}
	}
	removed := func(p string) bool {
		for q := p; q != ""; q = manifest.Parent(q) {
			if roots[q] {
				return true
			}
		}
		return false
	}
	out := make([]item, 0, len(cur)+len(layer))
	j := 0
	for i := range cur {
		c := &cur[i]
		if replaced[c.e.Path] || removed(c.e.Path) {
			continue
		}
		for j < len(layer) && manifest.ComparePaths(layer[j].e.Path, c.e.Path) < 0 {
			out = append(out, layer[j])
			j++
		}
		out = append(out, *c)
	}
	return append(out, layer[j:]...)
}

// relink rebuilds the hard-link groups of the merged items: in each group
// (the entries of one layer sharing a link key) the first surviving
// member in manifest order leads and the others link to it, so a group
// that lost members to higher layers stays valid.
func relink(items []item) {
	type key struct {
		layer int
		link  string
	}
	leaders := map[key]string{}
	for i := range items {
		it := &items[i]
		if it.link == "" {
			it.e.LinkTo = ""
			continue
		}
		k := key{it.layer, it.link}
		if l, ok := leaders[k]; ok {
			it.e.LinkTo = l
		} else {
			leaders[k] = it.e.Path
			it.e.LinkTo = ""
		}
	}
}

// digest hashes the effective manifest's digest with the present layers
// in order.
func (p *Plan) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "goldcast-override-plan 1\nmanifest %s\n", p.Manifest.Digest())
	for _, l := range p.Layers {
		if !l.Missing {
			fmt.Fprintf(h, "layer %s %s private=%t\n", l.Kind, l.Name, l.Private)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// source returns where path comes from.
func (p *Plan) source(path string) (*source, bool) {
	i := sort.Search(len(p.srcs), func(i int) bool { return manifest.ComparePaths(p.srcs[i].path, path) >= 0 })
	if i < len(p.srcs) && p.srcs[i].path == path {
		return &p.srcs[i], true
	}
	return nil, false
}

// Winner returns the name of the layer that provides path (NAME@VERSION
// for the image), or "" when the plan has no such path.
func (p *Plan) Winner(path string) string {
	s, ok := p.source(path)
	if !ok {
		return ""
	}
	return p.Layers[s.layer].Name
}

// Private returns the names of the plan's private layers, in layer
// order, each once. A plan with private layers holds secrets: serve it
// only to the node's own credentials.
func (p *Plan) Private() []string {
	var out []string
	for _, l := range p.Layers {
		if l.Private && !l.Missing && !slices.Contains(out, l.Name) {
			out = append(out, l.Name)
		}
	}
	return out
}

// Open returns the content of a regular file of the plan's manifest:
// from the image version's tree, an override's tree, or a rendered
// template held in memory. Override trees are edited in place, so the
// content may have changed since Compute; callers check it against the
// entry's sha256 (Render does).
func (p *Plan) Open(e *manifest.Entry) (io.ReadCloser, error) {
	if e.Type != manifest.TypeRegular {
		return nil, fmt.Errorf("open %q: a %s has no content", e.Path, e.Type)
	}
	s, ok := p.source(e.Path)
	if !ok {
		return nil, fmt.Errorf("open %q: not in the plan for node %q: %w", e.Path, p.Node, ErrNotFound)
	}
	if s.rendered {
		return io.NopCloser(bytes.NewReader(s.data)), nil
	}
	f, err := os.OpenFile(materialize.Path(p.roots[s.layer], s.from), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %q of layer %q: %w", e.Path, p.Layers[s.layer].Name, err)
	}
	return f, nil
}
