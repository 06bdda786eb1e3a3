package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"
)

// Editor changes a goldcast.yaml file: it adds, changes and removes node
// and group entries and leaves everything else as the file had it.
//
// An Editor works on the YAML node tree of the file. When it writes the
// result, the entries it did not touch keep their exact text (comments,
// blank lines, quoting, anchors); a changed entry is written anew in
// place, keeping its own comments, and new entries go after the last one
// of their list. When a change cannot be spliced into the text that way
// (a list written in flow style, [...], say), the whole document is
// written anew, which still keeps comments and key order. Save validates
// the result with Load before it replaces the file.
//
// An Editor is not safe for concurrent use. Editors of the same file in
// other processes are detected: Save refuses with a *ConflictError when
// the file changed after OpenEditor read it.
type Editor struct {
	path     string
	orig     []byte // the file as read; nil when it did not exist
	exists   bool
	lines    []string             // orig split into lines, each ending in "\n"
	doc      *yaml.Node           // the document node, never nil
	root     *yaml.Node           // the top-level mapping; nil while the file declares nothing
	sections map[string]*listText // the nodes and groups lists as the file gave them
	dirty    map[*yaml.Node]bool  // list items changed in place, to be written anew
	changed  bool                 // whether anything was edited since the file was read
	full     bool                 // whether the whole document must be written anew
}

// listText is the nodes or groups list as the file gave it, and where its
// entries are in the text.
type listText struct {
	key     *yaml.Node    // the key in the top-level mapping; nil when absent
	value   *yaml.Node    // its value as read
	items   []*yaml.Node  // the entries read
	regions []entryRegion // the text of each entry
	empty   int           // 0-based line of a key with an empty value (nodes: or nodes: []), else -1
	splice  bool          // whether changes to the list can be spliced into the text
}

// entryRegion is where one list entry is in the text, in 0-based lines.
type entryRegion struct {
	cut   int // first line removed with the entry: its head comment, and the blank lines before it
	after int // the line after those removed with it: after its end, and after the blank lines following it if cut takes none before it
	line  int // the line of its "-"
	end   int // its last line, comments indented into it included
	dash  int // the column of its "-"
}

// ConflictError is the error Save returns when the file changed on disk
// after OpenEditor read it: writing would lose that other change. Nothing
// is written; open the file again and redo the edit.
type ConflictError struct {
	// Path is the file that changed.
	Path string
}

// Error says which file changed and what to do.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s changed since it was read for this edit; nothing written, run the edit again", e.Path)
}

// sectionNames lists the lists of entries an Editor changes.
func sectionNames() []string { return []string{"nodes", "groups"} }

// OpenEditor reads the configuration file at path for editing. A missing
// file is an empty configuration, which Save creates. The file must be
// YAML with a mapping at the top, but need not be valid otherwise: Save
// validates what it writes.
func OpenEditor(path string) (*Editor, error) {
	data, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open config %s for editing: %w", path, err)
	}
	e := &Editor{path: path}
	if err := e.reset(data, exists); err != nil {
		return nil, fmt.Errorf("open config %s for editing: %w", path, err)
	}
	return e, nil
}

// reset makes data, the contents of the file, the state the Editor edits.
func (e *Editor) reset(data []byte, exists bool) error {
	e.orig, e.exists = data, exists
	e.doc = &yaml.Node{Kind: yaml.DocumentNode}
	e.root = nil
	e.sections = map[string]*listText{}
	e.dirty = map[*yaml.Node]bool{}
	e.changed, e.full = false, false

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return err
	default:
		var extra yaml.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			if err != nil {
				return err
			}
			return fmt.Errorf("line %d: a second YAML document; the file must hold one", extra.Line)
		}
		if doc.Kind == yaml.DocumentNode {
			e.doc = &doc
		}
	}
	if len(e.doc.Content) > 0 {
		switch r := e.doc.Content[0]; {
		case r.Kind == yaml.MappingNode:
			e.root = r
		case isNull(r):
		default:
			return fmt.Errorf("line %d: the top level is %s, not a mapping", r.Line, describe(r))
		}
	}
	if e.root != nil {
		for i := 0; i+1 < len(e.root.Content); i += 2 {
			if k := e.root.Content[i]; isMerge(k) {
				return fmt.Errorf("line %d: the top level uses a merge key (<<), which the editor cannot change safely; edit the file by hand", k.Line)
			}
		}
	}
	e.lines = splitLines(data)
	for _, name := range sectionNames() {
		e.sections[name] = e.scanSection(name)
	}
	return nil
}

// isNull reports whether n is a null scalar: ~, null or nothing.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// splitLines splits data into lines that each end in "\n", adding one to
// the last line if it has none.
func splitLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "\n") {
		lines[len(lines)-1] = last + "\n"
	}
	return lines
}

// scanSection finds the list called name in the text, and whether and how
// changes to it can be spliced in.
func (e *Editor) scanSection(name string) *listText {
	s := &listText{empty: -1}
	if e.root == nil {
		s.splice = true // the list goes at the end of the file
		return s
	}
	ki := keyIndex(e.root, name)
	if ki < 0 {
		s.splice = e.root.Style&yaml.FlowStyle == 0
		return s
	}
	s.key, s.value = e.root.Content[ki], e.root.Content[ki+1]
	if s.value.Kind == yaml.SequenceNode {
		s.items = slices.Clone(s.value.Content)
	}
	if e.root.Style&yaml.FlowStyle != 0 {
		return s
	}
	next := len(e.lines) // where the text of the list ends at the latest
	if ki+2 < len(e.root.Content) {
		next = e.root.Content[ki+2].Line - 1
	}
	switch v := s.value; {
	case v.Line == s.key.Line && (isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0):
		s.empty = s.key.Line - 1
		s.splice = true
		return s
	case v.Kind != yaml.SequenceNode || v.Style&yaml.FlowStyle != 0:
		return s
	}
	prev := s.key.Line - 1 // the last line before the entry that is not its own
	for i, it := range s.items {
		boundary := next
		if i+1 < len(s.items) {
			boundary = s.items[i+1].Line - 1
		}
		r, ok := e.itemRegion(it, prev, boundary, i+1 == len(s.items))
		if !ok {
			return s
		}
		s.regions = append(s.regions, r)
		prev = r.end
	}
	s.splice = true
	return s
}

// itemRegion finds the text of the list entry it, which comes after line
// prev and before line boundary, and is the list's last if last is set.
func (e *Editor) itemRegion(it *yaml.Node, prev, boundary int, last bool) (entryRegion, bool) {
	l, col := it.Line-1, it.Column-1
	if it.Kind != yaml.MappingNode || l <= prev || l >= boundary || boundary > len(e.lines) || col > len(e.lines[l]) {
		return entryRegion{}, false
	}
	before := strings.TrimRight(e.lines[l][:col], " ")
	if !strings.HasSuffix(before, "-") || strings.Trim(before[:len(before)-1], " ") != "" {
		return entryRegion{}, false
	}
	r := entryRegion{line: l, dash: len(before) - 1}
	r.end = boundary - 1
	for r.end > l && (isBlank(e.lines[r.end]) || isComment(e.lines[r.end])) {
		r.end--
	}
	for r.end+1 < boundary && isComment(e.lines[r.end+1]) && indentOf(e.lines[r.end+1]) > r.dash {
		r.end++
	}
	head := l
	for head-1 > prev && isComment(e.lines[head-1]) {
		head--
	}
	r.cut = head
	b := head
	for b-1 > prev && isBlank(e.lines[b-1]) {
		b--
	}
	if b-1 == prev {
		r.cut = b
	}
	r.after = r.end + 1
	if r.cut == head && !last {
		// Nothing separates the entry from what is before it: take the
		// blank lines separating it from the next one.
		for r.after < boundary && isBlank(e.lines[r.after]) {
			r.after++
		}
	}
	return r, true
}

// isBlank reports whether line holds nothing but white space.
func isBlank(line string) bool { return strings.TrimSpace(line) == "" }

// isComment reports whether line holds nothing but a comment.
func isComment(line string) bool { return strings.HasPrefix(strings.TrimSpace(line), "#") }

// indentOf returns the number of spaces line starts with.
func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

// keyIndex returns the index in the mapping m of the key name given
// directly (not through a merge key), or -1.
func keyIndex(m *yaml.Node, name string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && !isMerge(k) && k.Value == name {
			return i
		}
	}
	return -1
}

// list returns the current list called name, nodes or groups, creating an
// empty one if create is set; without create it returns nil for a missing
// or empty list.
func (e *Editor) list(name string, create bool) (*yaml.Node, error) {
	if e.root == nil {
		if !create {
			return nil, nil
		}
		e.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if len(e.doc.Content) == 0 {
			e.doc.Content = []*yaml.Node{e.root}
		} else {
			e.doc.Content[0] = e.root
		}
	}
	if i := keyIndex(e.root, name); i >= 0 {
		v := e.root.Content[i+1]
		switch {
		case v.Kind == yaml.SequenceNode:
			if create && len(v.Content) == 0 {
				v.Style &^= yaml.FlowStyle
			}
			return v, nil
		case isNull(v):
			if !create {
				return nil, nil
			}
			seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, Column: v.Column}
			copyComments(seq, v)
			e.root.Content[i+1] = seq
			return seq, nil
		case v.Kind == yaml.AliasNode:
			return nil, fmt.Errorf("%s at line %d is an alias (*%s); edit the file by hand", name, v.Line, v.Value)
		default:
			return nil, fmt.Errorf("%s at line %d is %s, not a list", name, v.Line, describe(v))
		}
	}
	if !create {
		return nil, nil
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	e.root.Content = append(e.root.Content, strNode(name), seq)
	return seq, nil
}

// current returns the entries of the list called name as they are now.
func (e *Editor) current(name string) []*yaml.Node {
	seq, err := e.list(name, false)
	if err != nil || seq == nil {
		return nil
	}
	return seq.Content
}

// listEntry is one entry of the nodes or groups list.
type listEntry struct {
	item  *yaml.Node
	name  string
	hosts []string // the names a node entry declares; nil when they do not expand
	line  int      // the line of its name, 0 for an entry added in this edit
}

// where says where an entry is, for messages.
func (en listEntry) where() string {
	if en.line == 0 {
		return "(added in this edit)"
	}
	return "at line " + strconv.Itoa(en.line)
}

// entries lists the entries of the list called name.
func (e *Editor) entries(name string) []listEntry {
	var out []listEntry
	for _, it := range e.current(name) {
		var v struct {
			Name string `yaml:"name"`
		}
		_ = it.Decode(&v) // an entry without a name, or with a bad one, has none here; Save reports it
		en := listEntry{item: it, name: v.Name, line: it.Line}
		if m := resolve(it); m.Kind == yaml.MappingNode {
			if i := keyIndex(m, "name"); i >= 0 {
				en.line = m.Content[i+1].Line
			}
		}
		if name == "nodes" && v.Name != "" {
			en.hosts, _ = ExpandHosts(v.Name)
		}
		out = append(out, en)
	}
	return out
}

// matchNodes returns the node entries declaring the names expr expands
// to. Every name must be declared, and an entry declaring several names
// matches only if expr gives all of them; verb says what is to be done, for
// the error saying so.
func (e *Editor) matchNodes(expr, verb string) ([]listEntry, error) {
	want, err := ExpandHosts(expr)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, h := range want {
		wanted[h] = true
	}
	covered := map[string]bool{}
	var out []listEntry
	for _, en := range e.entries("nodes") {
		var in []string
		for _, h := range en.hosts {
			if wanted[h] {
				in = append(in, h)
			}
		}
		if len(in) == 0 {
			continue
		}
		if len(in) < len(en.hosts) {
			return nil, fmt.Errorf("node %q is declared by the entry %q %s, which declares %d nodes; to %s it, give the whole entry (%s) or split the entry by hand",
				in[0], en.name, en.where(), len(en.hosts), verb, en.name)
		}
		out = append(out, en)
		for _, h := range in {
			covered[h] = true
		}
	}
	var missing []string
	for _, h := range want {
		if !covered[h] && !slices.Contains(missing, h) {
			missing = append(missing, h)
		}
	}
	switch len(missing) {
	case 0:
		return out, nil
	case 1:
		return nil, fmt.Errorf("no node %q is declared in %s", missing[0], e.path)
	default:
		return nil, fmt.Errorf("nodes %q and %d more are not declared in %s", missing[0], len(missing)-1, e.path)
	}
}

// findGroup returns the entry of the group called name.
func (e *Editor) findGroup(name string) (listEntry, error) {
	for _, en := range e.entries("groups") {
		if en.name == name {
			return en, nil
		}
	}
	return listEntry{}, fmt.Errorf("no group %q is declared in %s", name, e.path)
}

// AddNode adds an entry for n at the end of the nodes list. n.Name may be a
// host range; it must not declare a name another entry declares. Fields
// left empty are left out of the entry.
func (e *Editor) AddNode(n Node) error {
	hosts, err := ExpandHosts(n.Name)
	if err != nil {
		return fmt.Errorf("add node: %w", err)
	}
	for _, en := range e.entries("nodes") {
		for _, h := range hosts {
			if slices.Contains(en.hosts, h) {
				return fmt.Errorf("add node %s: node %q is already declared by the entry %q %s", n.Name, h, en.name, en.where())
			}
		}
	}
	seq, err := e.list("nodes", true)
	if err != nil {
		return fmt.Errorf("add node %s: %w", n.Name, err)
	}
	seq.Content = append(seq.Content, entryMapping(n))
	e.changed = true
	return nil
}

// SetNode changes node entries: fn is called with each entry declaring the
// names expr expands to (a name, a list or a host range) and the entry is
// rewritten with what fn leaves in it. fn sees an entry as the file gives
// it (Boot and Transport empty when the file leaves them out) and, for an
// entry declaring several nodes, with its range as the Name.
//
// Every name must be declared, and a name declared by an entry that
// declares several (node005 of node[001-032]) can only be changed with all
// of them: expr must name the whole entry. Settings fn does not change
// keep their text; so do the entry's comments.
func (e *Editor) SetNode(expr string, fn func(*Node) error) error {
	matched, err := e.matchNodes(expr, "change")
	if err != nil {
		return fmt.Errorf("change node %s: %w", expr, err)
	}
	olds := make([]Node, len(matched))
	news := make([]Node, len(matched))
	for i, en := range matched {
		if err := en.item.Decode(&olds[i]); err != nil {
			return fmt.Errorf("change node %s: entry %s: %w", en.name, en.where(), err)
		}
		news[i] = olds[i].clone()
		if err := fn(&news[i]); err != nil {
			return fmt.Errorf("change node %s: %w", en.name, err)
		}
	}
	for i, en := range matched {
		e.update(en.item, olds[i], news[i])
	}
	return nil
}

// RemoveNodes removes the node entries declaring the names expr expands to,
// and returns the names they declared. As with SetNode, every name must be
// declared and an entry declaring several names is removed only if expr
// gives them all.
func (e *Editor) RemoveNodes(expr string) ([]string, error) {
	matched, err := e.matchNodes(expr, "remove")
	if err != nil {
		return nil, fmt.Errorf("remove node %s: %w", expr, err)
	}
	seq, err := e.list("nodes", false)
	if err != nil {
		return nil, fmt.Errorf("remove node %s: %w", expr, err)
	}
	var names []string
	gone := map[*yaml.Node]bool{}
	for _, en := range matched {
		e.unshare(en.item, true)
		gone[en.item] = true
		names = append(names, en.hosts...)
	}
	seq.Content = slices.DeleteFunc(seq.Content, func(n *yaml.Node) bool { return gone[n] })
	e.changed = true
	return names, nil
}

// AddGroup adds an entry for g at the end of the groups list. Its name
// must not be declared yet. Fields left empty are left out of the entry,
// and so is Priority when it is DefaultPriority: pass DefaultPriority for
// a group of default priority.
func (e *Editor) AddGroup(g Group) error {
	for _, en := range e.entries("groups") {
		if en.name == g.Name {
			return fmt.Errorf("add group %s: already declared %s", g.Name, en.where())
		}
	}
	seq, err := e.list("groups", true)
	if err != nil {
		return fmt.Errorf("add group %s: %w", g.Name, err)
	}
	seq.Content = append(seq.Content, entryMapping(g))
	e.changed = true
	return nil
}

// SetGroup changes the entry of the group called name: fn is called with
// the group and the entry is rewritten with what fn leaves in it. fn sees
// Priority as Load would, DefaultPriority when the file leaves it out.
// Renaming a group that nodes list makes Save refuse: they would name an
// unknown group.
func (e *Editor) SetGroup(name string, fn func(*Group) error) error {
	en, err := e.findGroup(name)
	if err != nil {
		return fmt.Errorf("change group %s: %w", name, err)
	}
	var old Group
	if err := en.item.Decode(&old); err != nil {
		return fmt.Errorf("change group %s: entry %s: %w", name, en.where(), err)
	}
	var p struct {
		Priority *int `yaml:"priority"`
	}
	if err := en.item.Decode(&p); err == nil && p.Priority == nil {
		old.Priority = DefaultPriority
	}
	g := old.clone()
	if err := fn(&g); err != nil {
		return fmt.Errorf("change group %s: %w", name, err)
	}
	e.update(en.item, old, g)
	return nil
}

// GroupUsers returns the names of the node entries that list the group
// called name in their groups, in the order of the file. Nodes the group's
// own nodes range takes in are not users.
func (e *Editor) GroupUsers(name string) []string {
	var users []string
	for _, en := range e.groupUsers(name) {
		users = append(users, en.name)
	}
	return users
}

// groupUsers returns the node entries listing the group called name.
func (e *Editor) groupUsers(name string) []listEntry {
	var users []listEntry
	for _, en := range e.entries("nodes") {
		var v struct {
			Groups []string `yaml:"groups"`
		}
		if en.item.Decode(&v) == nil && slices.Contains(v.Groups, name) {
			users = append(users, en)
		}
	}
	return users
}

// RemoveGroup removes the entry of the group called name. While node
// entries list the group it refuses, naming them, unless force is set; then
// it removes the group from their lists too (see GroupUsers).
func (e *Editor) RemoveGroup(name string, force bool) error {
	g, err := e.findGroup(name)
	if err != nil {
		return fmt.Errorf("remove group %s: %w", name, err)
	}
	users := e.groupUsers(name)
	if len(users) > 0 && !force {
		var which []string
		for _, en := range users {
			which = append(which, fmt.Sprintf("%q %s", en.name, en.where()))
		}
		return fmt.Errorf("remove group %s: nodes list it: %s; take it out of their groups first, or force the removal, which takes it out of them", name, strings.Join(which, ", "))
	}
	for _, en := range users {
		var old Node
		if err := en.item.Decode(&old); err != nil {
			return fmt.Errorf("remove group %s: node entry %s: %w", name, en.where(), err)
		}
		n := old.clone()
		n.Groups = slices.DeleteFunc(n.Groups, func(s string) bool { return s == name })
		e.update(en.item, old, n)
	}
	seq, err := e.list("groups", false)
	if err != nil {
		return fmt.Errorf("remove group %s: %w", name, err)
	}
	e.unshare(g.item, true)
	seq.Content = slices.DeleteFunc(seq.Content, func(n *yaml.Node) bool { return n == g.item })
	e.changed = true
	return nil
}

// clone returns a deep copy of g.
func (g Group) clone() Group {
	g.Overrides = slices.Clone(g.Overrides)
	g.Vars = maps.Clone(g.Vars)
	return g
}

// update rewrites the list entry it, read as old (a Node or a Group), to
// hold new instead, changing only the keys whose values differ.
func (e *Editor) update(it *yaml.Node, old, new any) {
	if it.Kind == yaml.AliasNode {
		// The entry is another one's: make it its own.
		c := copyYAML(resolve(it))
		c.Anchor = ""
		copyComments(c, it)
		c.Line, c.Column = it.Line, it.Column
		*it = *c
		e.full = true
	}
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(new)
	keys := yamlKeys(ov.Type())
	changed := false
	for i, key := range keys {
		if sameValue(ov.Field(i), nv.Field(i)) {
			continue
		}
		e.setKey(it, key, ov.Field(i), nv.Field(i), keys)
		changed = true
	}
	if changed {
		e.dirty[it] = true
		e.changed = true
	}
}

// yamlKeys returns the YAML key of each field of the struct type t.
func yamlKeys(t reflect.Type) []string {
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i], _, _ = strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
	}
	return keys
}

// sameValue reports whether two field values are the same setting: empty
// lists and maps are the same as none.
func sameValue(a, b reflect.Value) bool {
	if k := a.Kind(); (k == reflect.Slice || k == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// isEmptyValue reports whether v is a value that is left out of an entry: an
// empty string, list or map. Numbers always count.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Struct:
		for i := range v.NumField() {
			if !isEmptyValue(v.Field(i)) {
				return false
			}
		}
		return true
	}
	return false
}

// setKey gives the key of the mapping m the value v, which was old. keys
// lists the keys of the entry in the order the format declares them, for
// placing a new key.
func (e *Editor) setKey(m *yaml.Node, key string, old, v reflect.Value, keys []string) {
	i := keyIndex(m, key)
	if isEmptyValue(v) {
		if i >= 0 {
			e.unshare(m, false)
			e.unshare(m.Content[i+1], true)
			m.Content = slices.Delete(m.Content, i, i+2)
		}
		if mergedHas(m, key) {
			// A merged mapping gives the key: override it with nothing.
			e.insertKey(m, key, emptyNode(v), keys)
		}
		return
	}
	if i >= 0 {
		cur := m.Content[i+1]
		if v.Kind() == reflect.Map && e.editMap(cur, old.Interface().(map[string]string), v.Interface().(map[string]string)) {
			return
		}
		e.unshare(cur, true)
		m.Content[i+1] = valueNode(key, v, cur)
		return
	}
	e.insertKey(m, key, valueNode(key, v, nil), keys)
}

// insertKey adds key with value to the mapping m, before the first key
// that keys lists after it.
func (e *Editor) insertKey(m *yaml.Node, key string, value *yaml.Node, keys []string) {
	e.unshare(m, false)
	rank := slices.Index(keys, key)
	pos := len(m.Content)
	for j := 0; j+1 < len(m.Content); j += 2 {
		if k := m.Content[j]; !isMerge(k) && slices.Index(keys, k.Value) > rank {
			pos = j
			break
		}
	}
	m.Content = slices.Insert(m.Content, pos, strNode(key), value)
}

// editMap changes the mapping m, which holds old, to hold want key by key,
// keeping the text of the keys that stay. It reports false, changing
// nothing, when it cannot: m is no plain mapping, or a key to remove comes
// from a merge key.
func (e *Editor) editMap(m *yaml.Node, old, want map[string]string) bool {
	if m.Kind != yaml.MappingNode {
		return false
	}
	for k := range old {
		if _, keep := want[k]; !keep && mergedHas(m, k) {
			return false
		}
	}
	e.unshare(m, false)
	for j := 0; j+1 < len(m.Content); {
		k, v := m.Content[j], m.Content[j+1]
		if isMerge(k) {
			j += 2
			continue
		}
		w, keep := want[k.Value]
		if !keep {
			e.unshare(v, true)
			m.Content = slices.Delete(m.Content, j, j+2)
			continue
		}
		var s string
		if v.Decode(&s) != nil || s != w {
			e.unshare(v, true)
			m.Content[j+1] = valueNode("", reflect.ValueOf(w), v)
		}
		j += 2
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if keyIndex(m, k) >= 0 || old[k] == want[k] && mergedHas(m, k) {
			continue
		}
		m.Content = append(m.Content, strNode(k), strNode(want[k]))
	}
	return true
}

// mergedHas reports whether the mapping m gets key from a merge key.
func mergedHas(m *yaml.Node, key string) bool {
	m = resolve(m)
	if m.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !isMerge(m.Content[i]) {
			continue
		}
		v := resolve(m.Content[i+1])
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		for _, s := range sources {
			if s = resolve(s); s.Kind == yaml.MappingNode && (keyIndex(s, key) >= 0 || mergedHas(s, key)) {
				return true
			}
		}
	}
	return false
}

// entryMapping returns the mapping for a new entry holding v, a Node or a
// Group, leaving out empty fields and a DefaultPriority.
func entryMapping(v any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	rv := reflect.ValueOf(v)
	for i, key := range yamlKeys(rv.Type()) {
		f := rv.Field(i)
		if isEmptyValue(f) || f.Kind() == reflect.Int && f.Int() == DefaultPriority {
			continue
		}
		m.Content = append(m.Content, strNode(key), valueNode(key, f, nil))
	}
	return m
}

// valueNode returns the node holding v as the value of key, replacing old
// (nil for a new key): it keeps old's comments and style, and the nodes of
// list elements that stay.
func valueNode(key string, v reflect.Value, old *yaml.Node) *yaml.Node {
	var n *yaml.Node
	switch v.Kind() {
	case reflect.String:
		n = strNode(v.String())
		if old != nil && old.Kind == yaml.ScalarNode && n.Style == 0 {
			n.Style = old.Style & (yaml.SingleQuotedStyle | yaml.DoubleQuotedStyle)
		}
	case reflect.Int:
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case reflect.Slice:
		n = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		// Short lists of names read well in flow style; addresses go one
		// per line, as flow style would have to quote MACs and IPv6.
		if key == "groups" || key == "overrides" {
			n.Style = yaml.FlowStyle
		}
		var reuse []*yaml.Node
		if old != nil && old.Kind == yaml.SequenceNode {
			n.Style = old.Style & yaml.FlowStyle
			reuse = slices.Clone(old.Content)
		}
		for i := range v.Len() {
			s := v.Index(i).String()
			j := slices.IndexFunc(reuse, func(r *yaml.Node) bool {
				return r.Kind == yaml.ScalarNode && r.Anchor == "" && r.Value == s && r.ShortTag() == "!!str"
			})
			if j >= 0 {
				n.Content = append(n.Content, reuse[j])
				reuse = slices.Delete(reuse, j, j+1)
				continue
			}
			n.Content = append(n.Content, strNode(s))
		}
	case reflect.Map:
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if old != nil && old.Kind == yaml.MappingNode {
			n.Style = old.Style & yaml.FlowStyle
		}
		vars := v.Interface().(map[string]string)
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			n.Content = append(n.Content, strNode(k), strNode(vars[k]))
		}
	case reflect.Bool:
		n = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	case reflect.Struct:
		// A settings block (install:): its non-empty fields, in the
		// format's order.
		n = entryMapping(v.Interface())
	}
	if old != nil {
		copyComments(n, old)
	}
	return n
}

// emptyNode returns an explicitly empty value of the kind of v: "", [],
// {} or false.
func emptyNode(v reflect.Value) *yaml.Node {
	switch v.Kind() {
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"}
	case reflect.Slice:
		return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	case reflect.Struct, reflect.Map:
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle}
}

// strNode returns a string scalar holding s.
func strNode(s string) *yaml.Node {
	n := &yaml.Node{}
	n.SetString(s)
	return n
}

// copyComments gives n the comments of old.
func copyComments(n, old *yaml.Node) {
	n.HeadComment, n.LineComment, n.FootComment = old.HeadComment, old.LineComment, old.FootComment
}

// walkYAML calls fn for n and every node under it, in the order of the text,
// without following aliases.
func walkYAML(n *yaml.Node, fn func(*yaml.Node)) {
	fn(n)
	for _, c := range n.Content {
		walkYAML(c, fn)
	}
}

// copyYAML returns a copy of n and everything under it. Aliases in the
// copy still refer to the nodes they referred to.
func copyYAML(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = nil
	for _, x := range n.Content {
		c.Content = append(c.Content, copyYAML(x))
	}
	return &c
}

// unshare prepares the node top to be changed or dropped without changing
// what aliases elsewhere stand for: an anchor on top (and, with all, on any
// node under it) that aliases outside top refer to moves to a copy of its
// node put in place of the first of those aliases, and the others refer to
// that copy.
func (e *Editor) unshare(top *yaml.Node, all bool) {
	inside := map[*yaml.Node]bool{}
	walkYAML(top, func(n *yaml.Node) { inside[n] = true })
	var targets []*yaml.Node
	walkYAML(top, func(n *yaml.Node) {
		if n.Anchor != "" && (all || n == top) {
			targets = append(targets, n)
		}
	})
	for _, t := range targets {
		var outside []*yaml.Node
		referred := false
		walkYAML(e.doc, func(n *yaml.Node) {
			if n.Kind != yaml.AliasNode || n.Alias != t {
				return
			}
			if inside[n] {
				referred = true
			} else {
				outside = append(outside, n)
			}
		})
		if len(outside) == 0 {
			continue
		}
		first := outside[0]
		c := copyYAML(t)
		copyComments(c, first)
		c.Line, c.Column = first.Line, first.Column
		*first = *c
		for _, a := range outside[1:] {
			a.Alias = first
		}
		e.touch(first)
		if !referred {
			t.Anchor = ""
		}
	}
}

// touch marks the list entry holding n as changed, or, when n is in no
// entry, the whole document.
func (e *Editor) touch(n *yaml.Node) {
	for _, name := range sectionNames() {
		for _, it := range e.current(name) {
			found := false
			walkYAML(it, func(x *yaml.Node) { found = found || x == n })
			if found {
				e.dirty[it] = true
				return
			}
		}
	}
	e.full = true
}

// Bytes returns the file as the edits so far make it: the text read, with
// changed entries written anew, removed ones cut out and new ones added
// after the last of their list; or, when the changes cannot be spliced into
// the text, the whole document written anew. It does not validate the
// result; Save does.
func (e *Editor) Bytes() ([]byte, error) {
	if !e.changed {
		return bytes.Clone(e.orig), nil
	}
	if !e.full {
		if b, ok := e.splice(); ok {
			return b, nil
		}
	}
	b, err := encodeYAML(e.doc)
	if err != nil {
		return nil, fmt.Errorf("write config %s: %w", e.path, err)
	}
	return b, nil
}

// splice returns the text read with the changed entries replaced, the
// removed ones cut and the new ones added, reporting false when it cannot,
// or when the result would not hold what the node tree holds.
func (e *Editor) splice() ([]byte, bool) {
	type textEdit struct {
		from, to int // the lines replaced
		text     string
	}
	var edits []textEdit
	tails := map[string]string{} // new lists, to go at the end of the file
	for _, name := range sectionNames() {
		s := e.sections[name]
		cur := e.current(name)
		if slices.Equal(cur, s.items) && !slices.ContainsFunc(cur, func(n *yaml.Node) bool { return e.dirty[n] }) {
			continue
		}
		if !s.splice {
			return nil, false
		}
		k := 0
		for i, it := range s.items {
			r := s.regions[i]
			if k < len(cur) && cur[k] == it {
				k++
				if e.dirty[it] {
					text, err := renderEntries([]*yaml.Node{it}, r.dash, strings.Join(e.lines[r.line:r.end+1], ""))
					if err != nil {
						return nil, false
					}
					edits = append(edits, textEdit{r.line, r.end + 1, text})
				}
				continue
			}
			edits = append(edits, textEdit{r.cut, r.after, ""})
		}
		added := cur[k:]
		if len(added) == 0 {
			continue
		}
		for _, it := range added {
			if slices.Contains(s.items, it) {
				return nil, false // reordered
			}
		}
		switch {
		case len(s.regions) > 0:
			text, err := renderEntries(added, s.regions[0].dash, "")
			if err != nil {
				return nil, false
			}
			at := s.regions[len(s.regions)-1].end + 1
			edits = append(edits, textEdit{at, at, text})
		case s.empty >= 0:
			col := s.key.Column - 1
			text, err := renderEntries(added, col+2, "")
			if err != nil {
				return nil, false
			}
			comment := s.key.LineComment + s.value.LineComment
			if comment != "" {
				comment = " " + comment
			}
			line := strings.Repeat(" ", col) + name + ":" + comment + "\n"
			edits = append(edits, textEdit{s.empty, s.empty + 1, line + text})
		case s.key == nil:
			col := 0 // the column of the keys read, if any
			if e.root != nil && len(e.root.Content) > 0 && e.root.Content[0].Line > 0 {
				col = e.root.Content[0].Column - 1
			}
			text, err := renderEntries(added, col+2, "")
			if err != nil {
				return nil, false
			}
			tails[name] = strings.Repeat(" ", col) + name + ":\n" + text
		default:
			return nil, false
		}
	}
	slices.SortStableFunc(edits, func(a, b textEdit) int { return a.from - b.from })
	var out strings.Builder
	pos := 0
	for _, ed := range edits {
		if ed.from < pos {
			return nil, false
		}
		out.WriteString(strings.Join(e.lines[pos:ed.from], ""))
		out.WriteString(ed.text)
		pos = ed.to
	}
	out.WriteString(strings.Join(e.lines[pos:], ""))
	for i := 0; e.root != nil && i < len(e.root.Content); i += 2 {
		out.WriteString(tails[e.root.Content[i].Value]) // in the order of the keys
	}
	b := []byte(out.String())
	if !sameData(e.doc, b) {
		return nil, false
	}
	return b, true
}

// renderEntries writes items as block list entries with their "-" at column
// col. region, when not empty, is the text an entry had: comments not in
// it (those attached to the entry from around it, which stay where they
// are) are left out. The entries' own head comments always are: they stay
// above them in the text.
func renderEntries(items []*yaml.Node, col int, region string) (string, error) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, it := range items {
		c := forOutput(it)
		c.HeadComment = ""
		if region != "" {
			walkYAML(c, func(n *yaml.Node) {
				n.HeadComment = keepComments(n.HeadComment, region)
				n.LineComment = keepComments(n.LineComment, region)
				n.FootComment = keepComments(n.FootComment, region)
			})
		}
		seq.Content = append(seq.Content, c)
	}
	b, err := encodeYAML(seq)
	if err != nil {
		return "", err
	}
	pad := strings.Repeat(" ", col)
	var out strings.Builder
	for _, line := range splitLines(b) {
		if !isBlank(line) {
			out.WriteString(pad)
		}
		out.WriteString(line)
	}
	return out.String(), nil
}

// keepComments returns the lines of comment that appear in region.
func keepComments(comment, region string) string {
	if comment == "" {
		return ""
	}
	var kept []string
	for _, l := range strings.Split(comment, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.Contains(region, t) {
			kept = append(kept, l)
		}
	}
	return strings.Trim(strings.Join(kept, "\n"), "\n")
}

// forOutput returns a copy of n ready for the encoder, which would write a
// merge key as "!!merge <<".
func forOutput(n *yaml.Node) *yaml.Node {
	c := copyYAML(n)
	walkYAML(c, func(x *yaml.Node) {
		if x.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(x.Content); i += 2 {
			if isMerge(x.Content[i]) {
				x.Content[i].Tag = ""
			}
		}
	})
	return c
}

// encodeYAML writes n as YAML indented by two spaces.
func encodeYAML(n *yaml.Node) ([]byte, error) {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(forOutput(n)); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sameData reports whether the YAML text b holds the same data as the
// document doc.
func sameData(doc *yaml.Node, b []byte) bool {
	var want, got any
	if len(doc.Content) > 0 {
		if err := doc.Decode(&want); err != nil {
			return false
		}
	}
	if err := yaml.Unmarshal(b, &got); err != nil {
		return false
	}
	return reflect.DeepEqual(dropEmpty(want), dropEmpty(got))
}

// dropEmpty returns the decoded YAML value v with empty lists and mappings
// made null, as the configuration reads them: a list emptied by removing
// its entries is written "nodes:", not "nodes: []".
func dropEmpty(v any) any {
	switch v := v.(type) {
	case []any:
		if len(v) == 0 {
			return nil
		}
		for i := range v {
			v[i] = dropEmpty(v[i])
		}
	case map[string]any:
		if len(v) == 0 {
			return nil
		}
		for k := range v {
			v[k] = dropEmpty(v[k])
		}
	}
	return v
}

// Save writes the edits to the file, validated and atomically.
//
// It writes the new contents (see Bytes) to a temporary file beside the
// file and loads that as Load does, reporting problems under the file's
// own name: if it is not a valid configuration, Save returns the problems
// Load found (each an *Error with file, line and field, lines counted in
// the new contents) and leaves the file as it was. Otherwise it syncs the
// temporary file to disk, gives it the file's permissions and owner and
// renames it over the file, so readers see the old file or the new one,
// never a mix. If the file changed since it was read, Save returns a
// *ConflictError and writes nothing; so it does when nothing was edited.
// After a Save the Editor edits the saved contents.
func (e *Editor) Save() error {
	data, err := e.Bytes()
	if err != nil {
		return err
	}
	dir := filepath.Dir(e.path)
	unlock, err := lockConfigDir(dir)
	if err != nil {
		return fmt.Errorf("save config %s: %w", e.path, err)
	}
	defer unlock()

	info, err := os.Stat(e.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if e.exists {
			return &ConflictError{Path: e.path}
		}
	case err != nil:
		return fmt.Errorf("save config %s: %w", e.path, err)
	default:
		cur, err := os.ReadFile(e.path)
		if err != nil {
			return fmt.Errorf("save config %s: %w", e.path, err)
		}
		if !e.exists || !bytes.Equal(cur, e.orig) {
			return &ConflictError{Path: e.path}
		}
	}
	if !e.changed {
		return nil
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(e.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("save config %s: %w", e.path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := writeSynced(tmp, data, info); err != nil {
		return fmt.Errorf("save config %s: %w", e.path, err)
	}
	if _, err := loadAs(tmp.Name(), e.path); err != nil {
		return fmt.Errorf("%s left unchanged: the edit would make it invalid:\n%w", e.path, err)
	}
	if err := os.Rename(tmp.Name(), e.path); err != nil {
		return fmt.Errorf("save config %s: %w", e.path, err)
	}
	if err := syncConfigDir(dir); err != nil {
		return fmt.Errorf("save config %s: %w", e.path, err)
	}
	if err := e.reset(data, true); err != nil {
		return fmt.Errorf("save config %s: read back: %w", e.path, err)
	}
	return nil
}

// writeSynced writes data to the new file f, gives it the permissions and
// owner of the file described by old (0644 and the caller's when nil),
// syncs and closes it.
func writeSynced(f *os.File, data []byte, old fs.FileInfo) error {
	mode := fs.FileMode(0o644)
	if old != nil {
		mode = old.Mode().Perm()
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			// Only root may give a file away; others keep it theirs.
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
				f.Close()
				return err
			}
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadAs loads the configuration file at path as Load does, naming it name
// in the problems reported.
func loadAs(path, name string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parse(name, data)
}

// lockConfigDir takes an exclusive lock on the directory dir, serializing the
// Saves of editors of files in it; the function returned releases it.
func lockConfigDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// syncConfigDir makes a rename in dir durable.
func syncConfigDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// NodeChange is a change to a node entry, as the node add and node set
// commands take it from their flags. A nil field leaves its setting as it
// is. In the lists, empty strings are dropped, so a list of only "" clears
// the setting.
type NodeChange struct {
	// ClearMACs removes every MAC before MACs are applied.
	ClearMACs bool
	// MACs replace the entry's MACs. For an entry declaring several nodes
	// they must be one per node, in the order of the names.
	MACs []string
	// IPs replace the entry's IPs. For an entry declaring several nodes
	// they are one per node in the order of the names or, given as one
	// address, the first node's address: the next nodes get the addresses
	// after it, so 10.0.0.11 for node[001-032] gives 10.0.0.11 to
	// 10.0.0.42.
	IPs []string
	// Image replaces the image; "" removes it.
	Image *string
	// Groups replace the groups the node lists.
	Groups []string
	// Boot replaces the boot mode; "" removes it (local).
	Boot *Boot
	// Transport replaces the transport; "" removes it (rsync).
	Transport *Transport
	// KernelArgs replaces the extra kernel arguments; "" removes them.
	KernelArgs *string
	// Overrides replace the node's override trees.
	Overrides []string
	// Vars sets each variable it names; an empty value removes one.
	Vars map[string]string
}

// Apply applies ch to n, whose Name says how many nodes it declares, and
// returns what changed, one line per setting, such as
// `image: rocky9 -> rocky10`. Boot and transport values and the number of
// MACs and IPs for a range are checked here; everything else is left to
// Load's validation when the file is saved.
func (ch NodeChange) Apply(n *Node) ([]string, error) {
	old := n.clone()
	count := 1
	if hosts, err := ExpandHosts(n.Name); err == nil {
		count = len(hosts)
	}
	if ch.ClearMACs {
		n.MACs = nil
	}
	if ch.MACs != nil {
		macs := nonEmpty(ch.MACs)
		if count > 1 && len(macs) > 0 && len(macs) != count {
			return nil, fmt.Errorf("%d MACs for the %d nodes %q declares; give one per node, in the order of the names", len(macs), count, n.Name)
		}
		n.MACs = macs
	}
	if ch.IPs != nil {
		ips := nonEmpty(ch.IPs)
		switch {
		case count > 1 && len(ips) == 1:
			r, err := AddressRange(ips[0], count)
			if err != nil {
				return nil, fmt.Errorf("IPs for %q: %w", n.Name, err)
			}
			ips = r
		case count > 1 && len(ips) > 0 && len(ips) != count:
			return nil, fmt.Errorf("%d IPs for the %d nodes %q declares; give one per node, in the order of the names, or the first node's only", len(ips), count, n.Name)
		}
		n.IPs = ips
	}
	if ch.Image != nil {
		n.Image = *ch.Image
	}
	if ch.Groups != nil {
		n.Groups = nonEmpty(ch.Groups)
	}
	if ch.Boot != nil {
		if *ch.Boot != "" && !slices.Contains(boots(), *ch.Boot) {
			return nil, fmt.Errorf("boot %q is not one of %s", *ch.Boot, join(boots()))
		}
		n.Boot = *ch.Boot
	}
	if ch.Transport != nil {
		if *ch.Transport != "" && !slices.Contains(transports(), *ch.Transport) {
			return nil, fmt.Errorf("transport %q is not one of %s", *ch.Transport, join(transports()))
		}
		n.Transport = *ch.Transport
	}
	if ch.KernelArgs != nil {
		n.KernelArgs = *ch.KernelArgs
	}
	if ch.Overrides != nil {
		n.Overrides = nonEmpty(ch.Overrides)
	}
	n.Vars = applyVars(n.Vars, ch.Vars)
	return diffFields(old, *n), nil
}

// GroupChange is a change to a group entry, as the group add and group set
// commands take it from their flags. A nil field leaves its setting as it
// is. In Overrides, empty strings are dropped, so a list of only "" clears
// it.
type GroupChange struct {
	// Priority replaces the priority.
	Priority *int
	// Image replaces the image; "" removes it.
	Image *string
	// Overrides replace the group's override trees.
	Overrides []string
	// Nodes replaces the host range of member nodes; "" removes it.
	Nodes *string
	// Vars sets each variable it names; an empty value removes one.
	Vars map[string]string
}

// Apply applies ch to g and returns what changed, one line per setting.
func (ch GroupChange) Apply(g *Group) []string {
	old := g.clone()
	if ch.Priority != nil {
		g.Priority = *ch.Priority
	}
	if ch.Image != nil {
		g.Image = *ch.Image
	}
	if ch.Overrides != nil {
		g.Overrides = nonEmpty(ch.Overrides)
	}
	if ch.Nodes != nil {
		g.Nodes = *ch.Nodes
	}
	g.Vars = applyVars(g.Vars, ch.Vars)
	return diffFields(old, *g)
}

// nonEmpty returns list without its empty strings, never nil.
func nonEmpty(list []string) []string {
	out := []string{}
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// applyVars sets the variables set gives in vars, removing those it gives
// empty values, and returns the result, nil when empty.
func applyVars(vars, set map[string]string) map[string]string {
	if len(set) == 0 {
		return vars
	}
	out := maps.Clone(vars)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range set {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// diffFields describes how the struct new differs from old, field by
// field in the order of the format, as "key: OLD -> NEW"; a variable is
// "vars.KEY: OLD -> NEW".
func diffFields(old, new any) []string {
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(new)
	var out []string
	for i, key := range yamlKeys(ov.Type()) {
		a, b := ov.Field(i), nv.Field(i)
		if sameValue(a, b) {
			continue
		}
		if a.Kind() == reflect.Map {
			am, bm := a.Interface().(map[string]string), b.Interface().(map[string]string)
			keys := maps.Clone(am)
			if keys == nil {
				keys = map[string]string{}
			}
			maps.Copy(keys, bm)
			for _, k := range slices.Sorted(maps.Keys(keys)) {
				av, aok := am[k]
				bv, bok := bm[k]
				if aok != bok || av != bv {
					out = append(out, fmt.Sprintf("%s.%s: %s -> %s", key, k, showValue(reflect.ValueOf(av)), showValue(reflect.ValueOf(bv))))
				}
			}
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s -> %s", key, showValue(a), showValue(b)))
	}
	return out
}

// showValue formats a setting's value for diffFields: (none) when empty, a list
// as [a b c], shortened to its ends when long.
func showValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice:
		if v.Len() == 0 {
			return "(none)"
		}
		s := make([]string, v.Len())
		for i := range s {
			s[i] = v.Index(i).String()
		}
		if len(s) > 4 {
			return fmt.Sprintf("[%s %s … %s] (%d)", s[0], s[1], s[len(s)-1], len(s))
		}
		return "[" + strings.Join(s, " ") + "]"
	case reflect.String:
		if v.Len() == 0 {
			return "(none)"
		}
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}

// ParseVars parses variables given as KEY=VALUE, as the --var flags give
// them. A KEY= with no value stands for removing the variable (see
// NodeChange.Vars).
func ParseVars(list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	vars := map[string]string{}
	for _, s := range list {
		k, v, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("variable %q: want KEY=VALUE, or KEY= to remove KEY", s)
		}
		vars[strings.TrimSpace(k)] = v
	}
	return vars, nil
}

// ReadMACs reads a file of MAC addresses, one per line, such as a list
// taken from a switch or a BMC inventory. Text from "#" to the end of a
// line is a comment; blank lines are skipped. The addresses are returned
// in order, in lower-case, colon-separated form; a line that is not a MAC
// address is an error naming the file and line.
func ReadMACs(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read MACs: %w", err)
	}
	macs := []string{}
	for i, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		hw, err := net.ParseMAC(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a MAC address", path, i+1, line)
		}
		macs = append(macs, hw.String())
	}
	return macs, nil
}

// AddressRange returns count consecutive IP addresses starting at start,
// IPv4 or IPv6: 10.0.0.254 and 3 give 10.0.0.254, 10.0.0.255 and 10.0.1.0.
func AddressRange(start string, count int) ([]string, error) {
	a, err := netip.ParseAddr(start)
	if err != nil || a.Zone() != "" {
		return nil, fmt.Errorf("start address %q is not an IP address", start)
	}
	out := make([]string, 0, count)
	for i := range count {
		if !a.IsValid() {
			return nil, fmt.Errorf("%d addresses from %s run past the end of the address space after %d", count, start, i)
		}
		out = append(out, a.String())
		a = a.Next()
	}
	return out, nil
}

// EffectiveNode is what one node ends up with: its own settings, with the
// image, override trees and variables its groups give it.
type EffectiveNode struct {
	// Name is the node's host name.
	Name string `json:"name"`
	// Entry is the name of the entry declaring it: Name, or the host
	// range or list that Name is part of.
	Entry string `json:"entry"`
	// MACs are its hardware addresses.
	MACs []string `json:"macs"`
	// IPs are its IP addresses.
	IPs []string `json:"ips"`
	// Image is the image it is installed with: its own, or that of its
	// most important group that sets one; empty when neither does.
	Image string `json:"image"`
	// ImageGroup names the group Image comes from, empty when it is the
	// node's own.
	ImageGroup string `json:"image_group,omitempty"`
	// Groups are the groups it belongs to, those it lists and those whose
	// nodes range takes it in, most important first.
	Groups []string `json:"groups"`
	// Boot is what it does when it next network-boots.
	Boot Boot `json:"boot"`
	// Transport is how it fetches its image.
	Transport Transport `json:"transport"`
	// KernelArgs are its extra kernel arguments.
	KernelArgs string `json:"kernel_args"`
	// Overrides are the override trees laid over its image, in order: the
	// global ones, its groups' from the least important to the most, then
	// its own, so that later trees win.
	Overrides []string `json:"overrides"`
	// Vars are its variables: its groups' from the least important to the
	// most, each overriding the ones before, then its own.
	Vars map[string]string `json:"vars"`
}

// EffectiveNodes returns the effective record of every node declared, one
// per host name, in the order of ExpandedNodes.
func (c *Config) EffectiveNodes() []EffectiveNode {
	ranked := c.groupsByImportance()
	members := make(map[string]map[string]bool, len(c.Groups)) // group -> names its nodes range takes in
	for _, g := range c.Groups {
		members[g.Name] = map[string]bool{}
		if g.Nodes != "" {
			hosts, _ := ExpandHosts(g.Nodes) // Load has checked it; a bad range takes in no one
			for _, h := range hosts {
				members[g.Name][h] = true
			}
		}
	}
	var out []EffectiveNode
	for _, n := range c.Nodes {
		hosts, err := ExpandHosts(n.Name)
		if err != nil {
			hosts = []string{n.Name}
		}
		for j, h := range hosts {
			en := EffectiveNode{
				Name: h, Entry: n.Name, MACs: []string{}, IPs: []string{},
				Image: n.Image, Groups: []string{}, Boot: n.Boot, Transport: n.Transport,
				KernelArgs: n.KernelArgs, Overrides: slices.Clone(c.Overrides), Vars: map[string]string{},
			}
			switch {
			case len(hosts) == 1:
				en.MACs, en.IPs = append(en.MACs, n.MACs...), append(en.IPs, n.IPs...)
			default:
				en.MACs, en.IPs = append(en.MACs, nth(n.MACs, j, len(hosts))...), append(en.IPs, nth(n.IPs, j, len(hosts))...)
			}
			var groups []Group
			for _, g := range ranked {
				if members[g.Name][h] || slices.Contains(n.Groups, g.Name) {
					groups = append(groups, g)
					en.Groups = append(en.Groups, g.Name)
				}
			}
			if en.Image == "" {
				for _, g := range groups {
					if g.Image != "" {
						en.Image, en.ImageGroup = g.Image, g.Name
						break
					}
				}
			}
			for _, g := range slices.Backward(groups) {
				en.Overrides = append(en.Overrides, g.Overrides...)
				maps.Copy(en.Vars, g.Vars)
			}
			en.Overrides = append(en.Overrides, n.Overrides...)
			if en.Overrides == nil {
				en.Overrides = []string{}
			}
			maps.Copy(en.Vars, n.Vars)
			out = append(out, en)
		}
	}
	return out
}

// Effective returns the effective record of the node called name, a single
// host name.
func (c *Config) Effective(name string) (EffectiveNode, error) {
	for _, en := range c.EffectiveNodes() {
		if en.Name == name {
			return en, nil
		}
	}
	return EffectiveNode{}, fmt.Errorf("no node %q is declared", name)
}

// groupsByImportance returns the groups most important first: by
// Priority, then in the order declared.
func (c *Config) groupsByImportance() []Group {
	groups := slices.Clone(c.Groups)
	slices.SortStableFunc(groups, func(a, b Group) int { return a.Priority - b.Priority })
	return groups
}

// GroupSummary is a group as the group ls command shows it: its settings
// and the nodes that belong to it.
type GroupSummary struct {
	// Name identifies the group.
	Name string `json:"name"`
	// Priority ranks it among a node's groups, lower first.
	Priority int `json:"priority"`
	// Image is the image of member nodes that set none.
	Image string `json:"image"`
	// Overrides are its override trees.
	Overrides []string `json:"overrides"`
	// Nodes is its host range of member nodes, as written.
	Nodes string `json:"nodes"`
	// Vars are its variables.
	Vars map[string]string `json:"vars"`
	// Members are the declared nodes belonging to it, listing it or
	// taken in by Nodes, in the order of ExpandedNodes.
	Members []string `json:"members"`
}

// GroupSummaries returns a summary of every group, in the order declared.
func (c *Config) GroupSummaries() []GroupSummary {
	nodes := c.EffectiveNodes()
	out := make([]GroupSummary, 0, len(c.Groups))
	for _, g := range c.Groups {
		s := GroupSummary{
			Name: g.Name, Priority: g.Priority, Image: g.Image, Nodes: g.Nodes,
			Overrides: append([]string{}, g.Overrides...), Vars: maps.Clone(g.Vars), Members: []string{},
		}
		if s.Vars == nil {
			s.Vars = map[string]string{}
		}
		for _, n := range nodes {
			if slices.Contains(n.Groups, g.Name) {
				s.Members = append(s.Members, n.Name)
			}
		}
		out = append(out, s)
	}
	return out
}
