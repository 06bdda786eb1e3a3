package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
)

// hashMul spreads weak checksums over table slots (Fibonacci hashing);
// their low bits alone are poorly distributed.
const hashMul = 0x9E3779B1

// readChunk is roughly how much Diff asks of the new file per read once
// its buffer has grown; firstChunk is where the buffer starts, so that
// small files cost little memory.
const (
	readChunk  = 256 << 10
	firstChunk = 32 << 10
)

// index finds full-length basis blocks by weak and strong checksum. Blocks
// with identical content are kept once (the first), so a basis of many
// equal blocks costs no more to search than one with distinct blocks.
type index struct {
	full      int      // number of full-length blocks (the table's domain)
	bits      []uint64 // one bit per hashed weak sum, ~1.5% set: most misses stop here
	slots     []slot   // open addressing by weak sum, at most half full
	slotShift uint
	order     []uint32 // distinct blocks sorted by (weak, strong); slots point into it
}

// slot is one open-addressing entry: the blocks with weak sum weak are
// order[start : start+n]; n == 0 marks an empty slot.
type slot struct {
	weak, start, n uint32
}

func newIndex(sig *Signature) *index {
	ix := &index{full: len(sig.Blocks)}
	if sig.lastBlockLen() < sig.BlockSize {
		ix.full-- // the short last block is matched separately
	}
	if ix.full <= 0 {
		ix.full = 0
		return ix
	}
	order := make([]uint32, ix.full)
	for i := range order {
		order[i] = uint32(i)
	}
	blocks := sig.Blocks
	cmpBlock := func(x, y uint32) int {
		bx, by := &blocks[x], &blocks[y]
		switch {
		case bx.Weak < by.Weak:
			return -1
		case bx.Weak > by.Weak:
			return 1
		}
		if c := bytes.Compare(bx.Strong, by.Strong); c != 0 {
			return c
		}
		return int(x) - int(y)
	}
	slices.SortFunc(order, cmpBlock)
	// Keep the first block of each run of equal content.
	order = slices.CompactFunc(order, func(x, y uint32) bool {
		return blocks[x].Weak == blocks[y].Weak && bytes.Equal(blocks[x].Strong, blocks[y].Strong)
	})
	ix.order = order

	distinct := 0
	for i := range order {
		if i == 0 || blocks[order[i]].Weak != blocks[order[i-1]].Weak {
			distinct++
		}
	}
	slotLog := max(4, bits.Len(uint(2*distinct-1)))
	ix.slots = make([]slot, 1<<slotLog)
	ix.slotShift = uint(32 - slotLog)
	bitLog := min(28, max(16, bits.Len(uint(64*distinct-1))))
	ix.bits = make([]uint64, (1<<bitLog)/64)

	mask := uint32(len(ix.slots) - 1)
	for i := 0; i < len(order); {
		w := blocks[order[i]].Weak
		j := i + 1
		for j < len(order) && blocks[order[j]].Weak == w {
			j++
		}
		fh := filterHash(w) & uint32(len(ix.bits)*64-1)
		ix.bits[fh>>6] |= 1 << (fh & 63)
		for s := (w * hashMul) >> ix.slotShift; ; s = (s + 1) & mask {
			if ix.slots[s].n == 0 {
				ix.slots[s] = slot{weak: w, start: uint32(i), n: uint32(j - i)}
				break
			}
		}
		i = j
	}
	return ix
}

// lookupWeak returns the slot of weak sum w, if any block has it.
func (ix *index) lookupWeak(w uint32) (slot, bool) {
	mask := uint32(len(ix.slots) - 1)
	for s := (w * hashMul) >> ix.slotShift; ; s = (s + 1) & mask {
		e := ix.slots[s]
		if e.n == 0 {
			return slot{}, false
		}
		if e.weak == w {
			return e, true
		}
	}
}

// differ holds the state of one Diff.
type differ struct {
	ctx  context.Context
	r    io.Reader
	emit func(Op) error
	sig  *Signature
	ix   *index
	bs   int

	// buf[lit:p] is the pending literal (never longer than MaxLiteral
	// when scanning resumes), buf[p:p+bs] the window, buf[:end] the data
	// read so far.
	buf         []byte
	maxBuf      int // how large buf may grow
	lit, p, end int
	base        int64 // new-file offset of buf[0]
	eof         bool
	haveWeak    bool   // a, b hold the window's sums, and it was checked
	a, b        uint32 // unmasked rolling sums of the window
	lastMatch   int64  // last block matched, -1 before any
	tailIdx     int64  // index of the short last basis block, or -1
	tailLen     int    // its length
	tryTail     bool   // try the short last block at p before scanning
	runBlock    int64  // pending copy run
	runCount    int64
	stats       Stats
}

// Diff reads the new file from newFile and calls emit with the ops that
// rebuild it from the basis sig describes: copies of runs of consecutive
// basis blocks and literal runs of at most MaxLiteral bytes. It makes one
// pass with a window rolled a byte at a time, computing a block's strong
// checksum only where the weak checksum matches; memory stays bounded
// whatever the new file's size.
//
// Op.Data of a literal aliases Diff's buffer and is valid only during the
// emit call. An error from emit ends Diff and is returned wrapped.
func Diff(ctx context.Context, newFile io.Reader, sig *Signature, emit func(Op) error) (Stats, error) {
	if err := sig.Validate(); err != nil {
		return Stats{}, fmt.Errorf("diff: %w", err)
	}
	d := &differ{
		ctx:       ctx,
		r:         newFile,
		emit:      emit,
		sig:       sig,
		ix:        newIndex(sig),
		bs:        sig.BlockSize,
		buf:       make([]byte, 2*sig.BlockSize+firstChunk),
		maxBuf:    2*(MaxLiteral+sig.BlockSize) + readChunk,
		lastMatch: -1,
		tailIdx:   -1,
	}
	if l := sig.lastBlockLen(); l > 0 && l < sig.BlockSize {
		d.tailIdx, d.tailLen = int64(len(sig.Blocks)-1), l
	}
	if err := d.run(); err != nil {
		return d.stats, fmt.Errorf("diff: %w", err)
	}
	return d.stats, nil
}

// run is the main loop of Diff: it keeps the window fed with data, flushes
// literals at MaxLiteral and hands the byte-by-byte work to scan.
func (d *differ) run() error {
	for {
		if d.p-d.lit >= MaxLiteral {
			if err := d.literal(d.lit + MaxLiteral); err != nil {
				return err
			}
			continue
		}
		if d.tryTail {
			if d.p+d.tailLen > d.end && !d.eof {
				if err := d.fill(); err != nil {
					return err
				}
				continue
			}
			d.tryTail = false
			if d.p+d.tailLen <= d.end && d.tailMatches(d.p) {
				if err := d.match(d.tailIdx, d.tailLen); err != nil {
					return err
				}
				continue
			}
		}
		need := d.bs
		if d.haveWeak {
			need++ // to roll the window one byte on
		}
		if d.p+need > d.end {
			if d.eof {
				return d.finish()
			}
			if err := d.fill(); err != nil {
				return err
			}
			continue
		}
		if d.ix.full == 0 {
			// No full-length blocks to find: only the short last block
			// can match, at the very end.
			d.p = min(d.end-d.bs+1, d.lit+MaxLiteral)
			continue
		}
		if d.haveWeak {
			out, in := uint32(d.buf[d.p]), uint32(d.buf[d.p+d.bs])
			d.a += in - out
			d.b += d.a - uint32(d.bs)*out
			d.p++
		} else {
			d.a, d.b = weakParts(d.buf[d.p : d.p+d.bs])
			d.haveWeak = true
		}
		if blk, ok := d.scan(); ok {
			if err := d.match(blk, d.bs); err != nil {
				return err
			}
		}
	}
}

// scan checks the window at d.p and rolls it on, byte by byte, until a
// block matches, the data read so far ends or the pending literal reaches
// MaxLiteral. It leaves d.p at the last window checked.
func (d *differ) scan() (int64, bool) {
	buf := d.buf[:d.end]
	bs := d.bs
	a, b, p := d.a, d.b, d.p
	limit := min(d.end-bs, d.lit+MaxLiteral)
	for {
		var hit bool
		var i int
		i, a, b, hit = rollScan(buf[p:limit], buf[p+bs:limit+bs], a, b, uint32(bs), d.ix.bits)
		p += i
		if hit {
			if blk, ok := d.lookup(packWeak(a, b), buf[p:p+bs]); ok {
				d.a, d.b, d.p = a, b, p
				return blk, true
			}
		}
		if p >= limit {
			d.a, d.b, d.p = a, b, p
			return 0, false
		}
		// A false positive of the filter: roll on past it.
		out, in := uint32(buf[p]), uint32(buf[p+bs])
		a += in - out
		b += a - uint32(bs)*out
		p++
	}
}

// rollScan is the hot loop of Diff. The window starts at outs[0], has
// sums a and b and length bs, and ins[i] is the byte entering it when
// outs[i] leaves. rollScan returns the index of the first window, up to
// len(outs) inclusive, whose weak sum passes the filter (hit), or
// len(outs) (no hit), with that window's sums. It makes no calls and
// keeps everything in registers.
func rollScan(outs, ins []byte, a, b uint32, bs uint32, filter []uint64) (int, uint32, uint32, bool) {
	ins = ins[:len(outs)]
	fmask := uint32(len(filter) - 1)
	filter = filter[:fmask+1]
	for i, out := range outs {
		h := filterHash(a&0xffff | b<<16)
		if filter[h>>6&fmask]&(1<<(h&63)) != 0 {
			return i, a, b, true
		}
		a += uint32(ins[i]) - uint32(out)
		b += a - bs*uint32(out)
	}
	h := filterHash(a&0xffff | b<<16)
	return len(outs), a, b, filter[h>>6&fmask]&(1<<(h&63)) != 0
}

// filterHash mixes a weak sum for the filter, whose size is a power of
// two: the high half of a 64-bit product is well mixed in all its bits.
func filterHash(w uint32) uint32 {
	return uint32(uint64(w) * 0x9E3779B97F4A7C15 >> 32)
}

// lookup returns a full-length block whose checksums match the window win
// with weak sum w, preferring the block after the last match so that
// copies of consecutive blocks merge into one run.
func (d *differ) lookup(w uint32, win []byte) (int64, bool) {
	s, ok := d.ix.lookupWeak(w)
	if !ok {
		return 0, false
	}
	sum := sha256.Sum256(win)
	strong := sum[:d.sig.StrongLen]
	blocks := d.sig.Blocks
	if next := d.lastMatch + 1; next < int64(d.ix.full) && blocks[next].Weak == w && bytes.Equal(blocks[next].Strong, strong) {
		return next, true
	}
	cand := d.ix.order[s.start : s.start+s.n]
	i, found := slices.BinarySearchFunc(cand, strong, func(idx uint32, t []byte) int {
		return bytes.Compare(blocks[idx].Strong, t)
	})
	if !found {
		return 0, false
	}
	return int64(cand[i]), true
}

// tailMatches reports whether the short last basis block matches the new
// file at pos.
func (d *differ) tailMatches(pos int) bool {
	win := d.buf[pos : pos+d.tailLen]
	want := &d.sig.Blocks[d.tailIdx]
	if weakSum(win) != want.Weak {
		return false
	}
	sum := sha256.Sum256(win)
	return bytes.Equal(sum[:d.sig.StrongLen], want.Strong)
}

// match records that block blk (n bytes long) matches at d.p.
func (d *differ) match(blk int64, n int) error {
	if d.p > d.lit {
		if err := d.literal(d.p); err != nil {
			return err
		}
	}
	if d.runCount > 0 && d.runBlock+d.runCount == blk {
		d.runCount++
	} else {
		if err := d.flushRun(); err != nil {
			return err
		}
		d.runBlock, d.runCount = blk, 1
	}
	d.stats.MatchedBytes += int64(n)
	d.p += n
	d.lit = d.p
	d.haveWeak = false
	d.lastMatch = blk
	if blk+1 == d.tailIdx {
		d.tryTail = true
	}
	return nil
}

// literal emits buf[d.lit:to] as literal ops of at most MaxLiteral bytes.
func (d *differ) literal(to int) error {
	if err := d.flushRun(); err != nil {
		return err
	}
	for d.lit < to {
		n := min(to-d.lit, MaxLiteral)
		if err := d.emit(Op{Kind: OpLiteral, Data: d.buf[d.lit : d.lit+n]}); err != nil {
			return fmt.Errorf("emit literal: %w", err)
		}
		d.stats.LiteralBytes += int64(n)
		d.lit += n
	}
	return nil
}

// flushRun emits the pending copy run, if any.
func (d *differ) flushRun() error {
	if d.runCount == 0 {
		return nil
	}
	if err := d.emit(Op{Kind: OpCopy, Block: d.runBlock, Count: d.runCount}); err != nil {
		return fmt.Errorf("emit copy: %w", err)
	}
	d.runCount = 0
	return nil
}

// finish handles the end of the new file: no full window is left, so only
// the short last block can still match, at the very end.
func (d *differ) finish() error {
	if d.tailIdx >= 0 {
		if pos := d.end - d.tailLen; pos >= d.p && d.tailMatches(pos) {
			if err := d.literal(pos); err != nil {
				return err
			}
			d.p = pos
			if err := d.match(d.tailIdx, d.tailLen); err != nil {
				return err
			}
		}
	}
	if err := d.literal(d.end); err != nil {
		return err
	}
	return d.flushRun()
}

// fill moves the unsent data to the front of the buffer and reads more.
func (d *differ) fill() error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	if d.lit > 0 {
		n := copy(d.buf, d.buf[d.lit:d.end])
		d.base += int64(d.lit)
		d.p -= d.lit
		d.end = n
		d.lit = 0
	}
	if d.base+int64(d.end) > 0 && len(d.buf) < d.maxBuf {
		// The file is larger than the buffer: grow it for fewer reads.
		d.buf = append(d.buf[:d.end], make([]byte, min(2*len(d.buf), d.maxBuf)-d.end)...)
	}
	if d.end == len(d.buf) {
		return errors.New("internal error: diff buffer full")
	}
	for zero := 0; d.end < len(d.buf); {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err == io.EOF {
			d.eof = true
			break
		}
		if err != nil {
			return fmt.Errorf("read new file at offset %d: %w", d.base+int64(d.end), err)
		}
		if n == 0 {
			if zero++; zero >= 100 {
				return fmt.Errorf("read new file: %w", io.ErrNoProgress)
			}
		}
	}
	return nil
}
