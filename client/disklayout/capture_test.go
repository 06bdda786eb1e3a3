package disklayout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeExit is a tool's non-zero exit, as *exec.ExitError would report it.
type fakeExit struct {
	code int
	msg  string
}

func (e *fakeExit) Error() string { return fmt.Sprintf("exit status %d", e.code) }
func (e *fakeExit) ExitCode() int { return e.code }

// fakeSystem answers a capture's file reads and commands from testdata.
type fakeSystem struct {
	// files maps a path to a testdata file name, or to "=" and the content.
	files map[string]string
	// cmds maps a command line, or just a tool's name, to a testdata file
	// name; "!missing" makes the tool not found, "!exit N message" makes
	// it fail.
	cmds map[string]string
}

func (f fakeSystem) read(t *testing.T, v string) []byte {
	if content, ok := strings.CutPrefix(v, "="); ok {
		return []byte(content)
	}
	return fixture(t, v)
}

func (f fakeSystem) capturer(t *testing.T) *capturer {
	return &capturer{
		run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			line := strings.Join(append([]string{name}, args...), " ")
			v, ok := f.cmds[line]
			if !ok {
				v, ok = f.cmds[name]
			}
			switch {
			case !ok:
				t.Errorf("unexpected command: %s", line)
				return nil, fmt.Errorf("%s: %w", line, &exec.Error{Name: name, Err: exec.ErrNotFound})
			case v == "!missing":
				return nil, fmt.Errorf("%s: %w", line, &exec.Error{Name: name, Err: exec.ErrNotFound})
			case strings.HasPrefix(v, "!exit "):
				var code int
				var msg string
				fmt.Sscanf(v, "!exit %d", &code)
				if _, after, ok := strings.Cut(strings.TrimPrefix(v, "!exit "), " "); ok {
					msg = after
				}
				err := error(&fakeExit{code: code})
				if msg != "" {
					return nil, fmt.Errorf("%s: %w: %s", line, err, msg)
				}
				return nil, fmt.Errorf("%s: %w", line, err)
			}
			return f.read(t, v), nil
		},
		readFile: func(name string) ([]byte, error) {
			v, ok := f.files[name]
			if !ok {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
			}
			return f.read(t, v), nil
		},
		hostname: func() (string, error) { return "golden01", nil },
		now:      func() time.Time { return time.Date(2026, 11, 22, 5, 30, 0, 123, time.FixedZone("CET", 3600)) },
	}
}

// goldenCmds are the tools of the golden client, all present.
func goldenCmds() map[string]string {
	return map[string]string{
		"lsblk --json --bytes --output " + lsblkColumns: "lsblk.json",
		"sfdisk --json /dev/sda":                        "sfdisk-sda.json",
		"sfdisk --json /dev/sdb":                        "sfdisk-sdb.json",
		"blkid":                                         "blkid.txt",
		"mdadm --detail --export /dev/md0":              "mdadm-md0.txt",
		"pvs":                                           "pvs.json",
		"vgs":                                           "vgs.json",
		"lvs":                                           "lvs.json",
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestCaptureFixtures runs captures against recorded tool outputs and
// compares them with testdata/golden/*.json. Set GOLDCAST_UPDATE_GOLDEN=1 to
// rewrite those files (then review the diff).
func TestCaptureFixtures(t *testing.T) {
	goldenFiles := map[string]string{
		"/proc/self/mountinfo": "mountinfo.txt",
		"/proc/swaps":          "swaps.txt",
		"/proc/mdstat":         "mdstat.txt",
	}
	tests := []struct {
		name   string
		root   string
		system fakeSystem
	}{
		{
			name:   "golden-client",
			root:   "/",
			system: fakeSystem{files: goldenFiles, cmds: goldenCmds()},
		},
		{
			name: "rescue-system",
			root: "/mnt/golden",
			system: fakeSystem{
				files: map[string]string{
					"/proc/self/mountinfo":     "mountinfo-rescue.txt",
					"/proc/swaps":              "swaps-rescue.txt",
					"/proc/mdstat":             "mdstat.txt",
					"/mnt/golden/etc/hostname": "=golden01.example.com\n",
				},
				cmds: with(goldenCmds(), "lsblk --json --bytes --output "+lsblkColumns, "lsblk-noudev.json"),
			},
		},
		{
			name: "tools-missing",
			root: "/",
			system: fakeSystem{files: goldenFiles, cmds: with(goldenCmds(),
				"sfdisk", "!missing", "sfdisk --json /dev/sda", "!missing", "sfdisk --json /dev/sdb", "!missing",
				"blkid", "!missing", "mdadm --detail --export /dev/md0", "!missing",
				"pvs", "!missing", "vgs", "!missing", "lvs", "!missing")},
		},
		{
			name: "tools-failing",
			root: "/",
			system: fakeSystem{
				files: with(goldenFiles, "/proc/swaps", "=garbage\n", "/proc/mdstat", "=md0 : active raid1 sda4\n"),
				cmds: with(goldenCmds(),
					"sfdisk --json /dev/sda", "!exit 1 sfdisk: cannot open /dev/sda: Permission denied",
					"sfdisk --json /dev/sdb", "!exit 1 sfdisk: /dev/sdb: does not contain a recognized partition table",
					"blkid", "!exit 2",
					"mdadm --detail --export /dev/md0", "!exit 1 mdadm: cannot open /dev/md0: No such file or directory",
					"vgs", "!exit 5 WARNING: Locking disabled. Be careful! This could corrupt your metadata.")},
		},
		{
			name: "no-lsblk",
			root: "/",
			system: fakeSystem{files: goldenFiles, cmds: map[string]string{
				"lsblk --json --bytes --output " + lsblkColumns: "!missing",
			}},
		},
		{
			name: "container",
			root: "/",
			system: fakeSystem{
				files: with(goldenFiles, "/proc/self/mountinfo", "mountinfo-container.txt"),
				cmds:  goldenCmds(),
			},
		},
	}
	update := os.Getenv("GOLDCAST_UPDATE_GOLDEN") == "1"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.system.capturer(t).capture(context.Background(), tt.root)
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			data, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, '\n')
			path := filepath.Join("testdata", "golden", tt.name+".json")
			if update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantData := fixture(t, filepath.Join("golden", tt.name+".json"))
			var want, roundTrip Layout
			if err := json.Unmarshal(wantData, &want); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if err := json.Unmarshal(data, &roundTrip); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("capture %s (-%s +got):\n%s", tt.root, path, diff)
			}
			if diff := cmp.Diff(got, &roundTrip); diff != "" {
				t.Errorf("layout changes through JSON (-before +after):\n%s", diff)
			}
			if !bytes.Equal(data, wantData) {
				t.Errorf("JSON differs from %s", path)
			}
		})
	}
}

func TestCaptureErrors(t *testing.T) {
	tests := []struct {
		name   string
		root   string
		system fakeSystem
		want   string
	}{
		{
			name:   "no mountinfo",
			root:   "/",
			system: fakeSystem{files: map[string]string{}},
			want:   "read /proc/self/mountinfo",
		},
		{
			name:   "bad mountinfo",
			root:   "/",
			system: fakeSystem{files: map[string]string{"/proc/self/mountinfo": "=27 1 8:2 / /\n"}},
			want:   "/proc/self/mountinfo: mountinfo line 1: malformed",
		},
		{
			name: "no mount holds the root",
			root: "/mnt/x",
			system: fakeSystem{
				files: map[string]string{"/proc/self/mountinfo": "=30 27 8:17 / /boot rw - ext4 /dev/sdb1 rw\n"},
				cmds:  map[string]string{"lsblk": "lsblk.json"},
			},
			want: "no mount holds it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.system.capturer(t).capture(context.Background(), tt.root)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("capture error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCaptureRootChecks(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		root string
		want error
	}{
		{"missing", filepath.Join(dir, "missing"), fs.ErrNotExist},
		{"not a directory", file, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Capture(context.Background(), tt.root)
			if err == nil {
				t.Fatal("Capture succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Capture error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSessionRel(t *testing.T) {
	tests := []struct {
		root, path, want string
		within           bool
	}{
		{"/", "/", "/", true},
		{"/", "/boot/efi", "/boot/efi", true},
		{"/mnt/x", "/mnt/x", "/", true},
		{"/mnt/x", "/mnt/x/boot", "/boot", true},
		{"/mnt/x", "/mnt/xy", "", false},
		{"/mnt/x", "/mnt", "", false},
	}
	for _, tt := range tests {
		if got := within(tt.path, tt.root); got != tt.within {
			t.Errorf("within(%q, %q) = %v, want %v", tt.path, tt.root, got, tt.within)
		}
		if !tt.within {
			continue
		}
		s := &session{root: tt.root}
		if got := s.rel(tt.path); got != tt.want {
			t.Errorf("root %q: rel(%q) = %q, want %q", tt.root, tt.path, got, tt.want)
		}
	}
}
