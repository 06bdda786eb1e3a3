package materialize

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCopySparse(t *testing.T) {
	data := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name      string
		content   []byte
		maxBlocks int64 // most 512-byte blocks the copy may allocate
	}{
		{"empty", nil, 0},
		{"all zeros", zeros(3 << 20), 0},
		{"leading hole", cat(zeros(1<<20), data(100)), 16},
		{"trailing hole", cat(data(100), zeros(1<<20)), 16},
		{"islands across chunk boundaries", cat(data(10), zeros(300<<10), data(5000), zeros(1<<20), data(1)), 64},
		{"dense", data(700 << 10), 2 << 20},
		{"unaligned tail", cat(zeros(BlockSize*3), data(17)), 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			n, err := CopySparse(f, bytes.NewReader(tc.content))
			f.Close()
			if err != nil || n != int64(len(tc.content)) {
				t.Fatalf("CopySparse = %d, %v; want %d", n, err, len(tc.content))
			}
			got, _ := os.ReadFile(p)
			if !bytes.Equal(got, tc.content) {
				t.Fatalf("content differs: %d bytes, want %d", len(got), len(tc.content))
			}
			var st unix.Stat_t
			unix.Stat(p, &st)
			if st.Blocks > tc.maxBlocks {
				t.Errorf("file allocates %d blocks, want at most %d (holes were written)", st.Blocks, tc.maxBlocks)
			}
		})
	}
}

func TestRemoveContentsAndIsEmptyDir(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ro/inner"), 0o755)
	os.WriteFile(filepath.Join(dir, "ro/inner/f"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(dir, "ro/inner"), 0o555)
	os.Chmod(filepath.Join(dir, "ro"), 0o555)
	os.Symlink("/etc", filepath.Join(dir, "link"))
	if empty, _ := IsEmptyDir(dir, true); empty {
		t.Fatal("IsEmptyDir true for a full directory")
	}
	if err := RemoveContents(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal("RemoveContents followed a symlink out of the directory")
	}
	os.Mkdir(filepath.Join(dir, "lost+found"), 0o700)
	if empty, err := IsEmptyDir(dir, true); !empty || err != nil {
		t.Errorf("IsEmptyDir with only lost+found = %v, %v", empty, err)
	}
	if empty, _ := IsEmptyDir(dir, false); empty {
		t.Error("IsEmptyDir ignored lost+found when told not to")
	}
}
