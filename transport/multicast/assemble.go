package multicast

import (
	"fmt"
	"time"
)

// pending is a group being collected. Data shards land in place in buf,
// so a complete group is released without another copy.
type pending struct {
	buf    []byte   // k data blocks, back to back
	shards [][]byte // data then parity; data shards point into buf
	got    []bool   // which shards arrived
	have   int
	done   bool // data shards all present (received or rebuilt)
}

// assembler collects shards into groups, rebuilds lost data from parity,
// and releases complete groups in stream order. It keeps only a window of
// groups ahead of the next one to release (no staging copy of the
// stream); shards beyond it are dropped and must come again in a later
// pass. It is not safe for concurrent use.
type assembler struct {
	lay    layout
	coder  *coder
	window int // groups held ahead of next
	groups map[int]*pending
	// complete and swept are per group: decoded, and passed by the
	// sender's cursor while this receiver listened (so loss there is
	// repaired by NACK; groups never swept need a carousel pass).
	complete []bool
	swept    []bool
	next     int // first group not yet released
	// cursor tracking: the pass and group of the last non-repair shard.
	pass       uint32
	cursor     int
	cursorSeen time.Time
	// counters
	received, duplicate, outside, rebuilt int64
}

func newAssembler(lay layout, windowBytes int64) *assembler {
	w := int(windowBytes / int64(lay.k*lay.blockSize))
	return &assembler{lay: lay, coder: newCoder(), window: max(w, 4), groups: map[int]*pending{},
		complete: make([]bool, lay.groups), swept: make([]bool, lay.groups), cursor: -1}
}

func (a *assembler) inWindow(g int) bool { return g >= a.next && g < a.next+a.window }

// add takes one shard. It returns an error only for a shard that cannot
// belong to the session (bad index or size).
func (a *assembler) add(d dataPacket, now time.Time) error {
	g := int(d.group)
	if g >= a.lay.groups || int(d.shard) >= maxShards || len(d.payload) != a.lay.blockSize {
		return fmt.Errorf("%w: group %d shard %d with %d bytes", errPacket, g, d.shard, len(d.payload))
	}
	k := a.lay.dataShards(g)
	if !d.repair {
		a.track(d.pass, g, now)
	}
	if a.complete[g] || g < a.next {
		a.duplicate++
		return nil
	}
	if !a.inWindow(g) {
		a.outside++
		return nil
	}
	p := a.groups[g]
	if p == nil {
		p = &pending{buf: make([]byte, k*a.lay.blockSize), shards: make([][]byte, k), got: make([]bool, k)}
		a.groups[g] = p
	}
	i := int(d.shard)
	for len(p.shards) <= i {
		p.shards = append(p.shards, nil)
		p.got = append(p.got, false)
	}
	if p.got[i] {
		a.duplicate++
		return nil
	}
	p.got[i] = true
	if i < k {
		b := a.lay.blockSize
		p.shards[i] = p.buf[i*b : (i+1)*b]
		copy(p.shards[i], d.payload)
	} else {
		p.shards[i] = append([]byte(nil), d.payload...)
	}
	p.have++
	a.received++
	if p.have >= k {
		a.decode(g, p, k)
	}
	return nil
}

// track follows the sender's cursor: groups it moved past while we
// listened count as swept.
func (a *assembler) track(pass uint32, g int, now time.Time) {
	a.cursorSeen = now
	if pass != a.pass || a.cursor < 0 {
		a.pass, a.cursor = pass, g
		return
	}
	for c := a.cursor; c < g; c++ {
		a.sweep(c)
	}
	if g > a.cursor {
		a.cursor = g
	}
}

func (a *assembler) sweep(g int) {
	if g >= 0 && g < a.lay.groups && (a.complete[g] || a.inWindow(g)) {
		a.swept[g] = true
	}
}

// idle marks the cursor's group swept once the cursor has not moved for
// a while (the end of a pass).
func (a *assembler) idle(now time.Time, after time.Duration) {
	if a.cursor >= 0 && now.Sub(a.cursorSeen) > after {
		a.sweep(a.cursor)
	}
}

func (a *assembler) decode(g int, p *pending, k int) {
	var missing []int
	for i := 0; i < k; i++ {
		if !p.got[i] {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		b := a.lay.blockSize
		for _, i := range missing {
			p.shards[i] = p.buf[i*b : i*b] // empty: rebuilt in place if the coder can
		}
		if err := a.coder.reconstruct(p.shards, k); err != nil {
			for _, i := range missing {
				p.shards[i] = nil
			}
			// Not enough independent shards after all: wait for more.
			return
		}
		for _, i := range missing {
			copy(p.buf[i*b:(i+1)*b], p.shards[i])
		}
		a.rebuilt++
	}
	p.shards, p.got = nil, nil
	p.done = true
	a.complete[g] = true
}

// release returns the next group's data, trimmed to the stream, if it is
// complete, and advances.
func (a *assembler) release() ([]byte, bool) {
	if a.next >= a.lay.groups || !a.complete[a.next] {
		return nil, false
	}
	p := a.groups[a.next]
	delete(a.groups, a.next)
	n := a.lay.groupBytes(a.next)
	a.next++
	return p.buf[:n], true
}

// finished: every group released.
func (a *assembler) finished() bool { return a.next >= a.lay.groups }

// report fills the status fields: first incomplete group, NACKs for
// swept groups in the window, and the range needing a carousel pass.
func (a *assembler) report(st *status) {
	st.nextGroup = uint32(a.lay.groups)
	for g := a.next; g < a.lay.groups; g++ {
		if !a.complete[g] {
			st.nextGroup = uint32(g)
			break
		}
	}
	st.nacks = st.nacks[:0]
	st.carouselFrom, st.carouselTo = 0, 0
	first := true
	for g := int(st.nextGroup); g < a.lay.groups; g++ {
		if a.complete[g] {
			continue
		}
		if a.swept[g] {
			if len(st.nacks) < maxNACKs && a.inWindow(g) {
				have := 0
				if p := a.groups[g]; p != nil {
					have = p.have
				}
				st.nacks = append(st.nacks, nack{Group: uint32(g), Missing: uint16(max(1, a.lay.dataShards(g)-have))})
			}
			continue
		}
		if first {
			st.carouselFrom, first = uint32(g), false
		}
		st.carouselTo = uint32(g + 1)
	}
	st.received = uint64(a.received + a.duplicate)
}
