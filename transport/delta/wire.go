package delta

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the wire format version EncodeSignature and DeltaWriter
// write, and the only one the decoders accept.
//
// All integers are varints (encoding/binary, minimal length) except the
// weak checksums, which are random and so fixed at 4 bytes little-endian.
// A signature is
//
//	"GCSG" version(1)
//	uvarint BlockSize, uvarint StrongLen, uvarint FileSize
//	NumBlocks(FileSize, BlockSize) × (weak uint32le, strong [StrongLen]byte)
//
// The block count is implied by the sizes, never sent, so it cannot
// disagree with them; the decoder refuses sizes beyond MaxBlockSize,
// MaxStrongLen and MaxBlocks and allocates as blocks arrive. A delta (an
// op stream) is
//
//	"GCDL" version(1)
//	ops, each a tag byte and its fields:
//	  0x00                                        end of the delta
//	  0x01 varint(Block-expected) uvarint(Count)  copy
//	  0x02 uvarint(len) [len]byte                 literal, 1..MaxLiteral bytes
//
// where expected is the block after the previous copy (0 at the start), so
// a copy that resumes where the last one stopped costs 3 bytes.
const Version = 1

const (
	sigMagic   = "GCSG"
	deltaMagic = "GCDL"

	tagEnd     = 0x00
	tagCopy    = 0x01
	tagLiteral = 0x02
)

// ErrCorrupt is wrapped by the errors of decoders that find malformed or
// absurd input (as opposed to input that merely ends early, which is
// io.ErrUnexpectedEOF).
var ErrCorrupt = errors.New("corrupt delta encoding")

// EncodeSignature writes s to w in the wire encoding.
func EncodeSignature(w io.Writer, s *Signature) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("encode signature: %w", err)
	}
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, sigMagic...)
	buf = append(buf, Version)
	buf = binary.AppendUvarint(buf, uint64(s.BlockSize))
	buf = binary.AppendUvarint(buf, uint64(s.StrongLen))
	buf = binary.AppendUvarint(buf, uint64(s.FileSize))
	for i := range s.Blocks {
		if len(buf)+4+s.StrongLen > cap(buf) {
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("encode signature: write: %w", err)
			}
			buf = buf[:0]
		}
		buf = binary.LittleEndian.AppendUint32(buf, s.Blocks[i].Weak)
		buf = append(buf, s.Blocks[i].Strong...)
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("encode signature: write: %w", err)
	}
	return nil
}

// DecodeSignature reads a signature in the wire encoding from r. It reads
// exactly the signature's bytes, never beyond, so r may carry more. Input
// that ends early fails with an error wrapping io.ErrUnexpectedEOF; absurd
// or malformed input with one wrapping ErrCorrupt, before anything is
// allocated for it.
func DecodeSignature(r io.Reader) (*Signature, error) {
	br := asByteReader(r)
	if err := readHeader(br, sigMagic); err != nil {
		return nil, fmt.Errorf("decode signature: %w", err)
	}
	var fields [3]uint64
	for i, name := range []string{"block size", "strong length", "file size"} {
		v, err := readUvarint(br)
		if err != nil {
			return nil, fmt.Errorf("decode signature: %s: %w", name, err)
		}
		fields[i] = v
	}
	bs, sl, size := fields[0], fields[1], fields[2]
	if bs < 1 || bs > MaxBlockSize {
		return nil, fmt.Errorf("decode signature: block size %d out of range 1..%d: %w", bs, MaxBlockSize, ErrCorrupt)
	}
	if sl < 1 || sl > MaxStrongLen {
		return nil, fmt.Errorf("decode signature: strong length %d out of range 1..%d: %w", sl, MaxStrongLen, ErrCorrupt)
	}
	if size > MaxBlocks*bs {
		return nil, fmt.Errorf("decode signature: file size %d needs more than %d blocks of %d bytes: %w", size, MaxBlocks, bs, ErrCorrupt)
	}
	s := &Signature{BlockSize: int(bs), StrongLen: int(sl), FileSize: int64(size)}
	n := NumBlocks(s.FileSize, s.BlockSize)
	store := newBlockStore(n, s.StrongLen)
	rec := 4 + s.StrongLen
	scratch := make([]byte, min(n, storeChunk)*int64(rec))
	for done := int64(0); done < n; {
		chunk := min(n-done, storeChunk)
		p := scratch[:chunk*int64(rec)]
		if _, err := io.ReadFull(br, p); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("decode signature: blocks %d..%d of %d: %w", done, done+chunk-1, n, err)
		}
		for ; len(p) > 0; p = p[rec:] {
			store.add(binary.LittleEndian.Uint32(p), p[4:rec])
		}
		done += chunk
	}
	s.Blocks = store.blocks
	return s, nil
}

// DeltaWriter encodes an op stream. Its Write method fits Diff's emit
// parameter. Writes are buffered; Close ends the stream and flushes.
type DeltaWriter struct {
	w       *bufio.Writer
	next    int64 // block after the previous copy
	written int64
	started bool
	closed  bool
	err     error // sticky write error
	scratch []byte
}

// NewDeltaWriter returns a DeltaWriter writing to w.
func NewDeltaWriter(w io.Writer) *DeltaWriter {
	return &DeltaWriter{w: bufio.NewWriterSize(w, 64<<10), scratch: make([]byte, 0, 1+2*binary.MaxVarintLen64)}
}

// Write encodes op. Literals longer than MaxLiteral are split; empty ones
// are dropped. An invalid op is refused without writing anything; an
// error of the underlying writer is returned again by every later call.
func (d *DeltaWriter) Write(op Op) error {
	if d.err != nil {
		return d.err
	}
	if d.closed {
		return errors.New("delta writer: write after close")
	}
	switch op.Kind {
	case OpCopy:
		if op.Block < 0 || op.Block >= MaxBlocks || op.Count < 1 || op.Count > MaxBlocks-op.Block {
			return fmt.Errorf("delta writer: copy of %d blocks from block %d out of range (at most %d blocks)", op.Count, op.Block, MaxBlocks)
		}
		b := append(d.scratch[:0], tagCopy)
		b = binary.AppendVarint(b, op.Block-d.next)
		b = binary.AppendUvarint(b, uint64(op.Count))
		d.next = op.Block + op.Count
		return d.put(b, nil)
	case OpLiteral:
		for data := op.Data; len(data) > 0; {
			n := min(len(data), MaxLiteral)
			b := append(d.scratch[:0], tagLiteral)
			b = binary.AppendUvarint(b, uint64(n))
			if err := d.put(b, data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
		return nil
	}
	return fmt.Errorf("delta writer: unknown op kind %v", op.Kind)
}

// put writes the header (on first use), then b and data.
func (d *DeltaWriter) put(b, data []byte) error {
	if !d.started {
		d.started = true
		if err := d.write(append([]byte(deltaMagic), Version)); err != nil {
			return err
		}
	}
	if err := d.write(b); err != nil {
		return err
	}
	return d.write(data)
}

func (d *DeltaWriter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := d.w.Write(p)
	d.written += int64(n)
	if err != nil {
		d.err = fmt.Errorf("delta writer: %w", err)
	}
	return d.err
}

// Close writes the end marker and flushes; it does not close the
// underlying writer. Closing twice is harmless.
func (d *DeltaWriter) Close() error {
	if d.err != nil || d.closed {
		return d.err
	}
	if err := d.put([]byte{tagEnd}, nil); err != nil {
		return err
	}
	d.closed = true
	if err := d.w.Flush(); err != nil {
		d.err = fmt.Errorf("delta writer: flush: %w", err)
	}
	return d.err
}

// Written returns the number of encoded bytes so far: what the delta costs
// on the wire.
func (d *DeltaWriter) Written() int64 {
	return d.written
}

// DeltaReader decodes an op stream, checking every op it returns.
type DeltaReader struct {
	r       byteReader
	buf     []byte
	next    int64 // block after the previous copy
	ops     int64
	started bool
	err     error // sticky: io.EOF after the end marker, or the failure
}

// NewDeltaReader returns a DeltaReader reading from r. If r is an
// io.ByteReader (a *bufio.Reader, *bytes.Reader...) the reader stops right
// after the end marker, so r may carry more; otherwise it buffers r and
// may read beyond the end.
func NewDeltaReader(r io.Reader) *DeltaReader {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &DeltaReader{r: br}
}

// Next returns the next op, or io.EOF after the end marker. A stream that
// ends without an end marker fails with an error wrapping
// io.ErrUnexpectedEOF, a malformed one with an error wrapping ErrCorrupt.
// The Data of a literal is valid until the next call. Errors are sticky.
func (d *DeltaReader) Next() (Op, error) {
	if d.err != nil {
		return Op{}, d.err
	}
	op, err := d.next1()
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("delta stream: op %d: %w", d.ops, err)
		}
		d.err = err
		return Op{}, err
	}
	d.ops++
	return op, nil
}

func (d *DeltaReader) next1() (Op, error) {
	if !d.started {
		if err := readHeader(d.r, deltaMagic); err != nil {
			return Op{}, err
		}
		d.started = true
	}
	tag, err := d.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return Op{}, fmt.Errorf("no end marker: %w", io.ErrUnexpectedEOF)
		}
		return Op{}, err
	}
	switch tag {
	case tagEnd:
		return Op{}, io.EOF
	case tagCopy:
		delta, err := readVarint(d.r)
		if err != nil {
			return Op{}, fmt.Errorf("copy block: %w", err)
		}
		count, err := readUvarint(d.r)
		if err != nil {
			return Op{}, fmt.Errorf("copy count: %w", err)
		}
		// d.next is in 0..MaxBlocks, so these bounds cannot overflow.
		if delta < -d.next || delta >= MaxBlocks-d.next {
			return Op{}, fmt.Errorf("copy from block %d%+d out of range: %w", d.next, delta, ErrCorrupt)
		}
		block := d.next + delta
		if count < 1 || count > uint64(MaxBlocks-block) {
			return Op{}, fmt.Errorf("copy of %d blocks from block %d out of range: %w", count, block, ErrCorrupt)
		}
		d.next = block + int64(count)
		return Op{Kind: OpCopy, Block: block, Count: int64(count)}, nil
	case tagLiteral:
		n, err := readUvarint(d.r)
		if err != nil {
			return Op{}, fmt.Errorf("literal length: %w", err)
		}
		if n < 1 || n > MaxLiteral {
			return Op{}, fmt.Errorf("literal length %d out of range 1..%d: %w", n, MaxLiteral, ErrCorrupt)
		}
		if uint64(cap(d.buf)) < n {
			d.buf = make([]byte, MaxLiteral)
		}
		data := d.buf[:n]
		if _, err := io.ReadFull(d.r, data); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Op{}, fmt.Errorf("literal of %d bytes: %w", n, err)
		}
		return Op{Kind: OpLiteral, Data: data}, nil
	}
	return Op{}, fmt.Errorf("unknown op tag 0x%02x: %w", tag, ErrCorrupt)
}

// DiffStream runs Diff and writes the whole encoded delta, end marker
// included, to w, returning Diff's Stats (for the exact encoded size, use a
// DeltaWriter and its Written method instead). When Diff fails the end
// marker is not written, so the receiver sees a truncated delta, never a
// wrong file.
func DiffStream(ctx context.Context, newFile io.Reader, sig *Signature, w io.Writer) (Stats, error) {
	dw := NewDeltaWriter(w)
	st, err := Diff(ctx, newFile, sig, dw.Write)
	if err != nil {
		return st, err
	}
	if err := dw.Close(); err != nil {
		return st, fmt.Errorf("diff: %w", err)
	}
	return st, nil
}

// ApplyStream decodes a delta from r and applies it as Apply does,
// returning the number of bytes written to w.
func ApplyStream(ctx context.Context, basis io.ReaderAt, basisSize int64, blockSize int, r io.Reader, w io.Writer) (int64, error) {
	return Apply(ctx, basis, basisSize, blockSize, NewDeltaReader(r).Next, w)
}

// byteReader is what the decoders read from.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// oneByteReader adds ReadByte to a reader by reading one byte at a time,
// so the signature decoder never reads past the signature's end.
type oneByteReader struct {
	io.Reader
	b [1]byte
}

func (o *oneByteReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(o.Reader, o.b[:]); err != nil {
		return 0, err
	}
	return o.b[0], nil
}

func asByteReader(r io.Reader) byteReader {
	if br, ok := r.(byteReader); ok {
		return br
	}
	return &oneByteReader{Reader: r}
}

// readHeader reads and checks a magic string and the version byte.
func readHeader(r io.Reader, magic string) error {
	var h [len(sigMagic) + 1]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("header: %w", err)
	}
	if string(h[:len(magic)]) != magic {
		return fmt.Errorf("bad magic %q, want %q: %w", h[:len(magic)], magic, ErrCorrupt)
	}
	if v := h[len(magic)]; v != Version {
		return fmt.Errorf("unsupported version %d (want %d): %w", v, Version, ErrCorrupt)
	}
	return nil
}

// readUvarint reads a minimally encoded unsigned varint. End of input
// inside it, or before it, is io.ErrUnexpectedEOF: every varint is part of
// a larger record.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	for i, shift := 0, uint(0); i < binary.MaxVarintLen64; i, shift = i+1, shift+7 {
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, fmt.Errorf("varint not minimally encoded: %w", ErrCorrupt)
			}
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, fmt.Errorf("varint overflows 64 bits: %w", ErrCorrupt)
			}
			return x | uint64(c)<<shift, nil
		}
		x |= uint64(c&0x7f) << shift
	}
	return 0, fmt.Errorf("varint overflows 64 bits: %w", ErrCorrupt)
}

// readVarint reads a zig-zag encoded signed varint.
func readVarint(r io.ByteReader) (int64, error) {
	ux, err := readUvarint(r)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, err
}
