package disklayout

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// partitionTable is a disk's partition table as sfdisk --json reports it,
// converted to bytes.
type partitionTable struct {
	// Table is "gpt" or "dos".
	Table string
	// ID is the disk GUID or MBR disk signature.
	ID string
	// SectorSize is the sector size the table's numbers are in.
	SectorSize int
	// Partitions have Grow unset; see markGrow.
	Partitions []Partition
}

// sfdiskJSON is sfdisk --json output.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Device     string `json:"device"`
		Unit       string `json:"unit"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Attrs    string `json:"attrs"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// GPT partition type GUIDs that carry a flag.
const (
	gptESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
	gptRAID     = "A19D880F-05FC-4D3B-A006-743F0F84911E"
	gptLVM      = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	gptSwap     = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
)

// parseSfdisk parses the output of sfdisk --json DEVICE. sfdisk before
// util-linux 2.36 does not print the sector size; defaultSectorSize (the
// disk's logical sector size from lsblk, or 512) is used then.
func parseSfdisk(data []byte, defaultSectorSize int) (*partitionTable, error) {
	var doc sfdiskJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("sfdisk json: %w", err)
	}
	pt := doc.PartitionTable
	if pt.Label == "" {
		return nil, fmt.Errorf("sfdisk json: no partition table label")
	}
	if pt.Unit != "" && pt.Unit != "sectors" {
		return nil, fmt.Errorf("sfdisk json: unit %q, want sectors", pt.Unit)
	}
	ss := pt.SectorSize
	if ss <= 0 {
		ss = defaultSectorSize
	}
	if ss <= 0 {
		ss = 512
	}
	out := &partitionTable{Table: pt.Label, ID: pt.ID, SectorSize: ss}
	for _, p := range pt.Partitions {
		num, err := partitionNumber(p.Node)
		if err != nil {
			return nil, fmt.Errorf("sfdisk json: %w", err)
		}
		part := Partition{
			Number:     num,
			Path:       p.Node,
			StartBytes: p.Start * int64(ss),
			SizeBytes:  p.Size * int64(ss),
			Type:       p.Type,
			Name:       p.Name,
			UUID:       p.UUID,
			Attrs:      p.Attrs,
		}
		switch pt.Label {
		case "gpt":
			part.Flags = gptFlags(p.Type, p.Attrs)
		case "dos":
			part.Flags = mbrFlags(p.Type, p.Bootable)
			if part.UUID == "" {
				part.UUID = mbrPartUUID(pt.ID, num)
			}
		}
		out.Partitions = append(out.Partitions, part)
	}
	return out, nil
}

// partitionNumber takes the number off the end of a partition's node name
// ("/dev/sda2", "/dev/nvme0n1p2", "/dev/mapper/mpatha-part2").
func partitionNumber(node string) (int, error) {
	i := len(node)
	for i > 0 && node[i-1] >= '0' && node[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(node[i:])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("partition %q: no partition number", node)
	}
	return n, nil
}

// gptFlags derives flags from a GPT type GUID and attributes.
func gptFlags(typ, attrs string) []string {
	var flags []string
	switch strings.ToUpper(typ) {
	case gptESP:
		flags = append(flags, "esp")
	case gptBIOSBoot:
		flags = append(flags, "bios_grub")
	case gptRAID:
		flags = append(flags, "raid")
	case gptLVM:
		flags = append(flags, "lvm")
	case gptSwap:
		flags = append(flags, "swap")
	}
	for _, a := range strings.Fields(attrs) {
		if a == "LegacyBIOSBootable" {
			flags = append(flags, "legacy_boot")
		}
	}
	return flags
}

// mbrFlags derives flags from an MBR type code and the active flag.
func mbrFlags(typ string, bootable bool) []string {
	var flags []string
	if bootable {
		flags = append(flags, "boot")
	}
	code, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(typ), "0x"), 16, 8)
	if err == nil {
		switch code {
		case 0xef:
			flags = append(flags, "esp")
		case 0xfd:
			flags = append(flags, "raid")
		case 0x8e:
			flags = append(flags, "lvm")
		case 0x82:
			flags = append(flags, "swap")
		}
	}
	return flags
}

// mbrPartUUID is the PARTUUID the kernel gives partition num of an MBR
// disk with signature id ("0x8c3e51a2" -> "8c3e51a2-02").
func mbrPartUUID(id string, num int) string {
	sig, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(id), "0x"), 16, 32)
	if err != nil || sig == 0 {
		return ""
	}
	return fmt.Sprintf("%08x-%02x", sig, num)
}

// markGrow sets Grow on the partitions that end within GrowSlack of the
// end of a disk of diskSize bytes: the last partition, and on "dos" also
// the extended partition holding it.
func markGrow(parts []Partition, diskSize int64) {
	if diskSize <= 0 {
		return
	}
	for i := range parts {
		gap := diskSize - (parts[i].StartBytes + parts[i].SizeBytes)
		parts[i].Grow = gap >= 0 && gap <= GrowSlack
	}
}
