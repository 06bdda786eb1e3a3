package disklayout

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/goldcast/goldcast/internal/mountinfo"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	// ID is the mount ID.
	ID int
	// ParentID is the mount ID of the parent mount.
	ParentID int
	// MajMin is the st_dev of files on the filesystem, "major:minor"; the
	// major is 0 for filesystems with no block device and for btrfs.
	MajMin string
	// FSRoot is the directory of the filesystem mounted here.
	FSRoot string
	// Mountpoint is the absolute mount point.
	Mountpoint string
	// Options are the per-mount options.
	Options string
	// FSType is the filesystem type, with any subtype ("fuse.sshfs").
	FSType string
	// Source is the mount source ("/dev/sda2", "tmpfs", "server:/export").
	Source string
	// SuperOptions are the per-superblock options.
	SuperOptions string
}

// parseMountinfo parses /proc/<pid>/mountinfo (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// Paths are unescaped (the kernel writes space, tab, newline and backslash
// as octal escapes such as \040).
func parseMountinfo(data []byte) ([]mountEntry, error) {
	var mounts []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, line)
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || !strings.Contains(f[2], ":") {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, line)
		}
		m := mountEntry{
			ID:         id,
			ParentID:   parent,
			MajMin:     f[2],
			FSRoot:     mountinfo.Unescape(f[3]),
			Mountpoint: mountinfo.Unescape(f[4]),
			Options:    f[5],
			FSType:     f[sep+1],
			Source:     mountinfo.Unescape(f[sep+2]),
		}
		if len(f) > sep+3 {
			m.SuperOptions = f[sep+3]
		}
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return mounts, nil
}

// swapEntry is one line of /proc/swaps.
type swapEntry struct {
	// Filename is the swap device or file.
	Filename string
	// Type is "partition" (any block device) or "file".
	Type string
	// SizeBytes is the swap area's size.
	SizeBytes int64
	// Priority is the swap priority; the kernel assigns negative ones
	// when none was set.
	Priority int
}

// parseSwaps parses /proc/swaps:
//
//	Filename				Type		Size		Used		Priority
//	/dev/sda3                               partition	2097148		0		-2
//
// Sizes are in KiB.
func parseSwaps(data []byte) ([]swapEntry, error) {
	var swaps []swapEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (n == 1 && f[0] == "Filename") {
			continue
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("/proc/swaps line %d: malformed: %q", n, sc.Text())
		}
		// A deleted swap file shows as "/swapfile\040(deleted)" in one
		// field; anything between name and type is not expected.
		last := len(f) - 4
		size, err1 := strconv.ParseInt(f[last+1], 10, 64)
		prio, err2 := strconv.Atoi(f[last+3])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("/proc/swaps line %d: malformed: %q", n, sc.Text())
		}
		swaps = append(swaps, swapEntry{
			Filename:  mountinfo.Unescape(strings.Join(f[:last], " ")),
			Type:      f[last],
			SizeBytes: size * 1024,
			Priority:  prio,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("/proc/swaps: %w", err)
	}
	return swaps, nil
}
