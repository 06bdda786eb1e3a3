package manifest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/manifest"
)

func TestExcluderMatch(t *testing.T) {
	type probe struct {
		path  string
		isDir bool
		want  bool
	}
	tests := []struct {
		name     string
		patterns []string
		probes   []probe
	}{
		{"anchored contents", []string{"/var/cache/*"}, []probe{
			{"var/cache/x", false, true},
			{"var/cache/apt", true, true},
			{"var/cache", true, false},
			{"var/cache/x/y", false, false}, // pruned through its parent by Scan, not matched itself
			{"x/var/cache/y", false, false},
			{"var/cachex/y", false, false},
			{"var", true, false},
		}},
		{"anchored name", []string{"/tmp"}, []probe{
			{"tmp", true, true},
			{"tmp", false, true},
			{"a/tmp", true, false},
		}},
		{"basename at any depth", []string{"*.log"}, []probe{
			{"a.log", false, true},
			{"var/log/syslog.log", false, true},
			{"deep/er/still/x.log", true, true},
			{".log", false, true},
			{"a.log/b", false, false},
			{"a.logx", false, false},
			{"alog", false, false},
		}},
		{"dir only", []string{"tmp/"}, []probe{
			{"tmp", true, true},
			{"a/b/tmp", true, true},
			{"tmp", false, false},
			{"a/tmp", false, false},
			{"tmpx", true, false},
		}},
		{"anchored dir only", []string{"/proc/"}, []probe{
			{"proc", true, true},
			{"proc", false, false},
			{"x/proc", true, false},
		}},
		{"double star crosses elements", []string{"/usr/**/doc"}, []probe{
			{"usr/share/doc", true, true},
			{"usr/a/b/c/doc", true, true},
			{"usr/doc", true, false},
			{"opt/usr/share/doc", true, false},
		}},
		{"double star unanchored", []string{"**/cache/*.bin"}, []probe{
			{"a/cache/x.bin", false, true},
			{"a/b/cache/x.bin", false, true},
			{"a/cache/sub/x.bin", false, false},
		}},
		{"single star stays in an element", []string{"/a/*/c"}, []probe{
			{"a/b/c", false, true},
			{"a/b/x/c", false, false},
		}},
		{"unanchored with slash matches trailing part", []string{"cache/*"}, []probe{
			{"cache/x", false, true},
			{"var/cache/x", false, true},
			{"var/cache", true, false},
			{"var/xcache/x", false, false},
			{"var/cache/x/y", false, false},
		}},
		{"question mark", []string{"?.txt"}, []probe{
			{"a.txt", false, true},
			{"d/b.txt", false, true},
			{"ab.txt", false, false},
			{".txt", false, false},
		}},
		{"question mark never matches slash", []string{"/a?b"}, []probe{
			{"axb", false, true},
			{"a/b", false, false},
		}},
		{"character class", []string{"[ab].conf"}, []probe{
			{"a.conf", false, true},
			{"x/b.conf", false, true},
			{"c.conf", false, false},
			{"ab.conf", false, false},
		}},
		{"range and negated class", []string{"core.[0-9]", "x[!a-c]"}, []probe{
			{"core.7", false, true},
			{"core.x", false, false},
			{"xd", false, true},
			{"xb", false, false},
		}},
		{"escaped wildcard", []string{`lit\*`}, []probe{
			{"lit*", false, true},
			{"litx", false, false},
		}},
		{"regexp metacharacters are literal", []string{"a+b(c).d$"}, []probe{
			{"a+b(c).d$", false, true},
			{"aab(c)xd", false, false},
		}},
		{"comments and blanks ignored", []string{"", "   ", "# *", "; *", "\r"}, []probe{
			{"a", false, false},
			{"# *", false, false},
		}},
		{"CR stripped", []string{"*.bak\r"}, []probe{
			{"x.bak", false, true},
		}},
		{"root never excluded", []string{"*", "**", "/*", "*/"}, []probe{
			{".", true, false},
			{"a", true, true},
		}},
		{"several rules", []string{"/run/*", "*.pyc", "lost+found/"}, []probe{
			{"run/lock", true, true},
			{"x/y.pyc", false, true},
			{"lost+found", true, true},
			{"etc/passwd", false, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := manifest.NewExcluder(tt.patterns)
			if err != nil {
				t.Fatalf("NewExcluder(%q): %v", tt.patterns, err)
			}
			for _, p := range tt.probes {
				if got := x.Match(p.path, p.isDir); got != p.want {
					t.Errorf("Match(%q, dir=%v) = %v, want %v", p.path, p.isDir, got, p.want)
				}
			}
		})
	}
}

func TestExcluderNil(t *testing.T) {
	var x *manifest.Excluder
	if x.Match("a", false) {
		t.Errorf("nil Excluder matched")
	}
	if x.Patterns() != nil {
		t.Errorf("nil Excluder has patterns %q", x.Patterns())
	}
	if (&manifest.Excluder{}).Match("a", true) {
		t.Errorf("zero Excluder matched")
	}
}

func TestExcluderErrors(t *testing.T) {
	tests := []struct {
		pattern string
		want    string
	}{
		{"[abc", "unterminated ["},
		{"/", "matches the image root"},
		{"//", "matches the image root"},
	}
	for _, tt := range tests {
		x, err := manifest.NewExcluder([]string{"ok", tt.pattern})
		if err == nil {
			t.Errorf("NewExcluder(%q) = %v, want error", tt.pattern, x.Patterns())
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.pattern) {
			t.Errorf("NewExcluder(%q) error %q, want it to name the pattern and contain %q", tt.pattern, err, tt.want)
		}
	}
}

func TestExcluderAddFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	content := "# caches\r\n/var/cache/*\r\n\r\n; old style comment\n   \n*.log\ntmp/\n"
	if err := os.WriteFile(good, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	x := &manifest.Excluder{}
	if err := x.Add("/first"); err != nil {
		t.Fatal(err)
	}
	if err := x.AddFile(good); err != nil {
		t.Fatalf("AddFile: %v", err)
	}
	if d := cmp.Diff([]string{"/first", "/var/cache/*", "*.log", "tmp/"}, x.Patterns()); d != "" {
		t.Errorf("Patterns (-want +got):\n%s", d)
	}
	if !x.Match("var/cache/apt", true) || !x.Match("a/b.log", false) || !x.Match("first", false) {
		t.Errorf("patterns from file do not match")
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("# header\n*.log\n\n[abc\n*.tmp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := (&manifest.Excluder{}).AddFile(bad)
	if err == nil {
		t.Fatalf("AddFile(bad) succeeded")
	}
	for _, w := range []string{bad + ":4:", `"[abc"`, "unterminated"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("AddFile error %q does not contain %q", err, w)
		}
	}

	if err := (&manifest.Excluder{}).AddFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "read exclude file") {
		t.Errorf("AddFile(missing) = %v, want read error", err)
	}
}

// rsync's wildmatch never lets a character class match '/', just as '?'
// and '*' do not (see the '?' case above).
func TestExcluderNegatedClassDoesNotMatchSlash(t *testing.T) {
	x, err := manifest.NewExcluder([]string{"/a[!x]b"})
	if err != nil {
		t.Fatal(err)
	}
	if x.Match("a/b", false) {
		t.Errorf(`Match("a/b") = true for pattern "/a[!x]b": a class crossed a path separator`)
	}
	if !x.Match("ayb", false) {
		t.Errorf(`Match("ayb") = false for pattern "/a[!x]b"`)
	}
}

func TestRsyncFilterPrefixes(t *testing.T) {
	x, err := manifest.NewExcluder([]string{"- /drop"})
	if err != nil {
		t.Fatal(err)
	}
	if !x.Match("drop", false) {
		t.Error(`"- /drop" did not exclude drop`)
	}
	if _, err := manifest.NewExcluder([]string{"+ /keep"}); err == nil || !strings.Contains(err.Error(), "include rules") {
		t.Errorf(`"+ /keep" gave %v; want an error about include rules`, err)
	}
}
