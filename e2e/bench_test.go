package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goldcast/goldcast/internal/testtree"
)

// TestBenchmarkImageStore compares goldcast's import and export with the
// tools they replace, on the debootstrap root, in one run (make bench).
// It asserts nothing about time; it prints a table for
// docs/benchmarks.md.
func TestBenchmarkImageStore(t *testing.T) {
	if os.Getenv("GOLDCAST_BENCH") == "" {
		t.Skip("set GOLDCAST_BENCH=1 (make bench) to run benchmarks")
	}
	src := testtree.Debootstrap(t)
	work := t.TempDir()
	const rounds = 5
	sh := func(script string) func(i int) {
		return func(i int) {
			c := exec.Command("sh", "-ec", script)
			c.Env = append(os.Environ(), "SRC="+src, "WORK="+work, fmt.Sprintf("I=%d", i), "GOLDCAST="+goldcast.path)
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", script, err, out)
			}
		}
	}
	// Each import goes to a fresh store, each copy to a fresh directory;
	// both end by flushing the filesystem, as a publish does.
	rows := []struct {
		what, ours, theirs string
		oursRun, theirsRun func(int)
	}{
		{
			what:      "store a tree (first version)",
			ours:      "goldcast image import SRC --image deb",
			theirs:    "rsync -aHAXS --numeric-ids SRC/ DST/ && sync -f DST",
			oursRun:   sh(`"$GOLDCAST" --data "$WORK/data$I" image import "$SRC" --image deb >/dev/null`),
			theirsRun: sh(`rsync -aHAXS --numeric-ids "$SRC/" "$WORK/rsync$I/" && sync -f "$WORK/rsync$I"`),
		},
		{
			what:      "export a version as a stream",
			ours:      "goldcast image export deb -o FILE",
			theirs:    "tar --xattrs --acls -cf - . | zstd -3 > FILE",
			oursRun:   sh(`"$GOLDCAST" --data "$WORK/data0" image export deb -o "$WORK/ours$I.tar.zst" 2>/dev/null`),
			theirsRun: sh(`tar --xattrs --acls --numeric-owner -C "$SRC" -cf - . | zstd -3 -q > "$WORK/theirs$I.tar.zst"`),
		},
		{
			what:      "extract a stream into an empty root",
			ours:      "goldcast image extract FILE --target DIR",
			theirs:    "zstd -dc FILE | tar --xattrs --acls -xpf - -C DIR",
			oursRun:   sh(`"$GOLDCAST" image extract "$WORK/ours0.tar.zst" --target "$WORK/x$I" >/dev/null && sync -f "$WORK/x$I"`),
			theirsRun: sh(`mkdir "$WORK/y$I" && zstd -dc "$WORK/theirs0.tar.zst" | tar --xattrs --xattrs-include='*' --acls --numeric-owner -xpf - -C "$WORK/y$I" && sync -f "$WORK/y$I"`),
		},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| job | goldcast | median | alternative | median | ratio |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		var ours, theirs []time.Duration
		for i := 0; i < rounds; i++ {
			// Alternate so neither side always runs on a warmer cache.
			theirs = append(theirs, timed(func() { r.theirsRun(i) }))
			ours = append(ours, timed(func() { r.oursRun(i) }))
		}
		mo, mt := median(ours), median(theirs)
		fmt.Fprintf(&table, "| %s | `%s` | %.2f s | `%s` | %.2f s | %.2fx |\n",
			r.what, cell(r.ours), mo.Seconds(), cell(r.theirs), mt.Seconds(), mo.Seconds()/mt.Seconds())
	}
	size := func(p string) int64 { fi, _ := os.Stat(filepath.Join(work, p)); return fi.Size() }
	fmt.Fprintf(&table, "\nStream size: goldcast %d bytes, tar|zstd -3 %d bytes.\n", size("ours0.tar.zst"), size("theirs0.tar.zst"))
	fmt.Fprintf(&table, "Machine: %d CPUs (%s), %s; tree: debootstrap --variant=minbase bookworm; median of %d runs, page cache warm.\n",
		runtime.NumCPU(), runtime.GOARCH, kernel(), rounds)
	t.Log("\n" + table.String())
	if out := os.Getenv("GOLDCAST_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(table.String()), 0o644)
	}
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "unknown kernel"
	}
	return strings.TrimSpace(string(out))
}

// cell escapes a command for a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
