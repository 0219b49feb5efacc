package main

// One simulated node: its keys, its Noise connection (one TCP connection, HTTP/2 inside:
// registration, the map stream and the lite endpoint updates share it, as in a real client),
// the map stream and its peer set.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"tailscale.com/control/controlhttp"
	"tailscale.com/control/ts2021"
	"tailscale.com/tailcfg"
	"tailscale.com/tstime"
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
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	eps   atomic.Pointer[[]netip.AddrPort]

	connMu sync.Mutex // guards conn (the stream and endpoint updates both use it)
	conn   *h2conn

	mu    sync.Mutex // guards peers (the connection's reading goroutine writes, checks read)
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
	nd.dial = dial
	return nd
}

// connect returns the node's connection, dialing a new one (Noise over an HTTP upgrade, as
// ts2021.Client does) when there is none or the last one ended.
func (b *bench) connect(ctx context.Context, nd *node) (*h2conn, error) {
	nd.connMu.Lock()
	defer nd.connMu.Unlock()
	if nd.conn != nil && nd.conn.usable() {
		return nd.conn, nil
	}
	// ts2021.Client gives a dial and its handshake 10 s.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := &controlhttp.Dialer{
		Hostname:        b.serverHost,
		HTTPPort:        b.httpPort,
		HTTPSPort:       b.httpsPort,
		MachineKey:      nd.mk,
		ControlKey:      b.serverKey,
		ProtocolVersion: uint16(tailcfg.CurrentCapabilityVersion),
		Dialer:          nd.dial,
		Logf:            func(string, ...any) {},
		Clock:           tstime.StdClock{},
	}
	cc, err := d.Dial(dctx)
	if err != nil {
		return nil, err
	}
	// ts2021.Conn reads past the server's early payload, if it sends one.
	tc := ts2021.NewConn(cc.Conn, func() {})
	hc, err := newH2Conn(tc, tc, b.serverHost, b.o.h2Window)
	if err != nil {
		return nil, err
	}
	nd.conn = hc
	return hc, nil
}

// post sends body as JSON to path on the node's connection and returns the whole response.
func (b *bench) post(ctx context.Context, nd *node, path string, body any) (int, []byte, error) {
	hc, err := b.connect(ctx, nd)
	if err != nil {
		return 0, nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	return hc.post(ctx, path, nd.nkPub, raw)
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
	status, body, err := b.post(ctx, nd, "/machine/register", &req)
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("register: http %d: %.200s", status, body)
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
	var slot sync.Once // given back at the first map (in the connection's reading goroutine)
	release := func() { slot.Do(func() { <-b.joinSlots }) }
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
	var first atomic.Bool
	for ctx.Err() == nil {
		err := b.stream(ctx, nd, func(d time.Duration) {
			if first.CompareAndSwap(false, true) {
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

// stream opens one map stream and applies every message (in the connection's reading goroutine)
// until it fails.
func (b *bench) stream(ctx context.Context, nd *node, onFirst func(time.Duration)) error {
	t0 := time.Now()
	hc, err := b.connect(ctx, nd)
	if err != nil {
		return fmt.Errorf("map: %w", err)
	}
	body, err := json.Marshal(b.mapRequest(nd, true))
	if err != nil {
		return err
	}
	mr := &mapReader{b: b, deliver: func(size int, msg *mapMsg) {
		nd.msgs.Add(1)
		nd.wireBytes.Add(int64(size + 4))
		b.countKinds(msg)
		b.apply(nd, msg)
		onFirst(time.Since(t0))
	}}
	st, err := hc.request("/machine/map", nd.nkPub, body, mr.feed)
	if err != nil {
		return fmt.Errorf("map: %w", err)
	}
	select {
	case <-st.headers:
	case <-ctx.Done():
		hc.reset(st)
		return ctx.Err()
	}
	if st.err == nil && st.status != 200 {
		select {
		case <-st.done:
		case <-ctx.Done():
			hc.reset(st)
		}
		return fmt.Errorf("map: http %d: %.200s", st.status, st.body.Bytes())
	}
	if st.err == nil {
		nd.streams.Add(1)
		nd.epoch.Store(b.epoch.Load())
		nd.streaming.Store(true)
		select {
		case <-st.done:
		case <-ctx.Done():
			hc.reset(st)
			return ctx.Err()
		}
	}
	if st.err == nil {
		return fmt.Errorf("map stream: ended by the server")
	}
	return fmt.Errorf("map stream: %w", st.err)
}

// mapReader splits a map stream's body into messages (a 4-byte little-endian length, then a
// zstd frame) as DATA arrives. A message whole in one piece is decoded where it lies (in the
// connection's read buffer); one split across pieces is gathered in a buffer from rawPool.
type mapReader struct {
	b       *bench
	deliver func(size int, msg *mapMsg)
	hdr     [4]byte
	hdrN    int
	size    int // of the message being gathered; 0 while reading a length
	raw     *[]byte
	rawN    int
}

func (m *mapReader) feed(p []byte) error {
	for len(p) > 0 {
		if m.size == 0 {
			if m.hdrN == 0 && len(p) >= 4 {
				m.size = int(binary.LittleEndian.Uint32(p))
				p = p[4:]
			} else {
				k := copy(m.hdr[m.hdrN:], p)
				m.hdrN += k
				p = p[k:]
				if m.hdrN < 4 {
					return nil
				}
				m.size, m.hdrN = int(binary.LittleEndian.Uint32(m.hdr[:])), 0
			}
			if m.size == 0 || m.size > maxFrame {
				return fmt.Errorf("map stream: frame of %d bytes", m.size)
			}
			if len(p) >= m.size {
				err := m.b.message(p[:m.size], m.deliver)
				p, m.size = p[m.size:], 0
				if err != nil {
					return err
				}
				continue
			}
			m.raw = rawPool.Get().(*[]byte)
			*m.raw = growTo(*m.raw, m.size)
			m.rawN = 0
		}
		k := copy((*m.raw)[m.rawN:], p)
		m.rawN += k
		p = p[k:]
		if m.rawN == m.size {
			err := m.b.message(*m.raw, m.deliver)
			rawPool.Put(m.raw)
			m.raw, m.size = nil, 0
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// message decodes one map message (raw: its zstd frame, not kept) and delivers it.
func (b *bench) message(raw []byte, deliver func(size int, msg *mapMsg)) error {
	cached, hash, cacheable := b.frames.lookup(raw)
	if cached != nil {
		deliver(len(raw), cached.msg)
		return nil
	}
	// One message decoded at a time per core: a goroutine preempted mid-message would otherwise
	// hold its decoded buffer while thousands of others take theirs (GBs at 2,000 nodes).
	b.decodeSlots <- struct{}{}
	defer func() { <-b.decodeSlots }()
	dec := decPool.Get().(*[]byte)
	var out []byte
	var err error
	if !cacheable && b.slices != nil {
		out, err = decodeFrames(b.slices, raw, (*dec)[:0])
	} else {
		out, err = zdec.DecodeAll(raw, (*dec)[:0])
	}
	if err != nil {
		decPool.Put(dec)
		return fmt.Errorf("map stream: zstd: %w", err)
	}
	*dec = out
	// A frame to cache gets memory of its own, sized to it: the pools' buffers and messages
	// grow to full maps, and a cached small delta must not keep one of those.
	var rawCopy []byte
	data, msg := out, (*mapMsg)(nil)
	if cacheable {
		rawCopy, data, msg = bytes.Clone(raw), bytes.Clone(out), new(mapMsg)
	} else {
		msg = msgPool.Get().(*mapMsg)
	}
	err = scanMap(data, msg)
	if err == nil {
		deliver(len(raw), msg)
		if cacheable {
			b.frames.store(hash, &decodedFrame{raw: rawCopy, dec: data, msg: msg})
		}
	}
	if !cacheable {
		msgPool.Put(msg)
	}
	decPool.Put(dec) // after apply: msg's keys point into it unless the frame was cached
	return err
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
	status, _, err := b.post(ctx, nd, "/machine/map", b.mapRequest(nd, false))
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("endpoint update: http %d", status)
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
