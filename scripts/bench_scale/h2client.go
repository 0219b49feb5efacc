package main

// The HTTP/2 client side of one ts2021 connection, with every frame read and handled in one
// goroutine. Go's net/http client reads frames in a goroutine of its own and hands each DATA frame
// through a pipe to the goroutine reading the response body: per map message a pipe write and
// read, a condition variable and a goroutine switch, ~a fifth of the generator's CPU at 10,000
// nodes, where it had become as slow to take in a message as the server was to send one. Here a
// map stream's DATA is handed to its consumer in the reading goroutine, straight from the read
// buffer.
//
// On the wire it is the client net/http is for Tailscale's (ts2021.Client): the same preface and
// SETTINGS, the same receive windows, and window updates by the same rule (each side's unsent
// window once it reaches 4 KB or the window left), written together in one record.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2/hpack"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

const (
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingEnablePush        = 0x2
	settingInitialWindowSize = 0x4
	settingMaxFrameSize      = 0x5
	settingMaxHeaderListSize = 0x6

	// What net/http's client uses (its defaults: 4 MB a stream, 1 GB a connection, frames of up
	// to 1 MB, 10 MB of response headers).
	h2StreamWindow   = 4 << 20
	h2ConnWindow     = 1 << 30
	h2MaxReadFrame   = 1 << 20
	h2MaxHeaderList  = 10 << 20
	h2SpecWindow     = 65535
	h2SpecFrameSize  = 16 << 10
	h2MinRefresh     = 4 << 10
	h2MaxResponse    = 1 << 20 // largest response body kept (not a stream's)
	h2ReadBufferSize = 4 << 10 // as net/http's client (bufio's default)
)

var errH2Closed = errors.New("http2: connection closed")

// inflow is a receive window: bytes consumed are returned to the peer once they reach 4 KB or
// the window left (net/http's rule).
type inflow struct{ avail, unsent int32 }

func (f *inflow) take(n int) bool {
	if int32(n) > f.avail || n < 0 {
		return false
	}
	f.avail -= int32(n)
	return true
}

func (f *inflow) add(n int) int32 {
	f.unsent += int32(n)
	if f.unsent < h2MinRefresh && f.unsent < f.avail {
		return 0
	}
	add := f.unsent
	f.avail += add
	f.unsent = 0
	return add
}

// h2stream is one request's stream. A map stream's body goes to onData (in the reading
// goroutine, the slice valid only during the call); any other body is kept in body.
type h2stream struct {
	id      uint32
	in      inflow
	sendWin int64 // what the server lets us send on it (guarded by the conn's mu)
	onData  func([]byte) error

	headers     chan struct{} // closed when the response headers are in (or the stream failed)
	headersOnce sync.Once
	done        chan struct{} // closed when the stream ended; err says how
	status      int
	body        bytes.Buffer
	err         error
}

func (st *h2stream) headersIn() { st.headersOnce.Do(func() { close(st.headers) }) }

type h2conn struct {
	c         net.Conn
	r         *bufio.Reader
	authority string // the server's host name (ts2021.Client's requests are https://host/path)

	wmu  sync.Mutex // frames written together; the header encoder
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu           sync.Mutex
	cond         *sync.Cond // the send windows grew, or the connection ended
	streams      map[uint32]*h2stream
	nextID       uint32
	sendWin      int64 // connection send window
	peerInitWin  int64 // the server's initial window for our streams
	peerMaxFrame int
	goAway       bool
	err          error // why the connection ended (nil while it runs)

	// The reading goroutine's own.
	in          inflow
	streamWin   int32
	hdec        *hpack.Decoder
	headerBlock []byte
	headersEnd  bool // the HEADERS frame of the block being read had END_STREAM
}

// newH2Conn starts HTTP/2 on c (r reads c after the ts2021 early payload) to host; streamWindow
// is the receive window per stream (0: net/http's default).
func newH2Conn(c net.Conn, r io.Reader, host string, streamWindow int) (*h2conn, error) {
	sw, cw := h2StreamWindow, h2ConnWindow
	if streamWindow > 0 {
		sw, cw = streamWindow, max(2*streamWindow, 64<<10)
	}
	hc := &h2conn{
		c: c, r: bufio.NewReaderSize(r, h2ReadBufferSize), authority: host, bw: bufio.NewWriter(c),
		streams: map[uint32]*h2stream{}, nextID: 1, sendWin: h2SpecWindow,
		peerInitWin: h2SpecWindow, peerMaxFrame: h2SpecFrameSize,
		in: inflow{avail: int32(cw) + h2SpecWindow}, streamWin: int32(sw),
		hdec: hpack.NewDecoder(4096, nil),
	}
	hc.cond = sync.NewCond(&hc.mu)
	hc.henc = hpack.NewEncoder(&hc.hbuf)
	hc.bw.WriteString(h2Preface)
	var s []byte
	for _, kv := range [][2]uint32{
		{settingEnablePush, 0}, {settingInitialWindowSize, uint32(sw)},
		{settingMaxFrameSize, h2MaxReadFrame}, {settingMaxHeaderListSize, h2MaxHeaderList},
	} {
		s = binary.BigEndian.AppendUint16(s, uint16(kv[0]))
		s = binary.BigEndian.AppendUint32(s, kv[1])
	}
	writeFrame(hc.bw, frameSettings, 0, 0, s)
	writeWindowUpdate(hc.bw, 0, uint32(cw))
	if err := hc.bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	go hc.readLoop()
	return hc, nil
}

func writeFrame(w *bufio.Writer, typ, flags byte, stream uint32, payload []byte) {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	w.Write(h[:])
	w.Write(payload)
}

// sendFrame writes one frame at once (acknowledgements, resets).
func (hc *h2conn) sendFrame(typ, flags byte, stream uint32, payload []byte) error {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	writeFrame(hc.bw, typ, flags, stream, payload)
	return hc.bw.Flush()
}

func writeWindowUpdate(w *bufio.Writer, stream, inc uint32) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], inc&0x7fffffff)
	writeFrame(w, frameWindowUpdate, 0, stream, p[:])
}

// usable: the connection may take new requests.
func (hc *h2conn) usable() bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.err == nil && !hc.goAway
}

func (hc *h2conn) Close() error {
	hc.fail(errH2Closed)
	return nil
}

// fail ends the connection and every stream on it (the first error is kept).
func (hc *h2conn) fail(err error) {
	hc.mu.Lock()
	if hc.err != nil {
		hc.mu.Unlock()
		return
	}
	hc.err = err
	streams := hc.streams
	hc.streams = map[uint32]*h2stream{}
	hc.cond.Broadcast()
	hc.mu.Unlock()
	hc.c.Close()
	for _, st := range streams {
		st.finish(err)
	}
}

// finish ends the stream (headers first if they never came); called once, without hc.mu.
func (st *h2stream) finish(err error) {
	st.err = err
	st.headersIn()
	close(st.done)
}

// request sends a POST of body to path, as ts2021.Client.Post does (JSON, the node key as the
// load-balancing header), and returns its stream once the request is written.
func (hc *h2conn) request(path string, nodeKey key.NodePublic, body []byte, onData func([]byte) error) (*h2stream, error) {
	hc.wmu.Lock()
	hc.mu.Lock()
	if hc.err != nil || hc.goAway {
		err := hc.err
		hc.mu.Unlock()
		hc.wmu.Unlock()
		if err == nil {
			err = errors.New("http2: server sent GOAWAY")
		}
		return nil, err
	}
	st := &h2stream{id: hc.nextID, in: inflow{avail: hc.streamWin}, sendWin: hc.peerInitWin,
		onData: onData, headers: make(chan struct{}), done: make(chan struct{})}
	hc.nextID += 2
	hc.streams[st.id] = st
	maxFrame := hc.peerMaxFrame
	hc.mu.Unlock()

	hc.hbuf.Reset()
	fields := [][2]string{
		{":authority", hc.authority}, {":method", "POST"}, {":path", path}, {":scheme", "https"},
		{"content-type", "application/json"}, {"content-length", strconv.Itoa(len(body))},
		{"accept-encoding", "gzip"}, {"user-agent", "Go-http-client/2.0"},
	}
	if !nodeKey.IsZero() {
		fields = append(fields, [2]string{strings.ToLower(tailcfg.LBHeader), nodeKey.String()})
	}
	for _, f := range fields {
		hc.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// One HEADERS frame: a request's headers are far below the server's frame size. The body
	// goes with it as far as the server's windows allow (all of it, in practice: one record).
	flags := byte(flagEndHeaders)
	if len(body) == 0 {
		flags |= flagEndStream
	}
	writeFrame(hc.bw, frameHeaders, flags, st.id, hc.hbuf.Bytes())
	for len(body) > 0 {
		n := hc.takeRoom(st, min(len(body), maxFrame))
		if n == 0 {
			break
		}
		hc.writeData(st, body[:n], n == len(body))
		body = body[n:]
	}
	err := hc.bw.Flush()
	hc.wmu.Unlock()
	// The rest waits for window updates, which the reading goroutine takes wmu to answer.
	for err == nil && len(body) > 0 {
		var n int
		if n, err = hc.waitRoom(st, min(len(body), maxFrame)); err == nil {
			hc.wmu.Lock()
			hc.writeData(st, body[:n], n == len(body))
			err = hc.bw.Flush()
			hc.wmu.Unlock()
			body = body[n:]
		}
	}
	if err != nil {
		hc.fail(err)
		return nil, err
	}
	return st, nil
}

func (hc *h2conn) writeData(st *h2stream, p []byte, last bool) {
	flags := byte(0)
	if last {
		flags = flagEndStream
	}
	writeFrame(hc.bw, frameData, flags, st.id, p)
}

// takeRoom takes up to n bytes of the server's windows for st, 0 if there is none now.
func (hc *h2conn) takeRoom(st *h2stream, n int) int {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	n = int(max(0, min(int64(n), hc.sendWin, st.sendWin)))
	hc.sendWin -= int64(n)
	st.sendWin -= int64(n)
	return n
}

// waitRoom waits until the server's windows let some of n bytes go on st, and takes them.
func (hc *h2conn) waitRoom(st *h2stream, n int) (int, error) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	for hc.err == nil && (hc.sendWin <= 0 || st.sendWin <= 0) {
		hc.cond.Wait()
	}
	if hc.err != nil {
		return 0, hc.err
	}
	n = int(min(int64(n), hc.sendWin, st.sendWin))
	hc.sendWin -= int64(n)
	st.sendWin -= int64(n)
	return n, nil
}

// post sends a request and waits for its whole response.
func (hc *h2conn) post(ctx context.Context, path string, nodeKey key.NodePublic, body []byte) (int, []byte, error) {
	st, err := hc.request(path, nodeKey, body, nil)
	if err != nil {
		return 0, nil, err
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		hc.reset(st)
		return 0, nil, ctx.Err()
	}
	if st.err != nil {
		return 0, nil, st.err
	}
	return st.status, st.body.Bytes(), nil
}

// reset abandons a stream (RST_STREAM CANCEL), as closing a response body does.
func (hc *h2conn) reset(st *h2stream) {
	hc.mu.Lock()
	_, open := hc.streams[st.id]
	delete(hc.streams, st.id)
	hc.mu.Unlock()
	if !open {
		return
	}
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], 0x8) // CANCEL
	hc.sendFrame(frameRSTStream, 0, st.id, p[:])
	st.finish(errors.New("http2: stream cancelled"))
}

func (hc *h2conn) stream(id uint32) *h2stream {
	hc.mu.Lock()
	st := hc.streams[id]
	hc.mu.Unlock()
	return st
}

func (hc *h2conn) endStream(st *h2stream, err error) {
	hc.mu.Lock()
	_, open := hc.streams[st.id]
	delete(hc.streams, st.id)
	hc.mu.Unlock()
	if open {
		st.finish(err)
	}
}

func (hc *h2conn) readLoop() {
	err := hc.readFrames()
	hc.fail(err)
}

func (hc *h2conn) readFrames() error {
	for {
		h, err := hc.r.Peek(9)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errH2Closed
			}
			return err
		}
		size := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags := h[3], h[4]
		id := binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
		hc.r.Discard(9)
		if size > h2MaxReadFrame {
			return fmt.Errorf("http2: frame of %d bytes", size)
		}
		if typ == frameData {
			if err := hc.readData(id, flags, size); err != nil {
				return err
			}
			continue
		}
		// Every other frame is small: read it whole.
		payload, err := hc.readPayload(size)
		if err != nil {
			return err
		}
		if err := hc.handleFrame(typ, flags, id, payload); err != nil {
			return err
		}
	}
}

// readPayload: a frame's payload, from the read buffer when it fits (valid until the next read).
func (hc *h2conn) readPayload(size int) ([]byte, error) {
	if size <= hc.r.Size() {
		p, err := hc.r.Peek(size)
		if err != nil {
			return nil, err
		}
		hc.r.Discard(size)
		return p, nil
	}
	p := make([]byte, size)
	_, err := io.ReadFull(hc.r, p)
	return p, err
}

// readData hands a DATA frame's payload to its stream as it comes off the read buffer, then
// returns the window it used.
func (hc *h2conn) readData(id uint32, flags byte, size int) error {
	if !hc.in.take(size) {
		return errors.New("http2: server sent more than the connection's window")
	}
	st := hc.stream(id)
	pad := 0
	left := size
	if flags&flagPadded != 0 {
		p, err := hc.readPayload(1)
		if err != nil {
			return err
		}
		pad, left = int(p[0]), left-1
		if pad > left {
			return errors.New("http2: padding longer than the frame")
		}
	}
	if st != nil && !st.in.take(size) {
		return errors.New("http2: server sent more than the stream's window")
	}
	var streamErr error
	for body := left - pad; body > 0; {
		n := min(body, hc.r.Size())
		if b := hc.r.Buffered(); b > 0 {
			n = min(n, b)
		}
		p, err := hc.r.Peek(n)
		if err != nil {
			return err
		}
		if st != nil && streamErr == nil {
			if st.onData != nil && st.status == 200 {
				streamErr = st.onData(p)
			} else if st.body.Len()+len(p) > h2MaxResponse {
				streamErr = errors.New("http2: response body too large")
			} else {
				st.body.Write(p)
			}
		}
		hc.r.Discard(n)
		body -= n
	}
	if pad > 0 {
		if _, err := hc.r.Discard(pad); err != nil {
			return err
		}
	}
	end := flags&flagEndStream != 0
	connAdd, streamAdd := hc.in.add(size), int32(0)
	if st != nil && !end && streamErr == nil {
		streamAdd = st.in.add(size)
	}
	if connAdd != 0 || streamAdd != 0 {
		hc.wmu.Lock()
		if connAdd != 0 {
			writeWindowUpdate(hc.bw, 0, uint32(connAdd))
		}
		if streamAdd != 0 {
			writeWindowUpdate(hc.bw, id, uint32(streamAdd))
		}
		err := hc.bw.Flush()
		hc.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	if st == nil {
		return nil
	}
	if streamErr != nil {
		hc.reset(st)
		return streamErr
	}
	if end {
		hc.endStream(st, nil)
	}
	return nil
}

func (hc *h2conn) handleFrame(typ, flags byte, id uint32, p []byte) error {
	switch typ {
	case frameHeaders, frameContinuation:
		if typ == frameHeaders {
			hc.headerBlock = hc.headerBlock[:0]
			hc.headersEnd = flags&flagEndStream != 0
			if flags&flagPadded != 0 {
				if len(p) < 1 || int(p[0]) > len(p)-1 {
					return errors.New("http2: bad padding")
				}
				p = p[1 : len(p)-int(p[0])]
			}
			if flags&flagPriority != 0 {
				if len(p) < 5 {
					return errors.New("http2: short HEADERS")
				}
				p = p[5:]
			}
		}
		hc.headerBlock = append(hc.headerBlock, p...)
		if flags&flagEndHeaders == 0 {
			return nil // CONTINUATION frames follow
		}
		return hc.headersDone(id)
	case frameRSTStream:
		if st := hc.stream(id); st != nil {
			code := uint32(0)
			if len(p) >= 4 {
				code = binary.BigEndian.Uint32(p)
			}
			hc.endStream(st, fmt.Errorf("http2: stream reset by the server (code %d)", code))
		}
	case frameSettings:
		if flags&flagAck != 0 {
			return nil
		}
		if len(p)%6 != 0 {
			return errors.New("http2: bad SETTINGS")
		}
		hc.mu.Lock()
		for ; len(p) >= 6; p = p[6:] {
			v := binary.BigEndian.Uint32(p[2:])
			switch binary.BigEndian.Uint16(p) {
			case settingInitialWindowSize:
				delta := int64(v) - hc.peerInitWin
				hc.peerInitWin = int64(v)
				for _, st := range hc.streams {
					st.sendWin += delta
				}
			case settingMaxFrameSize:
				hc.peerMaxFrame = int(v)
			}
		}
		hc.cond.Broadcast()
		hc.mu.Unlock()
		return hc.sendFrame(frameSettings, flagAck, 0, nil)
	case framePing:
		if flags&flagAck != 0 || len(p) != 8 {
			return nil
		}
		return hc.sendFrame(framePing, flagAck, 0, p)
	case frameGoAway:
		hc.mu.Lock()
		hc.goAway = true
		hc.mu.Unlock()
	case frameWindowUpdate:
		if len(p) != 4 {
			return errors.New("http2: bad WINDOW_UPDATE")
		}
		inc := int64(binary.BigEndian.Uint32(p) & 0x7fffffff)
		hc.mu.Lock()
		if id == 0 {
			hc.sendWin += inc
		} else if st := hc.streams[id]; st != nil {
			st.sendWin += inc
		}
		hc.cond.Broadcast()
		hc.mu.Unlock()
	case framePushPromise:
		return errors.New("http2: PUSH_PROMISE with push disabled")
	}
	return nil
}

// headersDone: a complete header block for stream id (END_STREAM, if any, was on its HEADERS
// frame: hc.headersEnd).
func (hc *h2conn) headersDone(id uint32) error {
	fields, err := hc.hdec.DecodeFull(hc.headerBlock)
	if err != nil {
		return fmt.Errorf("http2: headers: %w", err)
	}
	st := hc.stream(id)
	if st == nil {
		return nil
	}
	if st.status < 200 { // else trailers: nothing in them matters here
		for _, f := range fields {
			if f.Name == ":status" {
				st.status, _ = strconv.Atoi(f.Value)
			}
		}
		if st.status < 200 && !hc.headersEnd {
			st.status = 0
			return nil // informational; the real response follows
		}
		st.headersIn()
	}
	if hc.headersEnd {
		hc.endStream(st, nil)
	}
	return nil
}
