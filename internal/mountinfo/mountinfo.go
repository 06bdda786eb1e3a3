// Package mountinfo decodes the paths the kernel writes in
// /proc/self/mountinfo, /proc/mounts and /proc/swaps.
package mountinfo

import (
	"strconv"
	"strings"
)

// Unescape decodes the \ooo octal escapes the kernel writes for space,
// tab, newline and backslash in those paths. A backslash not followed by
// three octal digits of a byte value stays as it is.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
