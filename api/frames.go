package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/goldcast/goldcast/images/manifest"
)

// Binary bodies are a sequence of frames, each naming a manifest path and
// a kind and carrying a payload of any length, split in chunks:
//
//	frame   = kind:byte  pathlen:uvarint  path  chunk*  0:uvarint
//	chunk   = len:uvarint (1..MaxChunk)  bytes
//	stream  = frame*  'E'
//
// The explicit end marker makes a cut-off body an error, not a short
// success.

// MaxChunk bounds one chunk, so a reader never allocates more.
const MaxChunk = 1 << 20

const endOfFrames = 'E'

// ErrFraming reports a malformed frame stream.
var ErrFraming = errors.New("malformed frame stream")

// FrameWriter writes frames.
type FrameWriter struct {
	w   *bufio.Writer
	cur *payloadWriter
}

// NewFrameWriter starts a frame stream on w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	return &FrameWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Begin starts a frame; write its payload to the returned writer and close
// it before the next Begin.
func (fw *FrameWriter) Begin(kind byte, path string) (io.WriteCloser, error) {
	if fw.cur != nil {
		return nil, errors.New("frame writer: previous frame not closed")
	}
	if err := fw.w.WriteByte(kind); err != nil {
		return nil, err
	}
	if err := writeUvarint(fw.w, uint64(len(path))); err != nil {
		return nil, err
	}
	if _, err := fw.w.WriteString(path); err != nil {
		return nil, err
	}
	fw.cur = &payloadWriter{fw: fw}
	return fw.cur, nil
}

// Close ends the stream and flushes it.
func (fw *FrameWriter) Close() error {
	if fw.cur != nil {
		return errors.New("frame writer: frame not closed")
	}
	if err := fw.w.WriteByte(endOfFrames); err != nil {
		return err
	}
	return fw.w.Flush()
}

type payloadWriter struct {
	fw     *FrameWriter
	closed bool
}

func (p *payloadWriter) Write(b []byte) (int, error) {
	if p.closed {
		return 0, errors.New("frame payload: write after close")
	}
	n := 0
	for len(b) > 0 {
		c := b[:min(len(b), MaxChunk)]
		if err := writeUvarint(p.fw.w, uint64(len(c))); err != nil {
			return n, err
		}
		if _, err := p.fw.w.Write(c); err != nil {
			return n, err
		}
		n += len(c)
		b = b[len(c):]
	}
	return n, nil
}

func (p *payloadWriter) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	p.fw.cur = nil
	return writeUvarint(p.fw.w, 0)
}

func writeUvarint(w *bufio.Writer, v uint64) error {
	var b [binary.MaxVarintLen64]byte
	_, err := w.Write(b[:binary.PutUvarint(b[:], v)])
	return err
}

// FrameReader reads frames.
type FrameReader struct {
	r   *bufio.Reader
	cur *payloadReader
}

// NewFrameReader reads a frame stream from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next frame's kind, path and payload reader (valid until
// the next call; unread payload is skipped). It returns io.EOF after the
// end marker, and an error wrapping io.ErrUnexpectedEOF when the stream
// stops without one. Paths are checked to be clean manifest paths.
func (fr *FrameReader) Next() (byte, string, io.Reader, error) {
	if fr.cur != nil {
		if _, err := io.Copy(io.Discard, fr.cur); err != nil {
			return 0, "", nil, err
		}
	}
	kind, err := fr.r.ReadByte()
	if err != nil {
		return 0, "", nil, fmt.Errorf("%w: %w", ErrFraming, io.ErrUnexpectedEOF)
	}
	if kind == endOfFrames {
		return 0, "", nil, io.EOF
	}
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		return 0, "", nil, fmt.Errorf("%w: %w", ErrFraming, io.ErrUnexpectedEOF)
	}
	if n > 4096 {
		return 0, "", nil, fmt.Errorf("%w: path of %d bytes", ErrFraming, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(fr.r, buf); err != nil {
		return 0, "", nil, fmt.Errorf("%w: %w", ErrFraming, io.ErrUnexpectedEOF)
	}
	path := string(buf)
	if !manifest.ValidPath(path) {
		return 0, "", nil, fmt.Errorf("%w: path %q: %w", ErrFraming, path, manifest.ErrUnsafePath)
	}
	fr.cur = &payloadReader{r: fr.r}
	return kind, path, fr.cur, nil
}

type payloadReader struct {
	r    *bufio.Reader
	left uint64
	done bool
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.done {
		return 0, io.EOF
	}
	if p.left == 0 {
		n, err := binary.ReadUvarint(p.r)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrFraming, io.ErrUnexpectedEOF)
		}
		if n == 0 {
			p.done = true
			return 0, io.EOF
		}
		if n > MaxChunk {
			return 0, fmt.Errorf("%w: chunk of %d bytes", ErrFraming, n)
		}
		p.left = n
	}
	if uint64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, err := p.r.Read(b)
	p.left -= uint64(n)
	if err == io.EOF {
		err = fmt.Errorf("%w: %w", ErrFraming, io.ErrUnexpectedEOF)
	}
	return n, err
}
