package install

import (
	"regexp"
	"testing"
)

func TestNodeDiskID(t *testing.T) {
	gpt := nodeDiskID("node007", "gpt")
	if !regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`).MatchString(gpt) {
		t.Errorf("gpt ID %q is not a GUID", gpt)
	}
	if gpt != nodeDiskID("node007", "gpt") || gpt == nodeDiskID("node008", "gpt") {
		t.Error("gpt IDs are not stable per node, or not distinct between nodes")
	}
	dos := nodeDiskID("node007", "dos")
	if !regexp.MustCompile(`^0x[0-9a-f]{8}$`).MatchString(dos) {
		t.Errorf("dos ID %q is not a signature", dos)
	}
	// blkid prints GUIDs in lowercase and signatures without 0x.
	for _, tc := range []struct {
		got, want string
		same      bool
	}{
		{gpt[:0] + "", gpt, false},
		{"8c3e51a2", "0x8c3e51a2", true},
		{"8c3e51a3", "0x8c3e51a2", false},
		{"5e1f3c2a-8b4d-4e6f-9a0b-1c2d3e4f5a6b\n", "5E1F3C2A-8B4D-4E6F-9A0B-1C2D3E4F5A6B", true},
	} {
		if got := sameDiskID(tc.got, tc.want); got != tc.same {
			t.Errorf("sameDiskID(%q, %q) = %v", tc.got, tc.want, got)
		}
	}
}
