// Package delta implements the rsync delta algorithm goldcast uses to move
// only the changed parts of changed files: from a golden client to the
// server on capture, and from the server to a node on update.
//
// The receiver, which holds an old copy of a file (the basis), cuts it into
// fixed-size blocks and sends a Signature: per block a weak rolling
// checksum and a strong checksum. The sender runs Diff over the new file,
// sliding a window one byte at a time and updating the weak checksum in
// O(1) per byte; when the weak checksum names a basis block and the strong
// checksum agrees, the sender emits a copy of that block instead of its
// bytes. The result is a stream of Ops (copy a run of basis blocks, or
// literal bytes) from which Apply rebuilds the new file on the receiver.
//
// EncodeSignature, DeltaWriter and their decoders define a compact binary
// encoding for signatures and op streams (see Version for the format).
// Decoding trusts nothing: truncated input fails with an error wrapping
// io.ErrUnexpectedEOF, absurd sizes are refused before anything is
// allocated for them, and Apply checks every copy against the basis, so a
// hostile delta fails cleanly instead of reading out of range.
//
// The package does not verify the rebuilt file as a whole: a strong
// checksum match is a (very) probable match, not a proof. Callers compare
// the result with the sha256 the image manifest records, as goldcast does
// for every file it lands.
package delta

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
)

// Limits on block sizes, block counts and literal runs. They bound what a
// Signature or an op stream may claim, so a decoder can refuse absurd
// input before allocating for it.
const (
	// MinBlockSize is the block size BlockSizeFor never goes below.
	MinBlockSize = 700
	// MaxAutoBlockSize is the block size BlockSizeFor never exceeds.
	MaxAutoBlockSize = 128 << 10
	// MaxBlockSize is the largest block size Sign, Diff, Apply and the
	// wire encoding accept (callers may pick any size from 1 to this).
	MaxBlockSize = 1 << 20
	// MaxBlocks is the largest number of blocks a Signature may have:
	// with 128 KiB blocks, files up to 128 TiB.
	MaxBlocks = 1 << 30
	// DefaultStrongLen is the strong checksum length Sign produces: the
	// first 16 bytes of the block's sha256.
	DefaultStrongLen = 16
	// MaxStrongLen is the longest strong checksum (a whole sha256).
	MaxStrongLen = sha256.Size
	// MaxLiteral is the most literal bytes one Op carries; Diff splits
	// longer runs of unmatched bytes.
	MaxLiteral = 64 << 10
)

// Signature describes a basis file (the receiver's old copy) for Diff.
type Signature struct {
	// BlockSize is the length of every block but the last, which holds
	// the remaining FileSize % BlockSize bytes when that is not zero.
	BlockSize int
	// StrongLen is the length of each BlockSum.Strong, 1 to MaxStrongLen.
	// Shorter strong checksums make signatures smaller and false matches
	// likelier; see Shorten.
	StrongLen int
	// FileSize is the length of the basis file in bytes.
	FileSize int64
	// Blocks holds one checksum pair per block, in file order; there are
	// exactly NumBlocks(FileSize, BlockSize) of them.
	Blocks []BlockSum
}

// BlockSum is the pair of checksums of one basis block.
type BlockSum struct {
	// Weak is the rsync-style rolling checksum: the low 16 bits are the
	// sum of the block's bytes (a), the high 16 bits the sum of a over
	// every prefix of the block (b), both modulo 2^16.
	Weak uint32
	// Strong is the first Signature.StrongLen bytes of the block's sha256.
	Strong []byte
}

// Stats counts what a transfer cost: literal bytes cross the wire, matched
// bytes are copied from the receiver's basis.
type Stats struct {
	// LiteralBytes is the number of new-file bytes sent as literals.
	LiteralBytes int64
	// MatchedBytes is the number of new-file bytes copied from the basis.
	MatchedBytes int64
}

// OpKind says what an Op does.
type OpKind uint8

// The kinds of Op.
const (
	// OpCopy copies Count consecutive basis blocks starting at Block.
	OpCopy OpKind = iota + 1
	// OpLiteral writes Data.
	OpLiteral
)

// String names the kind for messages.
func (k OpKind) String() string {
	switch k {
	case OpCopy:
		return "copy"
	case OpLiteral:
		return "literal"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one instruction of a delta.
type Op struct {
	// Kind is OpCopy or OpLiteral.
	Kind OpKind
	// Block is the index of the first basis block to copy (OpCopy).
	Block int64
	// Count is the number of consecutive blocks to copy (OpCopy); the
	// last block of the basis may be short.
	Count int64
	// Data holds the bytes to write (OpLiteral).
	Data []byte
}

// BlockSizeFor picks a block size for a basis of fileSize bytes, the way
// rsync does: 700 bytes (MinBlockSize) up to 490,000 bytes (700²); above
// that the integer square root of fileSize rounded down to a multiple of
// 8 (but not below 700), which balances signature size against literal
// bytes per change; never more than 128 KiB (MaxAutoBlockSize), reached at
// 16 GiB.
func BlockSizeFor(fileSize int64) int {
	if fileSize <= MinBlockSize*MinBlockSize {
		return MinBlockSize
	}
	if fileSize >= MaxAutoBlockSize*MaxAutoBlockSize {
		return MaxAutoBlockSize
	}
	s := int64(math.Sqrt(float64(fileSize)))
	for s*s > fileSize { // correct float rounding
		s--
	}
	for (s+1)*(s+1) <= fileSize {
		s++
	}
	return max(MinBlockSize, int(s&^7))
}

// NumBlocks returns how many blocks a file of fileSize bytes has with the
// given block size, the last one possibly short (0 when either is not
// positive).
func NumBlocks(fileSize int64, blockSize int) int64 {
	if fileSize <= 0 || blockSize <= 0 {
		return 0
	}
	return (fileSize-1)/int64(blockSize) + 1
}

// checkGeometry validates a block size and file size pair.
func checkGeometry(fileSize int64, blockSize int) error {
	if blockSize < 1 || blockSize > MaxBlockSize {
		return fmt.Errorf("block size %d out of range 1..%d", blockSize, MaxBlockSize)
	}
	if fileSize < 0 {
		return fmt.Errorf("negative file size %d", fileSize)
	}
	if n := NumBlocks(fileSize, blockSize); n > MaxBlocks {
		return fmt.Errorf("file size %d needs %d blocks of %d bytes, more than %d", fileSize, n, blockSize, MaxBlocks)
	}
	return nil
}

// Validate checks that s is internally consistent: sizes in range, one
// BlockSum per block, every strong checksum StrongLen bytes long.
func (s *Signature) Validate() error {
	if s == nil {
		return errors.New("signature: nil")
	}
	if err := checkGeometry(s.FileSize, s.BlockSize); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if s.StrongLen < 1 || s.StrongLen > MaxStrongLen {
		return fmt.Errorf("signature: strong checksum length %d out of range 1..%d", s.StrongLen, MaxStrongLen)
	}
	if n := NumBlocks(s.FileSize, s.BlockSize); int64(len(s.Blocks)) != n {
		return fmt.Errorf("signature: %d blocks for a %d-byte file in %d-byte blocks, want %d", len(s.Blocks), s.FileSize, s.BlockSize, n)
	}
	for i, b := range s.Blocks {
		if len(b.Strong) != s.StrongLen {
			return fmt.Errorf("signature: block %d: strong checksum of %d bytes, want %d", i, len(b.Strong), s.StrongLen)
		}
	}
	return nil
}

// Shorten cuts every strong checksum of s to n bytes (1 to s.StrongLen),
// making the signature smaller to send at a higher risk of false matches,
// which the caller's whole-file check must then catch. It changes s in
// place.
func (s *Signature) Shorten(n int) error {
	if n < 1 || n > s.StrongLen {
		return fmt.Errorf("shorten signature: strong length %d out of range 1..%d", n, s.StrongLen)
	}
	for i := range s.Blocks {
		s.Blocks[i].Strong = s.Blocks[i].Strong[:n:n]
	}
	s.StrongLen = n
	return nil
}

// lastBlockLen returns the length of the last block of s (0 when empty).
func (s *Signature) lastBlockLen() int {
	if len(s.Blocks) == 0 {
		return 0
	}
	return int(s.FileSize - int64(len(s.Blocks)-1)*int64(s.BlockSize))
}

// Sign reads exactly fileSize bytes of a basis file from r and returns its
// signature with strong checksums of DefaultStrongLen bytes. A blockSize of
// 0 means BlockSizeFor(fileSize). A reader that ends early fails with an
// error wrapping io.ErrUnexpectedEOF.
func Sign(ctx context.Context, r io.Reader, fileSize int64, blockSize int) (*Signature, error) {
	if blockSize == 0 {
		blockSize = BlockSizeFor(fileSize)
	}
	if err := checkGeometry(fileSize, blockSize); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	n := NumBlocks(fileSize, blockSize)
	sig := &Signature{BlockSize: blockSize, StrongLen: DefaultStrongLen, FileSize: fileSize}
	store := newBlockStore(n, DefaultStrongLen)

	// Read many blocks at a time: fewer calls into r.
	per := max(1, (1<<20)/blockSize)
	buf := make([]byte, min(int64(per*blockSize), fileSize))
	var done int64
	for done < fileSize {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		chunk := min(int64(len(buf)), fileSize-done)
		if _, err := io.ReadFull(r, buf[:chunk]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("sign: read basis at offset %d of %d: %w", done, fileSize, err)
		}
		for off := int64(0); off < chunk; off += int64(blockSize) {
			blk := buf[off:min(off+int64(blockSize), chunk)]
			strong := sha256.Sum256(blk)
			store.add(weakSum(blk), strong[:DefaultStrongLen])
		}
		done += chunk
	}
	sig.Blocks = store.blocks
	return sig, nil
}

// blockStore accumulates BlockSums, allocating strong checksum storage in
// chunks so memory grows with the blocks actually added, never with a
// count merely claimed.
type blockStore struct {
	blocks    []BlockSum
	strongLen int
	strong    []byte // free tail of the current chunk
}

// storeChunk is how many strong checksums one allocation holds.
const storeChunk = 4096

func newBlockStore(claimed int64, strongLen int) *blockStore {
	return &blockStore{blocks: make([]BlockSum, 0, min(claimed, storeChunk)), strongLen: strongLen}
}

func (s *blockStore) add(weak uint32, strong []byte) {
	if len(s.strong) < s.strongLen {
		s.strong = make([]byte, storeChunk*s.strongLen)
	}
	dst := s.strong[:s.strongLen:s.strongLen]
	s.strong = s.strong[s.strongLen:]
	copy(dst, strong)
	s.blocks = append(s.blocks, BlockSum{Weak: weak, Strong: dst})
}

// weakSum computes the rolling checksum of b from scratch.
func weakSum(b []byte) uint32 {
	a, s := weakParts(b)
	return packWeak(a, s)
}

// weakParts returns the unmasked a and b sums of p: a is the sum of the
// bytes, b the sum of a after each byte, which equals Σ (len(p)-i)·p[i].
func weakParts(p []byte) (a, b uint32) {
	for len(p) >= 4 {
		a += uint32(p[0])
		b += a
		a += uint32(p[1])
		b += a
		a += uint32(p[2])
		b += a
		a += uint32(p[3])
		b += a
		p = p[4:]
	}
	for _, c := range p {
		a += uint32(c)
		b += a
	}
	return a, b
}

// packWeak combines the a and b sums into a weak checksum.
func packWeak(a, b uint32) uint32 {
	return a&0xffff | b<<16
}
