package install

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os/exec"
	"strings"
)

// nodeDiskID is the partition table ID an install writes for node: a
// GPT disk GUID or a dos disk signature derived from the node's name, so
// that a later install recognises a disk it made for the same node (one
// whose install was interrupted, or a node being reinstalled) and may
// overwrite it without install.wipe.
func nodeDiskID(node, table string) string {
	sum := sha256.Sum256([]byte("goldcast install disk\x00" + node))
	if table == "dos" {
		sig := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
		if sig == 0 {
			sig = 1
		}
		return fmt.Sprintf("0x%08x", sig)
	}
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40 // version 4 layout: a GUID like any other
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// sameDiskID reports whether a table ID blkid printed (PTUUID: a GUID in
// lowercase, or a dos signature as 8 hex digits) is want.
func sameDiskID(got, want string) bool {
	got = strings.ToLower(strings.TrimSpace(got))
	want = strings.ToLower(strings.TrimPrefix(want, "0x"))
	return got != "" && got == want
}

// diskTableID returns the partition table ID of the disk at path (empty
// when it has no table).
func diskTableID(ctx context.Context, path string) string {
	out, err := exec.CommandContext(ctx, "blkid", "-p", "-o", "value", "-s", "PTUUID", path).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
