package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// randBytes returns n pseudo-random bytes, the same for the same seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// cat concatenates byte slices into a new one.
func cat(parts ...[]byte) []byte {
	return slices.Concat(parts...)
}

// collect runs Diff and returns its ops with literal data copied.
func collect(t testing.TB, newFile []byte, sig *Signature) ([]Op, Stats) {
	t.Helper()
	var ops []Op
	st, err := Diff(context.Background(), bytes.NewReader(newFile), sig, func(op Op) error {
		op.Data = bytes.Clone(op.Data)
		ops = append(ops, op)
		return nil
	})
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return ops, st
}

// sliceOps returns a next function over ops.
func sliceOps(ops []Op) func() (Op, error) {
	return func() (Op, error) {
		if len(ops) == 0 {
			return Op{}, io.EOF
		}
		op := ops[0]
		ops = ops[1:]
		return op, nil
	}
}

// roundTrip signs old, diffs new against it and rebuilds new twice: from
// the ops directly and through the wire encoding of signature and delta.
// It fails the test unless both rebuilds equal new, and returns the stats
// and ops.
func roundTrip(t testing.TB, old, newFile []byte, blockSize int) (Stats, []Op) {
	t.Helper()
	ctx := context.Background()
	sig, err := Sign(ctx, bytes.NewReader(old), int64(len(old)), blockSize)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	ops, st := collect(t, newFile, sig)
	if got := st.LiteralBytes + st.MatchedBytes; got != int64(len(newFile)) {
		t.Fatalf("stats %+v cover %d bytes, want %d", st, got, len(newFile))
	}

	var out bytes.Buffer
	n, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), sig.BlockSize, sliceOps(ops), &out)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if n != int64(out.Len()) {
		t.Errorf("Apply returned %d, wrote %d bytes", n, out.Len())
	}
	checkSame(t, "Apply", out.Bytes(), newFile)

	// Through the wire: signature to the sender, delta back.
	var sigWire, deltaWire, out2 bytes.Buffer
	if err := EncodeSignature(&sigWire, sig); err != nil {
		t.Fatalf("EncodeSignature: %v", err)
	}
	sig2, err := DecodeSignature(&sigWire)
	if err != nil {
		t.Fatalf("DecodeSignature: %v", err)
	}
	st2, err := DiffStream(ctx, bytes.NewReader(newFile), sig2, &deltaWire)
	if err != nil {
		t.Fatalf("DiffStream: %v", err)
	}
	if st2 != st {
		t.Errorf("DiffStream stats %+v, Diff stats %+v", st2, st)
	}
	if _, err := ApplyStream(ctx, bytes.NewReader(old), int64(len(old)), sig.BlockSize, &deltaWire, &out2); err != nil {
		t.Fatalf("ApplyStream: %v", err)
	}
	checkSame(t, "ApplyStream", out2.Bytes(), newFile)
	return st, ops
}

func checkSame(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: rebuilt %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
}

func TestBlockSizeFor(t *testing.T) {
	tests := []struct {
		size int64
		want int
	}{
		{0, 700},
		{1, 700},
		{490000, 700},
		{490001, 700},
		{4 << 20, 2048},
		{4<<20 + 100, 2048},
		{200_000_000, 14136},
		{1 << 30, 32768},
		{16<<30 - 1, 131064},
		{16 << 30, 131072},
		{1 << 50, 131072},
		{math.MaxInt64, 131072},
	}
	for _, tt := range tests {
		got := BlockSizeFor(tt.size)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("BlockSizeFor(%d) (-want +got):\n%s", tt.size, diff)
		}
		if got > MinBlockSize && got%8 != 0 {
			t.Errorf("BlockSizeFor(%d) = %d, not a multiple of 8", tt.size, got)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	const size = 4 << 20
	base := randBytes(1, size)
	odd := randBytes(2, size+123) // a short last block
	small := randBytes(3, 300)
	bs := BlockSizeFor(size)
	mid := size / 2

	oneByte := bytes.Clone(base)
	oneByte[mid] ^= 0xff
	firstByte := bytes.Clone(base)
	firstByte[0]++
	lastByte := bytes.Clone(odd)
	lastByte[len(lastByte)-1]++
	smallChanged := bytes.Clone(small)
	smallChanged[150]++

	pattern := randBytes(4, bs)
	repeated := bytes.Repeat(pattern, 64)
	repeatedEdit := bytes.Clone(repeated)
	repeatedEdit[10*bs+7]++
	zeros := make([]byte, size)
	zerosEdit := bytes.Clone(zeros)
	zerosEdit[12345] = 1

	tests := []struct {
		name       string
		old, new   []byte
		blockSize  int // 0: BlockSizeFor
		maxLiteral int64
		maxOps     int // 0: not checked
	}{
		{"identical", base, base, 0, 0, 1},
		{"identical short tail", odd, odd, 0, 0, 0},
		{"one byte changed", base, oneByte, 0, int64(bs), 0},
		{"first byte changed", base, firstByte, 0, int64(bs), 0},
		{"last byte of short tail changed", odd, lastByte, 0, 123, 0},
		{"insert in the middle", base, cat(base[:mid], randBytes(5, 100), base[mid:]), 0, int64(bs) + 100, 0},
		{"insert unaligned", base, cat(base[:mid+3], randBytes(6, 5000), base[mid+3:]), 0, 2*int64(bs) + 5000, 0},
		{"delete a range", base, cat(base[:mid], base[mid+5000:]), 0, int64(bs), 0},
		{"append", base, cat(base, randBytes(7, 10000)), 0, 10000, 0},
		{"append after short tail", odd, cat(odd, randBytes(8, 10000)), 0, 10000, 0},
		{"prepend", base, cat(randBytes(9, 777), base), 0, 777, 0},
		{"prepend before short tail", odd, cat(randBytes(10, 777), odd), 0, 777, 0},
		{"truncate", base, base[:3<<20+5], 0, int64(bs), 0},
		{"truncate to one block", base, base[:bs], 0, 0, 0},
		{"swap halves", base, cat(base[mid:], base[:mid]), 0, 0, 2},
		{"all different", base, randBytes(11, size), 0, size, 0},
		{"empty old", nil, base, 0, size, 0},
		{"empty new", base, nil, 0, 0, 0},
		{"both empty", nil, nil, 0, 0, 0},
		{"old smaller than a block", small, small, 0, 0, 0},
		{"old smaller than a block, changed", small, smallChanged, 0, 300, 0},
		{"old smaller than a block, prepended", small, cat([]byte("header"), small), 0, 6, 0},
		{"old smaller than a block, appended", small, cat(small, []byte("trailer")), 0, 307, 0},
		{"new smaller than a block", base, base[100:400], 0, 300, 0},
		{"repeated blocks, identical", repeated, repeated, bs, 0, 1},
		{"repeated blocks, one byte changed", repeated, repeatedEdit, bs, int64(bs), 0},
		{"repeated blocks, extended", repeated, cat(repeated, repeated), bs, 0, 2},
		{"repeated blocks, other block size", repeated, repeatedEdit, 0, 2 * 700, 0},
		{"zeros, one byte changed", zeros, zerosEdit, 0, int64(bs), 4},
		{"zeros, identical", zeros, zeros, 0, 0, 1},
		{"tiny blocks", small, smallChanged, 1, 1, 0},
		{"tiny blocks, insert", small, cat(small[:99], []byte("xyz"), small[99:]), 3, 3, 0},
		{"literal runs over MaxLiteral", nil, randBytes(12, 3*MaxLiteral+5), 0, 3*MaxLiteral + 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ops := roundTrip(t, tt.old, tt.new, tt.blockSize)
			if st.LiteralBytes > tt.maxLiteral {
				t.Errorf("literal bytes %d, want at most %d (stats %+v)", st.LiteralBytes, tt.maxLiteral, st)
			}
			if tt.maxOps > 0 && len(ops) > tt.maxOps {
				t.Errorf("%d ops, want at most %d", len(ops), tt.maxOps)
			}
		})
	}
}

func TestDiffOps(t *testing.T) {
	copyOp := func(block, count int64) Op { return Op{Kind: OpCopy, Block: block, Count: count} }
	lit := func(s string) Op { return Op{Kind: OpLiteral, Data: []byte(s)} }
	tests := []struct {
		name     string
		old, new string
		want     []Op
	}{
		{"identical", "aaaabbbbcccc", "aaaabbbbcccc", []Op{copyOp(0, 3)}},
		{"insert", "aaaabbbbcccc", "aaaaXbbbbcccc", []Op{copyOp(0, 1), lit("X"), copyOp(1, 2)}},
		{"delete", "aaaabbbbcccc", "aaaacccc", []Op{copyOp(0, 1), copyOp(2, 1)}},
		{"reorder", "aaaabbbbcccc", "ccccaaaabbbb", []Op{copyOp(2, 1), copyOp(0, 2)}},
		{"change", "aaaabbbbcccc", "aaaabxbbcccc", []Op{copyOp(0, 1), lit("bxbb"), copyOp(2, 1)}},
		{"short tail", "aaaabbbbcc", "aaaabbbbcc", []Op{copyOp(0, 3)}},
		{"append after short tail", "aaaabbbbcc", "aaaabbbbccZZ", []Op{copyOp(0, 3), lit("ZZ")}},
		{"prepend before short tail", "aaaabbbbcc", "Qaaaabbbbcc", []Op{lit("Q"), copyOp(0, 3)}},
		{"short tail alone at the end", "aaaabbbbcc", "xyzcc", []Op{lit("xyz"), copyOp(2, 1)}},
		{"repeated blocks", "abcdabcdabcd", "abcdabcdabcdabcd", []Op{copyOp(0, 3), copyOp(0, 1)}},
		{"old smaller than a block", "ab", "ab", []Op{copyOp(0, 1)}},
		{"old smaller than a block, appended", "ab", "abc", []Op{lit("abc")}},
		{"empty old", "", "hello", []Op{lit("hello")}},
		{"empty new", "aaaabbbb", "", nil},
		{"new shorter than a block", "aaaabbbb", "aaa", []Op{lit("aaa")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := Sign(context.Background(), strings.NewReader(tt.old), int64(len(tt.old)), 4)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			got, _ := collect(t, []byte(tt.new), sig)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			roundTrip(t, []byte(tt.old), []byte(tt.new), 4)
		})
	}
}

func TestDiffSplitsLiterals(t *testing.T) {
	sig, err := Sign(context.Background(), bytes.NewReader(nil), 0, 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	ops, _ := collect(t, randBytes(13, 3*MaxLiteral+10), sig)
	var got []int
	for _, op := range ops {
		got = append(got, len(op.Data))
	}
	want := []int{MaxLiteral, MaxLiteral, MaxLiteral, 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("literal lengths (-want +got):\n%s", diff)
	}
}

// TestSmallEditsLargeFile checks that the cost of an edit does not grow
// with the file: one changed byte in 4 MiB costs less than two blocks.
func TestSmallEditsLargeFile(t *testing.T) {
	const size = 4 << 20
	base := randBytes(14, size)
	bs := BlockSizeFor(size)
	for _, off := range []int{0, 1, bs - 1, bs, size / 3, size - 1} {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			edited := bytes.Clone(base)
			edited[off] ^= 0x55
			st, ops := roundTrip(t, base, edited, 0)
			if st.LiteralBytes >= 2*int64(bs) {
				t.Errorf("one changed byte at %d: %d literal bytes, want < %d", off, st.LiteralBytes, 2*bs)
			}
			if len(ops) > 3 {
				t.Errorf("one changed byte at %d: %d ops, want at most 3", off, len(ops))
			}
		})
	}
}

func TestShorten(t *testing.T) {
	ctx := context.Background()
	old := randBytes(15, 100_000)
	sig, err := Sign(ctx, bytes.NewReader(old), int64(len(old)), 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	for _, n := range []int{0, -1, DefaultStrongLen + 1} {
		if err := sig.Shorten(n); err == nil {
			t.Errorf("Shorten(%d) succeeded", n)
		}
	}
	if err := sig.Shorten(4); err != nil {
		t.Fatalf("Shorten(4): %v", err)
	}
	if err := sig.Validate(); err != nil {
		t.Fatalf("Validate after Shorten: %v", err)
	}
	edited := cat(old[:50_000], []byte("inserted"), old[50_000:])
	ops, st := collect(t, edited, sig)
	if st.LiteralBytes > int64(sig.BlockSize)+8 {
		t.Errorf("literal bytes %d with shortened signature", st.LiteralBytes)
	}
	var out bytes.Buffer
	if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), sig.BlockSize, sliceOps(ops), &out); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkSame(t, "Apply", out.Bytes(), edited)
}

func TestSignErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		data      []byte
		size      int64
		blockSize int
		is        error
	}{
		{"short reader", make([]byte, 1000), 5000, 700, io.ErrUnexpectedEOF},
		{"empty reader", nil, 1, 700, io.ErrUnexpectedEOF},
		{"negative block size", nil, 0, -1, nil},
		{"block size too large", nil, 0, MaxBlockSize + 1, nil},
		{"negative file size", nil, -1, 700, nil},
		{"too many blocks", nil, MaxBlocks + 1, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Sign(ctx, bytes.NewReader(tt.data), tt.size, tt.blockSize)
			if err == nil {
				t.Fatal("Sign succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Sign: %v, want an error wrapping %v", err, tt.is)
			}
		})
	}
}

func TestDiffRejectsBadSignature(t *testing.T) {
	good := func() *Signature {
		s, err := Sign(context.Background(), bytes.NewReader(randBytes(16, 3000)), 3000, 1000)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		return s
	}
	tests := []struct {
		name   string
		mutate func(s *Signature) *Signature
	}{
		{"nil", func(*Signature) *Signature { return nil }},
		{"missing block", func(s *Signature) *Signature { s.Blocks = s.Blocks[:2]; return s }},
		{"extra block", func(s *Signature) *Signature { s.Blocks = append(s.Blocks, s.Blocks[0]); return s }},
		{"short strong", func(s *Signature) *Signature { s.Blocks[1].Strong = s.Blocks[1].Strong[:3]; return s }},
		{"zero block size", func(s *Signature) *Signature { s.BlockSize = 0; return s }},
		{"strong length too long", func(s *Signature) *Signature { s.StrongLen = 33; return s }},
		{"negative file size", func(s *Signature) *Signature { s.FileSize = -3000; return s }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := tt.mutate(good())
			_, err := Diff(context.Background(), bytes.NewReader([]byte("x")), sig, func(Op) error { return nil })
			if err == nil {
				t.Fatal("Diff succeeded")
			}
		})
	}
}

// readerAtFunc adapts a function to io.ReaderAt.
type readerAtFunc func(p []byte, off int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

func TestApplyHostile(t *testing.T) {
	// A basis of 38 bytes in 4-byte blocks: 10 blocks, the last 2 bytes.
	basis := randBytes(17, 38)
	copyOp := func(block, count int64) Op { return Op{Kind: OpCopy, Block: block, Count: count} }
	errNext := errors.New("stream broke")
	tests := []struct {
		name      string
		basisSize int64
		blockSize int
		basis     io.ReaderAt
		ops       []Op
		nextErr   error
		is        error
	}{
		{name: "negative block", ops: []Op{copyOp(-1, 1)}},
		{name: "block past the end", ops: []Op{copyOp(10, 1)}},
		{name: "block far past the end", ops: []Op{copyOp(1<<40, 1)}},
		{name: "zero count", ops: []Op{copyOp(0, 0)}},
		{name: "negative count", ops: []Op{copyOp(3, -1)}},
		{name: "count past the end", ops: []Op{copyOp(5, 6)}},
		{name: "count overflow", ops: []Op{copyOp(5, math.MaxInt64)}},
		{name: "block and count overflow", ops: []Op{copyOp(math.MaxInt64, math.MaxInt64)}},
		{name: "unknown kind", ops: []Op{{Kind: 0}}},
		{name: "unknown kind 7", ops: []Op{{Kind: 7, Data: []byte("x")}}},
		{name: "bad op after good ones", ops: []Op{copyOp(0, 10), {Kind: OpLiteral, Data: []byte("ok")}, copyOp(9, 2)}},
		{name: "next fails", nextErr: errNext, is: errNext},
		{name: "basis shorter than claimed", basis: bytes.NewReader(basis[:20]), ops: []Op{copyOp(0, 10)}, is: io.ErrUnexpectedEOF},
		{name: "basis read fails", basis: readerAtFunc(func([]byte, int64) (int, error) { return 0, errNext }), ops: []Op{copyOp(0, 1)}, is: errNext},
		{name: "basis short read without error", basis: readerAtFunc(func(p []byte, _ int64) (int, error) { return len(p) / 2, nil }), ops: []Op{copyOp(0, 1)}, is: io.ErrUnexpectedEOF},
		{name: "zero block size", blockSize: -1, ops: []Op{copyOp(0, 1)}},
		{name: "negative basis size", basisSize: -1, ops: []Op{copyOp(0, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, bs := int64(len(basis)), 4
			if tt.basisSize != 0 {
				size = tt.basisSize
			}
			if tt.blockSize != 0 {
				bs = max(tt.blockSize, 0)
			}
			var ra io.ReaderAt = bytes.NewReader(basis)
			if tt.basis != nil {
				ra = tt.basis
			}
			next := sliceOps(tt.ops)
			if tt.nextErr != nil {
				next = func() (Op, error) { return Op{}, tt.nextErr }
			}
			_, err := Apply(context.Background(), ra, size, bs, next, io.Discard)
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Apply: %v, want an error wrapping %v", err, tt.is)
			}
		})
	}
}

func TestApplyCopiesShortLastBlock(t *testing.T) {
	basis := []byte("aaaabbbbcc")
	var out bytes.Buffer
	ops := []Op{{Kind: OpCopy, Block: 1, Count: 2}, {Kind: OpLiteral, Data: []byte("-")}, {Kind: OpCopy, Block: 0, Count: 3}}
	n, err := Apply(context.Background(), bytes.NewReader(basis), int64(len(basis)), 4, sliceOps(ops), &out)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff("bbbbcc-aaaabbbbcc", out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if n != int64(out.Len()) {
		t.Errorf("Apply returned %d, wrote %d", n, out.Len())
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := randBytes(18, 10_000)
	sig, err := Sign(context.Background(), bytes.NewReader(data), int64(len(data)), 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	tests := []struct {
		name string
		run  func() error
	}{
		{"Sign", func() error {
			_, err := Sign(ctx, bytes.NewReader(data), int64(len(data)), 0)
			return err
		}},
		{"Diff", func() error {
			_, err := Diff(ctx, bytes.NewReader(data), sig, func(Op) error { return nil })
			return err
		}},
		{"Apply", func() error {
			_, err := Apply(ctx, bytes.NewReader(data), int64(len(data)), sig.BlockSize, sliceOps([]Op{{Kind: OpCopy, Count: 1}}), io.Discard)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want an error wrapping context.Canceled", err)
			}
		})
	}
}

func TestDiffErrors(t *testing.T) {
	data := randBytes(19, 10_000)
	sig, err := Sign(context.Background(), bytes.NewReader(data), int64(len(data)), 0)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	errEmit := errors.New("emit failed")
	errRead := errors.New("read failed")
	tests := []struct {
		name string
		r    io.Reader
		emit func(Op) error
		is   error
	}{
		{"emit fails", bytes.NewReader(data), func(Op) error { return errEmit }, errEmit},
		{"read fails", io.MultiReader(bytes.NewReader(data[:5000]), iotestErrReader(errRead)), func(Op) error { return nil }, errRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Diff(context.Background(), tt.r, sig, tt.emit)
			if !errors.Is(err, tt.is) {
				t.Errorf("Diff: %v, want an error wrapping %v", err, tt.is)
			}
		})
	}
}

// iotestErrReader returns a reader that fails with err.
func iotestErrReader(err error) io.Reader {
	return readerFunc(func([]byte) (int, error) { return 0, err })
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// FuzzDeltaRoundTrip checks that Apply(Diff(old, new)) == new for any old,
// new and block size, directly and through the wire encoding.
func FuzzDeltaRoundTrip(f *testing.F) {
	f.Add([]byte("aaaabbbbcccc"), []byte("aaaaXbbbbcccc"), uint16(4))
	f.Add([]byte("the quick brown fox jumps over the lazy dog"), []byte("the quick red fox jumps over the lazy dog!"), uint16(5))
	f.Add([]byte("abcabcabcabcab"), []byte("cabcabcabxabcabc"), uint16(3))
	f.Add([]byte{}, []byte("new"), uint16(1))
	f.Add([]byte("old"), []byte{}, uint16(700))
	f.Fuzz(func(t *testing.T, old, newFile []byte, bs uint16) {
		roundTrip(t, old, newFile, int(bs%64)+1)
	})
}

// FuzzApplyStream feeds arbitrary bytes to the delta decoder and Apply: it
// must never panic, read outside the basis or write more than the ops can
// account for.
func FuzzApplyStream(f *testing.F) {
	basis := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	var seed bytes.Buffer
	dw := NewDeltaWriter(&seed)
	for _, op := range []Op{{Kind: OpCopy, Block: 2, Count: 3}, {Kind: OpLiteral, Data: []byte("lit")}, {Kind: OpCopy, Block: 0, Count: 1}} {
		if err := dw.Write(op); err != nil {
			f.Fatal(err)
		}
	}
	if err := dw.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(seed.Bytes())
	f.Add([]byte("GCDL\x01\x01\x7f\x01\x00"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		n, err := ApplyStream(context.Background(), bytes.NewReader(basis), int64(len(basis)), 5, bytes.NewReader(stream), io.Discard)
		if limit := int64(len(stream)) * int64(len(basis)); n > limit {
			t.Fatalf("wrote %d bytes from a %d-byte stream (err %v)", n, len(stream), err)
		}
	})
}
