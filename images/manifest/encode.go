package manifest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Header is the first line of every encoded manifest.
const Header = "goldcast-manifest 1"

// MaxSize bounds the encoded manifest a reader accepts (256 MiB), so a
// hostile stream cannot exhaust memory with its manifest.
const MaxSize = 256 << 20

// Encode writes the canonical text form: the header line, then one line
// per entry:
//
//	PATH TYPE MODE UID GID MTIME_NS [size=N sha256=HEX target=T link=P dev=MAJ,MIN xattr.NAME=BASE64 ...]
//
// Paths, targets and xattr names are percent-escaped (bytes outside
// 0x21-0x7e, '%' and '='), so any byte sequence survives. Entries must
// already be in manifest order (see Sort); Encode does not reorder.
func (m *Manifest) Encode(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.WriteString(Header + "\n"); err != nil {
		return err
	}
	var line []byte
	for i := range m.Entries {
		line = m.Entries[i].appendLine(line[:0])
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Bytes returns the canonical encoding.
func (m *Manifest) Bytes() []byte {
	var b bytes.Buffer
	_ = m.Encode(&b) // writes to a bytes.Buffer cannot fail
	return b.Bytes()
}

// Digest returns the hex sha256 of the canonical encoding: the identity of
// the version the manifest describes.
func (m *Manifest) Digest() string {
	h := sha256.New()
	_ = m.Encode(h) // hash writes cannot fail
	return hex.EncodeToString(h.Sum(nil))
}

// DigestBytes returns the hex sha256 of an already encoded manifest.
func DigestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (e *Entry) appendLine(b []byte) []byte {
	b = appendEscaped(b, e.Path)
	b = append(b, ' ', byte(e.Type), ' ')
	b = append(b, fmt.Sprintf("%04o", e.Mode)...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(e.UID), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(e.GID), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.MtimeNS, 10)
	switch e.Type {
	case TypeRegular:
		b = append(b, " size="...)
		b = strconv.AppendInt(b, e.Size, 10)
		b = append(b, " sha256="...)
		b = append(b, e.SHA256...)
		if e.LinkTo != "" {
			b = append(b, " link="...)
			b = appendEscaped(b, e.LinkTo)
		}
	case TypeSymlink:
		b = append(b, " target="...)
		b = appendEscaped(b, e.Target)
	case TypeCharDev, TypeBlockDev:
		b = append(b, " dev="...)
		b = strconv.AppendUint(b, uint64(e.DevMajor), 10)
		b = append(b, ',')
		b = strconv.AppendUint(b, uint64(e.DevMinor), 10)
	}
	for _, x := range e.Xattrs {
		b = append(b, " xattr."...)
		b = appendEscaped(b, x.Name)
		b = append(b, '=')
		b = base64.StdEncoding.AppendEncode(b, x.Value)
	}
	return b
}

// Line returns the canonical encoding of one entry (without newline); the
// directory digests are built from these.
func (e *Entry) Line() string { return string(e.appendLine(nil)) }

const hexDigits = "0123456789ABCDEF"

func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '%' || c == '=' {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// Decode reads a canonical manifest and validates it (see Validate). Errors
// name the line that was wrong.
func Decode(r io.Reader) (*Manifest, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxSize+1), 64<<10)
	m := &Manifest{}
	lineNo := 0
	read := 0
	for {
		line, err := br.ReadString('\n')
		read += len(line)
		if read > MaxSize {
			return nil, fmt.Errorf("manifest larger than %d bytes", MaxSize)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		if line == "" && errors.Is(err, io.EOF) {
			break
		}
		lineNo++
		if !strings.HasSuffix(line, "\n") {
			return nil, fmt.Errorf("manifest line %d: truncated (no newline)", lineNo)
		}
		line = line[:len(line)-1]
		if lineNo == 1 {
			if line != Header {
				return nil, fmt.Errorf("manifest line 1: header %q, want %q", line, Header)
			}
			continue
		}
		e, perr := parseLine(line)
		if perr != nil {
			return nil, fmt.Errorf("manifest line %d: %w", lineNo, perr)
		}
		// One manifest has one encoding, so its digest is its identity.
		if canon := e.appendLine(nil); string(canon) != line {
			return nil, fmt.Errorf("manifest line %d: not in canonical form (want %q)", lineNo, canon)
		}
		m.Entries = append(m.Entries, e)
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if lineNo == 0 {
		return nil, errors.New("manifest is empty")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func parseLine(line string) (Entry, error) {
	f := strings.Split(line, " ")
	if len(f) < 6 {
		return Entry{}, fmt.Errorf("%d fields, want at least 6", len(f))
	}
	var e Entry
	var err error
	if e.Path, err = unescape(f[0]); err != nil {
		return e, fmt.Errorf("path: %w", err)
	}
	if len(f[1]) != 1 || !Type(f[1][0]).valid() {
		return e, fmt.Errorf("path %q: unknown type %q", e.Path, f[1])
	}
	e.Type = Type(f[1][0])
	mode, err := strconv.ParseUint(f[2], 8, 32)
	if err != nil || mode&^ModeMask != 0 {
		return e, fmt.Errorf("path %q: bad mode %q", e.Path, f[2])
	}
	e.Mode = uint32(mode)
	uid, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return e, fmt.Errorf("path %q: bad uid %q", e.Path, f[3])
	}
	gid, err := strconv.ParseUint(f[4], 10, 32)
	if err != nil {
		return e, fmt.Errorf("path %q: bad gid %q", e.Path, f[4])
	}
	e.UID, e.GID = uint32(uid), uint32(gid)
	if e.MtimeNS, err = strconv.ParseInt(f[5], 10, 64); err != nil {
		return e, fmt.Errorf("path %q: bad mtime %q", e.Path, f[5])
	}
	for _, kv := range f[6:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return e, fmt.Errorf("path %q: field %q is not key=value", e.Path, kv)
		}
		switch {
		case k == "size":
			if e.Size, err = strconv.ParseInt(v, 10, 64); err != nil || e.Size < 0 {
				return e, fmt.Errorf("path %q: bad size %q", e.Path, v)
			}
		case k == "sha256":
			if _, err := hex.DecodeString(v); err != nil || len(v) != 64 {
				return e, fmt.Errorf("path %q: bad sha256 %q", e.Path, v)
			}
			e.SHA256 = v
		case k == "target":
			if e.Target, err = unescape(v); err != nil {
				return e, fmt.Errorf("path %q: target: %w", e.Path, err)
			}
		case k == "link":
			if e.LinkTo, err = unescape(v); err != nil {
				return e, fmt.Errorf("path %q: link: %w", e.Path, err)
			}
		case k == "dev":
			maj, mnr, ok := strings.Cut(v, ",")
			a, err1 := strconv.ParseUint(maj, 10, 32)
			b, err2 := strconv.ParseUint(mnr, 10, 32)
			if !ok || err1 != nil || err2 != nil {
				return e, fmt.Errorf("path %q: bad dev %q", e.Path, v)
			}
			e.DevMajor, e.DevMinor = uint32(a), uint32(b)
		case strings.HasPrefix(k, "xattr."):
			name, err := unescape(k[len("xattr."):])
			if err != nil || name == "" {
				return e, fmt.Errorf("path %q: bad xattr name %q", e.Path, k)
			}
			val, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return e, fmt.Errorf("path %q: xattr %q: bad value: %w", e.Path, name, err)
			}
			e.Xattrs = append(e.Xattrs, Xattr{Name: name, Value: val})
		default:
			return e, fmt.Errorf("path %q: unknown field %q", e.Path, k)
		}
	}
	return e, nil
}

// ErrUnsafePath marks a manifest path that could write outside the
// target: not clean and relative, or below something that is not a
// directory (a symlink).
var ErrUnsafePath = errors.New("unsafe path")

// ValidPath reports whether p is a clean relative manifest path: "." or
// slash-separated names that are not empty, ".", ".." and hold no NUL.
func ValidPath(p string) bool {
	if p == "." {
		return true
	}
	if p == "" || strings.HasPrefix(p, "/") {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." || strings.IndexByte(c, 0) >= 0 || len(c) > 255 {
			return false
		}
	}
	return true
}

// Validate checks that the manifest describes a tree that can be laid down
// safely: the root comes first and is a directory, paths are clean and in
// strict manifest order, every parent is a directory listed earlier (so no
// entry can be reached through a symlink), and hard links point at an
// earlier regular file with the same content and metadata.
func (m *Manifest) Validate() error {
	if len(m.Entries) == 0 || m.Entries[0].Path != "." || m.Entries[0].Type != TypeDir {
		return errors.New("manifest: first entry must be the root directory \".\"")
	}
	types := make(map[string]Type, len(m.Entries))
	leaders := make(map[string]*Entry)
	for i := range m.Entries {
		e := &m.Entries[i]
		if !ValidPath(e.Path) {
			return fmt.Errorf("manifest: entry %q: %w: not clean and relative", e.Path, ErrUnsafePath)
		}
		if i > 0 {
			if ComparePaths(m.Entries[i-1].Path, e.Path) >= 0 {
				return fmt.Errorf("manifest: entry %q: out of order or duplicate (after %q)", e.Path, m.Entries[i-1].Path)
			}
			parent := Parent(e.Path)
			pt, ok := types[parent]
			if !ok {
				return fmt.Errorf("manifest: entry %q: %w: parent %q is not listed", e.Path, ErrUnsafePath, parent)
			}
			if pt != TypeDir {
				return fmt.Errorf("manifest: entry %q: %w: parent %q is a %s, not a directory", e.Path, ErrUnsafePath, parent, pt)
			}
		}
		if !e.Type.valid() {
			return fmt.Errorf("manifest: entry %q: unknown type", e.Path)
		}
		if e.Mode&^ModeMask != 0 {
			return fmt.Errorf("manifest: entry %q: mode %o has bits outside %o", e.Path, e.Mode, ModeMask)
		}
		for _, x := range e.Xattrs {
			if x.Name == "" || strings.IndexByte(x.Name, 0) >= 0 {
				return fmt.Errorf("manifest: entry %q: empty or NUL-holding xattr name", e.Path)
			}
		}
		for j := 1; j < len(e.Xattrs); j++ {
			if e.Xattrs[j-1].Name >= e.Xattrs[j].Name {
				return fmt.Errorf("manifest: entry %q: xattrs not sorted or duplicated", e.Path)
			}
		}
		switch e.Type {
		case TypeRegular:
			if !isSHA256Hex(e.SHA256) {
				return fmt.Errorf("manifest: entry %q: regular file without sha256 (64 lower-case hex digits)", e.Path)
			}
			if e.LinkTo != "" {
				l, ok := leaders[e.LinkTo]
				if !ok {
					return fmt.Errorf("manifest: entry %q: hard link to %q, which is not an earlier regular file", e.Path, e.LinkTo)
				}
				if !sameInode(l, e) {
					return fmt.Errorf("manifest: entry %q: hard link to %q with different content or metadata", e.Path, e.LinkTo)
				}
			} else {
				leaders[e.Path] = e
			}
		case TypeSymlink:
			if e.Target == "" {
				return fmt.Errorf("manifest: entry %q: symlink without target", e.Path)
			}
		}
		if e.Type != TypeRegular && (e.Size != 0 || e.SHA256 != "" || e.LinkTo != "") {
			return fmt.Errorf("manifest: entry %q: %s with size, digest or link", e.Path, e.Type)
		}
		if e.Type != TypeCharDev && e.Type != TypeBlockDev && (e.DevMajor != 0 || e.DevMinor != 0) {
			return fmt.Errorf("manifest: entry %q: device numbers on a %s", e.Path, e.Type)
		}
		if e.Type != TypeSymlink && e.Target != "" {
			return fmt.Errorf("manifest: entry %q: target on a %s", e.Path, e.Type)
		}
		types[e.Path] = e.Type
	}
	return nil
}

// sameInode reports whether two hard-link members agree on everything an
// inode holds.
func sameInode(a, b *Entry) bool {
	return a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.Size == b.Size &&
		a.MtimeNS == b.MtimeNS && a.SHA256 == b.SHA256 && sameXattrs(a.Xattrs, b.Xattrs)
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// WirePath is a path that travels in JSON (or any text) percent-escaped
// the way the manifest encodes paths, so names that are not UTF-8 survive
// encoders that would replace their bytes.
type WirePath string

// MarshalText escapes the path.
func (p WirePath) MarshalText() ([]byte, error) { return appendEscaped(nil, string(p)), nil }

// UnmarshalText unescapes the path.
func (p *WirePath) UnmarshalText(b []byte) error {
	s, err := unescape(string(b))
	if err != nil {
		return fmt.Errorf("path %q: %w", b, err)
	}
	*p = WirePath(s)
	return nil
}

// WirePaths converts paths for the wire.
func WirePaths(paths []string) []WirePath {
	out := make([]WirePath, len(paths))
	for i, p := range paths {
		out[i] = WirePath(p)
	}
	return out
}

// Strings converts wire paths back.
func Strings(paths []WirePath) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = string(p)
	}
	return out
}
