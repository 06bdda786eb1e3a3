package api

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/manifest"
)

type frame struct {
	Kind byte
	Path string
	Data string
}

func writeFrames(t *testing.T, frames []frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	for _, f := range frames {
		w, err := fw.Begin(f.Kind, f.Path)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f.Data)
		w.Close()
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readFrames(data []byte, readPayload bool) ([]frame, error) {
	fr := NewFrameReader(bytes.NewReader(data))
	var out []frame
	for {
		k, p, r, err := fr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		f := frame{Kind: k, Path: p}
		if readPayload {
			b, err := io.ReadAll(r)
			if err != nil {
				return out, err
			}
			f.Data = string(b)
		}
		out = append(out, f)
	}
}

func TestFramesRoundTrip(t *testing.T) {
	big := strings.Repeat("x", 3*MaxChunk+17)
	frames := []frame{{KindFull, "etc/motd", "hello"}, {KindDelta, "usr/bin/big", big}, {KindSignature, "empty", ""}}
	got, err := readFrames(writeFrames(t, frames), true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(frames, got); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
	// Unread payloads are skipped.
	got, err = readFrames(writeFrames(t, frames), false)
	if err != nil || len(got) != 3 || got[2].Path != "empty" {
		t.Fatalf("skipping payloads: %v %+v", err, got)
	}
}

func TestFramesRefuseBadInput(t *testing.T) {
	good := writeFrames(t, []frame{{KindFull, "a/b", "payload"}})
	for cut := 0; cut < len(good); cut++ {
		if _, err := readFrames(good[:cut], true); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v, want unexpected EOF", cut, err)
		}
	}
	hostile := writeFrames(t, []frame{{KindFull, "../etc/passwd", "x"}})
	if _, err := readFrames(hostile, true); !errors.Is(err, manifest.ErrUnsafePath) {
		t.Errorf("hostile path: %v", err)
	}
	huge := append([]byte{KindFull, 1, 'a'}, 0xff, 0xff, 0xff, 0x7f)
	if _, err := readFrames(huge, true); !errors.Is(err, ErrFraming) {
		t.Errorf("huge chunk: %v", err)
	}
}
