// Package tool finds the system programs goldcast runs (sfdisk, mkfs,
// blkid, grub-install, ...).
package tool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Look finds the program name on $PATH or in the sbin and bin
// directories, where disk and boot tools live and which a trimmed $PATH
// (an initramfs, a non-login shell, a systemd unit) often lacks. The
// error names the program.
func Look(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		cand := filepath.Join(d, name)
		if st, serr := os.Stat(cand); serr == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s is not installed: %w", name, err)
}
