// Command goldcast captures, stores, serves and installs machine images.
// Run `goldcast --help` for the command tree; docs/ explains the concepts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/goldcast/goldcast/netboot/initramfs"
)

func main() {
	if os.Getpid() == 1 {
		// The same binary is the netboot initramfs's /init.
		if err := initramfs.InitMain(context.Background(), os.Args, initramfsHooks()); err != nil {
			fmt.Fprintln(os.Stderr, "goldcast init:", err)
		}
		os.Exit(1) // PID 1 exiting panics the kernel; panic=N reboots it
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec)) // the command has said why
		}
		fmt.Fprintln(os.Stderr, "goldcast:", err)
		os.Exit(1)
	}
}

// exitCode lets a command choose the process exit status; its message has
// already been printed.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
