package main

// One simulated node: its keys, its Noise connection (one TCP connection, HTTP/2 inside: the map
// stream and the lite endpoint updates share it), registration, the map stream and its peer set.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"tailscale.com/control/ts2021"
	"tailscale.com/net/tsdial"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

const maxFrame = 64 << 20 // largest compressed message accepted

type node struct {
	idx     int
	authKey string
	mk      key.MachinePrivate
	nk      key.NodePrivate
	dk      key.DiscoPrivate
	// The public halves, derived once: a scalar multiplication per request was ~3 % of the
	// generator's CPU in churn.
	nkPub key.NodePublic
	dkPub key.DiscoPublic
	nc    *ts2021.Client
	eps   atomic.Pointer[[]netip.AddrPort]

	mu    sync.Mutex // guards peers (the stream goroutine writes, checks read)
	peers peerSet

	id         atomic.Int64
	converged  atomic.Bool
	epoch      atomic.Int32 // restart epoch in which the current stream opened
	streaming  atomic.Bool
	registered atomic.Bool
	regLatency time.Duration
	firstMap   time.Duration // map request → first message, first stream only
	regErr     string
	lastErr    atomic.Pointer[string]
	msgs       atomic.Int64
	wireBytes  atomic.Int64
	streams    atomic.Int32
	streamErrs atomic.Int32
}

// zdec decodes every message of every node: DecodeAll on one shared decoder (its concurrency
// follows GOMAXPROCS), so no node holds a decoder of its own.
var zdec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<30))

// Compressed frames and decoded messages have pools of their own: a node waiting for the rest of
// a frame holds its raw buffer, and with one shared pool that was often a buffer grown to a decoded
// full map (several times the compressed size): 2 of the 2.3 GB live heap at the peak of a
// 5,000-node restart storm (7.2 GB RSS), held by nodes mid-frame.
var rawPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
var decPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
var msgPool = sync.Pool{New: func() any { return new(mapMsg) }}

func (b *bench) newNode(i int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *node {
	nd := &node{idx: i, mk: key.NewMachine(), nk: key.NewNode(), dk: key.NewDisco()}
	nd.nkPub, nd.dkPub = nd.nk.Public(), nd.dk.Public()
	eps := []netip.AddrPort{
		netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i%250 + 1)}), uint16(20000+i%40000)),
	}
	nd.eps.Store(&eps)
	nc, err := ts2021.NewClient(ts2021.ClientOpts{
		ServerURL:    b.serverURL,
		PrivKey:      nd.mk,
		ServerPubKey: b.serverKey,
		Dialer:       tsdial.NewFromFuncForDebug(func(string, ...any) {}, dial),
		Logf:         func(string, ...any) {},
	})
	if err != nil {
		panic(err)
	}
	if w := b.o.h2Window; w > 0 {
		// Go's defaults (4 MB a stream, 1 GB a connection) are what real clients use; a smaller
		// window keeps unread map data on the server instead (it waits for window updates).
		tr, ok := nc.Client.Transport.(*http.Transport)
		if !ok {
			panic("ts2021: the client's transport is no longer an *http.Transport")
		}
		tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: w, MaxReceiveBufferPerConnection: max(2*w, 64<<10)}
	}
	nd.nc = nc
	return nd
}

func (b *bench) hostinfo(nd *node) *tailcfg.Hostinfo {
	return &tailcfg.Hostinfo{
		Hostname:     fmt.Sprintf("bench-%05d", nd.idx),
		OS:           "linux",
		IPNVersion:   "bench-scale",
		BackendLogID: fmt.Sprintf("bench-%d", nd.idx),
	}
}

func (b *bench) register(ctx context.Context, nd *node) error {
	req := tailcfg.RegisterRequest{
		Version:  tailcfg.CurrentCapabilityVersion,
		NodeKey:  nd.nkPub,
		Auth:     &tailcfg.RegisterResponseAuth{AuthKey: nd.authKey},
		Hostinfo: b.hostinfo(nd),
	}
	res, err := nd.nc.Post(ctx, "/machine/register", nd.nkPub, &req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("register: http %d: %.200s", res.StatusCode, body)
	}
	var rr tailcfg.RegisterResponse
	if err := json.Unmarshal(body, &rr); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if rr.Error != "" || !rr.MachineAuthorized {
		return fmt.Errorf("register: not authorized (%q, auth URL %q)", rr.Error, rr.AuthURL)
	}
	return nil
}

func (b *bench) mapRequest(nd *node, stream bool) *tailcfg.MapRequest {
	return &tailcfg.MapRequest{
		Version:   tailcfg.CurrentCapabilityVersion,
		Compress:  "zstd",
		KeepAlive: stream,
		NodeKey:   nd.nkPub,
		DiscoKey:  nd.dkPub,
		Endpoints: *nd.eps.Load(),
		Hostinfo:  b.hostinfo(nd),
		Stream:    stream,
		OmitPeers: !stream,
	}
}

// run: register (holding a join slot), then keep a map stream open, reconnecting after 1–2 s on
// any error with the same keys (never registering again).
func (b *bench) run(ctx context.Context, nd *node) {
	b.joinSlots <- struct{}{}
	held := true
	release := func() {
		if held {
			held = false
			<-b.joinSlots
		}
	}
	defer release()
	var err error
	for attempt := range 5 {
		t0 := time.Now()
		if err = b.register(ctx, nd); err == nil {
			nd.regLatency = time.Since(t0)
			break
		}
		if ctx.Err() != nil {
			return
		}
		sleepCtx(ctx, time.Duration(attempt+1)*500*time.Millisecond)
	}
	if err != nil {
		nd.regErr = err.Error()
		b.regFailures.Add(1)
		return
	}
	nd.registered.Store(true)
	first := true
	for ctx.Err() == nil {
		err := b.stream(ctx, nd, func(d time.Duration) {
			if first {
				first = false
				nd.firstMap = d
				b.firstMaps.Add(1)
				release()
			}
		})
		release()
		nd.streaming.Store(false)
		if nd.converged.Swap(false) && b.countDrops.Load() {
			b.convergenceDrops.Add(1)
		}
		if ctx.Err() != nil {
			return
		}
		msg := err.Error()
		nd.lastErr.Store(&msg)
		b.noteError(msg)
		nd.streamErrs.Add(1)
		sleepCtx(ctx, time.Second+rand.N(time.Second))
	}
}

// stream opens one map stream and applies every message until it fails.
func (b *bench) stream(ctx context.Context, nd *node, onFirst func(time.Duration)) error {
	t0 := time.Now()
	res, err := nd.nc.Post(ctx, "/machine/map", nd.nkPub, b.mapRequest(nd, true))
	if err != nil {
		return fmt.Errorf("map: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("map: http %d: %.200s", res.StatusCode, body)
	}
	nd.streams.Add(1)
	nd.epoch.Store(b.epoch.Load())
	nd.streaming.Store(true)
	var hdr [4]byte
	// A delta's length and body usually arrive together: one read of the HTTP/2 body for both
	// (each read of it takes the stream's lock; a large body still goes straight into raw).
	body := bufio.NewReaderSize(res.Body, 4<<10)
	deliver := func(size int, msg *mapMsg) {
		nd.msgs.Add(1)
		nd.wireBytes.Add(int64(size + 4))
		b.countKinds(msg)
		b.apply(nd, msg)
		onFirst(time.Since(t0))
	}
	for {
		if _, err := io.ReadFull(body, hdr[:]); err != nil {
			return fmt.Errorf("map stream: %w", err)
		}
		size := int(binary.LittleEndian.Uint32(hdr[:]))
		if size == 0 || size > maxFrame {
			return fmt.Errorf("map stream: frame of %d bytes", size)
		}
		raw := rawPool.Get().(*[]byte)
		*raw = growTo(*raw, size)
		if _, err := io.ReadFull(body, *raw); err != nil {
			rawPool.Put(raw)
			return fmt.Errorf("map stream: %w", err)
		}
		cached, hash, cacheable := b.frames.lookup(*raw)
		if cached != nil {
			rawPool.Put(raw)
			deliver(size, cached.msg)
			continue
		}
		// One message decoded at a time per core: a goroutine preempted mid-message would otherwise
		// hold its decoded buffer while thousands of others take theirs (GBs at 2,000 nodes).
		b.decodeSlots <- struct{}{}
		dec := decPool.Get().(*[]byte)
		out, err := zdec.DecodeAll(*raw, (*dec)[:0])
		var rawCopy []byte
		if err == nil && cacheable {
			rawCopy = bytes.Clone(*raw)
		}
		rawPool.Put(raw)
		if err != nil {
			decPool.Put(dec)
			<-b.decodeSlots
			return fmt.Errorf("map stream: zstd: %w", err)
		}
		*dec = out
		// A frame to cache gets memory of its own, sized to it: the pools' buffers and messages
		// grow to full maps, and a cached small delta must not keep one of those.
		data, msg := out, (*mapMsg)(nil)
		if cacheable {
			data, msg = bytes.Clone(out), new(mapMsg)
		} else {
			msg = msgPool.Get().(*mapMsg)
		}
		err = scanMap(data, msg)
		if err == nil {
			deliver(size, msg)
			if cacheable {
				b.frames.store(hash, &decodedFrame{raw: rawCopy, dec: data, msg: msg})
			}
		}
		if !cacheable {
			msgPool.Put(msg)
		}
		decPool.Put(dec) // after apply: msg's keys point into it unless the frame was cached
		<-b.decodeSlots
		if err != nil {
			return err
		}
	}
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// apply one message to the node's peer set, then note churn markers and convergence.
func (b *bench) apply(nd *node, m *mapMsg) {
	now := time.Now()
	// Markers seen, noted in the change log under one lock per message, not one per marker (a
	// churn delta carries dozens, and every node gets it).
	var buf [64]uint32
	marks := buf[:0]
	nd.mu.Lock()
	p := &nd.peers
	if m.selfID > 0 {
		nd.id.Store(m.selfID)
		b.ids.set(m.selfID, nd.idx)
	}
	if m.hasPeers {
		p.replace()
		for i := range m.peers {
			marks = b.addPeer(nd, &m.peers[i], marks)
		}
	}
	for i := range m.changed {
		marks = b.addPeer(nd, &m.changed[i], marks)
	}
	for _, id := range m.removed {
		if j := b.ids.get(id); j >= 0 {
			p.remove(j)
		}
	}
	for i := range m.patches {
		r := &m.patches[i]
		j := b.ids.get(r.id)
		if j < 0 {
			b.unknownPeers.Add(1)
			continue
		}
		if r.online != onlineAbsent {
			p.setOnline(j, r.online == onlineTrue)
		}
		if r.mark != 0 && p.exp[j>>6]&(1<<(j&63)) != 0 {
			marks = append(marks, r.mark)
		}
	}
	for _, oc := range m.onlineChange {
		if j := b.ids.get(oc.id); j >= 0 {
			p.setOnline(j, oc.on)
		}
	}
	conv := p.converged()
	nd.mu.Unlock()
	if len(marks) > 0 {
		b.changes.observe(nd.idx, marks, now)
	}
	if nd.converged.Swap(conv) && !conv && b.countDrops.Load() {
		b.convergenceDrops.Add(1)
	}
}

// addPeer adds one peer record; a churn marker it carries is appended to marks.
func (b *bench) addPeer(nd *node, r *peerRec, marks []uint32) []uint32 {
	j := b.ids.get(r.id)
	if j < 0 {
		j = b.ids.learn(r.id, r.key, b.byKey)
	}
	if j < 0 {
		b.unknownPeers.Add(1)
		return marks
	}
	nd.peers.add(j, r.online == onlineTrue)
	if r.mark != 0 && nd.peers.exp[j>>6]&(1<<(j&63)) != 0 {
		marks = append(marks, r.mark)
	}
	return marks
}

// sendEndpoints: a lite map update (no stream, peers omitted), as a client sends when its
// endpoints change.
func (b *bench) sendEndpoints(ctx context.Context, nd *node, eps []netip.AddrPort) error {
	nd.eps.Store(&eps)
	res, err := nd.nc.Post(ctx, "/machine/map", nd.nkPub, b.mapRequest(nd, false))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != 200 {
		return fmt.Errorf("endpoint update: http %d", res.StatusCode)
	}
	return nil
}

// nodeIDs maps server node ids to node indices. Ids of a fresh database are small and dense, so a
// slice of atomics (lock-free reads from every stream) covers them; anything else goes to a map.
type nodeIDs struct {
	dense []atomic.Int32 // idx+1, 0 = unknown
	mu    sync.Mutex
	other map[int64]int
}

func newNodeIDs(n int) *nodeIDs {
	return &nodeIDs{dense: make([]atomic.Int32, 4*n+1024), other: map[int64]int{}}
}

func (t *nodeIDs) get(id int64) int {
	if id > 0 && id < int64(len(t.dense)) {
		return int(t.dense[id].Load()) - 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if j, ok := t.other[id]; ok {
		return j
	}
	return -1
}

func (t *nodeIDs) set(id int64, idx int) {
	if id > 0 && id < int64(len(t.dense)) {
		t.dense[id].Store(int32(idx + 1))
		return
	}
	t.mu.Lock()
	t.other[id] = idx
	t.mu.Unlock()
}

// learn resolves an id seen for the first time through the peer's node key.
func (t *nodeIDs) learn(id int64, nodeKey []byte, byKey map[string]int) int {
	j, ok := byKey[string(nodeKey)]
	if !ok {
		return -1
	}
	t.set(id, j)
	return j
}
