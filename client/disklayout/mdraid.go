package disklayout

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// mdstatArray is one array of /proc/mdstat.
type mdstatArray struct {
	// Name is the kernel name, "md0".
	Name string
	// Active is false for an inactive (assembled but not started) array.
	Active bool
	// Level is the personality ("raid1"); empty for an inactive array.
	Level string
	// Members are the member devices in the order of their descriptor
	// numbers.
	Members []mdMember
	// SizeKiB is the array size in 1 KiB blocks.
	SizeKiB int64
	// Metadata is the superblock version ("1.2", "0.90", "external:imsm").
	Metadata string
	// ChunkKiB is the chunk size for striped levels.
	ChunkKiB int
	// RaidDevices is the number of member slots ([n/m] -> n).
	RaidDevices int
}

// mdMember is a member of an md array in /proc/mdstat ("sda1[0](F)").
type mdMember struct {
	// Name is the member's kernel name ("sda1").
	Name string
	// Index is the descriptor number in brackets.
	Index int
	// Failed is set by (F).
	Failed bool
	// Spare is set by (S).
	Spare bool
}

// parseMdstat parses /proc/mdstat:
//
//	Personalities : [raid1]
//	md0 : active raid1 sdb2[1] sda4[0]
//	      43382784 blocks super 1.2 [2/2] [UU]
//	      bitmap: 1/1 pages [4KB], 65536KB chunk
//
//	unused devices: <none>
func parseMdstat(data []byte) ([]mdstatArray, error) {
	var arrays []mdstatArray
	var cur *mdstatArray
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			cur = nil
			continue
		case strings.HasPrefix(line, "Personalities") || strings.HasPrefix(line, "unused devices"):
			cur = nil
			continue
		case strings.HasPrefix(line, "md") && strings.Contains(line, " : "):
			name, rest, _ := strings.Cut(line, " : ")
			a := mdstatArray{Name: strings.TrimSpace(name)}
			f := strings.Fields(rest)
			if len(f) == 0 {
				return nil, fmt.Errorf("mdstat line %d: malformed: %q", n, line)
			}
			a.Active = f[0] == "active"
			f = f[1:]
			for len(f) > 0 && strings.HasPrefix(f[0], "(") { // (read-only), (auto-read-only)
				f = f[1:]
			}
			if a.Active && len(f) > 0 && !strings.Contains(f[0], "[") {
				a.Level = f[0]
				f = f[1:]
			}
			for _, tok := range f {
				m, ok := parseMdMember(tok)
				if !ok {
					return nil, fmt.Errorf("mdstat line %d: bad member %q", n, tok)
				}
				a.Members = append(a.Members, m)
			}
			sort.SliceStable(a.Members, func(i, j int) bool { return a.Members[i].Index < a.Members[j].Index })
			arrays = append(arrays, a)
			cur = &arrays[len(arrays)-1]
		case cur != nil && strings.Contains(line, " blocks"):
			f := strings.Fields(trimmed)
			if size, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) > 1 && f[1] == "blocks" {
				cur.SizeKiB = size
			}
			cur.Metadata = "0.90"
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "super" {
					cur.Metadata = f[i+1]
				}
			}
			for i, tok := range f {
				// "[2/2]" member slots; "512k chunk" (raid5) or
				// "512k chunks" (raid0) chunk size.
				if a, b, ok := strings.Cut(strings.Trim(tok, "[]"), "/"); ok && strings.HasPrefix(tok, "[") {
					if _, err := strconv.Atoi(b); err == nil {
						cur.RaidDevices, _ = strconv.Atoi(a)
					}
				}
				if next := i + 1; next < len(f) && strings.HasPrefix(f[next], "chunk") && strings.HasSuffix(tok, "k") {
					if c, err := strconv.Atoi(strings.TrimSuffix(tok, "k")); err == nil {
						cur.ChunkKiB = c
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mdstat: %w", err)
	}
	return arrays, nil
}

// parseMdMember parses a member token of /proc/mdstat, "sda1[0]" with
// optional state letters such as "(F)", "(S)", "(W)".
func parseMdMember(tok string) (mdMember, bool) {
	open := strings.IndexByte(tok, '[')
	end := strings.IndexByte(tok, ']')
	if open <= 0 || end < open {
		return mdMember{}, false
	}
	idx, err := strconv.Atoi(tok[open+1 : end])
	if err != nil {
		return mdMember{}, false
	}
	states := tok[end+1:]
	return mdMember{
		Name:   tok[:open],
		Index:  idx,
		Failed: strings.Contains(states, "(F)"),
		Spare:  strings.Contains(states, "(S)"),
	}, true
}

// mdadmDetail is what mdadm --detail --export tells about an array.
type mdadmDetail struct {
	Level       string
	RaidDevices int
	Metadata    string
	UUID        string
	Name        string
	// Devices are the active members by role; Spares and Failed the rest.
	Devices, Spares, Failed []string
}

// parseMdadmDetail parses mdadm --detail --export /dev/mdX:
//
//	MD_LEVEL=raid1
//	MD_DEVICES=2
//	MD_METADATA=1.2
//	MD_UUID=3b0d4c1e:8f2a6b7d:9c1e2f3a:4b5c6d7e
//	MD_NAME=golden:0
//	MD_DEVICE_dev_sda4_ROLE=0
//	MD_DEVICE_dev_sda4_DEV=/dev/sda4
func parseMdadmDetail(data []byte) (*mdadmDetail, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("mdadm line %d: malformed: %q", n, line)
		}
		vars[k] = strings.Trim(v, `'"`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mdadm: %w", err)
	}
	if vars["MD_LEVEL"] == "" {
		return nil, fmt.Errorf("mdadm: no MD_LEVEL")
	}
	d := &mdadmDetail{
		Level:    vars["MD_LEVEL"],
		Metadata: vars["MD_METADATA"],
		UUID:     vars["MD_UUID"],
		Name:     vars["MD_NAME"],
	}
	d.RaidDevices, _ = strconv.Atoi(vars["MD_DEVICES"])
	type member struct {
		dev  string
		role int
	}
	var active []member
	var keys []string
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, "MD_DEVICE_") || !strings.HasSuffix(k, "_ROLE") {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(k, "MD_DEVICE_"), "_ROLE")
		dev := vars["MD_DEVICE_"+id+"_DEV"]
		if dev == "" {
			continue
		}
		switch role := vars[k]; role {
		case "spare":
			d.Spares = append(d.Spares, dev)
		case "faulty":
			d.Failed = append(d.Failed, dev)
		default:
			if r, err := strconv.Atoi(role); err == nil {
				active = append(active, member{dev, r})
			}
		}
	}
	sort.SliceStable(active, func(i, j int) bool { return active[i].role < active[j].role })
	for _, m := range active {
		d.Devices = append(d.Devices, m.dev)
	}
	return d, nil
}
