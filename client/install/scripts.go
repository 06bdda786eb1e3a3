package install

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/api"
)

// scriptDir is where scripts are put before they run: in the initramfs
// for pre-install, inside the target (and so at this path in the chroot)
// for post-install.
const scriptDir = "/tmp/goldcast-scripts"

// scriptTailLines is how many lines of a failing script's output its
// error carries.
const scriptTailLines = 20

// runScripts downloads and runs the plan's scripts of phase, in order.
// Pre-install scripts run here with the target directory in
// GOLDCAST_TARGET; post-install scripts run chrooted into the target,
// with /dev, /proc and /sys bound in. A script that fails stops the
// install; its output is in the log and the error.
func (in *installer) runScripts(ctx context.Context, phase, disk string) error {
	var scripts []api.InstallScript
	for _, s := range in.plan.Scripts {
		if s.Phase == phase {
			scripts = append(scripts, s)
		}
	}
	if len(scripts) == 0 {
		return nil
	}
	stage := api.StagePreInstall
	if phase == api.PhasePostInstall {
		stage = api.StagePostInstall
	}
	in.enter(ctx, stage, fmt.Sprintf("running %d %s scripts", len(scripts), phase))
	post := phase == api.PhasePostInstall
	dir := scriptDir
	if post {
		dir = in.targetPath(scriptDir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s scripts: %w", phase, err)
	}
	defer os.RemoveAll(dir)
	if post {
		unbind, err := in.bindSystemDirs()
		if err != nil {
			return err
		}
		defer unbind()
	}
	env := in.scriptEnv(disk, post)
	for _, s := range scripts {
		data, err := in.c.InstallScript(ctx, in.plan.Node, s)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, s.Name), data, 0o700); err != nil {
			return fmt.Errorf("%s script %s: %w", phase, s.Name, err)
		}
		in.log.Info("running script", "phase", phase, "script", s.Name, "class", s.Class)
		in.report(ctx, api.Progress{Stage: stage, Message: fmt.Sprintf("%s script %s", phase, s.Name)})
		cmd := exec.CommandContext(ctx, filepath.Join(scriptDir, s.Name))
		if !post {
			cmd.Path = filepath.Join(dir, s.Name)
		}
		cmd.Env = env
		cmd.Dir = "/"
		if post {
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: in.target}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		lines := splitOutput(out.String())
		for _, l := range lines {
			in.log.Info(s.Name + ": " + l)
		}
		if err != nil {
			tail := lines[max(0, len(lines)-scriptTailLines):]
			return fmt.Errorf("%s script %s failed (%v); its last output:\n%s", phase, s.Name, err, strings.Join(tail, "\n"))
		}
	}
	return nil
}

// splitOutput splits a script's output into lines.
func splitOutput(s string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// scriptEnv is the environment scripts run with: the node's identity and
// variables (GOLDCAST_VAR_NAME, the name upper-cased with every other
// character than letters and digits made "_").
func (in *installer) scriptEnv(disk string, post bool) []string {
	target := in.target
	if post {
		target = "/"
	}
	p := in.plan
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8",
		"GOLDCAST_NODE=" + p.Node, "GOLDCAST_HOSTNAME=" + p.Hostname,
		"GOLDCAST_IMAGE=" + p.Image, fmt.Sprintf("GOLDCAST_VERSION=%d", p.Version),
		"GOLDCAST_SERVER=" + in.cfg.Server, "GOLDCAST_TARGET=" + target, "GOLDCAST_DISK=" + disk,
		"GOLDCAST_GROUPS=" + strings.Join(p.Groups, " "),
	}
	names := make([]string, 0, len(p.Vars))
	for k := range p.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		env = append(env, "GOLDCAST_VAR_"+envName(k)+"="+p.Vars[k])
	}
	return env
}

// envName turns a variable name into an environment variable name part.
func envName(k string) string {
	b := []byte(strings.ToUpper(k))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// bindSystemDirs binds /dev, /proc and /sys into the target for a chroot
// and returns what undoes it.
func (in *installer) bindSystemDirs() (func(), error) {
	var done []string
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			if err := unix.Unmount(done[i], unix.MNT_DETACH); err != nil {
				in.log.Warn("unmount", "dir", done[i], "err", err)
			}
		}
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		dst := in.targetPath(d)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			undo()
			return nil, fmt.Errorf("bind %s into the target: %w", d, err)
		}
		if err := unix.Mount(d, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			undo()
			return nil, fmt.Errorf("bind %s into the target: %w", d, err)
		}
		// Keep unmounts of the bind from reaching the host's tree.
		unix.Mount("", dst, "", unix.MS_SLAVE|unix.MS_REC, "")
		done = append(done, dst)
	}
	return undo, nil
}
