package disklayout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Capture records the disk layout of the system whose root filesystem is
// mounted at root: "/" on a running golden client, or the directory where
// a golden client's filesystems are mounted (then only filesystems mounted
// at or below root count, and their mount points are made relative to
// it).
//
// Capture fails only when root is not a directory or the mount table
// cannot be read. A missing or failing tool (sfdisk, blkid, mdadm, the LVM
// tools) leaves out what it would have told, with a line in Notes. A root
// on a filesystem with no block device (tmpfs, or overlay in a container)
// gives a Layout with that filesystem, no disks, and a note.
func Capture(ctx context.Context, root string) (*Layout, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", root, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", root, err)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("capture %s: not a directory", root)
	}
	c := &capturer{run: runCommand, readFile: os.ReadFile, hostname: os.Hostname, now: time.Now}
	return c.capture(ctx, resolved)
}

// capturer holds what a capture reads the system through, so tests can
// feed it recorded tool outputs.
type capturer struct {
	// run runs a tool and returns its standard output (see runCommand).
	run func(ctx context.Context, name string, args ...string) ([]byte, error)
	// readFile reads a file such as /proc/self/mountinfo.
	readFile func(name string) ([]byte, error)
	// hostname returns the running host's name.
	hostname func() (string, error)
	// now returns the current time.
	now func() time.Time
}

// session is the state of one capture.
type session struct {
	*capturer
	ctx  context.Context
	root string
	l    *Layout
	// tree is lsblk's view; nil when lsblk failed.
	tree *blockTree
	// seeds are the KNAMEs of the devices holding recorded filesystems.
	seeds []string
	// rootDisks are the KNAMEs of the disks holding the root filesystem.
	rootDisks map[string]bool
	// rootOnBlock is set when the root filesystem is on a block device.
	rootOnBlock bool
	// recorded maps a device KNAME (plus ":"+FSRoot for btrfs) to the
	// mount point it is recorded at.
	recorded map[string]string
}

func (s *session) note(format string, args ...any) {
	s.l.Notes = append(s.l.Notes, fmt.Sprintf(format, args...))
}

// capture does Capture's work on a root that is an absolute, resolved
// directory path.
func (c *capturer) capture(ctx context.Context, root string) (*Layout, error) {
	s := &session{
		capturer:  c,
		ctx:       ctx,
		root:      root,
		rootDisks: map[string]bool{},
		recorded:  map[string]string{},
		l: &Layout{
			Version:    FormatVersion,
			Root:       root,
			CapturedAt: c.now().UTC().Truncate(time.Second),
		},
	}
	s.l.Host = s.host()

	data, err := c.readFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("capture: read /proc/self/mountinfo: %w", err)
	}
	mounts, err := parseMountinfo(data)
	if err != nil {
		return nil, fmt.Errorf("capture: /proc/self/mountinfo: %w", err)
	}
	out, err := c.run(ctx, "lsblk", lsblkArgs()...)
	if err == nil {
		s.tree, err = parseLsblk(out)
	}
	if err != nil {
		s.note("block devices unknown, no disks recorded: %v", err)
	}

	if err := s.mounts(mounts); err != nil {
		return nil, err
	}
	s.swaps()
	if s.tree != nil && len(s.seeds) > 0 {
		lvm, lvmErr := s.lvm()
		comp := s.tree.component(s.seeds, pvLinks(s.tree, lvm))
		tags := s.blkid(comp)
		s.fillTags(tags)
		s.disks(comp)
		s.raid(comp)
		s.l.LVM = s.selectLVM(lvm, lvmErr, comp, tags)
		s.unmounted(comp, tags)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return s.l, nil
}

// host returns the captured system's host name.
func (s *session) host() string {
	if s.root == "/" {
		name, err := s.hostname()
		if err == nil {
			return name
		}
	}
	data, err := s.readFile(filepath.Join(s.root, "etc/hostname"))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(line)
}

// within reports whether path p is dir or below it.
func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// rel makes p, which is within the root, relative to it ("/" for the
// root itself).
func (s *session) rel(p string) string {
	if s.root == "/" {
		return p
	}
	if p == s.root {
		return "/"
	}
	return strings.TrimPrefix(p, s.root)
}

// mounts records the root filesystem and the block-device filesystems
// mounted below the root.
func (s *session) mounts(all []mountEntry) error {
	// A later mount on the same mount point hides the earlier one.
	last := map[string]int{}
	for i, m := range all {
		last[m.Mountpoint] = i
	}
	var visible []mountEntry
	for i, m := range all {
		if last[m.Mountpoint] == i {
			visible = append(visible, m)
		}
	}
	rootIdx := -1
	for i, m := range visible {
		if within(s.root, m.Mountpoint) && (rootIdx < 0 || len(m.Mountpoint) > len(visible[rootIdx].Mountpoint)) {
			rootIdx = i
		}
	}
	if rootIdx < 0 {
		return fmt.Errorf("capture %s: no mount holds it in /proc/self/mountinfo", s.root)
	}
	rm := visible[rootIdx]
	if rm.Mountpoint != s.root {
		s.note("%s is not a mount point: the filesystem mounted at %s is recorded as /", s.root, rm.Mountpoint)
	}

	fsys, dev := s.mountFilesystem(rm, "/")
	if dev == nil && s.tree != nil {
		s.note("root filesystem is %s (%s) with no block device: no disks recorded", rm.FSType, rm.Source)
	}
	if dev != nil {
		for _, d := range s.tree.disksOf(dev) {
			s.rootDisks[d.KName] = true
		}
		s.seeds = append(s.seeds, dev.KName)
		s.recorded[recordKey(dev, rm)] = "/"
	}
	s.rootOnBlock = fsys.Device != ""
	s.l.Filesystems = append(s.l.Filesystems, fsys)

	for i, m := range visible {
		if i == rootIdx || m.Mountpoint == rm.Mountpoint || !within(m.Mountpoint, s.root) {
			continue
		}
		mp := s.rel(m.Mountpoint)
		var dev *blockDevice
		if s.tree != nil {
			dev = s.tree.lookup(m.MajMin, m.Source)
			if dev == nil {
				continue // proc, tmpfs, network filesystems, ...
			}
		} else if !strings.HasPrefix(m.Source, "/dev/") {
			continue
		} else if why := excludedByName(m.Source); why != "" {
			s.note("skipped %s (%s): %s", mp, m.FSType, why)
			continue
		}
		if m.FSRoot != "/" && m.FSType != "btrfs" {
			s.note("skipped %s: bind mount of %s on %s", mp, m.FSRoot, m.Source)
			continue
		}
		if dev != nil {
			key := recordKey(dev, m)
			if at, ok := s.recorded[key]; ok {
				s.note("skipped %s: %s is already recorded at %s", mp, dev.Path, at)
				continue
			}
			if why := s.excluded(dev); why != "" {
				s.note("skipped %s (%s): %s", mp, m.FSType, why)
				continue
			}
			s.recorded[key] = mp
			s.seeds = append(s.seeds, dev.KName)
		}
		fsys, _ := s.mountFilesystem(m, mp)
		s.l.Filesystems = append(s.l.Filesystems, fsys)
	}
	return nil
}

// recordKey identifies a recorded filesystem: its device, and for btrfs
// also the subvolume.
func recordKey(dev *blockDevice, m mountEntry) string {
	if m.FSType == "btrfs" {
		return dev.KName + ":" + m.FSRoot
	}
	return dev.KName
}

// mountFilesystem makes the Filesystem of mount m, recorded at mount point
// mp, and returns its block device (nil when it has none).
func (s *session) mountFilesystem(m mountEntry, mp string) (Filesystem, *blockDevice) {
	f := Filesystem{
		Type:         m.FSType,
		Mountpoint:   mp,
		Options:      m.Options,
		SuperOptions: m.SuperOptions,
	}
	if m.FSRoot != "/" {
		f.FSRoot = m.FSRoot
	}
	var dev *blockDevice
	if s.tree != nil {
		dev = s.tree.lookup(m.MajMin, m.Source)
	}
	switch {
	case dev != nil:
		f.Device = dev.Path
		f.SizeBytes = dev.Size
		if m.Source != dev.Path {
			f.Source = m.Source
		}
	case s.tree == nil && strings.HasPrefix(m.Source, "/dev/"):
		f.Device = m.Source
	default:
		f.Source = m.Source
	}
	return f, dev
}

// excluded says why a filesystem on dev is left out: it is on removable
// media, a loop device or a RAM-backed device that does not also hold the
// root filesystem. It returns "" when dev counts.
func (s *session) excluded(dev *blockDevice) string {
	for _, d := range s.tree.disksOf(dev) {
		if s.rootDisks[d.KName] {
			continue
		}
		switch {
		case d.Removable:
			return fmt.Sprintf("on removable device %s", d.Path)
		case d.Type == "loop":
			return fmt.Sprintf("on loop device %s", d.Path)
		case strings.HasPrefix(d.KName, "zram") || strings.HasPrefix(d.KName, "ram"):
			return fmt.Sprintf("on RAM-backed device %s", d.Path)
		}
	}
	return ""
}

// excludedByName is excluded for when lsblk is unavailable: it can tell
// loop and RAM-backed devices only by their names.
func excludedByName(dev string) string {
	switch name := filepath.Base(dev); {
	case strings.HasPrefix(name, "loop"):
		return fmt.Sprintf("on loop device %s", dev)
	case strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "ram"):
		return fmt.Sprintf("on RAM-backed device %s", dev)
	}
	return ""
}

// swaps records the active swap areas of /proc/swaps that belong to the
// captured system: all swap devices when the root is "/" (swap areas of
// another root are found on its disks by unmounted), and swap files below
// the root. A root with no block device (a container) records none: what
// /proc/swaps shows is the host's.
func (s *session) swaps() {
	data, err := s.readFile("/proc/swaps")
	if errors.Is(err, fs.ErrNotExist) {
		return // a kernel without swap support
	}
	var swaps []swapEntry
	if err == nil {
		swaps, err = parseSwaps(data)
	}
	if err != nil {
		s.note("active swap not recorded: %v", err)
		return
	}
	if !s.rootOnBlock {
		if len(swaps) > 0 {
			s.note("active swap not recorded: the root filesystem has no block device")
		}
		return
	}
	for _, sw := range swaps {
		f := Filesystem{Type: "swap", SizeBytes: sw.SizeBytes}
		if sw.Priority >= 0 {
			f.Options = fmt.Sprintf("pri=%d", sw.Priority)
		}
		if sw.Type == "file" {
			if !within(sw.Filename, s.root) {
				continue
			}
			f.File = s.rel(sw.Filename)
			s.l.Filesystems = append(s.l.Filesystems, f)
			continue
		}
		if s.root != "/" {
			continue
		}
		f.Device = sw.Filename
		if s.tree == nil {
			if why := excludedByName(sw.Filename); why != "" {
				s.note("skipped swap %s: %s", sw.Filename, why)
				continue
			}
		} else {
			dev := s.tree.lookupPath(sw.Filename)
			if dev == nil {
				s.note("skipped swap %s: not a known block device", sw.Filename)
				continue
			}
			if why := s.excluded(dev); why != "" {
				s.note("skipped swap %s: %s", sw.Filename, why)
				continue
			}
			if _, ok := s.recorded[dev.KName]; ok {
				continue
			}
			s.recorded[dev.KName] = ""
			s.seeds = append(s.seeds, dev.KName)
			f.Device, f.SizeBytes = dev.Path, dev.Size
			if sw.Filename != dev.Path {
				f.Source = sw.Filename
			}
		}
		s.l.Filesystems = append(s.l.Filesystems, f)
	}
}

// blkid probes the devices of the captured component for filesystem
// tags. It returns nil when blkid is missing or fails (with a note).
func (s *session) blkid(comp []*blockDevice) map[string]map[string]string {
	var paths []string
	for _, d := range comp {
		paths = append(paths, d.Path)
	}
	out, err := s.run(s.ctx, "blkid", blkidArgs(paths)...)
	if err != nil && !(exitCode(err) == 2 && len(out) == 0) { // 2: nothing found
		if notFound(err) {
			s.note("blkid not found: labels and UUIDs only as lsblk knows them")
		} else {
			s.note("labels and UUIDs only as lsblk knows them: %v", err)
		}
		return nil
	}
	tags, err := parseBlkid(out)
	if err != nil {
		s.note("labels and UUIDs only as lsblk knows them: %v", err)
		return nil
	}
	return tags
}

// fillTags sets the label and UUID of the recorded filesystems, from lsblk
// or else from blkid.
func (s *session) fillTags(tags map[string]map[string]string) {
	for i := range s.l.Filesystems {
		f := &s.l.Filesystems[i]
		if f.Device == "" {
			continue
		}
		dev := s.tree.lookupPath(f.Device)
		if dev == nil {
			continue
		}
		t := tags[dev.Path]
		f.Label = first(dev.Label, t["LABEL"])
		f.UUID = first(dev.UUID, t["UUID"])
	}
}

// first returns the first non-empty string.
func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// disks records the whole disks of the component with their partition
// tables.
func (s *session) disks(comp []*blockDevice) {
	sfdiskMissing := false
	for _, d := range comp {
		if len(d.parents) != 0 {
			continue
		}
		disk := Disk{
			Name: d.Name, Path: d.Path, Model: d.Model, Serial: d.Serial,
			SizeBytes: d.Size, SectorSize: d.LogSec,
		}
		if !sfdiskMissing {
			out, err := s.run(s.ctx, "sfdisk", "--json", d.Path)
			var pt *partitionTable
			if err == nil {
				pt, err = parseSfdisk(out, d.LogSec)
			}
			switch {
			case err == nil:
				disk.Table, disk.ID, disk.SectorSize = pt.Table, pt.ID, pt.SectorSize
				markGrow(pt.Partitions, d.Size)
				disk.Partitions = pt.Partitions
			case notFound(err):
				sfdiskMissing = true
				s.note("sfdisk not found (install fdisk): partition tables not recorded")
			case strings.Contains(err.Error(), "does not contain a recognized partition table"):
				// The whole disk holds a filesystem, RAID member or PV.
			default:
				s.note("partition table of %s not recorded: %v", d.Path, err)
			}
		}
		s.l.Disks = append(s.l.Disks, disk)
	}
}

// raid records the md arrays of the component, from /proc/mdstat and
// mdadm --detail --export.
func (s *session) raid(comp []*blockDevice) {
	var mdstat map[string]mdstatArray
	mdadmMissing := false
	for _, d := range comp {
		if !strings.HasPrefix(d.KName, "md") || d.Type == "part" {
			continue
		}
		if mdstat == nil {
			mdstat = map[string]mdstatArray{}
			data, err := s.readFile("/proc/mdstat")
			var arrays []mdstatArray
			if err == nil {
				arrays, err = parseMdstat(data)
			}
			if err != nil {
				s.note("RAID members only as mdadm knows them: %v", err)
			}
			for _, a := range arrays {
				mdstat[a.Name] = a
			}
		}
		a := RAIDArray{Name: d.KName, Path: d.Path, Level: d.Type, SizeBytes: d.Size}
		failed := map[string]bool{}
		if st, ok := mdstat[d.KName]; ok {
			a.Level = first(st.Level, a.Level)
			a.Metadata, a.RaidDevices, a.ChunkKiB = st.Metadata, st.RaidDevices, st.ChunkKiB
			if a.SizeBytes == 0 {
				a.SizeBytes = st.SizeKiB * 1024
			}
			for _, m := range st.Members {
				p := s.devPath(m.Name)
				switch {
				case m.Failed:
					a.Failed = append(a.Failed, p)
					failed[p] = true
				case m.Spare:
					a.Spares = append(a.Spares, p)
				default:
					a.Devices = append(a.Devices, p)
				}
			}
		}
		if !mdadmMissing {
			out, err := s.run(s.ctx, "mdadm", "--detail", "--export", d.Path)
			var det *mdadmDetail
			if err == nil {
				det, err = parseMdadmDetail(out)
			}
			switch {
			case err == nil:
				a.Level = det.Level
				a.Metadata = first(det.Metadata, a.Metadata)
				a.UUID, a.MDName = det.UUID, det.Name
				if det.RaidDevices > 0 {
					a.RaidDevices = det.RaidDevices
				}
				if len(det.Devices)+len(det.Spares) > 0 {
					// mdadm calls faulty members spares; mdstat knows.
					a.Devices, a.Spares, a.Failed = nil, nil, nil
					for _, p := range det.Devices {
						a.Devices = append(a.Devices, s.canonical(p))
					}
					for _, p := range append(det.Spares, det.Failed...) {
						if p = s.canonical(p); failed[p] {
							a.Failed = append(a.Failed, p)
						} else {
							a.Spares = append(a.Spares, p)
						}
					}
				}
			case notFound(err):
				mdadmMissing = true
				s.note("mdadm not found: RAID UUIDs and names not recorded")
			default:
				s.note("RAID %s: UUID and name not recorded: %v", d.Path, err)
			}
		}
		if a.Devices == nil {
			a.Devices = []string{}
		}
		s.l.RAID = append(s.l.RAID, a)
	}
}

// devPath returns the device node of a kernel name.
func (s *session) devPath(kname string) string {
	if d := s.tree.devices[kname]; d != nil {
		return d.Path
	}
	return "/dev/" + kname
}

// canonical returns lsblk's path for a device node path.
func (s *session) canonical(p string) string {
	if d := s.tree.lookupPath(p); d != nil {
		return d.Path
	}
	return p
}

// lvm runs pvs, vgs and lvs. It returns nil and the error when a tool is
// missing or fails.
func (s *session) lvm() (*LVM, error) {
	pvs, err := s.run(s.ctx, "pvs", lvmArgs(pvsFields)...)
	if err != nil {
		return nil, err
	}
	vgs, err := s.run(s.ctx, "vgs", lvmArgs(vgsFields)...)
	if err != nil {
		return nil, err
	}
	lvs, err := s.run(s.ctx, "lvs", lvmArgs(lvsFields)...)
	if err != nil {
		return nil, err
	}
	return parseLVM(vgs, lvs, pvs)
}

// pvLinks links the physical volumes of each volume group to each other
// (by KNAME), so that a capture takes whole volume groups.
func pvLinks(t *blockTree, l *LVM) map[string][]string {
	links := map[string][]string{}
	if l == nil {
		return links
	}
	for _, vg := range l.VolumeGroups {
		var ks []string
		for _, pv := range vg.PVs {
			if d := t.lookupPath(pv.Device); d != nil {
				ks = append(ks, d.KName)
			}
		}
		for _, a := range ks {
			for _, b := range ks {
				if a != b {
					links[a] = append(links[a], b)
				}
			}
		}
	}
	return links
}

// selectLVM keeps the volume groups with a physical volume in the
// component. When the LVM tools failed it notes why, if the component
// shows signs of LVM.
func (s *session) selectLVM(l *LVM, lvmErr error, comp []*blockDevice, tags map[string]map[string]string) *LVM {
	in := map[string]bool{}
	usesLVM := false
	for _, d := range comp {
		in[d.KName] = true
		if d.Type == "lvm" || d.FSType == "LVM2_member" || tags[d.Path]["TYPE"] == "LVM2_member" {
			usesLVM = true
		}
	}
	if lvmErr != nil {
		if usesLVM {
			if notFound(lvmErr) {
				s.note("LVM tools not found (install lvm2): volume groups not recorded")
			} else {
				s.note("volume groups not recorded: %v", lvmErr)
			}
		}
		return nil
	}
	if l == nil {
		return nil
	}
	out := &LVM{}
	keep := map[string]bool{}
	for _, vg := range l.VolumeGroups {
		for i, pv := range vg.PVs {
			if d := s.tree.lookupPath(pv.Device); d != nil && in[d.KName] {
				keep[vg.Name] = true
				vg.PVs[i].Device = d.Path
			}
		}
		if keep[vg.Name] {
			out.VolumeGroups = append(out.VolumeGroups, vg)
		}
	}
	for _, lv := range l.LogicalVolumes {
		if keep[lv.VG] {
			out.LogicalVolumes = append(out.LogicalVolumes, lv)
		}
	}
	if len(out.VolumeGroups) == 0 {
		return nil
	}
	return out
}

// isContainerType reports whether a blkid TYPE is the signature of a
// device that holds other devices (RAID member, LVM physical volume,
// encrypted volume) rather than a filesystem.
func isContainerType(t string) bool {
	switch t {
	case "LVM2_member", "crypto_LUKS", "bcache", "drbd":
		return true
	}
	return strings.HasSuffix(t, "_member")
}

// unmounted records the filesystems and swap areas of the component that
// are not mounted, and notes encrypted devices.
func (s *session) unmounted(comp []*blockDevice, tags map[string]map[string]string) {
	used := map[string]bool{}
	for k := range s.recorded {
		kname, _, _ := strings.Cut(k, ":")
		used[kname] = true
	}
	for _, d := range comp {
		if d.Type == "crypt" {
			s.note("%s is a dm-crypt device: encryption is not recorded", d.Path)
		}
		t := tags[d.Path]
		typ := first(d.FSType, t["TYPE"])
		if used[d.KName] || typ == "" || isContainerType(typ) {
			continue
		}
		s.l.Filesystems = append(s.l.Filesystems, Filesystem{
			Device:    d.Path,
			Type:      typ,
			Label:     first(d.Label, t["LABEL"]),
			UUID:      first(d.UUID, t["UUID"]),
			SizeBytes: d.Size,
		})
	}
}
