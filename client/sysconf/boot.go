package sysconf

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// The bootloaders the bootloader step installs.
const (
	bootGRUB        = "grub"
	bootSystemdBoot = "systemd-boot"
)

// grubCfg is where grub-mkconfig writes GRUB's configuration.
const grubCfg = "/boot/grub/grub.cfg"

// bootPlan is what the bootloader step installs, as detectBoot found it.
type bootPlan struct {
	loader  string   // bootGRUB, bootSystemdBoot, or empty for none
	targets []string // GRUB platforms: "i386-pc", "x86_64-efi"
	esp     string   // mount point of the EFI system partition, "/boot/efi"
	why     string   // when loader is empty, why
}

// detectBoot finds the image's bootloader. GRUB when it has grub-install:
// for BIOS (target i386-pc) when its i386-pc modules are installed, and
// for UEFI (x86_64-efi) when its x86_64-efi modules are installed and the
// layout mounts a vfat ESP at /boot/efi. Otherwise systemd-boot, when the
// image has bootctl and the systemd-boot EFI binary, and the layout mounts
// a vfat ESP at /boot/efi, /efi or /boot.
func (c *configurer) detectBoot() bootPlan {
	espAt := func(mps ...string) string {
		if c.o.Layout == nil {
			return ""
		}
		for _, mp := range mps {
			for _, f := range c.o.Layout.Filesystems {
				if f.Mountpoint == mp && f.Type == "vfat" {
					return mp
				}
			}
		}
		return ""
	}
	if c.exists("usr/sbin/grub-install") || c.exists("sbin/grub-install") {
		p := bootPlan{loader: bootGRUB}
		if esp := espAt("/boot/efi"); esp != "" && c.isDir("usr/lib/grub/x86_64-efi") {
			p.targets = append(p.targets, "x86_64-efi")
			p.esp = esp
		}
		if c.isDir("usr/lib/grub/i386-pc") {
			p.targets = append(p.targets, "i386-pc")
		}
		if len(p.targets) == 0 {
			return bootPlan{why: "the image has grub-install but neither GRUB's i386-pc modules nor x86_64-efi modules with an EFI system partition at /boot/efi"}
		}
		return p
	}
	if (c.exists("usr/bin/bootctl") || c.exists("bin/bootctl")) && c.exists("usr/lib/systemd/boot/efi/systemd-bootx64.efi") {
		if esp := espAt("/boot/efi", "/efi", "/boot"); esp != "" {
			return bootPlan{loader: bootSystemdBoot, esp: esp}
		}
		return bootPlan{why: "the image has systemd-boot but the layout has no EFI system partition (vfat at /boot/efi, /efi or /boot)"}
	}
	return bootPlan{why: "the image has neither GRUB (grub-install) nor systemd-boot (bootctl)"}
}

// bootloader is the bootloader step.
func (c *configurer) bootloader(ctx context.Context) error {
	plan := c.detectBoot()
	if plan.loader == "" {
		c.note("bootloader left as it is: %s", plan.why)
		return nil
	}
	ch, err := c.newChroot(ctx)
	if err != nil {
		return err
	}
	if plan.esp != "" {
		if _, ok := ch.mounts[plan.esp]; !ok {
			return fmt.Errorf("the EFI system partition is not mounted at %s", path.Join(c.dir, plan.esp))
		}
	}
	switch plan.loader {
	case bootGRUB:
		return c.installGRUB(ctx, ch, plan)
	default:
		return c.installSystemdBoot(ctx, ch, plan)
	}
}

// installGRUB runs grub-install for each target and grub-mkconfig in the
// chroot, then checks that grub.cfg boots the root by UUID.
func (c *configurer) installGRUB(ctx context.Context, ch *chroot, plan bootPlan) error {
	env := toolEnv("GRUB_DISABLE_LINUX_UUID=false")
	for _, target := range plan.targets {
		args := []string{"grub-install", "--target=" + target}
		switch target {
		case "i386-pc":
			if c.o.Disk == "" {
				return errors.New("the image boots with GRUB for BIOS (i386-pc) but Options.Disk names no target disk")
			}
			disk, err := blockDevByPath(c.o.Disk)
			if err != nil {
				return fmt.Errorf("target disk: %w", err)
			}
			args = append(args, "/dev/"+disk.name)
		case "x86_64-efi":
			// --removable: the fallback path EFI/BOOT/BOOTX64.EFI, which
			// firmware boots with no NVRAM entry (this host's NVRAM is
			// not the node's).
			args = append(args, "--efi-directory="+plan.esp, "--removable", "--no-nvram")
		}
		if _, err := ch.run(ctx, env, args...); err != nil {
			return err
		}
		if target == "i386-pc" {
			c.changed(c.o.Disk, "installed GRUB boot code (i386-pc)")
		} else {
			c.changed(path.Join(plan.esp, "EFI/BOOT"), "installed GRUB (x86_64-efi, removable path)")
		}
	}
	if _, err := ch.run(ctx, env, "grub-mkconfig", "-o", grubCfg); err != nil {
		return err
	}
	cfg, err := c.readFile(strings.TrimPrefix(grubCfg, "/"))
	if err != nil {
		return err
	}
	if err := checkBootsByUUID(string(cfg), ch.rootUUID); err != nil {
		return fmt.Errorf("%s: %w", grubCfg, err)
	}
	c.changed(grubCfg, "generated; boots root=UUID="+ch.rootUUID)
	return nil
}

// rootArgs returns the values of the root= kernel parameters of a boot
// configuration: on GRUB's "linux" lines and boot loader entries'
// "options" lines.
func rootArgs(cfg string) []string {
	var out []string
	for line := range strings.Lines(cfg) {
		f := strings.Fields(line)
		if len(f) == 0 || !slices.Contains([]string{"linux", "linux16", "linuxefi", "options"}, f[0]) {
			continue
		}
		for _, p := range f[1:] {
			if v, ok := strings.CutPrefix(p, "root="); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// checkBootsByUUID checks that a boot configuration passes the kernel
// root=UUID=uuid, and no other root=.
func checkBootsByUUID(cfg, uuid string) error {
	args := rootArgs(cfg)
	if len(args) == 0 {
		return errors.New("no kernel command line with root= (no kernel found in /boot?)")
	}
	want := "UUID=" + uuid
	var bad []string
	for _, a := range args {
		if a != want && !slices.Contains(bad, a) {
			bad = append(bad, a)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the kernel is given root=%s, not root=%s: GRUB could not name the root by UUID "+
			"(it needs /dev/disk/by-uuid/%s, and GRUB_DISABLE_LINUX_UUID not true in /etc/default/grub)",
			strings.Join(bad, ", root="), want, uuid)
	}
	return nil
}

// installSystemdBoot installs systemd-boot into the ESP and a boot entry
// for each kernel in /boot, with /etc/kernel/cmdline naming the root by
// UUID.
func (c *configurer) installSystemdBoot(ctx context.Context, ch *chroot, plan bootPlan) error {
	old, err := c.readFile("etc/kernel/cmdline")
	if err != nil {
		return err
	}
	cmdline := kernelCmdline(string(old), ch.rootUUID)
	if changed, err := c.writeFile("etc/kernel/cmdline", []byte(cmdline), 0o644); err != nil {
		return err
	} else if changed {
		c.changed("etc/kernel/cmdline", "root=UUID="+ch.rootUUID)
	}
	env := toolEnv("SYSTEMD_RELAX_ESP_CHECKS=1")
	if _, err := ch.run(ctx, env, "bootctl", "install", "--esp-path="+plan.esp, "--no-variables"); err != nil {
		return err
	}
	c.changed(plan.esp, "installed systemd-boot")
	names, err := c.listDir("boot")
	if err != nil {
		return err
	}
	kernels := 0
	for _, n := range names {
		ver, ok := strings.CutPrefix(n, "vmlinuz-")
		if !ok {
			continue
		}
		args := []string{"kernel-install", "add", ver, "/boot/" + n}
		if c.exists("boot/initrd.img-" + ver) {
			args = append(args, "/boot/initrd.img-"+ver)
		}
		if _, err := ch.run(ctx, env, args...); err != nil {
			return err
		}
		kernels++
		c.changed(plan.esp, "boot entry for kernel "+ver)
	}
	if kernels == 0 {
		return errors.New("no kernel (/boot/vmlinuz-*) to make a systemd-boot entry for")
	}
	entriesDir := path.Join(strings.TrimPrefix(plan.esp, "/"), "loader/entries")
	entries, err := c.listDir(entriesDir)
	if err != nil {
		return err
	}
	var all strings.Builder
	for _, e := range entries {
		if strings.HasSuffix(e, ".conf") {
			data, err := c.readFile(path.Join(entriesDir, e))
			if err != nil {
				return err
			}
			all.Write(data)
			all.WriteString("\n")
		}
	}
	if err := checkBootsByUUID(all.String(), ch.rootUUID); err != nil {
		return fmt.Errorf("/%s: %w", entriesDir, err)
	}
	return nil
}

// kernelCmdline returns /etc/kernel/cmdline with root=UUID=uuid in place
// of any root= parameter, first, and "ro" when the old line had neither
// "ro" nor "rw".
func kernelCmdline(old, uuid string) string {
	params := []string{"root=UUID=" + uuid}
	rorw := false
	for _, p := range strings.Fields(old) {
		if strings.HasPrefix(p, "root=") {
			continue
		}
		if p == "ro" || p == "rw" {
			rorw = true
		}
		params = append(params, p)
	}
	if !rorw {
		params = slices.Insert(params, 1, "ro")
	}
	return strings.Join(params, " ") + "\n"
}
