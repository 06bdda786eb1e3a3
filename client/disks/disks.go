// Package disks prepares a node's disks for an image: it chooses the
// target disk, recreates the golden client's partition layout (recorded by
// package disklayout in the image's image.json) scaled to that disk, makes
// the filesystems with the captured labels and UUIDs, and mounts them under
// a target directory where the image can be laid.
//
// The work is split in three so that the decisions can be tested without
// disks:
//
//   - Select reads /sys/block (never udev, which the installer's initramfs
//     does not run) and picks the disk a Rule names.
//   - NewPlan is pure: from a Layout (or an admin's Override) and the
//     target disks' sizes it computes every partition table, RAID array,
//     LVM volume and filesystem to create, in sectors.
//   - Apply carries a Plan out with sfdisk, partx, wipefs, mkfs.*, mkswap,
//     mdadm and the LVM tools, and mounts with mount(2), after checking
//     that no target disk is in use and that none holds data the caller
//     did not agree to wipe.
//
// An installer uses them in this order:
//
//	disk, err := disks.Select(ctx, rule) // "" for the first eligible disk
//	plan, err := disks.NewPlan(layout, []disks.Disk{disk}, disks.PlanOptions{
//		Override: override,                          // nil: the captured layout
//		MinBytes: map[string]int64{"/": imageBytes}, // room for the image
//	})
//	res, err := disks.Apply(ctx, plan, disks.Options{Target: "/target", Wipe: wipe, Progress: report})
//	defer res.Unmount(ctx)
//	// lay the image into /target, then
//	// sysconf.Configure(ctx, sysconf.Options{Root: "/target", Layout: res.Layout, Disk: disk.Path, ...})
//
// docs/install-disks.md describes the rules, the override format and the
// safety checks for administrators.
package disks

import (
	"fmt"
	"strconv"
	"strings"
)

// MiB is a mebibyte, the unit partitions are aligned to.
const MiB = 1 << 20

// ParseSize parses a size the way util-linux does: a decimal number
// (fractions allowed) with an optional suffix K, M, G, T or P (or KiB, MiB,
// ...) for powers of 1024, or KB, MB, GB, TB, PB for powers of 1000, and
// B for bytes. A number without a suffix is in units of def bytes.
func ParseSize(s string, def int64) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, suffix := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	unit := def
	if suffix != "" {
		u, ok := sizeUnit(suffix)
		if !ok {
			return 0, fmt.Errorf("size %q: unknown unit %q (use K, M, G, T, P for powers of 1024, KB, MB, GB, TB, PB for powers of 1000)", s, suffix)
		}
		unit = u
	}
	b := v * float64(unit)
	if b > 1<<62 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(b), nil
}

// sizeUnit returns the bytes of a size suffix.
func sizeUnit(suffix string) (int64, bool) {
	s := strings.ToUpper(suffix)
	if s == "B" {
		return 1, true
	}
	const letters = "KMGTP"
	i := strings.IndexByte(letters, s[0])
	if i < 0 {
		return 0, false
	}
	rest := s[1:]
	binary := int64(1) << (10 * (i + 1))
	decimal := int64(1)
	for range i + 1 {
		decimal *= 1000
	}
	switch rest {
	case "", "IB":
		return binary, true
	case "B":
		return decimal, true
	}
	return 0, false
}

// formatMiB renders bytes as whole MiB for messages.
func formatMiB(b int64) string {
	return strconv.FormatInt(b/MiB, 10) + " MiB"
}
