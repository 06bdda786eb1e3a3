package multicast

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy decides when a session starts sending, like flamethrower.conf:
// wait at least MinWait, start as soon as every Expected receiver (or
// MinReceivers of any) has registered, and at MaxWait start with whoever
// came (at least one). The zero Policy starts with the first receiver.
type Policy struct {
	// MinReceivers is how many registered receivers let the session start.
	MinReceivers int
	// Expected names receivers (their --name, by default the host name)
	// that must all be present; it overrides MinReceivers.
	Expected []string
	// MinWait is the least time to collect receivers before starting.
	MinWait time.Duration
	// MaxWait starts the session anyway (with at least one receiver);
	// zero waits for ever.
	MaxWait time.Duration
}

// ErrNoReceivers: MaxWait passed and nobody registered.
var ErrNoReceivers = errors.New("no receivers registered")

// decide says whether to start now, given the time waited and the names
// registered so far, and why; an error means the session cannot start.
func (p Policy) decide(waited time.Duration, names []string) (bool, string, error) {
	if waited < p.MinWait {
		return false, "", nil
	}
	if len(p.Expected) > 0 {
		var missing []string
		for _, e := range p.Expected {
			if !slices.Contains(names, e) {
				missing = append(missing, e)
			}
		}
		if len(missing) == 0 {
			return true, fmt.Sprintf("all %d expected receivers present", len(p.Expected)), nil
		}
		if p.MaxWait > 0 && waited >= p.MaxWait {
			if len(names) == 0 {
				return false, "", fmt.Errorf("after %s: %w", p.MaxWait, ErrNoReceivers)
			}
			return true, fmt.Sprintf("max wait %s reached; missing %s", p.MaxWait, strings.Join(missing, ",")), nil
		}
		return false, "", nil
	}
	need := max(p.MinReceivers, 1)
	if len(names) >= need {
		return true, fmt.Sprintf("%d receivers registered (minimum %d)", len(names), need), nil
	}
	if p.MaxWait > 0 && waited >= p.MaxWait {
		if len(names) == 0 {
			return false, "", fmt.Errorf("after %s: %w", p.MaxWait, ErrNoReceivers)
		}
		return true, fmt.Sprintf("max wait %s reached with %d of %d receivers", p.MaxWait, len(names), need), nil
	}
	return false, "", nil
}
