package disks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/goldcast/goldcast/internal/tool"
)

// lookTool finds a program (see tool.Look).
func lookTool(name string) (string, error) { return tool.Look(name) }

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
