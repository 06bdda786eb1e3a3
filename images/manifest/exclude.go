package manifest

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Excluder matches manifest paths against rsync-style exclude patterns:
//
//   - a pattern starting with "/" is anchored at the image root;
//   - a pattern ending in "/" matches directories only;
//   - a pattern holding no other "/" matches the last path element at any
//     depth, otherwise it matches the whole trailing part of the path;
//   - "*" matches within one element, "**" across elements, "?" one
//     character, "[...]" a character class.
//
// An excluded directory's subtree is excluded with it; "dir/*" keeps the
// directory and drops its contents. The zero or nil Excluder matches nothing.
type Excluder struct {
	rules []excludeRule
}

type excludeRule struct {
	pattern string
	dirOnly bool
	re      *regexp.Regexp
	base    bool // match the last element only
}

// NewExcluder compiles patterns. Blank patterns and lines starting with
// "#" or ";" are ignored, as rsync does in exclude files.
func NewExcluder(patterns []string) (*Excluder, error) {
	x := &Excluder{}
	for _, p := range patterns {
		if err := x.Add(p); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// Add compiles one more pattern.
func (x *Excluder) Add(pattern string) error {
	p := strings.TrimRight(pattern, "\r")
	if strings.TrimSpace(p) == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, ";") {
		return nil
	}
	switch {
	case strings.HasPrefix(p, "- "):
		p = p[2:] // rsync filter syntax for an exclude
	case strings.HasPrefix(p, "+ "):
		return fmt.Errorf("exclude pattern %q: include rules (\"+ \") are not supported; list only what to exclude", pattern)
	}
	r := excludeRule{pattern: p}
	if strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	anchored := strings.HasPrefix(p, "/")
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return fmt.Errorf("exclude pattern %q matches the image root", pattern)
	}
	body, err := globToRegexp(p)
	if err != nil {
		return fmt.Errorf("exclude pattern %q: %w", pattern, err)
	}
	switch {
	case anchored:
		r.re, err = regexp.Compile("^" + body + "$")
	case strings.Contains(p, "/") || strings.Contains(p, "**"):
		r.re, err = regexp.Compile("(^|/)" + body + "$")
	default:
		r.base = true
		r.re, err = regexp.Compile("^" + body + "$")
	}
	if err != nil {
		return fmt.Errorf("exclude pattern %q: %w", pattern, err)
	}
	x.rules = append(x.rules, r)
	return nil
}

// AddFile adds every pattern of an exclude file, one per line.
func (x *Excluder) AddFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read exclude file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		if err := x.Add(sc.Text()); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read exclude file %q: %w", path, err)
	}
	return nil
}

// Patterns returns the patterns in the order they were added.
func (x *Excluder) Patterns() []string {
	if x == nil {
		return nil
	}
	out := make([]string, len(x.rules))
	for i, r := range x.rules {
		out[i] = r.pattern
	}
	return out
}

// Match reports whether the manifest path p (a directory when isDir) is
// excluded. The root "." is never excluded.
func (x *Excluder) Match(p string, isDir bool) bool {
	if x == nil || p == "." {
		return false
	}
	for _, r := range x.rules {
		if r.dirOnly && !isDir {
			continue
		}
		s := p
		if r.base {
			if i := strings.LastIndexByte(p, '/'); i >= 0 {
				s = p[i+1:]
			}
		}
		if r.re.MatchString(s) {
			return true
		}
	}
	return false
}

func globToRegexp(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '*':
			if i+1 < len(p) && p[i+1] == '*' {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				return "", fmt.Errorf("unterminated [ at offset %d", i)
			}
			class := p[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				// A negated class never matches the separator, as in rsync.
				class = "^/" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j + 1
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(string(p[i])))
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String(), nil
}
