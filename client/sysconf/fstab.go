package sysconf

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/goldcast/goldcast/client/disklayout"
)

// fstabHeader starts every /etc/fstab Configure writes.
const fstabHeader = `# /etc/fstab: static file system information.
# Written by goldcast from the image's disk layout (image.json).
#
`

// skipsFsck reports whether filesystems of type t get fsck pass 0: their
// fsck is a no-op or they have none.
func skipsFsck(t string) bool {
	switch t {
	case "btrfs", "xfs", "zfs", "tmpfs", "overlay", "nfs", "nfs4", "cifs", "squashfs", "vboxsf", "9p", "virtiofs":
		return true
	}
	return false
}

// fstabEntry is one line of /etc/fstab.
type fstabEntry struct {
	spec, file, vfsType, options string
	pass                         int
}

// fstabFor returns the /etc/fstab for l: the filesystems that have a
// mount point, parents before children, each named by UUID= (else LABEL=,
// else its device path), with its captured per-mount options ("defaults"
// when none), dump 0 and fsck pass 1 for "/", 0 for types that are not
// checked and 2 for the others; then every swap area, by UUID (or its file
// for a swap file), with option "sw" plus its captured options ("pri=N").
// notes say what was left out or named less reliably, and why.
func fstabFor(l *disklayout.Layout) (content string, mounts, swaps int, notes []string) {
	var entries, swapEntries []fstabEntry
	seen := map[string]bool{}
	for _, f := range l.Filesystems {
		if f.Type == "swap" {
			var spec string
			switch {
			case f.File != "":
				spec = "/" + strings.TrimLeft(f.File, "/")
			case f.UUID != "":
				spec = "UUID=" + f.UUID
			case f.Label != "":
				spec = "LABEL=" + f.Label
			default:
				notes = append(notes, fmt.Sprintf("swap on %s left out: it has no UUID or label", f.Device))
				continue
			}
			if seen["swap "+spec] {
				continue
			}
			seen["swap "+spec] = true
			opts := "sw"
			if f.Options != "" {
				opts += "," + f.Options
			}
			swapEntries = append(swapEntries, fstabEntry{spec: spec, file: "none", vfsType: "swap", options: opts})
			continue
		}
		if f.Mountpoint == "" {
			continue // found on the disks but not mounted on the golden client
		}
		if seen[f.Mountpoint] {
			notes = append(notes, fmt.Sprintf("%s on %s left out: %s is already mounted from another filesystem", f.Type, f.Mountpoint, f.Mountpoint))
			continue
		}
		var spec string
		switch {
		case f.UUID != "":
			spec = "UUID=" + f.UUID
		case f.Label != "":
			spec = "LABEL=" + f.Label
		case f.Device != "":
			spec = f.Device
			notes = append(notes, fmt.Sprintf("%s named by device path %s: it has no UUID or label", f.Mountpoint, f.Device))
		case f.Type == "tmpfs":
			spec = "tmpfs"
		default:
			notes = append(notes, fmt.Sprintf("%s (%s) left out: it has no block device", f.Mountpoint, f.Type))
			continue
		}
		seen[f.Mountpoint] = true
		opts := f.Options
		if opts == "" {
			opts = "defaults"
		}
		if f.Type == "btrfs" && f.FSRoot != "" && f.FSRoot != "/" && !hasOption(opts, "subvol") && !hasOption(opts, "subvolid") {
			opts += ",subvol=" + f.FSRoot
		}
		pass := 2
		switch {
		case skipsFsck(f.Type):
			pass = 0
		case f.Mountpoint == "/":
			pass = 1
		}
		entries = append(entries, fstabEntry{spec: spec, file: f.Mountpoint, vfsType: f.Type, options: opts, pass: pass})
	}
	slices.SortStableFunc(entries, func(a, b fstabEntry) int { return compareMountpoints(a.file, b.file) })

	var sb strings.Builder
	sb.WriteString(fstabHeader)
	tw := tabwriter.NewWriter(&sb, 0, 8, 1, ' ', 0)
	fmt.Fprintln(tw, "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>")
	for _, e := range slices.Concat(entries, swapEntries) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t0\t%d\n", fstabEscape(e.spec), fstabEscape(e.file), e.vfsType, fstabEscape(e.options), e.pass)
	}
	tw.Flush()
	return sb.String(), len(entries), len(swapEntries), notes
}

// compareMountpoints orders mount points parents first: component by
// component, so "/" < "/boot" < "/boot/efi" < "/home" < "/var".
func compareMountpoints(a, b string) int {
	split := func(p string) []string {
		p = strings.Trim(p, "/")
		if p == "" {
			return nil
		}
		return strings.Split(p, "/")
	}
	return slices.Compare(split(a), split(b))
}

// hasOption reports whether the comma-separated opts hold name, alone or
// as name=value.
func hasOption(opts, name string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == name || strings.HasPrefix(o, name+"=") {
			return true
		}
	}
	return false
}

// fstabEscape writes space, tab, newline and backslash as the octal
// escapes fstab(5) reads.
func fstabEscape(s string) string {
	return strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`).Replace(s)
}

// fstab is the fstab step.
func (c *configurer) fstab(context.Context) error {
	if c.o.Layout == nil {
		c.note("/etc/fstab left as it is: no disk layout")
		return nil
	}
	content, mounts, swaps, notes := fstabFor(c.o.Layout)
	for _, n := range notes {
		c.note("%s", n)
	}
	if mounts == 0 {
		c.note("/etc/fstab left as it is: the disk layout has no mounted filesystem")
		return nil
	}
	changed, err := c.writeFile("etc/fstab", []byte(content), 0o644)
	if err != nil {
		return err
	}
	if changed {
		c.changed("etc/fstab", fmt.Sprintf("wrote %d mounts and %d swap areas", mounts, swaps))
	}
	return nil
}
