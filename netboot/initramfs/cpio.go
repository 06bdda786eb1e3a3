package initramfs

import (
	"fmt"
	"io"
	"io/fs"
)

// The newc ("SVR4 without CRC") cpio format the kernel's initramfs
// unpacker reads: each entry is a 110-byte ASCII header ("070701" and 13
// eight-digit hexadecimal fields), the NUL-terminated name padded to a
// multiple of four bytes counting the header, then the data padded to a
// multiple of four. A "TRAILER!!!" entry ends the archive.
const (
	newcMagic      = "070701"
	newcHeaderSize = 110
	newcTrailer    = "TRAILER!!!"
)

// Unix file type bits as cpio stores them in its mode field.
const (
	modeFIFO    = 0o010000
	modeChar    = 0o020000
	modeDir     = 0o040000
	modeBlock   = 0o060000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeSocket  = 0o140000
)

// cpioHeader is the part of a newc header a caller chooses; the writer
// fills in the inode number, owner (root), link count, time (zero: the
// archive is reproducible) and name size.
type cpioHeader struct {
	name      string // without a leading slash: "dev/console"
	mode      uint32 // type and permission bits, as in st_mode
	size      int64  // data length: file contents or symlink target
	rdevMajor uint32
	rdevMinor uint32
}

// cpioWriter writes a newc cpio archive.
type cpioWriter struct {
	w      io.Writer
	ino    uint32
	offset int64 // bytes written, for padding
	closed bool
}

func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w} }

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.offset += int64(n)
	return err
}

// pad writes NULs up to the next multiple of four bytes.
func (c *cpioWriter) pad() error {
	if r := c.offset % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// header writes an entry's header and name; the caller then writes
// exactly h.size bytes of data with data and ends the entry with pad.
func (c *cpioWriter) header(h cpioHeader) error {
	if c.closed {
		return fmt.Errorf("cpio: write of %q after the trailer", h.name)
	}
	if h.size < 0 || h.size > 0xffffffff {
		return fmt.Errorf("cpio: %q: size %d does not fit the newc format (4 GiB at most)", h.name, h.size)
	}
	c.ino++
	nlink := uint32(1)
	if h.mode&0o170000 == modeDir {
		nlink = 2
	}
	ino := c.ino
	if h.name == newcTrailer {
		ino = 0
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, h.mode, 0, 0, nlink, 0, uint32(h.size), 0, 0, h.rdevMajor, h.rdevMinor, len(h.name)+1, 0)
	if err := c.write([]byte(hdr + h.name + "\x00")); err != nil {
		return fmt.Errorf("cpio: write header of %q: %w", h.name, err)
	}
	if err := c.pad(); err != nil {
		return fmt.Errorf("cpio: write header of %q: %w", h.name, err)
	}
	return nil
}

// entry writes a whole entry whose data is in memory.
func (c *cpioWriter) entry(h cpioHeader, data []byte) error {
	h.size = int64(len(data))
	if err := c.header(h); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return fmt.Errorf("cpio: write data of %q: %w", h.name, err)
	}
	if err := c.pad(); err != nil {
		return fmt.Errorf("cpio: write data of %q: %w", h.name, err)
	}
	return nil
}

// stream writes a whole entry of h.size bytes read from r, failing if r
// holds fewer.
func (c *cpioWriter) stream(h cpioHeader, r io.Reader) error {
	if err := c.header(h); err != nil {
		return err
	}
	n, err := io.CopyN(writerFunc(c.write), r, h.size)
	if err != nil {
		return fmt.Errorf("cpio: write data of %q (%d of %d bytes): %w", h.name, n, h.size, err)
	}
	if err := c.pad(); err != nil {
		return fmt.Errorf("cpio: write data of %q: %w", h.name, err)
	}
	return nil
}

// close writes the trailer. It does not close the underlying writer.
func (c *cpioWriter) close() error {
	if err := c.entry(cpioHeader{name: newcTrailer}, nil); err != nil {
		return err
	}
	c.closed = true
	return nil
}

// writerFunc adapts a write function that reports only an error.
type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// unixMode converts a Go file mode to st_mode bits (type, permissions,
// setuid, setgid, sticky).
func unixMode(m fs.FileMode) (uint32, error) {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	switch m.Type() {
	case 0:
		mode |= modeRegular
	case fs.ModeDir:
		mode |= modeDir
	case fs.ModeSymlink:
		mode |= modeSymlink
	case fs.ModeDevice | fs.ModeCharDevice:
		mode |= modeChar
	case fs.ModeDevice:
		mode |= modeBlock
	case fs.ModeNamedPipe:
		mode |= modeFIFO
	case fs.ModeSocket:
		mode |= modeSocket
	default:
		return 0, fmt.Errorf("file type %v has no cpio equivalent", m.Type())
	}
	return mode, nil
}
