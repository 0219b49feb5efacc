package main

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestFrameCacheReusesOnlyEqualFrames(t *testing.T) {
	c := newFrameCache()
	a := []byte("frame a: some compressed bytes")
	if f, _, ok := c.lookup(a); f != nil || !ok {
		t.Fatalf("empty cache: got %v, cacheable %v", f, ok)
	}
	_, h, _ := c.lookup(a)
	c.store(h, &decodedFrame{raw: bytes.Clone(a), msg: &mapMsg{selfID: 1}})
	if f, _, _ := c.lookup(bytes.Clone(a)); f == nil || f.msg.selfID != 1 {
		t.Fatalf("equal frame not reused: %v", f)
	}
	b := bytes.Clone(a)
	b[len(b)-1] ^= 1
	if f, _, _ := c.lookup(b); f != nil {
		t.Fatal("a frame differing in one byte was reused")
	}
	// A hash collision must not pass either: plant a different frame under a's hash.
	c.byHash[h] = &decodedFrame{raw: b, msg: &mapMsg{selfID: 2}}
	if f, _, _ := c.lookup(a); f != nil {
		t.Fatal("a frame with the same hash but other bytes was reused")
	}
}

func TestFrameCacheBoundsAndEvictsOldest(t *testing.T) {
	c := newFrameCache()
	if _, _, ok := c.lookup(make([]byte, frameCacheMaxBytes+1)); ok {
		t.Fatal("a frame above the size limit is cacheable")
	}
	frames := make([][]byte, frameCacheEntries+1)
	for i := range frames {
		frames[i] = []byte{byte(i), byte(i >> 8), 'x'}
		_, h, _ := c.lookup(frames[i])
		c.store(h, &decodedFrame{raw: frames[i], msg: &mapMsg{}})
	}
	if len(c.byHash) != frameCacheEntries {
		t.Fatalf("%d frames kept, want %d", len(c.byHash), frameCacheEntries)
	}
	if f, _, _ := c.lookup(frames[0]); f != nil {
		t.Fatal("the oldest frame was not evicted")
	}
	if f, _, _ := c.lookup(frames[frameCacheEntries]); f == nil {
		t.Fatal("the newest frame is missing")
	}
}

// storedFrame is a zstd frame holding p as one raw block, laid out as the server writes small
// messages (single segment, content size in the header, no checksum).
func storedFrame(p []byte) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 1<<6 | 1<<5, byte(len(p) - 256), byte((len(p) - 256) >> 8)}
	h := len(p)<<3 | 1
	out = append(out, byte(h), byte(h>>8), byte(h>>16))
	return append(out, p...)
}

// Decoding a payload frame by frame, with repeated frames from the cache, gives exactly what
// decoding it whole gives, whatever the frames hold: compressed blocks with a checksum, several
// blocks, runs of one byte (RLE blocks), a raw block, a frame too big to cache.
func TestDecodeFramesMatchesDecodeAll(t *testing.T) {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	rng := rand.New(rand.NewPCG(3, 4))
	text := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789abcdef{}\",:"[rng.IntN(21)]
		}
		return b
	}
	random := make([]byte, 300<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	slice := enc.EncodeAll(text(20<<10), nil)
	frames := [][]byte{
		slice,
		enc.EncodeAll(text(400<<10), nil), // several blocks
		enc.EncodeAll(bytes.Repeat([]byte("a"), 200<<10), nil), // runs
		storedFrame(text(700)),
		enc.EncodeAll(random, nil), // incompressible: above the cache's limit
		slice,                      // the same slice again
	}
	payload := bytes.Join(frames, nil)
	want, err := zdec.DecodeAll(payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newFrameCacheOf(sliceCacheMaxBytes, sliceCacheEntries)
	for round := range 2 {
		got, err := decodeFrames(c, payload, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: %v, %d bytes, want %d", round, err, len(got), len(want))
		}
	}
	// The repeated slice hit in the first round; everything cacheable hit in the second.
	if c.hits.Load() != 1+4 {
		t.Fatalf("%d hits, want 5", c.hits.Load())
	}
	for _, cut := range []int{3, 10, len(payload) - 1} {
		if _, err := decodeFrames(c, payload[:cut], nil); err == nil {
			t.Fatalf("a payload cut at %d decoded", cut)
		}
	}
}
