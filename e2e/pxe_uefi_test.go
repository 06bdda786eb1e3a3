package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPXEBootQEMUUEFI network-boots a QEMU q35 machine under OVMF through
// goldcast's DHCP and TFTP: the NIC has no option ROM (romfile=), so
// OVMF's own network stack PXE-boots, asks DHCP with option 93 = 7
// (x86-64 UEFI), gets ipxe.efi and fetches it over TFTP from
// /usr/lib/ipxe; iPXE EFI then asks DHCP again with user class "iPXE",
// loads the per-node script, the kernel and the goldcast initramfs over
// HTTP; the initramfs reports "booted" and, for install, powers off.
//
// It uses its own subnet (10.79.0.0/24), MAC and node so it can run in
// parallel with TestPXEBootQEMU.
func TestPXEBootQEMUUEFI(t *testing.T) {
	skipUnlessPXE(t)
	const (
		ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
		ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
		ipxeDir  = "/usr/lib/ipxe"
	)
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is missing: install the Debian package ovmf", f)
		}
	}
	if _, err := os.Stat(filepath.Join(ipxeDir, "ipxe.efi")); err != nil {
		t.Skipf("%s/ipxe.efi is missing: install the Debian package ipxe", ipxeDir)
	}
	// OVMF writes its variable store: each run gets its own copy.
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	varsCopy := filepath.Join(t.TempDir(), "OVMF_VARS_4M.fd")
	if err := os.WriteFile(varsCopy, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pxeBoot{net: "10.79.0", node: "pxeuefi01", mac: "52:54:00:79:00:10",
		// Default boot dir: copies of Debian's /usr/lib/ipxe.
		serverArgs: []string{"--tftp", "10.79.0.1:69"},
		qemuArgs: []string{"-machine", "q35", "-m", "1024",
			"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
			"-drive", "if=pflash,format=raw,file=" + varsCopy},
		nicOptions: ",romfile=",
		// OVMF under TCG is slower than SeaBIOS: allow more time.
		timeout: 300 * time.Second}
	out, _ := p.run(t)
	// The firmware asked as x86-64 UEFI (option 93 = 7).
	if !strings.Contains(string(out), "arch 7") {
		t.Errorf("status pxeuefi01 has no DHCP event with arch 7:\n%s", out)
	}
	// The TFTP transfer is the node's event (the server knows the
	// address from its DHCP answer), and it was ipxe.efi, not
	// undionly.kpxe.
	var st struct {
		Events []struct {
			Stage  string            `json:"stage"`
			Fields map[string]string `json:"fields"`
		} `json:"events"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	sent := false
	for _, e := range st.Events {
		if e.Stage == "tftp" && e.Fields["file"] == "ipxe.efi" {
			sent = true
		}
	}
	if !sent {
		t.Errorf("status pxeuefi01 shows no TFTP event for ipxe.efi:\n%s", out)
	}
}
