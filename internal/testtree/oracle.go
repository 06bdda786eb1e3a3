package testtree

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goldcast/goldcast/internal/tool"
)

// oracleMaxLines caps how much of the oracle's output a failing test
// prints.
const oracleMaxLines = 100

// oracleArgs returns the rsync arguments the fidelity oracle runs with
// (without the program name): a dry run of
//
//	rsync -aHAXn --numeric-ids -c --modify-window=-1 --delete --itemize-changes [--exclude=/PATH...] SRC/ DST/
//
// Excludes are trimmed of any leading "./" or "/" and anchored.
func oracleArgs(src, dst string, excludes ...string) []string {
	// --modify-window=-1: rsync otherwise compares whole seconds only.
	args := []string{"-aHAXn", "--numeric-ids", "-c", "--modify-window=-1", "--delete", "--itemize-changes"}
	for _, ex := range excludes {
		ex = strings.TrimPrefix(filepath.ToSlash(ex), "./")
		args = append(args, "--exclude=/"+strings.TrimPrefix(ex, "/"))
	}
	return append(args, dirArg(src), dirArg(dst))
}

// dirArg makes path an absolute directory argument with a trailing slash,
// so rsync compares the directories' contents and never takes a leading
// '-' for an option or a colon for a remote host.
func dirArg(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return strings.TrimSuffix(path, "/") + "/"
}

// OracleOutput runs the fidelity oracle on src and dst, a dry run of
//
//	rsync -aHAXn --numeric-ids -c --modify-window=-1 --delete --itemize-changes [--exclude=/PATH...] SRC/ DST/
//
// which compares types, modes, numeric owners, mtimes to the nanosecond
// (directories and symlinks included; --modify-window=-1 is what makes
// rsync look past whole seconds), device numbers, hard-link
// structure, ACLs, all xattrs (security.capability included, as root) and
// contents by checksum, and, through --delete, reports entries found only
// in dst. It does not compare atimes, ctimes or sparseness. Each exclude
// is a path relative to the tree roots, passed anchored as
// --exclude=/PATH; it is an rsync pattern, so '*', '?' and '[' in it are
// wildcards. Excluded paths are ignored on both sides.
//
// OracleOutput returns rsync's combined stdout and stderr: one itemized
// line per difference (a broken hard link shows as "hf PATH => LEADER",
// an entry only in dst as "*deleting PATH"), empty when dst is a faithful
// copy of src. Names are printed in the C locale, so bytes outside
// printable ASCII appear as rsync's "\#ooo" octal escapes. The error is non-nil when rsync cannot be run or
// exits non-zero (the output is still returned); it wraps exec.ErrNotFound
// when rsync is not installed.
func OracleOutput(src, dst string, excludes ...string) (string, error) {
	rsync, err := tool.Look("rsync")
	if err != nil {
		return "", fmt.Errorf("fidelity oracle: rsync (Debian package rsync): %w", err)
	}
	for _, d := range []string{src, dst} {
		st, err := os.Stat(d)
		if err != nil {
			return "", fmt.Errorf("fidelity oracle: tree root: %w", err)
		}
		if !st.IsDir() {
			return "", fmt.Errorf("fidelity oracle: tree root %s is not a directory", d)
		}
	}
	cmd := exec.Command(rsync, oracleArgs(src, dst, excludes...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("fidelity oracle: rsync %s: %w", strings.Join(cmd.Args[1:], " "), err)
	}
	return out.String(), nil
}

// Oracle fails the test (t.Errorf) when dst is not a faithful copy of src
// according to OracleOutput, printing rsync's output capped at 100 lines.
// excludes are relative paths to ignore on both sides: pass Tree.Skipped
// when src is a torture tree, whose socket image tools skip. Oracle calls
// t.Fatalf when rsync is not installed (Debian package rsync).
func Oracle(t testing.TB, src, dst string, excludes ...string) {
	t.Helper()
	out, err := OracleOutput(src, dst, excludes...)
	switch {
	case errors.Is(err, exec.ErrNotFound):
		t.Fatalf("testtree: %v", err)
	case err != nil:
		t.Errorf("testtree: %v\n%s", err, capLines(out, oracleMaxLines))
	case out != "":
		t.Errorf("testtree: fidelity oracle: %s differs from %s (rsync itemized changes, see rsync(1) --itemize-changes):\n%s",
			dst, src, capLines(out, oracleMaxLines))
	}
}

// capLines returns the first max lines of s and a note of how many more
// there were.
func capLines(s string, max int) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) <= max {
		return s
	}
	return strings.Join(lines[:max], "") + fmt.Sprintf("\n... and %d more lines", len(lines)-max)
}
