package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The post actions (config.PostActions).
const (
	PostReboot   = "reboot"
	PostPowerOff = "poweroff"
	PostShell    = "shell"
	PostKexec    = "kexec"
)

// Finish carries out the plan's post action after a successful install:
// it syncs and unmounts the target, then reboots or powers off the
// machine, or boots the installed kernel with kexec (falling back to a
// reboot when that cannot be loaded). For shell it leaves the target
// mounted and returns: the caller opens the shell.
func Finish(ctx context.Context, res *Result, logf func(format string, args ...any)) error {
	action := res.Plan.PostAction
	if action == "" {
		action = PostReboot
	}
	if action == PostShell {
		logf("post action shell: the installed system is mounted at %s", res.Target)
		return nil
	}
	if action == PostKexec {
		if err := loadKexec(res); err != nil {
			logf("kexec: %v; rebooting instead", err)
			action = PostReboot
		}
	}
	if err := res.Unmount(ctx); err != nil {
		logf("unmount %s: %v", res.Target, err)
	}
	unix.Sync()
	cmd := map[string]int{PostReboot: unix.LINUX_REBOOT_CMD_RESTART, PostPowerOff: unix.LINUX_REBOOT_CMD_POWER_OFF, PostKexec: unix.LINUX_REBOOT_CMD_KEXEC}[action]
	if cmd == 0 {
		return fmt.Errorf("unknown post action %q", action)
	}
	logf("post action %s", action)
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	return nil
}

// loadKexec loads the installed system's default kernel and initramfs
// (the /vmlinuz and /initrd.img links Debian keeps, else the newest
// /boot/vmlinuz-*) with a command line booting the installed root.
func loadKexec(res *Result) error {
	at := func(p string) string { return filepath.Join(res.Target, p) }
	kernel, initrd := at("vmlinuz"), at("initrd.img")
	if _, err := os.Stat(kernel); err != nil {
		ks, _ := filepath.Glob(at("boot/vmlinuz-*"))
		if len(ks) == 0 {
			return fmt.Errorf("no kernel in %s/boot", res.Target)
		}
		kernel = ks[len(ks)-1]
		initrd = at("boot/initrd.img-" + strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-"))
	}
	kf, err := os.Open(kernel)
	if err != nil {
		return err
	}
	defer kf.Close()
	initrdFd, flags := -1, unix.KEXEC_FILE_NO_INITRAMFS
	if f, err := os.Open(initrd); err == nil {
		defer f.Close()
		initrdFd, flags = int(f.Fd()), 0
	}
	cmdline := "root=UUID=" + res.RootUUID + " ro"
	if cur, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, a := range strings.Fields(string(cur)) {
			if strings.HasPrefix(a, "console=") {
				cmdline += " " + a
			}
		}
	}
	if res.Plan.KernelArgs != "" {
		cmdline += " " + res.Plan.KernelArgs
	}
	if err := unix.KexecFileLoad(int(kf.Fd()), initrdFd, cmdline, flags); err != nil {
		return fmt.Errorf("load %s: %w", kernel, err)
	}
	return nil
}
