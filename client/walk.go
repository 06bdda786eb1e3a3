package client

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/goldcast/goldcast/images/manifest"
)

// DefaultCaptureExcludes are skipped by every capture: kernel and runtime
// filesystems' contents, scratch space, and machine-local state that must
// not travel to other machines. Mount points themselves are kept (empty),
// so the installed system has somewhere to mount them.
func DefaultCaptureExcludes() []string {
	return []string{
		"/proc/*", "/sys/*", "/dev/*", "/run/*", "/tmp/*", "/var/tmp/*",
		"/mnt/*", "/media/*", "/lost+found/*",
		"/var/lib/goldcast/", "/etc/goldcast/last-sync",
		"/var/cache/apt/archives/*.deb", "/var/lib/lvm/cache/*",
		"/etc/udev/rules.d/70-persistent-net.rules",
		"/swapfile", "/swap.img",
		".goldcast-tmp-*",
	}
}

// DefaultUpdateExcludes are never touched by an update (si_updateclient's
// updateclient.local.exclude): node-local identity, data and runtime
// state. /etc/goldcast/update.exclude on the node adds to them.
func DefaultUpdateExcludes() []string {
	return []string{
		"/proc/*", "/sys/*", "/dev/*", "/run/*", "/tmp/*", "/var/tmp/*",
		"/mnt/*", "/media/*", "/lost+found/*", "/home/*",
		"/var/log/*", "/var/lock/*", "/var/run/*", "/var/spool/*", "/var/cache/*",
		"/var/lib/goldcast/", "/var/lib/dhcp/*", "/var/lib/systemd/random-seed",
		"/etc/goldcast/", "/etc/mtab", "/etc/fstab", "/etc/hostname", "/etc/hosts",
		"/etc/machine-id", "/etc/adjtime", "/etc/resolv.conf",
		"/etc/network/interfaces", "/etc/network/interfaces.d/*", "/etc/netplan/*",
		"/etc/NetworkManager/system-connections/*", "/etc/ssh/ssh_host_*",
		"/etc/udev/rules.d/70-persistent-net.rules", "/boot/grub/grubenv",
	}
}

// isLocalFS says which filesystems a capture or update descends into when
// they are mounted below the root; everything else (proc, sysfs, tmpfs,
// nfs, cifs, fuse, a container runtime's overlay...) is left alone.
func isLocalFS(fstype string) bool {
	switch fstype {
	case "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "f2fs", "jfs", "reiserfs", "zfs":
		return true
	}
	return false
}

// mounts maps mount points (absolute host paths) to filesystem types,
// from /proc/self/mountinfo.
func mounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		out[unescapeMount(f[4])] = g[0]
	}
	return out, sc.Err()
}

// unescapeMount decodes mountinfo's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// scanRoot builds the manifest of a root the way capture and update see
// it: local filesystems mounted below it included, everything else (and
// the excludes) left out, content hashed. It also returns the mount
// points it did not descend into (/proc, /run...): their directories carry
// the mounted filesystem's metadata, not the image's.
func scanRoot(ctx context.Context, root string, ex *manifest.Excluder, log *slog.Logger, progress manifest.Progress) (*manifest.Manifest, map[string]bool, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, nil, err
	}
	mt, err := mounts()
	if err != nil {
		log.Warn("cannot read the mount table; staying on the root's filesystem", "err", err)
	}
	foreign := map[string]bool{}
	cross := func(rel string) bool {
		if isLocalFS(mt[filepath.Join(abs, rel)]) {
			return true
		}
		foreign[rel] = true
		return false
	}
	m, err := manifest.Scan(ctx, abs, manifest.ScanOptions{OneFileSystem: true, CrossMount: cross, Exclude: ex, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if err := m.HashContent(ctx, abs, 0, progress); err != nil {
		return nil, nil, err
	}
	return m, foreign, nil
}

// excluder compiles default patterns, extra ones and an exclude file.
func excluder(defaults, extra []string, file string, fileOptional bool) (*manifest.Excluder, error) {
	ex, err := manifest.NewExcluder(append(append([]string{}, defaults...), extra...))
	if err != nil {
		return nil, err
	}
	if file != "" {
		if _, err := os.Stat(file); err == nil || !fileOptional {
			if err := ex.AddFile(file); err != nil {
				return nil, err
			}
		}
	}
	return ex, nil
}
