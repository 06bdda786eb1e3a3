package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxHosts is the most names one host range expression may expand to.
const MaxHosts = 100000

// ExpandHosts expands a host range expression into the host names it
// stands for, in order.
//
// An expression is a comma-separated list of patterns; spaces around the
// commas are ignored. A pattern is literal text with any number of bracket
// sets, each standing for a list of numbers: [1-3] is 1, 2 and 3, and
// [1,4,6-7] is 1, 4, 6 and 7. A range is padded with zeros to the width of
// its lower bound, so node[001-003] gives node001, node002 and node003,
// while n[8-10] gives n8, n9 and n10. Several bracket sets give every
// combination, the rightmost varying fastest: r[1-2]n[1-2] gives r1n1,
// r1n2, r2n1 and r2n2. A pattern without brackets is one name.
//
// ExpandHosts checks syntax only: it does not check that the names are
// valid host names, and returns a name as often as the expression gives it.
// An expression expanding to more than MaxHosts names is an error.
func ExpandHosts(expr string) ([]string, error) {
	names, err := expandHosts(expr)
	if err != nil {
		return nil, fmt.Errorf("host range %q: %w", expr, err)
	}
	return names, nil
}

// expandHosts does the work of ExpandHosts, whose error names expr.
func expandHosts(expr string) ([]string, error) {
	patterns, err := splitTop(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			if len(patterns) == 1 {
				return nil, errors.New("empty")
			}
			return nil, errors.New("empty name in list")
		}
		names, err = expandPattern(names, p)
		if err != nil {
			return nil, err
		}
	}
	return names, nil
}

// splitTop splits expr at the commas outside brackets, checking that
// brackets pair up and do not nest.
func splitTop(expr string) ([]string, error) {
	var parts []string
	start, open := 0, -1
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '[':
			if open >= 0 {
				return nil, fmt.Errorf("nested %q at offset %d", "[", i)
			}
			open = i
		case ']':
			if open < 0 {
				return nil, fmt.Errorf("%q without %q at offset %d", "]", "[", i)
			}
			open = -1
		case ',':
			if open < 0 {
				parts = append(parts, expr[start:i])
				start = i + 1
			}
		}
	}
	if open >= 0 {
		return nil, fmt.Errorf("%q at offset %d is never closed", "[", open)
	}
	return append(parts, expr[start:]), nil
}

// span is one element of a bracket set: the numbers lo to hi inclusive,
// printed zero-padded to width digits.
type span struct {
	lo, hi uint64
	width  int
}

// expandPattern appends the names one pattern (no top-level commas, brackets
// balanced) stands for to names, keeping the total within MaxHosts.
func expandPattern(names []string, pattern string) ([]string, error) {
	// Split the pattern into literal text and bracket sets, then count
	// the names before making any of them.
	var literals []string // literals[i] precedes sets[i]; one more literal than sets
	var sets [][]span
	count := uint64(1)
	rest := pattern
	for {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			literals = append(literals, rest)
			break
		}
		j := strings.IndexByte(rest, ']')
		literals = append(literals, rest[:i])
		set, n, err := parseSet(rest[i+1 : j])
		if err != nil {
			return nil, err
		}
		sets = append(sets, set)
		count *= n // n and count are at most MaxHosts, so this cannot overflow
		if count > MaxHosts-uint64(len(names)) {
			return nil, fmt.Errorf("expands to more than %d names", MaxHosts)
		}
		rest = rest[j+1:]
	}

	out := []string{literals[0]}
	for k, set := range sets {
		next := make([]string, 0, len(out)*int(setLen(set)))
		for _, prefix := range out {
			for _, s := range set {
				// Count rather than compare v with s.hi, which may be
				// the largest uint64.
				for d := uint64(0); d <= s.hi-s.lo; d++ {
					next = append(next, prefix+pad(s.lo+d, s.width)+literals[k+1])
				}
			}
		}
		out = next
	}
	return append(names, out...), nil
}

// parseSet parses the inside of a bracket set, returning its spans and how
// many numbers they hold (at most MaxHosts).
func parseSet(s string) ([]span, uint64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, 0, fmt.Errorf("empty %q", "[]")
	}
	var set []span
	var n uint64
	for elem := range strings.SplitSeq(s, ",") {
		elem = strings.TrimSpace(elem)
		loText, hiText, isRange := strings.Cut(elem, "-")
		lo, err := parseBound(loText, elem)
		if err != nil {
			return nil, 0, err
		}
		hi := lo
		if isRange {
			if hi, err = parseBound(hiText, elem); err != nil {
				return nil, 0, err
			}
			if hi < lo {
				return nil, 0, fmt.Errorf("range %q runs backwards", elem)
			}
		}
		if hi-lo >= MaxHosts-n {
			return nil, 0, fmt.Errorf("expands to more than %d names", MaxHosts)
		}
		n += hi - lo + 1
		set = append(set, span{lo: lo, hi: hi, width: len(loText)})
	}
	return set, n, nil
}

// parseBound parses one end of a range in the bracket element elem.
func parseBound(s, elem string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("%q in brackets is not a number or a range of numbers", elem)
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q in brackets is not a number or a range of numbers", elem)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("number %q in brackets: %w", s, err)
	}
	return v, nil
}

// setLen returns how many numbers a set holds.
func setLen(set []span) uint64 {
	var n uint64
	for _, s := range set {
		n += s.hi - s.lo + 1
	}
	return n
}

// pad formats v in decimal, zero-padded to width digits.
func pad(v uint64, width int) string {
	s := strconv.FormatUint(v, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}
