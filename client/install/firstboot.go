package install

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/client"
)

// Files the install leaves in the installed system for its first boot.
const (
	// InstalledPath records what was installed (Installed, JSON). It
	// stays after the first boot.
	InstalledPath = "/etc/goldcast/installed.json"
	// FirstBootTokenPath holds the node's token until the first boot has
	// reported.
	FirstBootTokenPath = "/etc/goldcast/node.token"
	// FirstBootBinary is the goldcast binary the first-boot unit runs.
	FirstBootBinary = "/usr/local/lib/goldcast/goldcast"
	// firstBootUnit is the systemd unit, firstBootInit the sysvinit
	// script of the same name (systemd prefers the unit).
	firstBootUnit = "/etc/systemd/system/goldcast-firstboot.service"
	firstBootWant = "/etc/systemd/system/multi-user.target.wants/goldcast-firstboot.service"
	firstBootInit = "/etc/init.d/goldcast-firstboot"
	firstBootRC   = "/etc/rc2.d/S99goldcast-firstboot"
)

// Installed is what InstalledPath records.
type Installed struct {
	Node        string    `json:"node"`
	Server      string    `json:"server"`
	Image       string    `json:"image"`
	Version     int       `json:"version"`
	PlanDigest  string    `json:"plan_digest"`
	InstalledAt time.Time `json:"installed_at"`
	// TLSFingerprint pins the server's certificate, when it had to be.
	TLSFingerprint string `json:"tls_fingerprint,omitempty"`
}

const unitText = `[Unit]
Description=Report this node's first boot to the goldcast server
Wants=network-online.target
After=network-online.target
ConditionPathExists=` + FirstBootTokenPath + `

[Service]
Type=oneshot
ExecStart=` + FirstBootBinary + ` firstboot
RemainAfterExit=no

[Install]
WantedBy=multi-user.target
`

const initText = `#!/bin/sh
### BEGIN INIT INFO
# Provides:          goldcast-firstboot
# Required-Start:    $network $remote_fs
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: Report this node's first boot to the goldcast server
### END INIT INFO
case "$1" in
start) [ -e ` + FirstBootTokenPath + ` ] && ` + FirstBootBinary + ` firstboot & ;;
esac
exit 0
`

// writeFirstBoot leaves the installed system what it needs to report
// itself healthy once: the record of the install, the node's token, the
// goldcast binary, a systemd unit and a sysvinit script.
func (in *installer) writeFirstBoot() error {
	self := in.cfg.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return fmt.Errorf("first-boot unit: find the goldcast binary: %w", err)
		}
	}
	rec, err := json.MarshalIndent(Installed{
		Node: in.plan.Node, Server: in.cfg.Server, Image: in.plan.Image, Version: in.plan.Version,
		PlanDigest: in.plan.PlanDigest, InstalledAt: time.Now().UTC().Truncate(time.Second), TLSFingerprint: in.cfg.TLSFingerprint,
	}, "", "  ")
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{InstalledPath, append(rec, '\n'), 0o644},
		{FirstBootTokenPath, []byte(in.cfg.Token + "\n"), 0o600},
		{firstBootUnit, []byte(unitText), 0o644},
	}
	if _, err := os.Stat(in.targetPath("/etc/init.d")); err == nil {
		files = append(files, struct {
			path string
			data []byte
			mode os.FileMode
		}{firstBootInit, []byte(initText), 0o755})
	}
	for _, f := range files {
		p := in.targetPath(f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("first-boot unit: %w", err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("first-boot unit: %w", err)
		}
	}
	if err := copyExecutable(self, in.targetPath(FirstBootBinary)); err != nil {
		return fmt.Errorf("first-boot unit: %w", err)
	}
	links := map[string]string{firstBootWant: firstBootUnit}
	if _, err := os.Stat(in.targetPath(firstBootInit)); err == nil {
		links[firstBootRC] = "../init.d/goldcast-firstboot"
	}
	for link, to := range links {
		p := in.targetPath(link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("first-boot unit: %w", err)
		}
		os.Remove(p)
		if err := os.Symlink(to, p); err != nil {
			return fmt.Errorf("first-boot unit: %w", err)
		}
	}
	in.log.Info("first-boot report unit installed", "unit", firstBootUnit)
	return nil
}

// copyExecutable copies the file src to dst with mode 0755.
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// FirstBootOptions tune FirstBoot.
type FirstBootOptions struct {
	// Root is the installed system's root ("/" when empty; tests use a
	// directory).
	Root string
	// Timeout bounds the attempts to reach the server.
	Timeout time.Duration
	// Retry is the wait between attempts.
	Retry time.Duration
	Log   *slog.Logger
}

// FirstBoot is what the first-boot unit runs: it reports the installed
// system healthy to the server named in InstalledPath (host name, boot
// ID, kernel, image version), retrying until Timeout, and then removes the
// unit, the token and the binary so it never runs again.
func FirstBoot(ctx context.Context, o FirstBootOptions) error {
	root := o.Root
	if root == "" {
		root = "/"
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	at := func(p string) string { return filepath.Join(root, strings.TrimPrefix(p, "/")) }
	data, err := os.ReadFile(at(InstalledPath))
	if err != nil {
		return fmt.Errorf("first boot: %w", err)
	}
	var rec Installed
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("first boot: %s: %w", InstalledPath, err)
	}
	token, err := os.ReadFile(at(FirstBootTokenPath))
	if err != nil {
		return fmt.Errorf("first boot: %w", err)
	}
	c, err := client.New(client.Options{URL: rec.Server, NodeToken: strings.TrimSpace(string(token)), TLSFingerprint: rec.TLSFingerprint})
	if err != nil {
		return fmt.Errorf("first boot: %w", err)
	}
	host, _ := os.Hostname()
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	var uts unix.Utsname
	unix.Uname(&uts)
	h := api.HealthReport{Hostname: host, BootID: strings.TrimSpace(string(bootID)), Kernel: unix.ByteSliceToString(uts.Release[:]),
		Image: rec.Image, Version: rec.Version}
	timeout, retry := o.Timeout, o.Retry
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	if retry <= 0 {
		retry = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err = c.ReportHealth(ctx, rec.Node, h)
		if err == nil {
			break
		}
		var se *client.StatusError
		if errors.As(err, &se) && se.Code/100 == 4 {
			return fmt.Errorf("first boot: the server refused the report: %w", err)
		}
		log.Warn("health report not delivered yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("first boot: no health report delivered within %v: %w", timeout, err)
		case <-time.After(retry):
		}
	}
	log.Info("reported healthy", "node", rec.Node, "server", rec.Server, "image", fmt.Sprintf("%s@%d", rec.Image, rec.Version))
	for _, p := range []string{firstBootWant, firstBootRC, firstBootUnit, firstBootInit, FirstBootTokenPath, FirstBootBinary} {
		if err := os.Remove(at(p)); err != nil && !os.IsNotExist(err) {
			log.Warn("remove first-boot file", "path", p, "err", err)
		}
	}
	return nil
}
