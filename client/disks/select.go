package disks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Disk is a whole disk as the kernel shows it in /sys/block.
type Disk struct {
	// Name is the kernel's name, such as "sda", "vda" or "nvme0n1".
	Name string `json:"name"`
	// Path is the device node, "/dev/" + Name.
	Path string `json:"path"`
	// SizeBytes is the disk's size in bytes.
	SizeBytes int64 `json:"size_bytes"`
	// SectorSize is the logical sector size in bytes (512 or 4096).
	SectorSize int `json:"sector_size"`
	// Removable is the kernel's removable flag (USB sticks, card readers,
	// optical drives).
	Removable bool `json:"removable,omitempty"`
	// ReadOnly is set when the kernel refuses writes to the disk.
	ReadOnly bool `json:"read_only,omitempty"`
	// Virtual is set for devices that are not disks of their own: loop
	// devices, RAM disks (ram, zram), md arrays, device-mapper and
	// network block devices, optical drives, hidden NVMe multipath paths.
	Virtual bool `json:"virtual,omitempty"`
	// Model is the model the disk reports, when it reports one.
	Model string `json:"model,omitempty"`
	// Serial is the serial number the disk reports, when the kernel shows
	// it (virtio, NVMe, SCSI VPD page 0x80).
	Serial string `json:"serial,omitempty"`
	// IDs are the /dev/disk/by-id and /dev/disk/by-path names (without
	// the directory) that goldcast derives from sysfs for this disk, the
	// way udev would name it; see docs/install-disks.md for which it
	// knows.
	IDs []string `json:"ids,omitempty"`
}

// Eligible reports whether the disk may be chosen by a rule that does not
// name it: it is not removable, not read-only, not virtual and not empty.
func (d Disk) Eligible() bool {
	return !d.Removable && !d.ReadOnly && !d.Virtual && d.SizeBytes > 0
}

// Rule chooses a target disk. It is one of:
//
//   - "" (empty): the first eligible disk in name order.
//   - a device path, such as "/dev/vda", "/dev/disk/by-id/virtio-node1" or
//     "/dev/disk/by-path/pci-0000:00:04.0": that disk, eligible or not.
//     by-id and by-path names work without udev for the forms Disk.IDs
//     lists.
//   - a kernel name, such as "vda" or "nvme0n1".
//   - conditions joined by commas, each "size>=N", "size>N", "size<=N",
//     "size<N" or "size=N" (N as ParseSize reads it, "100G"), "smallest"
//     or "largest": the first (or the smallest, or largest) eligible disk
//     meeting every condition.
type Rule string

// List returns the disks in /sys/block in name order: by driver, then
// by number (nvme0n1 before nvme1n1 before sda before sdb before sdaa
// before vda).
func List(ctx context.Context) ([]Disk, error) {
	return listDisks(ctx, "/sys")
}

// Select returns the disk rule chooses among the disks of this machine.
func Select(ctx context.Context, rule Rule) (Disk, error) {
	ds, err := SelectAll(ctx, []Rule{rule})
	if err != nil {
		return Disk{}, err
	}
	return ds[0], nil
}

// SelectAll chooses one disk per rule, in order, for an install on
// several disks; no rules means one disk by the empty rule. A disk chosen
// by one rule is passed over by the later size and default rules, and
// naming it again is an error.
func SelectAll(ctx context.Context, rules []Rule) ([]Disk, error) {
	all, err := List(ctx)
	if err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		rules = []Rule{""}
	}
	var chosen []Disk
	for _, rule := range rules {
		d, err := selectOne(all, chosen, rule)
		if err != nil {
			return nil, err
		}
		chosen = append(chosen, d)
	}
	return chosen, nil
}

// selectOne applies rule to the disks all, of which chosen are taken.
func selectOne(all, chosen []Disk, rule Rule) (Disk, error) {
	r := strings.TrimSpace(string(rule))
	var d Disk
	var err error
	if strings.HasPrefix(r, "/") {
		var name string
		name, err = resolveDevice(r)
		switch {
		case err == nil:
			d, err = pickName(all, name, r)
		case errors.Is(err, os.ErrNotExist):
			// No such node: without udev there are no /dev/disk links,
			// so match the name against the IDs derived from sysfs.
			var ok bool
			if d, ok = byID(all, r); ok {
				err = nil
			} else {
				err = fmt.Errorf("select disk %q: no such device, and no disk has that by-id or by-path name (known: %s)", r, knownIDs(all))
			}
		}
	} else {
		var taken []string
		for _, c := range chosen {
			taken = append(taken, c.Name)
		}
		d, err = selectFrom(all, Rule(r), taken...)
	}
	if err != nil {
		return Disk{}, err
	}
	if slices.ContainsFunc(chosen, func(c Disk) bool { return c.Name == d.Name }) {
		return Disk{}, fmt.Errorf("select disk %q: %s is already chosen by an earlier rule", r, d.Name)
	}
	return d, nil
}

// isNameRule reports whether r names a disk rather than giving
// conditions.
func isNameRule(r string) bool {
	return r != "" && !strings.ContainsAny(r, "<>=,") && !strings.HasPrefix(r, "size") && r != "smallest" && r != "largest" && r != "first"
}

// resolveDevice follows a device path's symbolic links and returns the
// kernel name of the block device it is, looked up by device number.
func resolveDevice(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", fmt.Errorf("select disk %q: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("select disk %q: %s is not a block device", path, real)
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	if err != nil {
		return "", fmt.Errorf("select disk %q: device %d:%d: %w", path, unix.Major(st.Rdev), unix.Minor(st.Rdev), err)
	}
	return filepath.Base(link), nil
}

// pickName returns the disk called name, or an error saying why name is
// not a whole disk.
func pickName(all []Disk, name, asked string) (Disk, error) {
	for _, d := range all {
		if d.Name == name {
			return d, nil
		}
	}
	if parent := partitionParent("/sys", name); parent != "" {
		return Disk{}, fmt.Errorf("select disk %q: %s is a partition of %s, not a whole disk", asked, name, parent)
	}
	return Disk{}, fmt.Errorf("select disk %q: no disk %s in /sys/block", asked, name)
}

// partitionParent returns the disk holding partition name, or "".
func partitionParent(sys, name string) string {
	link, err := os.Readlink(filepath.Join(sys, "class", "block", name))
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join(sys, "class", "block", name, "partition")); err != nil {
		return ""
	}
	return filepath.Base(filepath.Dir(link))
}

// byID finds the disk whose derived by-id or by-path name is the last
// element of path.
func byID(all []Disk, path string) (Disk, bool) {
	dir, id := filepath.Split(path)
	if dir != "/dev/disk/by-id/" && dir != "/dev/disk/by-path/" {
		return Disk{}, false
	}
	for _, d := range all {
		if slices.Contains(d.IDs, id) {
			return d, true
		}
	}
	return Disk{}, false
}

// knownIDs lists every disk's derived names for an error message.
func knownIDs(all []Disk) string {
	var out []string
	for _, d := range all {
		if len(d.IDs) > 0 {
			out = append(out, d.Name+": "+strings.Join(d.IDs, " "))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}

// selectFrom applies a rule that is not a device path to the disks all,
// passing over the disks named taken unless the rule names one.
func selectFrom(all []Disk, rule Rule, taken ...string) (Disk, error) {
	r := string(rule)
	if isNameRule(r) {
		return pickName(all, strings.TrimPrefix(r, "/dev/"), r)
	}
	var conds []func(Disk) bool
	pick := "first"
	if r != "" {
		for _, c := range strings.Split(r, ",") {
			c = strings.TrimSpace(c)
			switch c {
			case "smallest", "largest":
				pick = c
				continue
			case "first":
				continue
			}
			f, err := sizeCondition(c)
			if err != nil {
				return Disk{}, fmt.Errorf("disk rule %q: %w", r, err)
			}
			conds = append(conds, f)
		}
	}
	var best *Disk
	var skipped []string
	for i := range all {
		d := &all[i]
		if slices.Contains(taken, d.Name) {
			skipped = append(skipped, d.Name+" (chosen already)")
			continue
		}
		if !d.Eligible() {
			skipped = append(skipped, d.Name+" ("+whyIneligible(*d)+")")
			continue
		}
		ok := true
		for _, c := range conds {
			ok = ok && c(*d)
		}
		if !ok {
			skipped = append(skipped, fmt.Sprintf("%s (%d bytes)", d.Name, d.SizeBytes))
			continue
		}
		switch {
		case best == nil:
			best = d
		case pick == "smallest" && d.SizeBytes < best.SizeBytes:
			best = d
		case pick == "largest" && d.SizeBytes > best.SizeBytes:
			best = d
		}
	}
	if best == nil {
		what := "no eligible disk"
		if r != "" {
			what = fmt.Sprintf("no disk matches rule %q", r)
		}
		if len(skipped) == 0 {
			return Disk{}, fmt.Errorf("%s: /sys/block lists no disks", what)
		}
		return Disk{}, fmt.Errorf("%s; passed over: %s", what, strings.Join(skipped, ", "))
	}
	return *best, nil
}

// whyIneligible says why a disk is not Eligible.
func whyIneligible(d Disk) string {
	switch {
	case d.Virtual:
		return "virtual"
	case d.Removable:
		return "removable"
	case d.ReadOnly:
		return "read-only"
	case d.SizeBytes <= 0:
		return "empty"
	}
	return "eligible"
}

// sizeCondition parses "size>=100G" and friends.
func sizeCondition(c string) (func(Disk) bool, error) {
	rest, ok := strings.CutPrefix(c, "size")
	if !ok {
		return nil, fmt.Errorf("condition %q: want size>=N, size>N, size<=N, size<N, size=N, smallest or largest", c)
	}
	var op string
	for _, o := range []string{">=", "<=", "==", ">", "<", "="} {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	if op == "" {
		return nil, fmt.Errorf("condition %q: no comparison (>=, >, <=, <, =)", c)
	}
	n, err := ParseSize(rest[len(op):], 1)
	if err != nil {
		return nil, fmt.Errorf("condition %q: %w", c, err)
	}
	switch op {
	case ">=":
		return func(d Disk) bool { return d.SizeBytes >= n }, nil
	case "<=":
		return func(d Disk) bool { return d.SizeBytes <= n }, nil
	case ">":
		return func(d Disk) bool { return d.SizeBytes > n }, nil
	case "<":
		return func(d Disk) bool { return d.SizeBytes < n }, nil
	}
	return func(d Disk) bool { return d.SizeBytes == n }, nil
}

// listDisks reads the disks of sys/block.
func listDisks(ctx context.Context, sys string) ([]Disk, error) {
	entries, err := os.ReadDir(filepath.Join(sys, "block"))
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	var out []Disk
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := readDisk(sys, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Disk) int { return naturalCompare(a.Name, b.Name) })
	return out, nil
}

// readDisk reads one disk's attributes from sys/block/name.
func readDisk(sys, name string) (Disk, error) {
	dir := filepath.Join(sys, "block", name)
	sectors, err := readInt(filepath.Join(dir, "size"))
	if err != nil {
		return Disk{}, fmt.Errorf("disk %s: %w", name, err)
	}
	d := Disk{
		Name:       name,
		Path:       "/dev/" + name,
		SizeBytes:  sectors * 512, // sysfs counts 512-byte units
		SectorSize: 512,
	}
	if ss, err := readInt(filepath.Join(dir, "queue", "logical_block_size")); err == nil && ss > 0 {
		d.SectorSize = int(ss)
	}
	if v, err := readInt(filepath.Join(dir, "removable")); err == nil {
		d.Removable = v != 0
	}
	if v, err := readInt(filepath.Join(dir, "ro")); err == nil {
		d.ReadOnly = v != 0
	}
	// Kernel name prefixes of block devices that are not disks of their
	// own.
	for _, p := range []string{"loop", "ram", "zram", "md", "dm-", "nbd", "sr", "fd", "drbd", "mtdblock", "rbd", "pmem"} {
		if strings.HasPrefix(name, p) {
			d.Virtual = true
		}
	}
	// SCSI peripheral type 5 is a CD/DVD drive; a hidden disk is an
	// NVMe multipath path, reached through its namespace's node.
	if readString(filepath.Join(dir, "device", "type")) == "5" || readString(filepath.Join(dir, "hidden")) == "1" {
		d.Virtual = true
	}
	d.Model = readString(filepath.Join(dir, "device", "model"))
	d.Serial = readString(filepath.Join(dir, "serial"))
	if d.Serial == "" {
		d.Serial = readString(filepath.Join(dir, "device", "serial"))
	}
	if d.Serial == "" {
		d.Serial = vpdSerial(filepath.Join(dir, "device", "vpd_pg80"))
	}
	d.IDs = deriveIDs(sys, d)
	return d, nil
}

// deriveIDs returns the by-id and by-path names udev would give a disk,
// for the kinds of disk goldcast knows without udev.
func deriveIDs(sys string, d Disk) []string {
	var ids []string
	clean := func(s string) string { return strings.Join(strings.Fields(s), "_") }
	real, _ := filepath.EvalSymlinks(filepath.Join(sys, "block", d.Name))
	parts := strings.Split(real, "/")
	pci := ""
	for _, p := range parts {
		if isPCIAddr(p) {
			pci = p // the last PCI function on the path is the controller
		}
	}
	switch {
	case strings.HasPrefix(d.Name, "vd"):
		if d.Serial != "" {
			ids = append(ids, "virtio-"+clean(d.Serial))
		}
		if pci != "" {
			ids = append(ids, "pci-"+pci)
		}
	case strings.HasPrefix(d.Name, "nvme"):
		if d.Model != "" && d.Serial != "" {
			ids = append(ids, "nvme-"+clean(d.Model)+"_"+clean(d.Serial))
		}
		if w := readString(filepath.Join(sys, "block", d.Name, "wwid")); w != "" {
			ids = append(ids, "nvme-"+clean(w))
		}
		if ns := readString(filepath.Join(sys, "block", d.Name, "nsid")); pci != "" && ns != "" {
			ids = append(ids, "pci-"+pci+"-nvme-"+ns)
		}
	default:
		if w, ok := strings.CutPrefix(readString(filepath.Join(sys, "block", d.Name, "device", "wwid")), "naa."); ok {
			ids = append(ids, "wwn-0x"+strings.ToLower(w))
		}
	}
	return ids
}

// isPCIAddr reports whether s looks like a PCI address "0000:00:04.0".
func isPCIAddr(s string) bool {
	if len(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' {
		return false
	}
	for i, c := range s {
		if i == 4 || i == 7 || i == 10 {
			continue
		}
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// vpdSerial reads the unit serial number from a SCSI VPD page 0x80.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		n = len(b) - 4
	}
	return strings.TrimSpace(string(b[4 : 4+n]))
}

// readString reads a one-line sysfs attribute, trimmed; "" when absent.
func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// readInt reads a sysfs attribute holding a decimal integer.
func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// naturalCompare orders kernel names by driver, then by number: runs of
// digits compare as numbers (nvme2n1 before nvme10n1), and the letters
// that number sd, vd, xvd and hd disks count like digits (sdz before
// sdaa). So loop0 < nvme0n1 < sda < sdb < sdaa < vda.
func naturalCompare(a, b string) int {
	ka, kb := nameKey(a), nameKey(b)
	for i := 0; i < len(ka) && i < len(kb); i++ {
		x, y := ka[i], kb[i]
		switch {
		case x.isNum && y.isNum:
			if c := cmp.Compare(x.num, y.num); c != 0 {
				return c
			}
		case x.isNum != y.isNum:
			if x.isNum {
				return -1
			}
			return 1
		default:
			if c := strings.Compare(x.text, y.text); c != 0 {
				return c
			}
		}
	}
	return cmp.Compare(len(ka), len(kb))
}

// keyPart is a run of a kernel name: text, or a number.
type keyPart struct {
	text  string
	num   uint64
	isNum bool
}

// nameKey splits a kernel name into runs of digits and non-digits; the
// letter suffix of an sd, vd, xvd or hd disk becomes a number (a=1, z=26,
// aa=27).
func nameKey(s string) []keyPart {
	for _, prefix := range []string{"xvd", "sd", "vd", "hd"} {
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok || rest == "" || strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz") != "" {
			continue
		}
		var n uint64
		for _, c := range rest {
			n = n*26 + uint64(c-'a'+1)
		}
		return []keyPart{{text: prefix}, {num: n, isNum: true}}
	}
	var out []keyPart
	for s != "" {
		digit := s[0] >= '0' && s[0] <= '9'
		i := 1
		for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
			i++
		}
		if digit {
			n, _ := strconv.ParseUint(s[:i], 10, 64)
			out = append(out, keyPart{num: n, isNum: true})
		} else {
			out = append(out, keyPart{text: s[:i]})
		}
		s = s[i:]
	}
	return out
}
