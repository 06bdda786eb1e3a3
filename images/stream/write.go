// Package stream carries an image version as one self-describing byte
// stream: a PAX tar, compressed with zstd, whose first entries are the
// version's metadata (manifest, then signature and image.json when
// present) and whose remaining entries follow the manifest in order. The
// same stream feeds HTTP deploys, multicast, torrents and USB sticks.
//
// Extraction trusts nothing in the stream: every entry must match the
// manifest that came first, content is hashed as it lands, and a
// truncated, corrupt or hostile stream is refused with the target emptied
// again.
package stream

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/goldcast/goldcast/images/manifest"
)

// Names of the metadata entries at the start of a stream. They carry the
// PAX record MetaRecord so they cannot be mistaken for image paths.
const (
	MetaManifest  = ".goldcast/manifest"
	MetaSignature = ".goldcast/signature"
	MetaImageJSON = ".goldcast/image.json"
	MetaRecord    = "GOLDCAST.meta"
)

// xattrPrefix is the PAX record prefix GNU tar and star use for xattrs.
const xattrPrefix = "SCHILY.xattr."

// Meta is the version metadata a stream carries ahead of its entries.
type Meta struct {
	// Manifest is the canonical manifest encoding (required).
	Manifest []byte
	// Signature is an encoded signing.Signature, when the version is signed.
	Signature []byte
	// ImageJSON is the version's image.json, when known.
	ImageJSON []byte
}

// ContentFunc opens the content of a regular file entry.
type ContentFunc func(e *manifest.Entry) (io.ReadCloser, error)

// WriteOptions tune Write.
type WriteOptions struct {
	// Level is the zstd encoder level; the zero value is zstd's default
	// (comparable to `zstd -3`).
	Level zstd.EncoderLevel
	// Progress is told of each entry written and its content bytes.
	Progress manifest.Progress
}

// Write encodes the version described by meta.Manifest to w, reading file
// content through open. A file whose length differs from the manifest
// fails the write (the source changed under it).
func Write(ctx context.Context, w io.Writer, m *manifest.Manifest, meta Meta, open ContentFunc, opts WriteOptions) error {
	level := opts.Level
	if level == 0 {
		level = zstd.SpeedDefault
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return fmt.Errorf("start zstd: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	contents := make(chan content, prefetchDepth)
	go prefetch(ctx, m, open, contents)
	defer func() {
		cancel()
		for c := range contents { // let the prefetcher finish and close what it opened
			if c.rc != nil {
				c.rc.Close()
			}
		}
	}()
	tw := tar.NewWriter(zw)
	if err := writeMeta(tw, meta); err != nil {
		zw.Close()
		return err
	}
	for i := range m.Entries {
		if err := ctx.Err(); err != nil {
			zw.Close()
			return err
		}
		e := &m.Entries[i]
		if err := writeEntry(tw, e, contents); err != nil {
			zw.Close()
			return err
		}
		if opts.Progress != nil {
			n := int64(0)
			if hasContent(e) {
				n = e.Size
			}
			opts.Progress(1, n)
		}
	}
	if err := tw.Close(); err != nil {
		zw.Close()
		return fmt.Errorf("finish tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finish zstd: %w", err)
	}
	return nil
}

// Prefetching: one goroutine opens and reads files ahead of the encoder,
// so file I/O overlaps compression the way `tar | zstd` overlaps them.
const (
	prefetchDepth = 64      // entries read ahead
	prefetchWhole = 1 << 20 // files up to this size are read into memory
)

// content is one regular file's data, read ahead: small files whole,
// larger ones as an open reader the encoder streams from.
type content struct {
	data []byte
	rc   io.ReadCloser
	err  error
}

func hasContent(e *manifest.Entry) bool {
	return e.Type == manifest.TypeRegular && e.LinkTo == "" && e.Size > 0
}

func prefetch(ctx context.Context, m *manifest.Manifest, open ContentFunc, out chan<- content) {
	defer close(out)
	for i := range m.Entries {
		e := &m.Entries[i]
		if !hasContent(e) {
			continue
		}
		c := content{}
		rc, err := open(e)
		switch {
		case err != nil:
			c.err = fmt.Errorf("open content of %q: %w", e.Path, err)
		case e.Size <= prefetchWhole:
			// One byte more than expected reveals a file that grew.
			c.data, c.err = io.ReadAll(io.LimitReader(rc, e.Size+1))
			rc.Close()
			if c.err != nil {
				c.err = fmt.Errorf("read content of %q: %w", e.Path, c.err)
			}
		default:
			c.rc = rc
		}
		select {
		case out <- c:
		case <-ctx.Done():
			if c.rc != nil {
				c.rc.Close()
			}
			return
		}
		if c.err != nil {
			return
		}
	}
}

func writeMeta(tw *tar.Writer, meta Meta) error {
	if len(meta.Manifest) == 0 {
		return fmt.Errorf("write stream: no manifest")
	}
	for _, part := range []struct {
		name string
		data []byte
	}{{MetaManifest, meta.Manifest}, {MetaSignature, meta.Signature}, {MetaImageJSON, meta.ImageJSON}} {
		if part.data == nil {
			continue
		}
		h := &tar.Header{
			Typeflag:   tar.TypeReg,
			Name:       part.name,
			Mode:       0o644,
			Size:       int64(len(part.data)),
			ModTime:    time.Unix(0, 0),
			Format:     tar.FormatPAX,
			PAXRecords: map[string]string{MetaRecord: "1"},
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", part.name, err)
		}
		if _, err := tw.Write(part.data); err != nil {
			return fmt.Errorf("write %s: %w", part.name, err)
		}
	}
	return nil
}

// TarName is the tar entry name of a manifest path: "./" for the root,
// a trailing "/" for directories.
func TarName(e *manifest.Entry) string {
	switch {
	case e.Path == ".":
		return "./"
	case e.Type == manifest.TypeDir:
		return e.Path + "/"
	}
	return e.Path
}

// Header builds the tar header that represents an entry.
func Header(e *manifest.Entry) *tar.Header {
	h := &tar.Header{
		Name:    TarName(e),
		Mode:    int64(e.Mode),
		Uid:     int(e.UID),
		Gid:     int(e.GID),
		ModTime: time.Unix(0, e.MtimeNS),
		Format:  tar.FormatPAX,
	}
	switch e.Type {
	case manifest.TypeRegular:
		if e.LinkTo != "" {
			h.Typeflag = tar.TypeLink
			h.Linkname = e.LinkTo
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = e.Size
		}
	case manifest.TypeDir:
		h.Typeflag = tar.TypeDir
	case manifest.TypeSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.Target
	case manifest.TypeCharDev:
		h.Typeflag = tar.TypeChar
		h.Devmajor, h.Devminor = int64(e.DevMajor), int64(e.DevMinor)
	case manifest.TypeBlockDev:
		h.Typeflag = tar.TypeBlock
		h.Devmajor, h.Devminor = int64(e.DevMajor), int64(e.DevMinor)
	case manifest.TypeFIFO:
		h.Typeflag = tar.TypeFifo
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for _, x := range e.Xattrs {
			h.PAXRecords[xattrPrefix+x.Name] = string(x.Value)
		}
	}
	return h
}

func writeEntry(tw *tar.Writer, e *manifest.Entry, contents <-chan content) error {
	if err := tw.WriteHeader(Header(e)); err != nil {
		return fmt.Errorf("write stream entry %q: %w", e.Path, err)
	}
	if !hasContent(e) {
		return nil
	}
	c, ok := <-contents
	if !ok {
		return fmt.Errorf("stream entry %q: content reader stopped", e.Path)
	}
	if c.err != nil {
		return c.err
	}
	var n int64
	var err error
	if c.rc != nil {
		n, err = io.Copy(tw, io.LimitReader(c.rc, e.Size+1))
		c.rc.Close()
	} else {
		if int64(len(c.data)) != e.Size {
			return fmt.Errorf("stream entry %q: content is %d bytes, manifest says %d (changed since it was recorded)", e.Path, len(c.data), e.Size)
		}
		var k int
		k, err = tw.Write(c.data)
		n = int64(k)
	}
	// A failed write (the reader went away) is that, not a changed
	// file: only a short read or an overlong file is the content's fault.
	if err != nil && !errors.Is(err, tar.ErrWriteTooLong) {
		return fmt.Errorf("stream entry %q: %w", e.Path, err)
	}
	if n != e.Size || errors.Is(err, tar.ErrWriteTooLong) {
		return fmt.Errorf("stream entry %q: content is not the %d bytes the manifest says (changed since it was recorded)", e.Path, e.Size)
	}
	return nil
}
