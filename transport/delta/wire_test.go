package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// plainReader hides every method but Read, like a socket would.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// uv and sv encode varints for hand-made hostile input.
func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }
func sv(x int64) []byte  { return binary.AppendVarint(nil, x) }

func sigHeader(bs, strongLen, size uint64) []byte {
	return cat([]byte(sigMagic), []byte{Version}, uv(bs), uv(strongLen), uv(size))
}

func deltaHeader() []byte { return cat([]byte(deltaMagic), []byte{Version}) }

func mustSign(t testing.TB, data []byte, blockSize int) *Signature {
	t.Helper()
	s, err := Sign(context.Background(), bytes.NewReader(data), int64(len(data)), blockSize)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return s
}

func encodeSig(t testing.TB, s *Signature) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := EncodeSignature(&b, s); err != nil {
		t.Fatalf("EncodeSignature: %v", err)
	}
	return b.Bytes()
}

func TestSignatureRoundTrip(t *testing.T) {
	shortened := mustSign(t, randBytes(20, 50_000), 1000)
	if err := shortened.Shorten(3); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sig  *Signature
	}{
		{"empty", mustSign(t, nil, 0)},
		{"one short block", mustSign(t, []byte("hello"), 0)},
		{"exact blocks", mustSign(t, randBytes(21, 4*700), 0)},
		{"short tail", mustSign(t, randBytes(22, 4*700+1), 0)},
		{"many blocks", mustSign(t, randBytes(23, 3<<20), 0)},
		{"more than a store chunk", mustSign(t, randBytes(24, 3*storeChunk+7), 1)},
		{"shortened", shortened},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := encodeSig(t, tt.sig)
			trailer := []byte("next message")
			for _, r := range []struct {
				name string
				r    io.Reader
			}{
				{"bytes.Reader", bytes.NewReader(cat(enc, trailer))},
				{"plain reader", plainReader{bytes.NewReader(cat(enc, trailer))}},
			} {
				got, err := DecodeSignature(r.r)
				if err != nil {
					t.Fatalf("%s: DecodeSignature: %v", r.name, err)
				}
				if diff := cmp.Diff(tt.sig, got, cmp.Comparer(bytes.Equal)); diff != "" {
					t.Errorf("%s: signature (-want +got):\n%s", r.name, diff)
				}
				rest, _ := io.ReadAll(r.r)
				if diff := cmp.Diff(trailer, rest); diff != "" {
					t.Errorf("%s: bytes after the signature (-want +got):\n%s", r.name, diff)
				}
			}
		})
	}
}

func TestSignatureSize(t *testing.T) {
	sig := mustSign(t, randBytes(25, 1<<20), 0)
	enc := encodeSig(t, sig)
	want := 5 + 2 + 1 + 3 + len(sig.Blocks)*(4+DefaultStrongLen)
	if diff := cmp.Diff(want, len(enc)); diff != "" {
		t.Errorf("encoded size (-want +got):\n%s", diff)
	}
}

func TestSignatureTruncated(t *testing.T) {
	enc := encodeSig(t, mustSign(t, randBytes(26, 5000), 700))
	for n := 0; n < len(enc); n++ {
		_, err := DecodeSignature(bytes.NewReader(enc[:n]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d/%d bytes: %v, want an error wrapping io.ErrUnexpectedEOF", n, len(enc), err)
		}
	}
}

func TestSignatureHostile(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		is   error
	}{
		{"bad magic", cat([]byte("GCDL"), []byte{Version}, uv(700), uv(16), uv(0)), ErrCorrupt},
		{"bad version", cat([]byte(sigMagic), []byte{2}, uv(700), uv(16), uv(0)), ErrCorrupt},
		{"zero block size", sigHeader(0, 16, 0), ErrCorrupt},
		{"huge block size", sigHeader(MaxBlockSize+1, 16, 0), ErrCorrupt},
		{"block size 2^63", sigHeader(1<<63, 16, 0), ErrCorrupt},
		{"zero strong length", sigHeader(700, 0, 0), ErrCorrupt},
		{"strong length 33", sigHeader(700, 33, 0), ErrCorrupt},
		{"2^40 blocks", sigHeader(700, 16, 700<<40), ErrCorrupt},
		{"file size 2^64-1", sigHeader(1, 16, math.MaxUint64), ErrCorrupt},
		{"varint overflow", cat([]byte(sigMagic), []byte{Version}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), ErrCorrupt},
		{"varint with 11 bytes", cat([]byte(sigMagic), []byte{Version}, bytes.Repeat([]byte{0x80}, 11)), ErrCorrupt},
		{"non-minimal varint", cat([]byte(sigMagic), []byte{Version}, []byte{0x80 | 5, 0x00}, uv(16), uv(0)), ErrCorrupt},
		{"blocks missing", sigHeader(700, 16, 1401), io.ErrUnexpectedEOF},
		{"half a block", cat(sigHeader(700, 16, 700), make([]byte, 10)), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeSignature(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.is) {
				t.Errorf("DecodeSignature: %v, want an error wrapping %v", err, tt.is)
			}
		})
	}
}

// TestSignatureClaimsDoNotAllocate checks that a signature claiming the
// largest allowed block count, then ending, costs memory in proportion to
// what arrived, not to the claim.
func TestSignatureClaimsDoNotAllocate(t *testing.T) {
	in := cat(sigHeader(1, 16, MaxBlocks), make([]byte, 100*(4+16)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeSignature(bytes.NewReader(in))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("DecodeSignature: %v, want an error wrapping io.ErrUnexpectedEOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("allocated %d bytes decoding a truncated signature", got)
	}
}

func TestEncodeSignatureRejectsInvalid(t *testing.T) {
	sig := mustSign(t, randBytes(27, 3000), 1000)
	sig.Blocks = sig.Blocks[:1]
	if err := EncodeSignature(io.Discard, sig); err == nil {
		t.Error("EncodeSignature of an inconsistent signature succeeded")
	}
}

func encodeOps(t testing.TB, ops []Op) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewDeltaWriter(&b)
	for _, op := range ops {
		if err := w.Write(op); err != nil {
			t.Fatalf("Write(%+v): %v", op, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := w.Written(); got != int64(b.Len()) {
		t.Errorf("Written() = %d, encoded %d bytes", got, b.Len())
	}
	return b.Bytes()
}

func decodeOps(t testing.TB, r io.Reader) []Op {
	t.Helper()
	d := NewDeltaReader(r)
	var ops []Op
	for {
		op, err := d.Next()
		if err == io.EOF {
			return ops
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		op.Data = bytes.Clone(op.Data)
		ops = append(ops, op)
	}
}

func TestDeltaWireRoundTrip(t *testing.T) {
	copyOp := func(block, count int64) Op { return Op{Kind: OpCopy, Block: block, Count: count} }
	lit := func(b []byte) Op { return Op{Kind: OpLiteral, Data: b} }
	big := randBytes(28, 2*MaxLiteral+3)
	tests := []struct {
		name string
		in   []Op
		want []Op // nil: same as in
		size int  // encoded size, 0: not checked
	}{
		{name: "empty", in: nil, size: 6},
		{name: "one copy", in: []Op{copyOp(0, 1)}, size: 6 + 3},
		{name: "consecutive copies", in: []Op{copyOp(0, 5), lit([]byte("x")), copyOp(5, 2)}, size: 6 + 3 + 3 + 3},
		{name: "backwards copy", in: []Op{copyOp(100, 1), copyOp(3, 1), copyOp(MaxBlocks-1, 1)}},
		{name: "largest copy", in: []Op{copyOp(0, MaxBlocks)}},
		{name: "literal", in: []Op{lit([]byte("hello"))}, size: 6 + 2 + 5},
		{name: "empty literal dropped", in: []Op{lit(nil), copyOp(1, 1)}, want: []Op{copyOp(1, 1)}},
		{name: "long literal split", in: []Op{lit(big)}, want: []Op{lit(big[:MaxLiteral]), lit(big[MaxLiteral : 2*MaxLiteral]), lit(big[2*MaxLiteral:])}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := encodeOps(t, tt.in)
			if tt.size != 0 && len(enc) != tt.size {
				t.Errorf("encoded %d bytes, want %d", len(enc), tt.size)
			}
			want := tt.want
			if want == nil {
				want = tt.in
			}
			trailer := []byte("more")
			r := bytes.NewReader(cat(enc, trailer))
			got := decodeOps(t, r)
			if diff := cmp.Diff(want, got, cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			rest, _ := io.ReadAll(r)
			if diff := cmp.Diff(trailer, rest); diff != "" {
				t.Errorf("bytes after the delta (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, decodeOps(t, plainReader{bytes.NewReader(enc)}), cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("ops from a plain reader (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeltaReaderEOFIsSticky(t *testing.T) {
	d := NewDeltaReader(bytes.NewReader(encodeOps(t, []Op{{Kind: OpCopy, Count: 1}})))
	if _, err := d.Next(); err != nil {
		t.Fatalf("Next: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("Next after the end marker: %v, want io.EOF", err)
		}
	}
}

func TestDeltaTruncated(t *testing.T) {
	enc := encodeOps(t, []Op{
		{Kind: OpCopy, Block: 300, Count: 200},
		{Kind: OpLiteral, Data: randBytes(29, 1000)},
		{Kind: OpCopy, Block: 0, Count: 1},
	})
	for n := 0; n < len(enc); n++ {
		d := NewDeltaReader(bytes.NewReader(enc[:n]))
		var err error
		for err == nil {
			_, err = d.Next()
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d/%d bytes: %v, want an error wrapping io.ErrUnexpectedEOF", n, len(enc), err)
		}
		if _, again := d.Next(); again != err {
			t.Fatalf("prefix of %d bytes: error not sticky: %v then %v", n, err, again)
		}
	}
}

func TestDeltaHostile(t *testing.T) {
	h := deltaHeader()
	end := []byte{tagEnd}
	tests := []struct {
		name string
		in   []byte
		is   error
	}{
		{"bad magic", cat([]byte("GCSG\x01"), end), ErrCorrupt},
		{"bad version", cat([]byte(deltaMagic), []byte{0}, end), ErrCorrupt},
		{"unknown tag", cat(h, []byte{0x03}, end), ErrCorrupt},
		{"empty literal", cat(h, []byte{tagLiteral}, uv(0), end), ErrCorrupt},
		{"literal too long", cat(h, []byte{tagLiteral}, uv(MaxLiteral+1), make([]byte, MaxLiteral+1), end), ErrCorrupt},
		{"literal 2^62", cat(h, []byte{tagLiteral}, uv(1<<62)), ErrCorrupt},
		{"literal length overflow", cat(h, []byte{tagLiteral}, bytes.Repeat([]byte{0xff}, 10), []byte{0x7f}), ErrCorrupt},
		{"literal cut short", cat(h, []byte{tagLiteral}, uv(100), make([]byte, 50)), io.ErrUnexpectedEOF},
		{"copy count zero", cat(h, []byte{tagCopy}, sv(0), uv(0), end), ErrCorrupt},
		{"copy negative block", cat(h, []byte{tagCopy}, sv(-1), uv(1), end), ErrCorrupt},
		{"copy block too large", cat(h, []byte{tagCopy}, sv(MaxBlocks), uv(1), end), ErrCorrupt},
		{"copy block 2^62", cat(h, []byte{tagCopy}, sv(1<<62), uv(1), end), ErrCorrupt},
		{"copy block -2^63", cat(h, []byte{tagCopy}, sv(math.MinInt64), uv(1), end), ErrCorrupt},
		{"copy count too large", cat(h, []byte{tagCopy}, sv(5), uv(MaxBlocks), end), ErrCorrupt},
		{"copy count 2^64-1", cat(h, []byte{tagCopy}, sv(0), uv(math.MaxUint64), end), ErrCorrupt},
		{"relative block overflow", cat(h, []byte{tagCopy}, sv(MaxBlocks-1), uv(1), []byte{tagCopy}, sv(math.MaxInt64), uv(1), end), ErrCorrupt},
		{"copy cut short", cat(h, []byte{tagCopy}, sv(3)), io.ErrUnexpectedEOF},
		{"no end marker", cat(h, []byte{tagCopy}, sv(3), uv(1)), io.ErrUnexpectedEOF},
		{"header only", h, io.ErrUnexpectedEOF},
		{"nothing", nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDeltaReader(bytes.NewReader(tt.in))
			var err error
			for err == nil {
				_, err = d.Next()
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("Next: %v, want an error wrapping %v", err, tt.is)
			}
			// Apply must fail too (maybe sooner, on a copy outside its
			// 10-block basis), without reading out of range.
			if _, err := ApplyStream(context.Background(), bytes.NewReader(make([]byte, 100)), 100, 10, bytes.NewReader(tt.in), io.Discard); err == nil {
				t.Error("ApplyStream succeeded")
			}
		})
	}
}

func TestDeltaWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		op   Op
	}{
		{"negative block", Op{Kind: OpCopy, Block: -1, Count: 1}},
		{"block too large", Op{Kind: OpCopy, Block: MaxBlocks, Count: 1}},
		{"zero count", Op{Kind: OpCopy, Block: 0, Count: 0}},
		{"count overflow", Op{Kind: OpCopy, Block: 10, Count: math.MaxInt64}},
		{"unknown kind", Op{Kind: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			w := NewDeltaWriter(&b)
			if err := w.Write(tt.op); err == nil {
				t.Fatal("Write succeeded")
			}
			// The writer stays usable: the bad op wrote nothing.
			if err := w.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if ops := decodeOps(t, &b); len(ops) != 0 {
				t.Errorf("decoded %v after a refused op", ops)
			}
		})
	}
}

// failWriter fails every write.
type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestDeltaWriterErrors(t *testing.T) {
	errW := errors.New("disk full")
	w := NewDeltaWriter(failWriter{errW})
	if err := w.Write(Op{Kind: OpLiteral, Data: make([]byte, 100<<10)}); !errors.Is(err, errW) {
		t.Fatalf("Write of a large literal: %v, want an error wrapping %v", err, errW)
	}
	if err := w.Write(Op{Kind: OpCopy, Count: 1}); !errors.Is(err, errW) {
		t.Errorf("Write after a failure: %v, want the same error", err)
	}
	if err := w.Close(); !errors.Is(err, errW) {
		t.Errorf("Close after a failure: %v, want the same error", err)
	}

	var b bytes.Buffer
	w = NewDeltaWriter(&b)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Write(Op{Kind: OpCopy, Count: 1}); err == nil {
		t.Error("Write after Close succeeded")
	}
}
