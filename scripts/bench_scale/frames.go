package main

// Most messages reach many nodes byte for byte: a delta about a peer goes, identical, to every
// node that sees it. A real client decodes its copy on its own machine; here one core would
// decode the same bytes for 10,000 nodes, and that decoding, not the server, set the pace of a
// churn run. So each distinct frame is decoded and scanned once: a node whose frame equals a
// cached one (compared in full, not by hash alone) applies the cached message. Every node still
// reads its own bytes off its own stream and applies them to its own peer set, at the time they
// arrived.

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Frames above this size are not cached: a node's full map is its own (its self node), and a
// copy of each would be wasted.
const frameCacheMaxBytes = 64 << 10

// frameCacheEntries is how many distinct frames are kept: with a policy, nodes in different
// groups get different deltas for one change.
const frameCacheEntries = 64

// decodedFrame is a cached frame; read-only once cached (msg's keys point into dec).
type decodedFrame struct {
	raw []byte
	dec []byte
	msg *mapMsg
}

type frameCache struct {
	maxBytes int // larger frames are not cached
	entries  int // how many are kept
	seed     maphash.Seed
	mu       sync.Mutex
	byHash   map[uint64]*decodedFrame
	order    []uint64 // insertion order, oldest first, for eviction
	hits     atomic.Int64
	misses   atomic.Int64
}

func newFrameCache() *frameCache {
	return newFrameCacheOf(frameCacheMaxBytes, frameCacheEntries)
}

func newFrameCacheOf(maxBytes, entries int) *frameCache {
	return &frameCache{maxBytes: maxBytes, entries: entries, seed: maphash.MakeSeed(),
		byHash: make(map[uint64]*decodedFrame)}
}

// lookup returns the cached frame equal to raw, or nil and the hash to store it under
// (ok false: too big to cache).
func (c *frameCache) lookup(raw []byte) (f *decodedFrame, h uint64, ok bool) {
	if len(raw) > c.maxBytes {
		return nil, 0, false
	}
	h = maphash.Bytes(c.seed, raw)
	c.mu.Lock()
	f = c.byHash[h]
	c.mu.Unlock()
	if f != nil && bytes.Equal(f.raw, raw) {
		c.hits.Add(1)
		return f, h, true
	}
	c.misses.Add(1)
	return nil, h, true
}

// store caches f under h (a copy of the frame, its decoded bytes and message, which the caller
// gives up). Evicted frames are left to the garbage collector: a node may still be applying one.
func (c *frameCache) store(h uint64, f *decodedFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.byHash[h]; dup {
		return
	}
	if len(c.order) >= c.entries {
		delete(c.byHash, c.order[0])
		c.order = append(c.order[:0], c.order[1:]...)
	}
	c.byHash[h] = f
	c.order = append(c.order, h)
}

// A full map is slices of peers compressed once by the server and shared by every session that
// gets them, concatenated as zstd frames (decoded as one payload). A message too big for the
// frame cache has its frames decoded one by one, each distinct frame of up to sliceCacheMaxBytes
// once for all nodes: in a join or restart storm the generator decoded the same slices for each
// of 10,000 nodes. Every node still scans its own whole message.
const (
	sliceCacheMaxBytes = 256 << 10
	sliceCacheEntries  = 1024
)

// decodeFrames appends the decoded payload (concatenated zstd frames) to dst.
func decodeFrames(slices *frameCache, payload, dst []byte) ([]byte, error) {
	for len(payload) > 0 {
		n, err := zstdFrameLen(payload)
		if err != nil {
			return dst, err
		}
		f := payload[:n]
		payload = payload[n:]
		cached, h, cacheable := slices.lookup(f)
		if cached != nil {
			dst = append(dst, cached.dec...)
			continue
		}
		start := len(dst)
		if dst, err = zdec.DecodeAll(f, dst); err != nil {
			return dst, err
		}
		if cacheable {
			slices.store(h, &decodedFrame{raw: bytes.Clone(f), dec: bytes.Clone(dst[start:])})
		}
	}
	return dst, nil
}

// zstdFrameLen is the length of the zstd frame at the start of p (RFC 8878: header, blocks up to
// the last, then the checksum if the header says so).
func zstdFrameLen(p []byte) (int, error) {
	bad := func(why string) (int, error) { return 0, fmt.Errorf("zstd frame: %s", why) }
	if len(p) < 5 || p[0] != 0x28 || p[1] != 0xb5 || p[2] != 0x2f || p[3] != 0xfd {
		return bad("no magic number")
	}
	fhd := p[4]
	single := fhd&0x20 != 0
	off := 5
	if !single {
		off++ // window descriptor
	}
	off += [4]int{0, 1, 2, 4}[fhd&3] // dictionary id
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	off += fcs
	for {
		if off+3 > len(p) {
			return bad("truncated")
		}
		h := int(p[off]) | int(p[off+1])<<8 | int(p[off+2])<<16
		off += 3
		size := h >> 3
		switch (h >> 1) & 3 {
		case 1: // RLE: one byte, repeated size times
			size = 1
		case 3:
			return bad("reserved block type")
		}
		off += size
		if h&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 {
		off += 4 // content checksum
	}
	if off > len(p) {
		return bad("truncated")
	}
	return off, nil
}
