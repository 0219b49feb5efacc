package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// h2Server runs Go's own HTTP/2 server (prior knowledge, no TLS) with handler h; the client
// under test speaks to it over plain TCP.
func h2Server(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dialH2(t *testing.T, addr string, window int) *h2conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := newH2Conn(c, c, "127.0.0.1", window)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	return hc
}

func TestH2PostAndErrorStatus(t *testing.T) {
	nk := key.NewNode().Public()
	addr := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(tailcfg.LBHeader) != nk.String() || r.Method != "POST" {
			http.Error(w, "bad request headers", 400)
			return
		}
		if r.URL.Path == "/deny" {
			http.Error(w, "denied: "+string(body), 403)
			return
		}
		fmt.Fprintf(w, "%s got %d bytes: %s", r.URL.Path, len(body), strings.ToUpper(string(body)))
	})
	hc := dialH2(t, addr, 0)
	ctx := context.Background()
	for i := range 3 { // one connection, several requests (the header encoder's table carries over)
		status, body, err := hc.post(ctx, "/machine/register", nk, []byte(fmt.Sprintf("hello %d", i)))
		if err != nil || status != 200 || string(body) != fmt.Sprintf("/machine/register got 7 bytes: HELLO %d", i) {
			t.Fatalf("post %d: %d %q %v", i, status, body, err)
		}
	}
	status, body, err := hc.post(ctx, "/deny", nk, []byte("x"))
	if err != nil || status != 403 || !strings.Contains(string(body), "denied: x") {
		t.Fatalf("deny: %d %q %v", status, body, err)
	}
	// A request body larger than the server's initial windows (64 KB) waits for its updates.
	big := bytes.Repeat([]byte("a"), 300<<10)
	status, body, err = hc.post(ctx, "/big", nk, big)
	if err != nil || status != 200 || !strings.HasPrefix(string(body), "/big got 307200 bytes") {
		t.Fatalf("big: %d %.40q %v", status, body, err)
	}
	if !hc.usable() {
		t.Fatal("connection not usable after requests")
	}
}

// A streamed body far larger than the receive window only arrives if the client returns window as
// it reads; requests on the same connection go on while it streams.
func TestH2StreamFlowControlAndConcurrentRequests(t *testing.T) {
	const total = 3_150_000 // 315 chunks of 10,000
	release := make(chan struct{})
	addr := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/lite" {
			io.WriteString(w, "ok")
			return
		}
		chunk := make([]byte, 10_000)
		for i := range chunk {
			chunk[i] = byte(i)
		}
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if sent == 0 {
				<-release
			}
		}
	})
	hc := dialH2(t, addr, 64<<10)
	var got int
	bad := false
	st, err := hc.request("/stream", key.NodePublic{}, []byte("{}"), func(p []byte) error {
		for _, c := range p {
			if c != byte((got%10_000)&0xff) {
				bad = true
			}
			got++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	<-st.headers
	if st.status != 200 {
		t.Fatalf("status %d", st.status)
	}
	status, body, err := hc.post(context.Background(), "/lite", key.NodePublic{}, []byte("{}"))
	if err != nil || status != 200 || string(body) != "ok" {
		t.Fatalf("lite update while streaming: %d %q %v", status, body, err)
	}
	close(release)
	select {
	case <-st.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("stream stalled after %d of %d bytes", got, total)
	}
	if st.err != nil || got != total || bad {
		t.Fatalf("stream: %v, %d of %d bytes, corrupt %v", st.err, got, total, bad)
	}
}

// The server closing the connection ends its streams with an error and makes it unusable.
func TestH2ConnectionLoss(t *testing.T) {
	addr := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		<-r.Context().Done()
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := newH2Conn(c, c, "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := hc.request("/stream", key.NodePublic{}, nil, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	<-st.headers
	// Go's HTTP/2 server cannot hijack; close the client's side of the socket instead.
	c.Close()
	select {
	case <-st.done:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end")
	}
	if st.err == nil || hc.usable() {
		t.Fatalf("after the loss: stream error %v, usable %v", st.err, hc.usable())
	}
	if _, err := hc.request("/x", key.NodePublic{}, nil, nil); err == nil {
		t.Fatal("request on a dead connection succeeded")
	}
}

// mapReader must deliver every message whatever the DATA frames' boundaries.
func TestMapReaderSplitsMessagesAcrossPieces(t *testing.T) {
	enc, _ := zstd.NewWriter(nil)
	var stream []byte
	const n = 50
	for i := range n {
		js := fmt.Sprintf(`{"Node":{"ID":%d},"PeersRemoved":[%d,%d]}`, 1000+i, i, i+1)
		if i%7 == 0 {
			js = `{"PeersRemoved":[` + strings.Repeat("5,", 3000) + `6],"Node":{"ID":` + fmt.Sprint(1000+i) + `}}`
		}
		frame := enc.EncodeAll([]byte(js), nil)
		stream = binary.LittleEndian.AppendUint32(stream, uint32(len(frame)))
		stream = append(stream, frame...)
	}
	for seed := range uint64(20) {
		b := &bench{frames: newFrameCache(), decodeSlots: make(chan struct{}, 1)}
		var ids []int64
		mr := &mapReader{b: b, deliver: func(size int, m *mapMsg) { ids = append(ids, m.selfID) }}
		rng := rand.New(rand.NewPCG(seed, 7))
		for p := stream; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(300))
			if seed == 0 {
				k = len(p) // all at once
			}
			if err := mr.feed(p[:k]); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			p = p[k:]
		}
		if len(ids) != n {
			t.Fatalf("seed %d: %d messages of %d", seed, len(ids), n)
		}
		for i, id := range ids {
			if id != int64(1000+i) {
				t.Fatalf("seed %d: message %d has self id %d", seed, i, id)
			}
		}
	}
	b := &bench{frames: newFrameCache(), decodeSlots: make(chan struct{}, 1)}
	mr := &mapReader{b: b, deliver: func(int, *mapMsg) {}}
	if err := mr.feed([]byte{0, 0, 0, 0}); err == nil {
		t.Fatal("a zero-length message was accepted")
	}
}
