package manifest

import (
	"crypto/sha256"
	"encoding/hex"
)

// DirDigests returns a digest per directory path: the sha256 over the
// canonical lines of its direct children, each child directory's line
// followed by that directory's own digest. Two trees whose directory
// digests match hold identical subtrees, so two sides can compare roots and
// descend only where digests differ. The manifest must be valid.
func (m *Manifest) DirDigests() map[string]string {
	children := map[string][]int{}
	for i := 1; i < len(m.Entries); i++ {
		p := Parent(m.Entries[i].Path)
		children[p] = append(children[p], i)
	}
	out := map[string]string{}
	// Children sort after their parents, so walking backwards sees every
	// subdirectory before the directory that holds it.
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := &m.Entries[i]
		if e.Type != TypeDir {
			continue
		}
		h := sha256.New()
		for _, c := range children[e.Path] {
			ce := &m.Entries[c]
			h.Write(ce.appendLine(nil))
			if ce.Type == TypeDir {
				h.Write([]byte{' '})
				h.Write([]byte(out[ce.Path]))
			}
			h.Write([]byte{'\n'})
		}
		out[e.Path] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}
