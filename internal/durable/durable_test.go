package durable

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFileReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	for _, want := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(want), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Fatalf("content %q, want %q", b, want)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Error("temporary file left behind")
	}
}

func TestLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".lock")
	release, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		r2, err := Lock(p)
		if err == nil {
			r2()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second Lock did not wait for the first")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second Lock never got the lock")
	}
}

func TestRemoveTreeReadOnly(t *testing.T) {
	d := filepath.Join(t.TempDir(), "d")
	os.MkdirAll(filepath.Join(d, "ro/x"), 0o755)
	os.WriteFile(filepath.Join(d, "ro/x/f"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(d, "ro/x"), 0o555)
	os.Chmod(filepath.Join(d, "ro"), 0o555)
	if err := RemoveTree(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Error("tree still there")
	}
	if err := RemoveTree(d); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}
