package sysconf

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// chroot runs commands inside the target root the way they would run on
// the node: each in a private mount namespace (unshare --mount
// --propagation private) where the root gets a tmpfs /dev holding only
// the basic character devices, the block devices of its filesystems and
// of the target disk (with their partitions), and /dev/disk/by-uuid links
// to them; /proc and /sys bound from the host; and a tmpfs /run. Nothing
// of it is left behind, even when a command fails or is killed: the
// namespace dies with it.
//
// A tmpfs /dev, rather than the host's bound, keeps the image's tools
// (grub-probe, os-prober) away from the host's other disks, and provides
// the /dev/disk/by-uuid links that udev would make on the node: without
// them grub-mkconfig writes root=/dev/loop3p1 instead of root=UUID=.
type chroot struct {
	dir      string                // the target root, absolute
	mounts   map[string]mountEntry // the mounts at and below dir, by mount point relative to it
	devs     []blockDev            // the block devices /dev gets
	uuids    map[string]string     // filesystem UUID -> device name, for /dev/disk/by-uuid
	rootUUID string                // UUID of the filesystem mounted at dir
	unshare  string                // path of unshare on the host
	c        *configurer           // runs and logs the commands
}

// newChroot prepares a chroot for c's root, which must be a mount point
// of a filesystem on a block device. It finds the devices of the mounts
// at and below the root and of Options.Disk, and their UUIDs (blkid -p).
func (c *configurer) newChroot(ctx context.Context) (*chroot, error) {
	ch := &chroot{dir: c.dir, uuids: map[string]string{}, c: c}
	var err error
	if ch.unshare, err = lookTool("unshare"); err != nil {
		return nil, fmt.Errorf("%w (Debian package util-linux)", err)
	}
	blkid, err := lookTool("blkid")
	if err != nil {
		return nil, fmt.Errorf("%w (Debian package util-linux)", err)
	}
	if ch.mounts, err = mountsUnder(c.dir); err != nil {
		return nil, err
	}
	rootMount, ok := ch.mounts["/"]
	if !ok {
		return nil, fmt.Errorf("%s is not a mount point: mount the node's root filesystem there to install a bootloader", c.dir)
	}
	var set deviceSet
	fsDevs := map[string]bool{} // device names of mounted filesystems
	for _, mp := range slices.Sorted(maps.Keys(ch.mounts)) {
		m := ch.mounts[mp]
		d, err := mountDevice(m)
		if err != nil {
			if mp == "/" {
				return nil, fmt.Errorf("root filesystem at %s: %w", c.dir, err)
			}
			continue // tmpfs and the like
		}
		fsDevs[d.name] = true
		if err := set.add(d); err != nil {
			return nil, err
		}
	}
	if c.o.Disk != "" {
		d, err := blockDevByPath(c.o.Disk)
		if err != nil {
			return nil, fmt.Errorf("target disk: %w", err)
		}
		if err := set.add(d); err != nil {
			return nil, err
		}
	}
	ch.devs = set.devs
	rootDev, _ := mountDevice(rootMount)
	for _, d := range ch.devs {
		if !fsDevs[d.name] {
			continue
		}
		node := "/dev/" + d.name
		if d == rootDev && strings.HasPrefix(rootMount.source, "/dev/") {
			node = rootMount.source
		}
		out, err := c.run(ctx, toolEnv(), blkid, "-p", "-o", "value", "-s", "UUID", node)
		uuid := strings.TrimSpace(out)
		if err != nil && d == rootDev {
			return nil, fmt.Errorf("read the UUID of the root filesystem: %w", err)
		}
		if uuid == "" {
			continue
		}
		ch.uuids[uuid] = d.name
		if d == rootDev {
			ch.rootUUID = uuid
		}
	}
	if ch.rootUUID == "" {
		return nil, fmt.Errorf("the root filesystem on /dev/%s has no UUID", rootDev.name)
	}
	return ch, nil
}

// mountDevice returns the block device of a mount: its source when that is
// a block device node (btrfs reports an anonymous 0:N device number), else
// its device number.
func mountDevice(m mountEntry) (blockDev, error) {
	if strings.HasPrefix(m.source, "/dev/") {
		if d, err := blockDevByPath(m.source); err == nil {
			return d, nil
		}
	}
	if m.major == 0 {
		return blockDev{}, fmt.Errorf("%s (%s from %s) is not on a block device", m.mountpoint, m.fsType, m.source)
	}
	return blockDevByNumber(m.major, m.minor)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// setupScript returns the sh script that prepares the namespace and then
// execs chroot ROOT "$@". $1 is the root.
func (ch *chroot) setupScript() string {
	var b strings.Builder
	b.WriteString(`set -eu
root=$1
shift
mount -t tmpfs -o mode=0755,nosuid,size=16m goldcast-dev "$root/dev"
cd "$root/dev"
mknod -m 0666 null c 1 3
mknod -m 0666 zero c 1 5
mknod -m 0666 full c 1 7
mknod -m 0666 random c 1 8
mknod -m 0666 urandom c 1 9
mknod -m 0666 tty c 5 0
ln -s /proc/self/fd fd
ln -s /proc/self/fd/0 stdin
ln -s /proc/self/fd/1 stdout
ln -s /proc/self/fd/2 stderr
mkdir -p pts shm disk/by-uuid mapper
`)
	for _, d := range ch.devs {
		if dir := filepath.Dir(d.name); dir != "." {
			fmt.Fprintf(&b, "mkdir -p %s\n", shellQuote(dir))
		}
		fmt.Fprintf(&b, "mknod -m 0660 %s b %d %d\n", shellQuote(d.name), d.major, d.minor)
		if d.mapper != "" {
			fmt.Fprintf(&b, "ln -s %s %s\n", shellQuote("../"+d.name), shellQuote("mapper/"+d.mapper))
		}
	}
	for _, uuid := range slices.Sorted(maps.Keys(ch.uuids)) {
		name := ch.uuids[uuid]
		fmt.Fprintf(&b, "ln -s %s %s\n", shellQuote("../../"+name), shellQuote("disk/by-uuid/"+uuid))
	}
	b.WriteString(`cd /
mount --bind /proc "$root/proc"
mount --bind /sys "$root/sys"
if [ -d "$root/run" ]; then mount -t tmpfs -o mode=0755,nosuid,nodev goldcast-run "$root/run"; fi
exec chroot "$root" "$@"
`)
	return b.String()
}

// run runs args in the chroot with environment env, and returns its
// combined output.
func (ch *chroot) run(ctx context.Context, env []string, args ...string) (string, error) {
	for _, d := range []string{"dev", "proc", "sys"} {
		if err := os.MkdirAll(filepath.Join(ch.dir, d), 0o755); err != nil {
			return "", fmt.Errorf("create %s in the target root: %w", d, err)
		}
	}
	full := append([]string{"--mount", "--propagation", "private", "sh", "-c", ch.setupScript(), "sh", ch.dir}, args...)
	return ch.c.runAs(ctx, env, "chroot "+ch.dir+" "+strings.Join(args, " "), ch.unshare, full...)
}
