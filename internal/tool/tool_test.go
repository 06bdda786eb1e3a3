package tool

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestLook(t *testing.T) {
	t.Setenv("PATH", "/nonexistent")
	// sh lives in /bin (or /usr/bin) on every system the tests run on.
	p, err := Look("sh")
	if err != nil || !strings.HasSuffix(p, "/sh") {
		t.Fatalf("Look(sh) with an empty PATH = %q, %v", p, err)
	}
	_, err = Look("goldcast-no-such-tool")
	if err == nil || !strings.Contains(err.Error(), "goldcast-no-such-tool is not installed") || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("Look of a missing tool: %v", err)
	}
}
