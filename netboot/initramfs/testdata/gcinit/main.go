// Command gcinit stands in for goldcast's own /init wiring in the
// package's QEMU test: as PID 1 it runs initramfs.InitMain, as goldcast's
// main is meant to. When InitMain fails it exits, so the kernel panics
// and, with panic=1 and QEMU's -no-reboot, the test ends at once.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/goldcast/goldcast/netboot/initramfs"
)

func main() {
	if err := initramfs.InitMain(context.Background(), os.Args, initramfs.Hooks{}); err != nil {
		fmt.Fprintln(os.Stderr, "gcinit:", err)
		os.Exit(1)
	}
}
