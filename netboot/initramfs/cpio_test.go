package initramfs

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnixMode(t *testing.T) {
	tests := []struct {
		mode    fs.FileMode
		want    uint32
		wantErr bool
	}{
		{mode: 0o644, want: 0o100644},
		{mode: 0o755 | fs.ModeSetuid | fs.ModeSetgid, want: 0o106755},
		{mode: fs.ModeDir | fs.ModeSticky | 0o777, want: 0o041777},
		{mode: fs.ModeSymlink | 0o777, want: 0o120777},
		{mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, want: 0o020600},
		{mode: fs.ModeDevice | 0o660, want: 0o060660},
		{mode: fs.ModeNamedPipe | 0o600, want: 0o010600},
		{mode: fs.ModeSocket | 0o755, want: 0o140755},
		{mode: fs.ModeIrregular, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			got, err := unixMode(tc.mode)
			if (err != nil) != tc.wantErr {
				t.Fatalf("unixMode(%v) error %v, want error %v", tc.mode, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("unixMode(%v) = %#o, want %#o", tc.mode, got, tc.want)
			}
		})
	}
}

// TestCPIOWriter writes entries of every kind and length modulo four
// and reads them back with the strict parser.
func TestCPIOWriter(t *testing.T) {
	tests := []struct {
		name    string
		entries []cpioEntry // Mode, Name, Major, Minor and Data are written
	}{
		{name: "empty archive"},
		{name: "every kind", entries: []cpioEntry{
			{Name: "dev", Mode: modeDir | 0o755},
			{Name: "dev/console", Mode: modeChar | 0o600, Major: 5, Minor: 1},
			{Name: "dev/sda", Mode: modeBlock | 0o660, Major: 8},
			{Name: "init", Mode: modeRegular | 0o755, Data: "#!/bin/true\n"},
			{Name: "link", Mode: modeSymlink | 0o777, Data: "init"},
			{Name: "empty", Mode: modeRegular | 0o644},
		}},
		{name: "names and data of every length modulo four", entries: []cpioEntry{
			{Name: "a", Mode: modeRegular | 0o644, Data: "1"},
			{Name: "ab", Mode: modeRegular | 0o644, Data: "12"},
			{Name: "abc", Mode: modeRegular | 0o644, Data: "123"},
			{Name: "abcd", Mode: modeRegular | 0o644, Data: "1234"},
			{Name: "abcde", Mode: modeRegular | 0o644, Data: "12345"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := newCPIOWriter(&buf)
			for _, e := range tc.entries {
				h := cpioHeader{name: e.Name, mode: e.Mode, rdevMajor: e.Major, rdevMinor: e.Minor}
				var err error
				if e.Name == "abcde" { // one entry streams its data
					h.size = int64(len(e.Data))
					err = w.stream(h, strings.NewReader(e.Data+"ignored"))
				} else {
					err = w.entry(h, []byte(e.Data))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := w.close(); err != nil {
				t.Fatal(err)
			}
			if buf.Len()%4 != 0 {
				t.Errorf("archive of %d bytes is not a multiple of four", buf.Len())
			}
			got, err := parseCPIO(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			want := []cpioEntry{}
			for _, e := range tc.entries {
				e.NLink = 1
				if e.Mode&0o170000 == modeDir {
					e.NLink = 2
				}
				want = append(want, e)
			}
			if diff := cmp.Diff(want, append([]cpioEntry{}, got...)); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCPIOWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(w *cpioWriter) error
		want string
	}{
		{
			name: "short stream",
			run: func(w *cpioWriter) error {
				return w.stream(cpioHeader{name: "f", mode: modeRegular, size: 10}, strings.NewReader("abc"))
			},
			want: `cpio: write data of "f" (3 of 10 bytes): EOF`,
		},
		{
			name: "too large",
			run:  func(w *cpioWriter) error { return w.header(cpioHeader{name: "big", mode: modeRegular, size: 1 << 32}) },
			want: `cpio: "big": size 4294967296 does not fit the newc format (4 GiB at most)`,
		},
		{
			name: "after the trailer",
			run: func(w *cpioWriter) error {
				if err := w.close(); err != nil {
					return err
				}
				return w.entry(cpioHeader{name: "late", mode: modeRegular}, nil)
			},
			want: `cpio: write of "late" after the trailer`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(newCPIOWriter(&bytes.Buffer{}))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCPIOBusybox has busybox's cpio, a second implementation of newc,
// list and extract what the writer wrote.
func TestCPIOBusybox(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("skipping: busybox is not installed (Debian package busybox)")
	}
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	for _, e := range []struct {
		h    cpioHeader
		data string
	}{
		{cpioHeader{name: "etc", mode: modeDir | 0o755}, ""},
		{cpioHeader{name: "etc/goldcast", mode: modeDir | 0o700}, ""},
		{cpioHeader{name: "etc/goldcast/modules", mode: modeRegular | 0o640}, "/lib/modules/x/a.ko\n"},
		{cpioHeader{name: "init", mode: modeRegular | 0o755}, "12345"},
		{cpioHeader{name: "sbin", mode: modeSymlink | 0o777}, "usr/sbin"},
	} {
		if err := w.entry(e.h, []byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}

	list := exec.CommandContext(t.Context(), busybox, "cpio", "-t")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.Output()
	if err != nil {
		t.Fatalf("busybox cpio -t: %v", err)
	}
	if diff := cmp.Diff("etc\netc/goldcast\netc/goldcast/modules\ninit\nsbin\n", string(out)); diff != "" {
		t.Errorf("busybox cpio -t (-want +got):\n%s", diff)
	}

	dir := t.TempDir()
	extract := exec.CommandContext(t.Context(), busybox, "cpio", "-i", "-d")
	extract.Dir, extract.Stdin = dir, bytes.NewReader(buf.Bytes())
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, out)
	}
	type file struct {
		Mode fs.FileMode
		Data string
	}
	got := map[string]file{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f := file{Mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.Data = string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			f.Data, err = os.Readlink(p)
		}
		got[rel] = f
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]file{
		"etc":                  {Mode: fs.ModeDir | 0o755},
		"etc/goldcast":         {Mode: fs.ModeDir | 0o700},
		"etc/goldcast/modules": {Mode: 0o640, Data: "/lib/modules/x/a.ko\n"},
		"init":                 {Mode: 0o755, Data: "12345"},
		"sbin":                 {Mode: fs.ModeSymlink | 0o777, Data: "usr/sbin"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("extracted by busybox (-want +got):\n%s", diff)
	}
}
