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
	seed   maphash.Seed
	mu     sync.Mutex
	byHash map[uint64]*decodedFrame
	order  []uint64 // insertion order, oldest first, for eviction
	hits   atomic.Int64
	misses atomic.Int64
}

func newFrameCache() *frameCache {
	return &frameCache{seed: maphash.MakeSeed(), byHash: make(map[uint64]*decodedFrame)}
}

// lookup returns the cached frame equal to raw, or nil and the hash to store it under
// (ok false: too big to cache).
func (c *frameCache) lookup(raw []byte) (f *decodedFrame, h uint64, ok bool) {
	if len(raw) > frameCacheMaxBytes {
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
	if len(c.order) >= frameCacheEntries {
		delete(c.byHash, c.order[0])
		c.order = append(c.order[:0], c.order[1:]...)
	}
	c.byHash[h] = f
	c.order = append(c.order, h)
}
