package ref

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want string // error text; empty if valid
	}{
		{"rocky9", ""},
		{"Rocky_9.4-x86", ""},
		{"9", ""},
		{"_base", ""},
		{strings.Repeat("a", 128), ""},
		{"", "image name is empty"},
		{".hidden", `image name ".hidden" starts with '.'`},
		{"-x", `image name "-x" starts with '-'`},
		{"a/b", `image name "a/b" contains '/'; only letters, digits, ".", "_" and "-" are allowed`},
		{"a b", `image name "a b" contains ' '; only letters, digits, ".", "_" and "-" are allowed`},
		{"rocky@9", `image name "rocky@9" contains '@'; only letters, digits, ".", "_" and "-" are allowed`},
		{"é", `image name "é" contains 'é'; only letters, digits, ".", "_" and "-" are allowed`},
		{strings.Repeat("a", 129), `image name "` + strings.Repeat("a", 129) + `" is 129 bytes long, more than 128`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := ValidName(tt.name); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ValidName(%q) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		ref     string
		name    string
		version int
		err     string
	}{
		{ref: "rocky9", name: "rocky9"},
		{ref: "rocky9@1", name: "rocky9", version: 1},
		{ref: "rocky9@42", name: "rocky9", version: 42},
		{ref: "rocky9@latest", name: "rocky9"},
		{ref: "rocky9@", err: `image reference "rocky9@": version after "@" is empty`},
		{ref: "rocky9@0", err: `image reference "rocky9@0": version "0" is not a positive integer without leading zeros`},
		{ref: "rocky9@007", err: `image reference "rocky9@007": version "007" is not a positive integer without leading zeros`},
		{ref: "rocky9@-1", err: `image reference "rocky9@-1": version "-1" is not a positive integer`},
		{ref: "rocky9@v2", err: `image reference "rocky9@v2": version "v2" is not a positive integer`},
		{ref: "rocky9@1@2", err: `image reference "rocky9@1@2": version "1@2" is not a positive integer`},
		{ref: "@1", err: `image reference "@1": image name is empty`},
		{ref: "rocky9@99999999999999999999", err: `image reference "rocky9@99999999999999999999": version "99999999999999999999": strconv.Atoi: parsing "99999999999999999999": value out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			name, version, err := Parse(tt.ref)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tt.err, gotErr); diff != "" {
				t.Errorf("Parse(%q) error mismatch (-want +got):\n%s", tt.ref, diff)
			}
			if name != tt.name || version != tt.version {
				t.Errorf("Parse(%q) = %q, %d; want %q, %d", tt.ref, name, version, tt.name, tt.version)
			}
		})
	}
}

// writeConfig writes content to goldcast.yaml in a new temporary directory
// and returns its path.
