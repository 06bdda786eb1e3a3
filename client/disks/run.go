package disks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// lookTool finds a tool on $PATH or in the sbin directories, where disk
// tools live and which a trimmed $PATH (an initramfs, a non-login shell)
// often lacks.
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		cand := filepath.Join(d, name)
		if st, serr := os.Stat(cand); serr == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s is not installed: %w", name, err)
}

// maxQuoted is how much of a failed command's output an error quotes.
const maxQuoted = 4000

// run runs a tool with stdin (may be nil) in the C locale, and returns its
// standard output. A failure is an error naming the command line and
// quoting its output.
func run(ctx context.Context, env []string, stdin io.Reader, name string, args ...string) (string, error) {
	path, err := lookTool(name)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C"), env...)
	cmd.Stdin = stdin
	var stdout, both bytes.Buffer
	cmd.Stdout = io.MultiWriter(&stdout, &both)
	cmd.Stderr = &both
	if err := cmd.Run(); err != nil {
		line := name + " " + strings.Join(args, " ")
		out := strings.TrimSpace(both.String())
		if len(out) > maxQuoted {
			out = "..." + out[len(out)-maxQuoted:]
		}
		if out != "" {
			return stdout.String(), fmt.Errorf("%s: %w: %s", line, err, out)
		}
		return stdout.String(), fmt.Errorf("%s: %w", line, err)
	}
	return stdout.String(), nil
}
