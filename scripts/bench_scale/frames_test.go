package main

import (
	"bytes"
	"testing"
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
