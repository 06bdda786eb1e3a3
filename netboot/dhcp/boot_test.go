package dhcp

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultBooter(t *testing.T) {
	srv := netip.MustParseAddr("10.0.0.1")
	def := DefaultBooter{NextServer: srv}
	custom := DefaultBooter{NextServer: srv, HTTPBase: "http://boot.example/efi/", ScriptURL: "http://gc.example/boot/ipxe?mac=${net0/mac}&x=1"}
	tests := []struct {
		name    string
		booter  DefaultBooter
		req     Request
		want    Answer
		wantErr error
	}{
		{name: "not a network boot", booter: def, req: Request{Arch: ArchUnknown}},
		{name: "BIOS", booter: def, req: Request{Arch: ArchBIOS, VendorClass: "PXEClient:Arch:00000:UNDI:002001"}, want: Answer{Filename: "undionly.kpxe", NextServer: srv}},
		{name: "PXE without an architecture is BIOS", booter: def, req: Request{Arch: ArchUnknown, VendorClass: "PXEClient"}, want: Answer{Filename: "undionly.kpxe", NextServer: srv}},
		{name: "x86-64 UEFI (7)", booter: def, req: Request{Arch: ArchEFIx8664, VendorClass: "PXEClient"}, want: Answer{Filename: "ipxe.efi", NextServer: srv}},
		{name: "x86-64 UEFI (9)", booter: def, req: Request{Arch: ArchEFIBC, VendorClass: "PXEClient"}, want: Answer{Filename: "ipxe.efi", NextServer: srv}},
		{name: "arm64 UEFI", booter: def, req: Request{Arch: ArchEFIARM64, VendorClass: "PXEClient"}, want: Answer{Filename: "ipxe-arm64.efi", NextServer: srv}},
		{name: "option 93 without vendor class", booter: def, req: Request{Arch: ArchEFIx8664}, want: Answer{Filename: "ipxe.efi", NextServer: srv}},
		{name: "HTTP boot x86-64", booter: def, req: Request{Arch: ArchEFIx8664HTTP, VendorClass: "HTTPClient:Arch:00016:UNDI:003001"}, want: Answer{Filename: "http://10.0.0.1/boot/ipxe.efi", VendorClass: "HTTPClient"}},
		{name: "HTTP boot arm64, custom base", booter: custom, req: Request{Arch: ArchEFIARM64HTTP, VendorClass: "HTTPClient"}, want: Answer{Filename: "http://boot.example/efi/ipxe-arm64.efi", VendorClass: "HTTPClient"}},
		{name: "iPXE wins over the architecture", booter: def, req: Request{Arch: ArchBIOS, UserClass: "iPXE", VendorClass: "PXEClient"}, want: Answer{Filename: "http://10.0.0.1/boot/ipxe?mac=${net0/mac}", NextServer: srv}},
		{name: "iPXE, custom script", booter: custom, req: Request{Arch: ArchEFIx8664, UserClass: "iPXE"}, want: Answer{Filename: "http://gc.example/boot/ipxe?mac=${net0/mac}&x=1", NextServer: srv}},
		{name: "other user class is not iPXE", booter: def, req: Request{Arch: ArchEFIx8664, UserClass: "gPXE", VendorClass: "PXEClient"}, want: Answer{Filename: "ipxe.efi", NextServer: srv}},
		{name: "unsupported architecture", booter: def, req: Request{Arch: 6, VendorClass: "PXEClient"}, wantErr: ErrUnsupportedArch},
		{name: "HTTP boot without a UEFI architecture", booter: def, req: Request{Arch: ArchBIOS, VendorClass: "HTTPClient"}, wantErr: ErrUnsupportedArch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.booter.BootFile(tc.req)
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArchFromVendorClass(t *testing.T) {
	type result struct {
		Arch Arch
		OK   bool
	}
	tests := []struct {
		vc   string
		want result
	}{
		{"PXEClient:Arch:00000:UNDI:002001", result{ArchBIOS, true}},
		{"PXEClient:Arch:00007:UNDI:003016", result{ArchEFIx8664, true}},
		{"HTTPClient:Arch:00016:UNDI:003001", result{ArchEFIx8664HTTP, true}},
		{"PXEClient", result{}},
		{"PXEClient:Arch:xyz", result{}},
		{"PXEClient:Arch:99999", result{}},
		{"MSFT 5.0", result{}},
		{"", result{}},
	}
	for _, tc := range tests {
		a, ok := archFromVendorClass(tc.vc)
		if diff := cmp.Diff(tc.want, result{a, ok}); diff != "" {
			t.Errorf("archFromVendorClass(%q) (-want +got):\n%s", tc.vc, diff)
		}
	}
}
