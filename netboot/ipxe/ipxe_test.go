package ipxe

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// update rewrites the golden files: go test ./netboot/ipxe -update
var update = flag.Bool("update", false, "rewrite testdata/*.ipxe")

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		s    Script
	}{
		{"install", Script{Node: "node007", Action: Install, KernelURL: "http://10.0.0.1:8080/boot/files/vmlinuz",
			InitrdURL: "http://10.0.0.1:8080/boot/files/goldcast-initrd.img", ServerURL: "http://10.0.0.1:8080", Token: "ab12", KernelArgs: "quiet net.ifnames=0"}},
		{"rescue", Script{Node: "node007", Action: Rescue, KernelURL: "http://s/boot/files/vmlinuz", InitrdURL: "http://s/boot/files/initrd.img", ServerURL: "http://s", Token: "t"}},
		{"register", Script{Node: "discovered-525400123456", Action: Register, KernelURL: "http://s/boot/files/vmlinuz", InitrdURL: "http://s/boot/files/initrd.img", ServerURL: "http://s", Token: "t", MAC: "52:54:00:12:34:56"}},
		{"local", Script{Node: "node007", Action: Local}},
		{"unknown", Script{MAC: "52:54:00:12:34:56"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".ipxe")
			if *update {
				os.WriteFile(path, got, 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("script (-golden +got):\n%s", diff)
			}
			if !strings.HasPrefix(string(got), "#!ipxe\n") {
				t.Error("script does not start with #!ipxe")
			}
		})
	}
}

func TestRenderRefusesInjection(t *testing.T) {
	base := Script{Node: "n", Action: Install, KernelURL: "http://s/k", InitrdURL: "http://s/i", ServerURL: "http://s", Token: "t"}
	for name, mutate := range map[string]func(*Script){
		"node with a space":       func(s *Script) { s.Node = "n boot" },
		"token with a newline":    func(s *Script) { s.Token = "t\nshell" },
		"kernel args with $":      func(s *Script) { s.KernelArgs = "${foo}" },
		"kernel args with quotes": func(s *Script) { s.KernelArgs = `a="b"` },
		"install without initrd":  func(s *Script) { s.InitrdURL = "" },
		"unknown action":          func(s *Script) { s.Action = "format" },
	} {
		s := base
		mutate(&s)
		if _, err := Render(s); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}
