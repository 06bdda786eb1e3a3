package overrides

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
)

// TemplateSuffix marks an override file as a template: etc/hosts.tmpl is
// rendered for each node and delivered as etc/hosts.
const TemplateSuffix = ".tmpl"

// MaxTemplateSize bounds a template's source and its rendered output
// (16 MiB each): templates are held in memory.
const MaxTemplateSize = 16 << 20

// TemplateData is what a template sees as "." when it is rendered for a
// node.
type TemplateData struct {
	// Node is the node's name.
	Node string
	// Hostname is the variable "hostname" when set, else the node's name.
	Hostname string
	// Domain is the variable "domain" ("" when not set).
	Domain string
	// IPs and MACs are the node's addresses from the configuration.
	IPs  []string
	MACs []string
	// Groups names the groups the node belongs to, most important first.
	Groups []string
	// Image is the version the node receives, as NAME@VERSION.
	Image string
	// Vars are the node's variables: those of its groups, a more
	// important group's winning, overridden by the node's own.
	Vars map[string]string
}

// templateFuncs returns the helpers templates may call besides the
// text/template builtins.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		// default DEFAULT VALUE: VALUE unless it is empty, else DEFAULT.
		"default": func(def, v any) any {
			if isEmpty(v) {
				return def
			}
			return v
		},
		// join SEP LIST: the elements of LIST separated by SEP.
		"join": func(sep string, list any) (string, error) {
			elems, err := listOf("join", list)
			if err != nil {
				return "", err
			}
			s := make([]string, len(elems))
			for i, e := range elems {
				s[i] = fmt.Sprint(e)
			}
			return strings.Join(s, sep), nil
		},
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		// replace OLD NEW S: S with every OLD replaced by NEW.
		"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		// first LIST: the first element, or "" for an empty list.
		"first": func(list any) (any, error) {
			elems, err := listOf("first", list)
			if err != nil {
				return nil, err
			}
			if len(elems) == 0 {
				return "", nil
			}
			return elems[0], nil
		},
		// required MESSAGE VALUE: VALUE, or a failure saying MESSAGE
		// when VALUE is empty.
		"required": func(msg string, v any) (any, error) {
			if isEmpty(v) {
				return nil, errors.New(msg)
			}
			return v, nil
		},
	}
}

// isEmpty reports whether v is nil, false, zero, or an empty string,
// list or map.
func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return rv.IsZero()
}

// listOf returns the elements of a slice or array (nil gives none).
func listOf(fn string, list any) ([]any, error) {
	if list == nil {
		return nil, nil
	}
	rv := reflect.ValueOf(list)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, fmt.Errorf("%s: %T is not a list", fn, list)
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, nil
}

// render executes the template source named name with data. Errors are
// text/template's, which name the template and the line.
func render(name string, src []byte, data *TemplateData) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs()).Parse(string(src))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := t.Execute(&limitWriter{w: &out, left: MaxTemplateSize}, data); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// limitWriter fails writes beyond a byte budget.
type limitWriter struct {
	w    *bytes.Buffer
	left int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		return 0, fmt.Errorf("output is larger than %d bytes", MaxTemplateSize)
	}
	l.left -= len(p)
	return l.w.Write(p)
}
