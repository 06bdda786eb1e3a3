package disklayout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// toolPath finds name on PATH or else in the sbin directories, where the
// disk tools live and which a non-root PATH often lacks. When it is found
// nowhere it returns name unchanged, so that running it fails with
// exec.ErrNotFound.
func toolPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// runCommand runs a tool in the C locale and returns its standard output.
// The error names the command line and carries the tool's standard error;
// it wraps exec.ErrNotFound when the tool is missing and *exec.ExitError
// when it failed.
func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, toolPath(name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		line := strings.Join(append([]string{name}, args...), " ")
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return stdout.Bytes(), fmt.Errorf("%s: %w: %s", line, err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w", line, err)
	}
	return stdout.Bytes(), nil
}

// notFound reports whether err says a tool is not installed.
func notFound(err error) bool {
	return errors.Is(err, exec.ErrNotFound)
}

// exitCode returns the exit status carried by err (an *exec.ExitError), or
// -1.
func exitCode(err error) int {
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
