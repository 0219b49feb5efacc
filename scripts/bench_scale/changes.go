package main

// Endpoint changes in flight and when each reached every node that must see it. A change is
// recognised by a marker endpoint 10.a.b.c:41641 whose address encodes the change's sequence
// number, so a receiver only compares one number, never whole endpoint lists.

import (
	"net/netip"
	"sync"
	"time"
)

const (
	markerPort     = 41641
	markerPortText = "41641"
)

func markerAddr(seq uint32) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(seq >> 16), byte(seq >> 8), byte(seq)}), markerPort)
}

// parseMarker reads "10.a.b.c:41641" (the raw JSON string contents) back into its sequence.
func parseMarker(s []byte) (uint32, bool) {
	if len(s) < 10 || s[0] != '1' || s[1] != '0' || s[2] != '.' {
		return 0, false
	}
	var v, part uint32
	parts := 0
	for i := 3; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			part = part*10 + uint32(c-'0')
		case c == '.' || c == ':':
			v = v<<8 | (part & 255)
			part = 0
			parts++
			if c == ':' {
				if parts != 3 || string(s[i+1:]) != markerPortText {
					return 0, false
				}
				return v, v != 0
			}
		default:
			return 0, false
		}
	}
	return 0, false
}

type change struct {
	seq     uint32
	node    int
	sent    time.Time
	need    int       // nodes that must see it
	got     int       // nodes that have seen it
	seen    []uint64  // bitset of receivers that have seen it
	firstAt time.Time // when the first receiver saw it
	doneAt  time.Time
}

type changeLog struct {
	mu   sync.Mutex
	n    int
	all  []*change // index: seq-1
	open map[int]*change
	acks int64 // receiver observations counted (first per receiver and change)
}

func newChangeLog(n int) *changeLog {
	return &changeLog{n: n, open: map[int]*change{}}
}

// start registers a new change of node idx that need receivers must see; nil when idx already
// has one in flight.
func (l *changeLog) start(idx, need int) *change {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.open[idx]; busy {
		return nil
	}
	c := &change{seq: uint32(len(l.all) + 1), node: idx, sent: time.Now(), need: need,
		seen: make([]uint64, (l.n+63)/64)}
	l.all = append(l.all, c)
	l.open[idx] = c
	if need == 0 {
		c.doneAt = c.sent
		delete(l.open, idx)
	}
	return c
}

// observe: receiver recv (which must see each sender) read markers seqs in the senders'
// endpoints.
func (l *changeLog) observe(recv int, seqs []uint32, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, m := recv>>6, uint64(1)<<(recv&63)
	for _, seq := range seqs {
		if seq == 0 || int(seq) > len(l.all) {
			continue
		}
		c := l.all[seq-1]
		if c.seen[w]&m != 0 {
			continue
		}
		c.seen[w] |= m
		l.acks++
		if c.got == 0 {
			c.firstAt = at
		}
		c.got++
		if c.got == c.need && c.doneAt.IsZero() {
			c.doneAt = at
			if l.open[c.node] == c {
				delete(l.open, c.node)
			}
		}
	}
}

func (l *changeLog) busy(idx int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.open[idx]
	return ok
}

func (l *changeLog) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// timing of change seq: to its first and to its last receiver (zero when not there yet).
func (l *changeLog) timing(seq uint32) (first, last time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq == 0 || int(seq) > len(l.all) {
		return 0, 0
	}
	c := l.all[seq-1]
	if !c.firstAt.IsZero() {
		first = c.firstAt.Sub(c.sent)
	}
	if !c.doneAt.IsZero() {
		last = c.doneAt.Sub(c.sent)
	}
	return first, last
}

// summary of the changes with seq in [from, to]: delays to the last receiver, and for the same
// changes to the first receiver and from the first to the last.
func (l *changeLog) summary(from, to uint32) (delays, firsts, spreads []time.Duration, delivered, total int, acks, need int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := from; s <= to && int(s) <= len(l.all); s++ {
		c := l.all[s-1]
		total++
		acks += int64(c.got)
		need += int64(c.need)
		if !c.doneAt.IsZero() {
			delivered++
			delays = append(delays, c.doneAt.Sub(c.sent))
			if !c.firstAt.IsZero() {
				firsts = append(firsts, c.firstAt.Sub(c.sent))
				spreads = append(spreads, c.doneAt.Sub(c.firstAt))
			}
		}
	}
	return
}

func (l *changeLog) lastSeq() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint32(len(l.all))
}

// abandon closes every open change (end of a phase) so later phases can pick the nodes again.
func (l *changeLog) abandon() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.open)
}
