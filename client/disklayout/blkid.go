package disklayout

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// blkidArgs are the arguments Capture runs blkid with for the given device
// nodes: probe the devices themselves (not blkid's cache, which may be
// stale) and print KEY=value lines.
func blkidArgs(devices []string) []string {
	return append([]string{"-c", "/dev/null", "-o", "export"}, devices...)
}

// parseBlkid parses blkid -o export output: for each device a block of
// KEY=value lines starting with DEVNAME=, blocks separated by blank lines.
// It returns the tags of each device by DEVNAME.
func parseBlkid(data []byte) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			cur = nil
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("blkid line %d: malformed: %q", n, line)
		}
		v = unescapeBlkid(v)
		if k == "DEVNAME" {
			cur = map[string]string{}
			out[v] = cur
		}
		if cur == nil {
			return nil, fmt.Errorf("blkid line %d: %s before DEVNAME", n, k)
		}
		cur[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("blkid: %w", err)
	}
	return out, nil
}

// unescapeBlkid undoes blkid's export escaping: a backslash before each
// character that is special to a shell.
func unescapeBlkid(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
