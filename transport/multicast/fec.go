package multicast

import (
	"fmt"

	"github.com/klauspost/reedsolomon"
)

// maxGroup bounds K, the data shards of one FEC group; a group's data and
// parity shards together stay within reedsolomon's 8-bit field (256).
const maxGroup = 128

// maxShards is the most shards (data plus parity) one group can have.
const maxShards = 256

// layout numbers a stream of size bytes in blocks of blockSize, K blocks
// to a group. The last block is padded with zeros to blockSize for coding
// and trimmed on delivery.
type layout struct {
	size      int64
	blockSize int
	k         int
	blocks    int64
	groups    int
}

func newLayout(size int64, blockSize, k int) (layout, error) {
	if blockSize <= 0 || k <= 0 || k > maxGroup {
		return layout{}, fmt.Errorf("bad layout: block size %d, group size %d", blockSize, k)
	}
	l := layout{size: size, blockSize: blockSize, k: k}
	l.blocks = (size + int64(blockSize) - 1) / int64(blockSize)
	l.groups = int((l.blocks + int64(k) - 1) / int64(k))
	return l, nil
}

// dataShards is how many data blocks group g holds.
func (l layout) dataShards(g int) int {
	first := int64(g) * int64(l.k)
	return int(min(int64(l.k), l.blocks-first))
}

// offset is the stream offset of data shard s of group g.
func (l layout) offset(g, s int) int64 {
	return (int64(g)*int64(l.k) + int64(s)) * int64(l.blockSize)
}

// groupBytes is how many stream bytes group g carries.
func (l layout) groupBytes(g int) int64 {
	start := l.offset(g, 0)
	return min(l.size, start+int64(l.dataShards(g))*int64(l.blockSize)) - start
}

// coder makes Reed-Solomon parity and rebuilds lost data shards. Parity
// shard j of a group is the same whatever the number of parity shards
// the encoder was built for (reedsolomon's default systematic Vandermonde
// matrix: row k+j depends only on k and j), so the sender can make more
// parity on demand and a receiver can decode with whichever it got.
// A coder is not safe for concurrent use.
type coder struct {
	encoders map[[2]int]reedsolomon.Encoder
}

func newCoder() *coder { return &coder{encoders: map[[2]int]reedsolomon.Encoder{}} }

func (c *coder) encoder(k, p int) (reedsolomon.Encoder, error) {
	key := [2]int{k, p}
	if e, ok := c.encoders[key]; ok {
		return e, nil
	}
	if k+p > maxShards {
		return nil, fmt.Errorf("fec: %d data and %d parity shards exceed %d", k, p, maxShards)
	}
	e, err := reedsolomon.New(k, p)
	if err != nil {
		return nil, fmt.Errorf("fec encoder %d+%d: %w", k, p, err)
	}
	c.encoders[key] = e
	return e, nil
}

// parity returns parity shards 0..p-1 for data (all the same length).
func (c *coder) parity(data [][]byte, p int) ([][]byte, error) {
	k := len(data)
	e, err := c.encoder(k, p)
	if err != nil {
		return nil, err
	}
	shards := make([][]byte, k+p)
	copy(shards, data)
	for i := k; i < k+p; i++ {
		shards[i] = make([]byte, len(data[0]))
	}
	if err := e.Encode(shards); err != nil {
		return nil, fmt.Errorf("fec encode: %w", err)
	}
	return shards[k:], nil
}

// reconstruct fills the empty data shards among shards[:k] from whatever
// data and parity shards are present (empty for missing; an empty shard
// with enough capacity is rebuilt in place); it needs at least k shards
// in all.
func (c *coder) reconstruct(shards [][]byte, k int) error {
	if len(shards) == k {
		for i, s := range shards {
			if len(s) == 0 {
				return fmt.Errorf("fec: data shard %d missing and no parity", i)
			}
		}
		return nil
	}
	e, err := c.encoder(k, len(shards)-k)
	if err != nil {
		return err
	}
	if err := e.ReconstructData(shards); err != nil {
		return fmt.Errorf("fec reconstruct: %w", err)
	}
	return nil
}
