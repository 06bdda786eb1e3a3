package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// buildStatic builds the Go command pkg with CGO_ENABLED=0 into the
// test's temporary directory and returns the binary's path.
func buildStatic(t *testing.T, pkg string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: no go command to build %s: %v", pkg, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// cpioEntry is one entry of a parsed newc archive.
type cpioEntry struct {
	Name         string
	Mode         uint32
	NLink        uint32
	Major, Minor uint32
	Data         string // contents, or a symlink's target
}

// decompress undoes a Compression.
func decompress(t *testing.T, c Compression, data []byte) []byte {
	t.Helper()
	var r io.Reader
	switch c {
	case CompressGzip, "":
		g, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = g
	case CompressZstd:
		d, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer d.Close()
		r = d
	case CompressNone:
		return data
	default:
		t.Fatalf("no decompressor for %q", c)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	return out
}

// parseCPIO reads a newc archive strictly: magic, hexadecimal fields,
// four-byte alignment, a trailer at the end and nothing after it but
// padding.
func parseCPIO(data []byte) ([]cpioEntry, error) {
	var out []cpioEntry
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if len(data)-off < newcHeaderSize {
			return nil, fmt.Errorf("offset %d: truncated header", off)
		}
		h := string(data[off : off+newcHeaderSize])
		if h[:6] != newcMagic {
			return nil, fmt.Errorf("offset %d: magic %q", off, h[:6])
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				return nil, fmt.Errorf("offset %d: field %d: %v", off, i, err)
			}
			f[i] = uint32(v)
		}
		mode, nlink, size, rmaj, rmin, namesize := f[1], f[4], int(f[6]), f[9], f[10], int(f[11])
		nameStart := off + newcHeaderSize
		if namesize < 1 || nameStart+namesize > len(data) || data[nameStart+namesize-1] != 0 {
			return nil, fmt.Errorf("offset %d: bad name size %d", off, namesize)
		}
		name := string(data[nameStart : nameStart+namesize-1])
		dataStart := align(nameStart + namesize)
		if dataStart+size > len(data) {
			return nil, fmt.Errorf("entry %q: truncated data", name)
		}
		for _, b := range data[nameStart+namesize : dataStart] {
			if b != 0 {
				return nil, fmt.Errorf("entry %q: name padding is not NUL", name)
			}
		}
		off = align(dataStart + size)
		if name == newcTrailer {
			if strings.Trim(string(data[min(off, len(data)):]), "\x00") != "" {
				return nil, fmt.Errorf("data after the trailer")
			}
			return out, nil
		}
		out = append(out, cpioEntry{Name: name, Mode: mode, NLink: nlink, Major: rmaj, Minor: rmin, Data: string(data[dataStart : dataStart+size])})
	}
}
