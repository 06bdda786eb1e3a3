package disklayout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// lsblkColumns are the columns Capture asks lsblk for. All of them exist
// since util-linux 2.33 (Debian 10, RHEL 8).
const lsblkColumns = "NAME,KNAME,PATH,PKNAME,TYPE,SIZE,RM,RO,MAJ:MIN,MODEL,SERIAL," +
	"FSTYPE,LABEL,UUID,PARTUUID,PARTLABEL,PARTTYPE,PTTYPE,PTUUID,LOG-SEC"

// lsblkArgs are the arguments Capture runs lsblk with: a tree of all block
// devices, sizes in bytes.
func lsblkArgs() []string {
	return []string{"--json", "--bytes", "--output", lsblkColumns}
}

// blockDevice is one block device as lsblk reports it.
type blockDevice struct {
	Name      string // NAME: "sda1", "vg0-home"
	KName     string // KNAME: "sda1", "dm-0"
	Path      string // PATH: "/dev/sda1", "/dev/mapper/vg0-home"
	Type      string // TYPE: disk, part, loop, raid1, lvm, crypt, rom, ...
	Size      int64  // SIZE in bytes
	Removable bool   // RM
	ReadOnly  bool   // RO
	MajMin    string // MAJ:MIN
	Model     string
	Serial    string
	FSType    string
	Label     string
	UUID      string
	PartUUID  string
	PartLabel string
	PartType  string
	PTType    string
	PTUUID    string
	LogSec    int

	parents  []string // KNAMEs of the devices this one is built on
	children []string // KNAMEs of the devices built on this one
}

// blockTree is lsblk's view of the block devices, with every device once
// (lsblk repeats a RAID array or volume under each of its members).
type blockTree struct {
	devices map[string]*blockDevice // by KNAME
	order   []string                // KNAMEs in lsblk's order
	byDev   map[string]*blockDevice // by MAJ:MIN
	byPath  map[string]*blockDevice // by PATH, /dev/KNAME and /dev/mapper/NAME
}

// lsblkJSON is lsblk --json output.
type lsblkJSON struct {
	BlockDevices []lsblkEntry `json:"blockdevices"`
}

// lsblkEntry is one device of lsblk --json. lsblk before util-linux 2.33
// printed every value as a string; flexInt and flexBool accept both.
type lsblkEntry struct {
	Name      string       `json:"name"`
	KName     string       `json:"kname"`
	Path      string       `json:"path"`
	PKName    string       `json:"pkname"`
	Type      string       `json:"type"`
	Size      flexInt      `json:"size"`
	RM        flexBool     `json:"rm"`
	RO        flexBool     `json:"ro"`
	MajMin    string       `json:"maj:min"`
	Model     string       `json:"model"`
	Serial    string       `json:"serial"`
	FSType    string       `json:"fstype"`
	Label     string       `json:"label"`
	UUID      string       `json:"uuid"`
	PartUUID  string       `json:"partuuid"`
	PartLabel string       `json:"partlabel"`
	PartType  string       `json:"parttype"`
	PTType    string       `json:"pttype"`
	PTUUID    string       `json:"ptuuid"`
	LogSec    flexInt      `json:"log-sec"`
	Children  []lsblkEntry `json:"children"`
}

// flexInt is a JSON integer that may also come as a string or null.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = flexInt(v)
	return nil
}

// flexBool is a JSON boolean that may also come as "0"/"1" or null.
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.Trim(string(bytes.TrimSpace(b)), `"`) {
	case "true", "1":
		*v = true
	case "false", "0", "", "null":
		*v = false
	default:
		return fmt.Errorf("not a boolean: %s", b)
	}
	return nil
}

// parseLsblk parses the output of lsblk --json --bytes --output
// lsblkColumns (tree form).
func parseLsblk(data []byte) (*blockTree, error) {
	var doc lsblkJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("lsblk json: %w", err)
	}
	t := &blockTree{
		devices: map[string]*blockDevice{},
		byDev:   map[string]*blockDevice{},
		byPath:  map[string]*blockDevice{},
	}
	for _, e := range doc.BlockDevices {
		t.add(e, "")
	}
	return t, nil
}

// add records e and its children below parent (a KNAME, or "").
func (t *blockTree) add(e lsblkEntry, parent string) {
	kname := e.KName
	if kname == "" {
		kname = e.Name
	}
	d := t.devices[kname]
	if d == nil {
		d = &blockDevice{
			Name: e.Name, KName: kname, Path: e.Path, Type: e.Type,
			Size: int64(e.Size), Removable: bool(e.RM), ReadOnly: bool(e.RO),
			MajMin: e.MajMin, Model: strings.TrimSpace(e.Model), Serial: strings.TrimSpace(e.Serial),
			FSType: e.FSType, Label: e.Label, UUID: e.UUID,
			PartUUID: e.PartUUID, PartLabel: e.PartLabel, PartType: e.PartType,
			PTType: e.PTType, PTUUID: e.PTUUID, LogSec: int(e.LogSec),
		}
		if d.Path == "" {
			d.Path = "/dev/" + kname
		}
		t.devices[kname] = d
		t.order = append(t.order, kname)
		if d.MajMin != "" {
			t.byDev[d.MajMin] = d
		}
		for _, p := range []string{d.Path, "/dev/" + kname} {
			if _, ok := t.byPath[p]; !ok {
				t.byPath[p] = d
			}
		}
		if strings.HasPrefix(kname, "dm-") {
			t.byPath["/dev/mapper/"+d.Name] = d
		}
	}
	if parent != "" {
		d.parents = appendUnique(d.parents, parent)
		p := t.devices[parent]
		p.children = appendUnique(p.children, kname)
	}
	for _, c := range e.Children {
		t.add(c, kname)
	}
}

// lookup finds the device of a mount: by its device number, or else (btrfs
// and others report an anonymous 0:N) by its source path.
func (t *blockTree) lookup(majMin, source string) *blockDevice {
	if majMin != "" && !strings.HasPrefix(majMin, "0:") {
		if d := t.byDev[majMin]; d != nil {
			return d
		}
	}
	return t.lookupPath(source)
}

// lookupPath finds a device by a path to its node, following symbolic
// links such as /dev/disk/by-uuid/... or /dev/vg0/home.
func (t *blockTree) lookupPath(p string) *blockDevice {
	if !strings.HasPrefix(p, "/dev/") {
		return nil
	}
	if d := t.byPath[p]; d != nil {
		return d
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return t.byPath[r]
	}
	return nil
}

// disksOf returns the whole disks (devices with no parent) that d is built
// on, in lsblk order.
func (t *blockTree) disksOf(d *blockDevice) []*blockDevice {
	seen := map[string]bool{}
	var roots []string
	var walk func(k string)
	walk = func(k string) {
		if seen[k] {
			return
		}
		seen[k] = true
		dev := t.devices[k]
		if len(dev.parents) == 0 {
			roots = append(roots, k)
		}
		for _, p := range dev.parents {
			walk(p)
		}
	}
	walk(d.KName)
	return t.inOrder(roots)
}

// component returns, in lsblk order, every device connected to the seeds
// through parent and child links or through extra links (between the
// physical volumes of one volume group).
func (t *blockTree) component(seeds []string, extra map[string][]string) []*blockDevice {
	seen := map[string]bool{}
	queue := append([]string(nil), seeds...)
	for len(queue) > 0 {
		k := queue[0]
		queue = queue[1:]
		d := t.devices[k]
		if d == nil || seen[k] {
			continue
		}
		seen[k] = true
		queue = append(queue, d.parents...)
		queue = append(queue, d.children...)
		queue = append(queue, extra[k]...)
	}
	var ks []string
	for k := range seen {
		ks = append(ks, k)
	}
	return t.inOrder(ks)
}

// inOrder returns the devices named by knames in lsblk order.
func (t *blockTree) inOrder(knames []string) []*blockDevice {
	want := map[string]bool{}
	for _, k := range knames {
		want[k] = true
	}
	var out []*blockDevice
	for _, k := range t.order {
		if want[k] {
			out = append(out, t.devices[k])
		}
	}
	return out
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
