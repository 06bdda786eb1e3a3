package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Arch is a client's system architecture: the value of option 93 (RFC
// 4578, IANA "Processor Architecture Types").
type Arch uint16

// Architectures the DefaultBooter knows, and ArchUnknown.
const (
	// ArchBIOS is legacy x86 BIOS PXE.
	ArchBIOS Arch = 0
	// ArchEFIx8664 is x86-64 UEFI.
	ArchEFIx8664 Arch = 7
	// ArchEFIBC is EFI byte code, which x86-64 firmware often reports.
	ArchEFIBC Arch = 9
	// ArchEFIARM64 is arm64 UEFI.
	ArchEFIARM64 Arch = 11
	// ArchEFIx8664HTTP is x86-64 UEFI booting over HTTP.
	ArchEFIx8664HTTP Arch = 16
	// ArchEFIARM64HTTP is arm64 UEFI booting over HTTP.
	ArchEFIARM64HTTP Arch = 19
	// ArchUnknown means the request named no architecture: no option 93
	// and no "Arch:" field in its vendor class.
	ArchUnknown Arch = 0xffff
)

// Vendor classes (option 60) of network boot firmware.
const (
	// VendorPXE starts the vendor class of PXE firmware
	// ("PXEClient:Arch:00007:UNDI:003016").
	VendorPXE = "PXEClient"
	// VendorHTTP starts the vendor class of UEFI HTTP boot firmware
	// ("HTTPClient:Arch:00016:UNDI:003001"); the answer must carry
	// "HTTPClient" back.
	VendorHTTP = "HTTPClient"
	// UserClassIPXE is the user class (option 77) iPXE sends.
	UserClassIPXE = "iPXE"
)

// ErrUnsupportedArch is returned by DefaultBooter for a network boot
// request whose architecture has no boot program.
var ErrUnsupportedArch = errors.New("no boot program for this architecture")

// Request is what a Booter learns about a booting client.
type Request struct {
	// MAC is the client's hardware address.
	MAC net.HardwareAddr
	// Arch is the first value of option 93, else the "Arch:" field of a
	// PXEClient or HTTPClient vendor class, else ArchUnknown.
	Arch Arch
	// UserClass is option 77 ("iPXE" for iPXE); when the option lists
	// several classes (RFC 3004), the first.
	UserClass string
	// VendorClass is option 60, such as "PXEClient:Arch:00007:UNDI:003016"
	// or "HTTPClient:Arch:00016:UNDI:003001".
	VendorClass string
}

// PXE reports whether the request comes from PXE firmware (or iPXE).
func (r Request) PXE() bool { return strings.HasPrefix(r.VendorClass, VendorPXE) }

// HTTP reports whether the request comes from UEFI HTTP boot firmware.
func (r Request) HTTP() bool { return strings.HasPrefix(r.VendorClass, VendorHTTP) }

// IPXE reports whether the request comes from iPXE.
func (r Request) IPXE() bool { return r.UserClass == UserClassIPXE }

// Answer is a Booter's choice for a request.
type Answer struct {
	// Filename is the boot program: a TFTP path, or a URL for UEFI HTTP
	// boot and iPXE. Empty means no boot information.
	Filename string
	// NextServer is the TFTP server (siaddr); the zero Addr means the
	// server's own ServerIP.
	NextServer netip.Addr
	// VendorClass is sent back as option 60: "HTTPClient" for UEFI HTTP
	// boot. Empty means "PXEClient" for PXE firmware and nothing for
	// others.
	VendorClass string
}

// Booter chooses the boot program for a request. An empty Answer means
// the client gets no boot information (in proxy mode: no answer at all);
// an error is logged and treated the same way.
type Booter interface {
	// BootFile chooses the boot program for req.
	BootFile(req Request) (Answer, error)
}

// Default boot programs of the DefaultBooter.
const (
	// FileBIOS is the iPXE build for BIOS PXE (chainloads over UNDI).
	FileBIOS = "undionly.kpxe"
	// FileEFIx8664 is the iPXE build for x86-64 UEFI.
	FileEFIx8664 = "ipxe.efi"
	// FileEFIARM64 is the iPXE build for arm64 UEFI.
	FileEFIARM64 = "ipxe-arm64.efi"
)

// DefaultBooter is the iPXE chain most sites want:
//
//   - user class "iPXE": ScriptURL, the per-node iPXE script, so iPXE does
//     not load itself again;
//   - vendor class "HTTPClient" (UEFI HTTP boot): HTTPBase followed by the
//     architecture's program, answered with vendor class "HTTPClient";
//   - option 93 = 0 (BIOS), or a PXEClient naming no architecture:
//     FileBIOS over TFTP;
//   - 7 or 9 (x86-64 UEFI): FileEFIx8664 over TFTP;
//   - 11 (arm64 UEFI): FileEFIARM64 over TFTP;
//   - any other architecture of a network boot request: ErrUnsupportedArch;
//   - anything else (not booting from the network): no boot information.
type DefaultBooter struct {
	// NextServer is the TFTP server holding the boot programs.
	NextServer netip.Addr
	// HTTPBase prefixes the program name for UEFI HTTP boot; empty means
	// "http://NextServer/boot/".
	HTTPBase string
	// ScriptURL is what iPXE is told to load; iPXE expands ${net0/mac}
	// itself. Empty means "http://NextServer/boot/ipxe?mac=${net0/mac}".
	ScriptURL string
}

// BootFile implements Booter with the rule described on DefaultBooter.
func (b DefaultBooter) BootFile(req Request) (Answer, error) {
	if req.IPXE() {
		url := b.ScriptURL
		if url == "" {
			url = "http://" + b.NextServer.String() + "/boot/ipxe?mac=${net0/mac}"
		}
		return Answer{Filename: url, NextServer: b.NextServer}, nil
	}
	if !req.PXE() && !req.HTTP() && req.Arch == ArchUnknown {
		return Answer{}, nil
	}
	var file string
	switch req.Arch {
	case ArchBIOS:
		file = FileBIOS
	case ArchEFIx8664, ArchEFIBC, ArchEFIx8664HTTP:
		file = FileEFIx8664
	case ArchEFIARM64, ArchEFIARM64HTTP:
		file = FileEFIARM64
	case ArchUnknown:
		if req.PXE() {
			// PXE firmware older than RFC 4578 is BIOS firmware.
			file = FileBIOS
		}
	}
	if req.HTTP() && file == FileBIOS {
		file = ""
	}
	if file == "" {
		return Answer{}, fmt.Errorf("boot file for %v (arch %d, vendor class %q): %w", req.MAC, req.Arch, req.VendorClass, ErrUnsupportedArch)
	}
	if req.HTTP() {
		base := b.HTTPBase
		if base == "" {
			base = "http://" + b.NextServer.String() + "/boot/"
		}
		return Answer{Filename: base + file, VendorClass: VendorHTTP}, nil
	}
	return Answer{Filename: file, NextServer: b.NextServer}, nil
}

// archFromVendorClass reads the architecture out of a PXE or HTTP boot
// vendor class ("PXEClient:Arch:00007:UNDI:003016").
func archFromVendorClass(vc string) (Arch, bool) {
	fields := strings.Split(vc, ":")
	if len(fields) < 3 || (fields[0] != VendorPXE && fields[0] != VendorHTTP) || fields[1] != "Arch" {
		return 0, false
	}
	n, err := strconv.ParseUint(fields[2], 10, 16)
	if err != nil || Arch(n) == ArchUnknown {
		return 0, false
	}
	return Arch(n), true
}
