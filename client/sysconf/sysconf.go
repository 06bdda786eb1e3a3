// Package sysconf makes a freshly laid image belong to its node: after an
// image has been copied onto a target root (the node's disks, mounted),
// Configure rewrites what must differ from the golden client the image was
// captured from.
//
// Configure runs these steps in this order, each of which can be turned
// off in Options and reports what it changed:
//
//   - fstab: /etc/fstab from the image's disk layout (image.json),
//     naming filesystems and swap by UUID.
//   - hostname: /etc/hostname and /etc/hosts for the node's name.
//   - network: the node's DHCP or static configuration, for its first
//     MAC address, in the format the image uses (netplan,
//     NetworkManager, systemd-networkd or ifupdown); the image's own
//     configuration of that format is moved aside.
//   - machine-id: a fresh /etc/machine-id (and /var/lib/dbus/machine-id).
//   - ssh-keys: new SSH host keys.
//   - bootloader: GRUB (BIOS and/or EFI) or systemd-boot, installed from
//     inside the image with the node's disk in a private mount namespace,
//     and checked to boot the root by UUID.
//
// Every file is written through an [os.Root] opened on the target root, so
// a symbolic link in the image can never redirect a write onto the host
// running Configure. Files are replaced atomically (written beside and
// renamed into place). Configure needs root for the bootloader step and
// runs unshare, mount, mknod, chroot and blkid from util-linux and
// coreutils on the host, and ssh-keygen (Debian package openssh-client)
// when present.
package sysconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/goldcast/goldcast/client/disklayout"
)

// Step names, as Change.Step reports them.
const (
	// StepFstab writes /etc/fstab.
	StepFstab = "fstab"
	// StepHostname writes /etc/hostname and /etc/hosts.
	StepHostname = "hostname"
	// StepNetwork writes the network configuration.
	StepNetwork = "network"
	// StepMachineID writes /etc/machine-id.
	StepMachineID = "machine-id"
	// StepSSHKeys replaces the SSH host keys.
	StepSSHKeys = "ssh-keys"
	// StepBootloader installs and configures the bootloader.
	StepBootloader = "bootloader"
)

// Node is the identity and network configuration of the node an image is
// being installed on.
type Node struct {
	// Name is the node's name in goldcast; it is the host name when
	// Hostname is empty.
	Name string
	// Hostname is the node's host name, short ("node01") or fully
	// qualified ("node01.example.com"). When it is fully qualified and
	// Domain is empty, the domain is the part after the first dot.
	Hostname string
	// Domain is the node's DNS domain ("example.com"), used for its fully
	// qualified name in /etc/hosts and as the DNS search domain.
	Domain string
	// IPs are the node's static addresses, in CIDR form ("10.0.0.11/24",
	// "fd00::11/64") or bare, in which case the prefix is /24 for IPv4 and
	// /64 for IPv6. They are ignored when DHCP is true.
	IPs []string
	// Gateway is the default gateway of a static configuration.
	Gateway string
	// DNS are the name servers of a static configuration.
	DNS []string
	// MACs are the node's Ethernet addresses; the network configuration is
	// written for the first one. Without any, it applies to the first (or
	// every, where the format cannot choose) Ethernet interface.
	MACs []string
	// DHCP asks for DHCP (IPv4 and IPv6 autoconfiguration) instead of a
	// static configuration. A node with no IPs uses DHCP too.
	DHCP bool
}

// Options say what Configure works on and which steps it skips.
type Options struct {
	// Root is the mounted target root: the directory where the node's
	// root filesystem (and the filesystems below it) are mounted. It must
	// not be "/".
	Root string
	// Layout is the image's disk layout, from image.json. When nil the
	// fstab step is skipped with a note, and nothing is checked against
	// it.
	Layout *disklayout.Layout
	// Node is the node the image is made to belong to.
	Node Node
	// Disk is the target disk's device node, where GRUB for BIOS is
	// installed, such as "/dev/vda" or "/dev/loop3". It is required when
	// the image boots with GRUB for BIOS.
	Disk string
	// NoBootloader skips the bootloader step.
	NoBootloader bool
	// NoNetwork skips the network step.
	NoNetwork bool
	// NoFstab skips the fstab step.
	NoFstab bool
	// NoHostname skips the hostname step.
	NoHostname bool
	// NoMachineID skips the machine-id step.
	NoMachineID bool
	// NoSSHKeys skips the SSH host key step.
	NoSSHKeys bool
	// KeepSSHKeys keeps the image's SSH host keys, because a private
	// override already provided the node's own: the step is skipped.
	KeepSSHKeys bool
	// Log receives a line for every change and note; nil discards them.
	Log *slog.Logger
}

// Change is one thing a step changed, or a note about a step that was
// skipped or found nothing to do (then Path is empty).
type Change struct {
	// Step is the step's name: StepFstab, StepHostname, ...
	Step string
	// Path is the changed file or directory, relative to Options.Root and
	// starting with "/" ("/etc/fstab"), or the device written to (the
	// bootloader's disk); empty for a note.
	Path string
	// What says what changed, or for a note, why nothing did.
	What string
}

// Configure makes the image at o.Root belong to o.Node, running the steps
// the package documentation lists, and returns what they changed. It stops
// at the first step that fails, returning the changes made so far and an
// error naming the step. Before any step, when o.Root is the mount point
// of a block device and the fstab step will run, it checks that the
// layout's root filesystem UUID is that device's, and fails without
// changing anything if not.
func Configure(ctx context.Context, o Options) ([]Change, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Root == "" {
		return nil, errors.New("sysconf: Options.Root is empty")
	}
	abs, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("sysconf: root %s: %w", o.Root, err)
	}
	if abs == "/" {
		return nil, errors.New("sysconf: refusing to configure the running system's root /")
	}
	if st, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("sysconf: root: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("sysconf: root %s is not a directory", abs)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("sysconf: open root: %w", err)
	}
	defer root.Close()

	c := &configurer{o: o, dir: abs, root: root, log: log}
	if err := c.checkLayoutRoot(ctx); err != nil {
		return nil, fmt.Errorf("sysconf: %w", err)
	}
	steps := []struct {
		name string
		skip bool
		run  func(context.Context) error
	}{
		{StepFstab, o.NoFstab, c.fstab},
		{StepHostname, o.NoHostname, c.hostname},
		{StepNetwork, o.NoNetwork, c.network},
		{StepMachineID, o.NoMachineID, c.machineID},
		{StepSSHKeys, o.NoSSHKeys, c.sshKeys},
		{StepBootloader, o.NoBootloader, c.bootloader},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return c.changes, fmt.Errorf("sysconf: %w", err)
		}
		if s.skip {
			log.Debug("sysconf: step skipped by option", "step", s.name)
			continue
		}
		c.step = s.name
		if err := s.run(ctx); err != nil {
			return c.changes, fmt.Errorf("sysconf: %s: %w", s.name, err)
		}
	}
	return c.changes, nil
}

// checkLayoutRoot fails, before anything is changed, when the fstab step
// would name the root filesystem by a UUID other than the one of the
// filesystem mounted at the root: the node would not find its root. It
// checks nothing when the root is not a mount point of a block device.
func (c *configurer) checkLayoutRoot(ctx context.Context) error {
	if c.o.Layout == nil || c.o.NoFstab {
		return nil
	}
	want := ""
	for _, f := range c.o.Layout.Filesystems {
		if f.Mountpoint == "/" {
			want = f.UUID
			break
		}
	}
	if want == "" {
		return nil
	}
	mounts, err := mountsUnder(c.dir)
	if err != nil {
		return err
	}
	m, ok := mounts["/"]
	if !ok {
		return nil
	}
	d, err := mountDevice(m)
	if err != nil {
		return nil
	}
	blkid, err := lookTool("blkid")
	if err != nil {
		return nil
	}
	node := "/dev/" + d.name
	if strings.HasPrefix(m.source, "/dev/") {
		node = m.source
	}
	out, err := c.run(ctx, toolEnv(), blkid, "-p", "-o", "value", "-s", "UUID", node)
	if got := strings.TrimSpace(out); err == nil && got != "" && !strings.EqualFold(got, want) {
		return fmt.Errorf("the layout's root filesystem has UUID %s, which /etc/fstab would name, but the filesystem mounted at %s (%s) has UUID %s", want, c.dir, node, got)
	}
	return nil
}

// configurer carries one Configure run.
type configurer struct {
	o       Options
	dir     string   // absolute path of the target root
	root    *os.Root // the target root; every file access goes through it
	log     *slog.Logger
	step    string // the running step
	changes []Change
}

// changed records that the running step changed path (relative to the
// root, without a leading slash, or a device path).
func (c *configurer) changed(path, what string) {
	if !filepath.IsAbs(path) {
		path = "/" + path
	}
	c.changes = append(c.changes, Change{Step: c.step, Path: path, What: what})
	c.log.Info("sysconf: "+what, "step", c.step, "path", path)
}

// note records that the running step skipped something, and why.
func (c *configurer) note(format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	c.changes = append(c.changes, Change{Step: c.step, What: what})
	c.log.Info("sysconf: "+what, "step", c.step)
}
