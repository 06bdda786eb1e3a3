// Package progress draws a one-line progress bar for long work (files,
// bytes, percent, rate) on a terminal, and stays silent elsewhere so logs
// and pipes are not cluttered.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Bar counts files and bytes and redraws itself periodically.
type Bar struct {
	w          io.Writer
	label      string
	totalFiles int64
	totalBytes int64
	files      atomic.Int64
	bytes      atomic.Int64
	start      time.Time
	stop       chan struct{}
	done       sync.WaitGroup
	enabled    bool
}

// New starts a bar on w when w is a terminal (pass os.Stderr); totals may
// be zero when unknown. Always call Finish.
func New(w io.Writer, label string, totalFiles int, totalBytes int64) *Bar {
	b := &Bar{w: w, label: label, totalFiles: int64(totalFiles), totalBytes: totalBytes,
		start: time.Now(), stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b.enabled = true
		b.done.Add(1)
		go b.loop()
	}
	return b
}

// Add records finished files and bytes; safe for concurrent use. Its
// signature matches manifest.Progress.
func (b *Bar) Add(files int, bytes int64) {
	b.files.Add(int64(files))
	b.bytes.Add(bytes)
}

// Finish stops redrawing and clears the line.
func (b *Bar) Finish() {
	if !b.enabled {
		return
	}
	close(b.stop)
	b.done.Wait()
	fmt.Fprint(b.w, "\r\033[K")
}

func (b *Bar) loop() {
	defer b.done.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			fmt.Fprint(b.w, "\r\033[K"+b.Line())
		}
	}
}

// Line renders the current state, e.g.
// "import [#####.....] 52%  3512/6768 files  107 MB/206 MB  98 MB/s".
func (b *Bar) Line() string {
	files, bytes := b.files.Load(), b.bytes.Load()
	elapsed := time.Since(b.start).Seconds()
	var sb strings.Builder
	sb.WriteString(b.label)
	if b.totalBytes > 0 {
		pct := float64(bytes) / float64(b.totalBytes)
		pct = min(pct, 1)
		n := int(pct * 20)
		fmt.Fprintf(&sb, " [%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", 20-n), pct*100)
	}
	if b.totalFiles > 0 {
		fmt.Fprintf(&sb, "  %d/%d files", files, b.totalFiles)
	} else {
		fmt.Fprintf(&sb, "  %d files", files)
	}
	if b.totalBytes > 0 {
		fmt.Fprintf(&sb, "  %s/%s", Bytes(bytes), Bytes(b.totalBytes))
	} else {
		fmt.Fprintf(&sb, "  %s", Bytes(bytes))
	}
	if elapsed > 0 {
		fmt.Fprintf(&sb, "  %s/s", Bytes(int64(float64(bytes)/elapsed)))
	}
	return sb.String()
}

// Bytes renders a byte count with a decimal unit ("206 MB").
func Bytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
