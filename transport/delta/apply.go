package delta

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// copyChunk bounds how much of the basis Apply reads at once.
const copyChunk = 1 << 20

// Apply rebuilds the new file from the basis (basisSize bytes, cut into
// blocks of blockSize as in the Signature the delta was computed against)
// and the ops next yields, writing it to w, until next returns io.EOF. It
// returns the number of bytes written.
//
// Apply trusts no op: a copy must name blocks inside the basis and an
// unknown kind is refused, each with an error and without reading out of
// range; a basis that turns out shorter than basisSize fails with an error
// wrapping io.ErrUnexpectedEOF. Memory use is bounded whatever the ops
// say. The output is not bounded (ops may copy the same blocks again and
// again), so a caller that knows the expected size should limit w, and
// then check the result's hash. w must not be the basis itself.
func Apply(ctx context.Context, basis io.ReaderAt, basisSize int64, blockSize int, next func() (Op, error), w io.Writer) (int64, error) {
	if err := checkGeometry(basisSize, blockSize); err != nil {
		return 0, fmt.Errorf("apply: %w", err)
	}
	nblocks := NumBlocks(basisSize, blockSize)
	bs := int64(blockSize)
	var buf []byte
	var written int64
	for i := 0; ; i++ {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return written, fmt.Errorf("apply: %w", err)
			}
		}
		op, err := next()
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, fmt.Errorf("apply: op %d: %w", i, err)
		}
		switch op.Kind {
		case OpLiteral:
			n, err := w.Write(op.Data)
			written += int64(n)
			if err != nil {
				return written, fmt.Errorf("apply: op %d: write %d literal bytes: %w", i, len(op.Data), err)
			}
		case OpCopy:
			if op.Block < 0 || op.Block >= nblocks || op.Count < 1 || op.Count > nblocks-op.Block {
				return written, fmt.Errorf("apply: op %d: copy of %d blocks from block %d outside a basis of %d blocks", i, op.Count, op.Block, nblocks)
			}
			off := op.Block * bs
			end := basisSize
			if op.Block+op.Count < nblocks {
				end = (op.Block + op.Count) * bs
			}
			if buf == nil {
				buf = make([]byte, min(copyChunk, basisSize))
			}
			for off < end {
				if err := ctx.Err(); err != nil {
					return written, fmt.Errorf("apply: %w", err)
				}
				chunk := buf[:min(int64(len(buf)), end-off)]
				n, err := basis.ReadAt(chunk, off)
				if n < len(chunk) {
					if err == nil || errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					return written, fmt.Errorf("apply: op %d: read basis at offset %d: %w", i, off+int64(n), err)
				}
				n, err = w.Write(chunk)
				written += int64(n)
				if err != nil {
					return written, fmt.Errorf("apply: op %d: write %d copied bytes: %w", i, len(chunk), err)
				}
				off += int64(len(chunk))
			}
		default:
			return written, fmt.Errorf("apply: op %d: unknown kind %v", i, op.Kind)
		}
	}
}
