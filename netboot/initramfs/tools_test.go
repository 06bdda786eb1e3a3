package initramfs

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolveStaysInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib/x86_64-linux-gnu", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"bin":                "usr/bin",                                   // merged /usr, relative
		"lib":                "/usr/lib",                                  // absolute: starts again at the root
		"usr/bin/escape":     "../../../../../../etc/passwd",              // .. never leaves the root
		"usr/bin/abs-escape": "/etc/passwd",                               // the root's /etc, not the host's
		"usr/bin/loop":       "loop",                                      // a loop
		"usr/bin/tool":       "/lib/x86_64-linux-gnu/../../bin/real-tool", // chains
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "usr/bin/real-tool"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &toolCollector{root: root}
	for p, want := range map[string]string{
		"/bin/real-tool":                  "usr/bin/real-tool",
		"/bin/escape":                     "etc/passwd",
		"/bin/abs-escape":                 "etc/passwd",
		"/bin/tool":                       "usr/bin/real-tool",
		"/lib/x86_64-linux-gnu/../../etc": "etc",
	} {
		got, err := c.resolve(p)
		if err != nil {
			t.Errorf("resolve %s: %v", p, err)
			continue
		}
		if got != filepath.Join(root, want) {
			t.Errorf("resolve %s = %s, want %s", p, got, filepath.Join(root, want))
		}
	}
	if _, err := c.resolve("/bin/loop"); err == nil || !strings.Contains(err.Error(), "too many symbolic links") {
		t.Errorf("resolve of a link loop: %v, want too many symbolic links", err)
	}
	if _, err := c.resolve("/bin/missing"); !os.IsNotExist(err) {
		t.Errorf("resolve of a missing file: %v, want not exist", err)
	}
}

func TestCollectToolsErrors(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A script is copied as it is: nothing to resolve.
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/hello"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Not executable: not a tool.
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/plain"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, missing, err := collectTools(root, []string{"hello"}, []string{"plain", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	want := []File{{Path: "/usr/sbin/hello", Mode: 0o755, Source: filepath.Join(root, "usr/sbin/hello")}}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"plain", "absent"}, missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	if _, _, err := collectTools(root, []string{"absent"}, nil); err == nil || !strings.Contains(err.Error(), "tool absent: not found") {
		t.Errorf("missing required tool: %v", err)
	}
	if _, _, err := collectTools(root, []string{"../hello"}, nil); err == nil {
		t.Error("a tool name with a slash was accepted")
	}
}

// extractEntries writes parsed archive entries under dir: directories,
// regular files and symbolic links (devices are left out).
func extractEntries(t *testing.T, entries []cpioEntry, dir string) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(dir, e.Name)
		switch e.Mode & 0o170000 {
		case 0o040000:
			if err := os.MkdirAll(p, fs.FileMode(e.Mode&0o777)); err != nil {
				t.Fatal(err)
			}
		case 0o100000:
			if err := os.WriteFile(p, []byte(e.Data), fs.FileMode(e.Mode&0o777)); err != nil {
				t.Fatal(err)
			}
		case 0o120000:
			if err := os.Symlink(e.Data, p); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestToolsRunInArchive builds an archive with this machine's install
// tools and busybox, unpacks it, and runs them chrooted into it: every
// library they need must be in the archive.
func TestToolsRunInArchive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	for _, tool := range append(DefaultTools(), "busybox") {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	busybox, _ := exec.LookPath("busybox")
	goldcast := buildStatic(t, "github.com/goldcast/goldcast/cmd/goldcast")
	entries := buildArchive(t, Options{
		Goldcast: goldcast, Compression: CompressZstd,
		Tools: DefaultTools(), OptionalTools: append(DefaultOptionalTools(), "no-such-tool"),
		Busybox: busybox,
	})
	dir := t.TempDir()
	extractEntries(t, entries, dir)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "tmp", "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	// PATH as /init sets it: the real tools before busybox applets.
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, args := range [][]string{
		{"/bin/sh", "-c", "echo $((40+2))"},
		{"sfdisk", "--version"},
		{"wipefs", "--version"},
		{"partx", "--version"},
		{"mkfs.ext4", "-q", "-F", "-L", "gcroot", "-U", "0e0b1e55-1dea-4c0f-9c55-0123456789ab", "/tmp/fs.img"},
		{"blkid", "-o", "export", "/tmp/fs.img"},
		{"mkswap", "--version"},
	} {
		cmd := exec.Command("chroot", append([]string{dir}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %v: %v\n%s", args, err, out)
		}
		switch args[0] {
		case "/bin/sh":
			if strings.TrimSpace(string(out)) != "42" {
				t.Errorf("busybox sh printed %q", out)
			}
		case "blkid":
			for _, want := range []string{"LABEL=gcroot", "UUID=0e0b1e55-1dea-4c0f-9c55-0123456789ab", "TYPE=ext4"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("blkid inside the archive printed %q, want %s", out, want)
				}
			}
		}
	}
	// The ELF interpreter is there (as the binaries name it) and a
	// second name of one file is a link, not a second copy.
	names := map[string]cpioEntry{}
	for _, e := range entries {
		names["/"+e.Name] = e
	}
	if _, ok := names["/lib64/ld-linux-x86-64.so.2"]; !ok {
		t.Errorf("no /lib64/ld-linux-x86-64.so.2 in the archive")
	}
	if e, ok := names["/bin/sh"]; !ok || e.Mode&0o170000 != 0o120000 || e.Data != "/bin/busybox" {
		t.Errorf("/bin/sh = %+v, want a link to /bin/busybox", e)
	}
}
