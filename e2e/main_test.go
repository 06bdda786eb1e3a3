// Package e2e tests the goldcast binary as users run it, against real
// tools (rsync as the fidelity oracle, GNU tar, chroot) and real trees
// (the torture tree and a debootstrap'd Debian root).
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the goldcast executable built once for the whole package.
type binary struct {
	path string
}

// goldcast is set once by TestMain and only read afterwards.
var goldcast binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "goldcast-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	goldcast.path = filepath.Join(dir, "goldcast")
	// Static, as make build makes it: the binary is also the initramfs /init.
	build := exec.Command("go", "build", "-o", goldcast.path, "github.com/goldcast/goldcast/cmd/goldcast")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build goldcast:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished goldcast run.
type result struct {
	stdout, stderr string
	code           int
}

// run executes goldcast with args and returns its output and exit code.
func run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(goldcast.path, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run goldcast %v: %v", args, err)
	}
	return res
}

// ok runs goldcast and fails the test unless it exits 0.
func ok(t *testing.T, args ...string) result {
	t.Helper()
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("goldcast %v exited %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}
