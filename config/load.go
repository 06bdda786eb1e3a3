package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem with the contents of a configuration file. Load
// returns every Error it finds, joined with errors.Join.
type Error struct {
	// File is the path of the file, as given to Load.
	File string
	// Line is the 1-based line the problem is on, or 0 when unknown.
	Line int
	// Field is the path of the field concerned, such as "nodes[3].boot",
	// or empty when the problem concerns the whole file.
	Field string
	// Err describes the problem.
	Err error
}

// Error formats e as "FILE:LINE: FIELD: PROBLEM", leaving out the parts
// that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *Error) Unwrap() error { return e.Err }

// Load reads the configuration file at path, fills in defaults and
// validates it.
//
// If the file cannot be read, the error wraps the one from the file system,
// so errors.Is(err, fs.ErrNotExist) reports a missing file. An empty file is
// a valid configuration (see Default). Otherwise every problem found is
// reported as an *Error naming the file, line and field, such as
//
//	goldcast.yaml:12: nodes[3].boot: "instal" is not one of install, local, rescue
//
// and all of them are returned joined with errors.Join, one per line, in
// line order. Keys the format does not define are problems too.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parse(path, data)
}

// parse does the work of Load on the contents data of the file at path.
func parse(path string, data []byte) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return Default(), nil
	case err != nil:
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("load config %s: %w", path, err)
	default:
		return nil, &Error{File: path, Line: extra.Line, Err: errors.New("a second YAML document; the file must hold one")}
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return Default(), nil
		}
		root = root.Content[0]
	}

	d := &decoder{file: path, lines: map[string]int{}, nulls: map[string]bool{}}
	d.check(root, reflect.TypeFor[Config](), "")
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	c := &Config{}
	if err := root.Decode(c); err != nil {
		// check accepts only what decodes; reaching here is a bug.
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	c.fillDefaults(func(i int) bool {
		p := field(index("groups", i), "priority")
		_, ok := d.lines[p]
		return ok && !d.nulls[p]
	})
	validate(c, d)
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	return c, nil
}

// field returns the path of the field name within the value at path
// parent.
func field(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// index returns the path of element i of the list at path parent.
func index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// decoder checks a YAML node tree against the shape of the Go types it will
// be decoded into, remembering the line of every field it finds and
// collecting every problem.
type decoder struct {
	file  string
	lines map[string]int  // line of the value at each field path present
	nulls map[string]bool // field paths present whose value is null
	errs  []*Error
}

// report records a problem with the field at path, on the line of the
// field or, when the file does not give it, of the nearest enclosing value
// it does give.
func (d *decoder) report(path string, err error) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.line(path), Field: path, Err: err})
}

// reportAt records a problem with the field at path on a known line.
func (d *decoder) reportAt(line int, path string, err error) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: path, Err: err})
}

// line returns the line of the value at path, or of the nearest enclosing
// value the file gives, or 0.
func (d *decoder) line(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return d.lines[""]
}

// err joins the collected problems in line order.
func (d *decoder) err() error {
	slices.SortStableFunc(d.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// check checks that n can be decoded into a value of type t, reporting
// keys that t has no field for, values of the wrong kind and duplicate
// keys, and records the line of n and of everything in it under path.
func (d *decoder) check(n *yaml.Node, t reflect.Type, path string) {
	n = resolve(n)
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		d.nulls[path] = true
		return // decodes as the zero value
	}
	switch t.Kind() {
	case reflect.Struct:
		if !d.want(n, yaml.MappingNode, path) {
			return
		}
		fields := map[string]reflect.Type{}
		var names []string
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fields[name] = f.Type
			names = append(names, name)
		}
		d.checkMapping(n, t, path, func(k *yaml.Node, p string) reflect.Type {
			ft, ok := fields[k.Value]
			if !ok {
				d.reportAt(k.Line, p, fmt.Errorf("unknown field; known fields are %s", strings.Join(names, ", ")))
			}
			return ft
		})
	case reflect.Map:
		if !d.want(n, yaml.MappingNode, path) {
			return
		}
		d.checkMapping(n, t, path, func(*yaml.Node, string) reflect.Type { return t.Elem() })
	case reflect.Slice:
		if !d.want(n, yaml.SequenceNode, path) {
			return
		}
		for i, v := range n.Content {
			d.check(v, t.Elem(), index(path, i))
		}
	case reflect.String:
		d.want(n, yaml.ScalarNode, path)
	case reflect.Int:
		if !d.want(n, yaml.ScalarNode, path) {
			return
		}
		var v int
		if n.ShortTag() != "!!int" || n.Decode(&v) != nil {
			d.reportAt(n.Line, path, fmt.Errorf("%q is not an integer", n.Value))
		}
	case reflect.Bool:
		if !d.want(n, yaml.ScalarNode, path) {
			return
		}
		var v bool
		if n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
			d.reportAt(n.Line, path, fmt.Errorf("%q is not true or false", n.Value))
		}
	default:
		// Only reachable if a field of a type not handled here is added
		// to the format.
		d.reportAt(n.Line, path, fmt.Errorf("internal error: cannot check a %s", t))
	}
}

// checkMapping checks the mapping n at path, to be decoded into a value of
// type t, a struct or a map. valueType returns the type of the value of
// the key k at path p, or nil if there is none, having reported why.
func (d *decoder) checkMapping(n *yaml.Node, t reflect.Type, path string, valueType func(k *yaml.Node, p string) reflect.Type) {
	firsts := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := field(path, k.Value)
		if !d.key(k, p, firsts) {
			continue
		}
		if isMerge(k) {
			merges = append(merges, v)
			continue
		}
		if vt := valueType(k, p); vt != nil {
			d.check(v, vt, p)
		}
	}
	// Check merged keys last, so that the lines recorded are those of the
	// keys given explicitly, which override them.
	for _, v := range merges {
		d.checkMerge(v, t, path)
	}
}

// checkMerge checks the value of a merge key ("<<"): a mapping, or a list
// of mappings, whose keys are merged into the mapping at path, of type t.
// Keys given explicitly override merged ones, so a key both merged and
// given is not a duplicate.
func (d *decoder) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	mappings := []*yaml.Node{v}
	if resolve(v).Kind == yaml.SequenceNode {
		mappings = resolve(v).Content
	}
	for _, m := range mappings {
		if resolve(m).Kind != yaml.MappingNode {
			d.reportAt(m.Line, path, fmt.Errorf("merge key %q needs a mapping or a list of mappings, not %s", "<<", describe(resolve(m))))
			continue
		}
		d.check(m, t, path)
	}
}

// resolve returns the node an alias stands for, or n if it is no alias.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// key checks a mapping key at path: that it is a plain scalar and that the
// mapping does not already have it. firsts maps the keys seen so far to
// their lines.
func (d *decoder) key(k *yaml.Node, path string, firsts map[string]int) bool {
	if k.Kind != yaml.ScalarNode {
		d.reportAt(k.Line, path, fmt.Errorf("key is %s; keys must be plain strings", describe(k)))
		return false
	}
	if first, dup := firsts[k.Value]; dup {
		d.reportAt(k.Line, path, fmt.Errorf("duplicate key %q; first given at line %d", k.Value, first))
		return false
	}
	firsts[k.Value] = k.Line
	return true
}

// isMerge reports whether the mapping key k is the merge key "<<".
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// want reports whether n is of the given kind, reporting a problem if not.
func (d *decoder) want(n *yaml.Node, kind yaml.Kind, path string) bool {
	if n.Kind == kind {
		return true
	}
	var what string
	switch kind {
	case yaml.MappingNode:
		what = "a mapping"
	case yaml.SequenceNode:
		what = "a list"
	default:
		what = "a single value"
	}
	d.reportAt(n.Line, path, fmt.Errorf("want %s, not %s", what, describe(n)))
	return false
}

// describe names the kind of n for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	default:
		return "an unexpected YAML node"
	}
}
