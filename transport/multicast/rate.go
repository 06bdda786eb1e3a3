package multicast

import (
	"context"
	"time"
)

// pacer spaces packets to a bit rate. It keeps a release time instead of
// sleeping per packet: it sleeps only once the debt exceeds a couple of
// milliseconds. When the sender falls behind (its thread descheduled, a
// slow system call), it catches up on up to pacerBurst of lost time, so
// the average rate holds on a busy machine; longer idle time is
// forgiven, not sent as one burst.
type pacer struct {
	rate float64 // bit/s
	next time.Time
}

const (
	pacerSleep = 2 * time.Millisecond
	// pacerBurst bounds the catch-up: at 200 Mbit/s, 500 KB sent as fast
	// as the link takes it, which a switch port's buffer absorbs. With
	// 4 ms, eight receivers and the sender sharing two CPUs lost 10-17%
	// of the rate to scheduling delays.
	pacerBurst = 20 * time.Millisecond
)

// wait blocks until n more bytes may go out at the current rate.
func (p *pacer) wait(ctx context.Context, n int) error {
	if d := p.reserve(time.Now(), n); d > pacerSleep {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// reserve books n bytes at time now and returns how far ahead of now
// the rate allows them to leave (negative: the sender is behind).
func (p *pacer) reserve(now time.Time, n int) time.Duration {
	if p.next.Before(now.Add(-pacerBurst)) {
		p.next = now.Add(-pacerBurst)
	}
	p.next = p.next.Add(time.Duration(float64(n*8) / p.rate * float64(time.Second)))
	return p.next.Sub(now)
}

// rateControl is the adaptive mode: multiplicative decrease when loss is
// widespread (at least half the receivers above the threshold), additive
// increase back towards the maximum when it is not.
type rateControl struct {
	max, min, cur float64
	threshold     float64
}

// adjust takes the receivers' loss fractions over the last interval and
// returns the new rate.
func (r *rateControl) adjust(losses []float64) float64 {
	if len(losses) == 0 {
		return r.cur
	}
	high := 0
	for _, l := range losses {
		if l > r.threshold {
			high++
		}
	}
	switch {
	case 2*high >= len(losses) && high > 0:
		r.cur = max(r.min, r.cur*0.7)
	default:
		r.cur = min(r.max, r.cur+r.max/10)
	}
	return r.cur
}
