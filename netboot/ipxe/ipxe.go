// Package ipxe renders the iPXE scripts goldcast hands each
// network-booting node: install (kernel and the goldcast initramfs with a
// command line naming the server, the node and its boot token), local
// (boot the disk), rescue (the initramfs with a shell), register (the
// initramfs reports an unknown machine's hardware), and a menu for
// machines goldcast does not know.
package ipxe

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"text/template"
)

// Action is what a node does when it boots from the network.
type Action string

// The boot actions (config.Boot uses the same words).
const (
	Install Action = "install"
	Local   Action = "local"
	Rescue  Action = "rescue"
	// Register boots an unknown machine into the initramfs, which reports
	// its hardware (the server records it as discovered-<mac>) and powers
	// it off.
	Register Action = "register"
)

// Script describes one node's boot.
type Script struct {
	// Node is the node's name ("" for an unknown machine: a menu).
	Node   string
	Action Action
	// KernelURL and InitrdURL are where iPXE fetches the kernel and the
	// goldcast initramfs (HTTP, with Range support).
	KernelURL, InitrdURL string
	// ServerURL is the goldcast API the initramfs reports to.
	ServerURL string
	// Token is the node's boot credential, passed on the command line.
	Token string
	// KernelArgs are the node's extra kernel arguments.
	KernelArgs string
	// MAC is the machine's address, for the menu of unknown machines.
	MAC string
}

// safeArg reports whether s may appear in a kernel command line argument
// goldcast builds itself: no spaces, quotes or iPXE expansion characters.
func safeArg(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("._:/@%+=,~-?&", c):
		default:
			return false
		}
	}
	return true
}

// Render returns the iPXE script.
func Render(s Script) ([]byte, error) {
	for name, v := range map[string]string{"node": s.Node, "token": s.Token, "server": s.ServerURL, "kernel": s.KernelURL, "initrd": s.InitrdURL} {
		if !safeArg(v) {
			return nil, fmt.Errorf("ipxe script: %s %q holds characters that cannot go on a kernel command line", name, v)
		}
	}
	if strings.ContainsAny(s.KernelArgs, "\"'`$\n\\") {
		return nil, fmt.Errorf("ipxe script: kernel arguments %q hold quotes, $, backslashes or newlines", s.KernelArgs)
	}
	if s.Node == "" {
		return execute(menuTmpl, s)
	}
	switch s.Action {
	case Install, Rescue, Register:
		if s.KernelURL == "" || s.InitrdURL == "" {
			return nil, fmt.Errorf("ipxe script for %s: %s needs a kernel and an initramfs (goldcast netboot initramfs)", s.Node, s.Action)
		}
		return execute(bootTmpl, s)
	case Local, "":
		return execute(localTmpl, s)
	}
	return nil, fmt.Errorf("ipxe script for %s: unknown boot action %q", s.Node, s.Action)
}

// InitrdName is the file name the kernel line gives the initrd: iPXE's EFI
// build hands the initrd to the kernel only when the kernel line names it.
func InitrdName(initrdURL string) string {
	u, err := url.Parse(initrdURL)
	if err != nil || u.Path == "" {
		return "initrd.img"
	}
	parts := strings.Split(u.Path, "/")
	return parts[len(parts)-1]
}

func execute(t string, s Script) ([]byte, error) {
	tmpl, err := template.New("ipxe").Funcs(template.FuncMap{"initrdName": InitrdName}).Parse(t)
	if err != nil {
		return nil, fmt.Errorf("ipxe template: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, s); err != nil {
		return nil, fmt.Errorf("ipxe script for %s: %w", s.Node, err)
	}
	return b.Bytes(), nil
}

const bootTmpl = `#!ipxe
# goldcast: {{.Action}} node {{.Node}}
echo goldcast: {{.Action}} {{.Node}}
kernel {{.KernelURL}} initrd={{initrdName .InitrdURL}} console=tty0 console=ttyS0,115200 goldcast.server={{.ServerURL}} goldcast.node={{.Node}} goldcast.token={{.Token}} goldcast.action={{.Action}}{{if .KernelArgs}} {{.KernelArgs}}{{end}} || goto failed
initrd {{.InitrdURL}} || goto failed
boot || goto failed
:failed
echo goldcast: boot of {{.Node}} failed; retrying in 10 s
sleep 10
reboot
`

const localTmpl = `#!ipxe
# goldcast: local boot of node {{.Node}}
echo goldcast: {{.Node}} boots from its disk
iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
`

const menuTmpl = `#!ipxe
# goldcast: this machine ({{.MAC}}) is not a declared node
echo goldcast: unknown machine {{.MAC}}: declare it with
echo   goldcast node add NAME --mac {{.MAC}} --boot install
echo booting from the local disk in 30 s
sleep 30
iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
`
