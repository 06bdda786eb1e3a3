package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 206_000_000: "206.0 MB", 5 << 40: "5.5 TB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLineAndSilenceOffTerminal(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, "import", 10, 1000)
	b.Add(5, 500)
	line := b.Line()
	for _, want := range []string{"import", "[##########..........]", "50%", "5/10 files", "500 B/1.0 kB"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	b.Finish()
	if buf.Len() != 0 {
		t.Errorf("a bar on a non-terminal wrote %q", buf.String())
	}
}
