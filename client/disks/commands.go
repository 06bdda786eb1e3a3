package disks

import (
	"fmt"
	"strconv"
	"strings"
)

// sfdiskScript is the sfdisk input that writes dp's partition table.
// Partition lines are named by node so that sfdisk takes the partition
// number from the name; the nodes need not exist.
func sfdiskScript(dp DiskPlan) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "label: %s\n", dp.Table)
	if dp.ID != "" {
		fmt.Fprintf(&b, "label-id: %s\n", dp.ID)
	}
	b.WriteString("unit: sectors\n\n")
	for _, p := range dp.Partitions {
		if p.Size <= 0 || p.Start <= 0 {
			return "", fmt.Errorf("partition %s: start %d, size %d sectors", p.Path, p.Start, p.Size)
		}
		fields := []string{
			"start=" + strconv.FormatInt(p.Start, 10),
			"size=" + strconv.FormatInt(p.Size, 10),
			"type=" + p.Type,
		}
		if dp.Table == "gpt" {
			if p.UUID != "" {
				fields = append(fields, "uuid="+p.UUID)
			}
			if p.Name != "" {
				if strings.ContainsAny(p.Name, "\"\n\\") {
					return "", fmt.Errorf("partition %s: name %q has a quote, backslash or newline, which sfdisk cannot take", p.Path, p.Name)
				}
				fields = append(fields, "name=\""+p.Name+"\"")
			}
			if p.Attrs != "" {
				fields = append(fields, "attrs=\""+p.Attrs+"\"")
			}
		}
		if dp.Table == "dos" && p.Bootable {
			fields = append(fields, "bootable")
		}
		fmt.Fprintf(&b, "%s : %s\n", p.Path, strings.Join(fields, ", "))
	}
	return b.String(), nil
}

// vfatSerial turns a vfat UUID as blkid prints it ("ABCD-1234") into the
// volume serial mkfs.vfat -i takes ("ABCD1234").
func vfatSerial(uuid string) (string, error) {
	s := strings.ReplaceAll(uuid, "-", "")
	if _, err := strconv.ParseUint(s, 16, 32); err != nil || len(s) != 8 {
		return "", fmt.Errorf("vfat UUID %q: want 8 hexadecimal digits such as ABCD-1234", uuid)
	}
	return strings.ToUpper(s), nil
}

// mkfsCommand returns the command that makes filesystem f on f.Device.
func mkfsCommand(f FilesystemPlan) (string, []string, error) {
	var name string
	var args []string
	switch f.Type {
	case "ext2", "ext3", "ext4":
		name = "mkfs." + f.Type
		args = []string{"-F", "-q"}
		if f.Label != "" {
			args = append(args, "-L", f.Label)
		}
		if f.UUID != "" {
			args = append(args, "-U", f.UUID)
		}
	case "xfs":
		name = "mkfs.xfs"
		args = []string{"-f", "-q"}
		if f.Label != "" {
			args = append(args, "-L", f.Label)
		}
		if f.UUID != "" {
			args = append(args, "-m", "uuid="+f.UUID)
		}
	case "btrfs":
		name = "mkfs.btrfs"
		args = []string{"-f", "-q"}
		if f.Label != "" {
			args = append(args, "-L", f.Label)
		}
		if f.UUID != "" {
			args = append(args, "-U", f.UUID)
		}
	case "vfat":
		name = "mkfs.vfat"
		// FAT32 for an EFI system partition large enough to hold it
		// (65525 clusters of 4 KiB and more); smaller ones get FAT16.
		if f.ESP && f.SizeBytes >= 300*MiB {
			args = append(args, "-F", "32")
		}
		if f.Label != "" {
			args = append(args, "-n", f.Label)
		}
		if f.UUID != "" {
			serial, err := vfatSerial(f.UUID)
			if err != nil {
				return "", nil, fmt.Errorf("filesystem on %s: %w", f.Device, err)
			}
			args = append(args, "-i", serial)
		}
	case "swap":
		name = "mkswap"
		if f.Label != "" {
			args = append(args, "-L", f.Label)
		}
		if f.UUID != "" {
			args = append(args, "-U", f.UUID)
		}
	default:
		return "", nil, fmt.Errorf("filesystem %q on %s: goldcast makes ext2, ext3, ext4, xfs, btrfs, vfat and swap only", f.Type, cmpOr(f.Device, "(device)"))
	}
	return name, append(args, f.Device), nil
}

// mdadmCreate returns the mdadm arguments that create array r.
func mdadmCreate(r RAIDPlan) []string {
	args := []string{"--create", r.Path, "--run", "--level=" + r.Level, "--raid-devices=" + strconv.Itoa(len(r.Devices))}
	if r.Metadata != "" {
		args = append(args, "--metadata="+r.Metadata)
	}
	if r.Name != "" {
		args = append(args, "--name="+r.Name)
	}
	if r.UUID != "" {
		args = append(args, "--uuid="+r.UUID)
	}
	if r.ChunkKiB > 0 {
		args = append(args, "--chunk="+strconv.Itoa(r.ChunkKiB)+"K")
	}
	if len(r.Spares) > 0 {
		args = append(args, "--spare-devices="+strconv.Itoa(len(r.Spares)))
	}
	args = append(args, r.Devices...)
	return append(args, r.Spares...)
}

// lvmCommands returns the LVM commands (tool and arguments) that create
// volume group v and its logical volumes, then their device nodes.
func lvmCommands(v VolumeGroupPlan) [][]string {
	cmds := [][]string{append([]string{"pvcreate", "-y", "-ff"}, v.PVs...)}
	vg := []string{"vgcreate", "-y"}
	if v.ExtentSizeBytes > 0 {
		vg = append(vg, "-s", strconv.FormatInt(v.ExtentSizeBytes/1024, 10)+"k")
	}
	cmds = append(cmds, append(append(vg, v.Name), v.PVs...))
	for _, lv := range v.LVs {
		c := []string{"lvcreate", "-y", "--wipesignatures", "y", "-n", lv.Name}
		if lv.Rest {
			c = append(c, "-l", "100%FREE")
		} else {
			c = append(c, "-L", strconv.FormatInt(lv.SizeBytes, 10)+"b")
		}
		cmds = append(cmds, append(c, v.Name))
	}
	return append(cmds, []string{"vgmknodes", v.Name})
}
