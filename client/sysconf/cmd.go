package sysconf

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/goldcast/goldcast/internal/tool"
)

// outputTailLines is how much of a failed command's output an error
// quotes.
const outputTailLines = 30

// lookTool finds a program (see tool.Look).
func lookTool(name string) (string, error) { return tool.Look(name) }

// toolEnv is the environment of the commands Configure runs: the C
// locale, a $PATH that reaches the sbin directories (of the host and, in
// a chroot, of the image), and extra.
func toolEnv(extra ...string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C",
		"HOME=/root",
	}
	return append(env, extra...)
}

// run runs name with args, stdin empty, and returns its combined output.
// The command and its children are killed when ctx is done. A failure is
// an error naming the command and quoting the end of its output.
func (c *configurer) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	return c.runAs(ctx, env, filepath.Base(name)+" "+strings.Join(args, " "), name, args...)
}

// runAs is run, with label naming the command in logs and errors.
func (c *configurer) runAs(ctx context.Context, env []string, label, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	c.log.Debug("sysconf: running", "step", c.step, "cmd", label)
	err := cmd.Run()
	c.log.Debug("sysconf: ran", "step", c.step, "cmd", label, "err", err, "output", out.String())
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w\n%s", label, err, tail(out.String(), outputTailLines))
	}
	return out.String(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
