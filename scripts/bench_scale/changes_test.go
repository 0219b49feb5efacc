package main

import (
	"testing"
	"time"
)

func TestObserveManyMarkersOnce(t *testing.T) {
	l := newChangeLog(200)
	a := l.start(1, 2) // node 1's change, two receivers must see it
	b := l.start(2, 1)
	t0 := time.Now()
	// Receiver 130 sees both in one message, a repeat of a, and a marker nobody sent.
	l.observe(130, []uint32{a.seq, b.seq, a.seq, 99}, t0)
	if a.got != 1 || b.got != 1 || l.acks != 2 {
		t.Fatalf("got a=%d b=%d acks=%d, want 1 1 2", a.got, b.got, l.acks)
	}
	if !b.doneAt.Equal(t0) || !a.doneAt.IsZero() || !l.busy(1) || l.busy(2) {
		t.Fatalf("b should be done at t0 and a still open: a=%v b=%v", a.doneAt, b.doneAt)
	}
	// The same receiver again counts nothing; another one completes a.
	l.observe(130, []uint32{a.seq}, t0.Add(time.Millisecond))
	t1 := t0.Add(2 * time.Millisecond)
	l.observe(3, []uint32{a.seq}, t1)
	if a.got != 2 || !a.doneAt.Equal(t1) || !a.firstAt.Equal(t0) || l.busy(1) {
		t.Fatalf("a: got %d done %v first %v busy %v", a.got, a.doneAt, a.firstAt, l.busy(1))
	}
}

// A delivered change's delay splits into the wait for its first receiver and the spread to its
// last; an undelivered one counts in neither.
func TestSummarySplitsDelays(t *testing.T) {
	l := newChangeLog(10)
	a := l.start(1, 2)
	b := l.start(2, 2)
	l.observe(5, []uint32{a.seq, b.seq}, a.sent.Add(30*time.Millisecond))
	l.observe(6, []uint32{a.seq}, a.sent.Add(100*time.Millisecond))
	delays, firsts, spreads, delivered, total, acks, need := l.summary(a.seq, b.seq)
	if delivered != 1 || total != 2 || acks != 3 || need != 4 {
		t.Fatalf("delivered %d of %d, acks %d of %d", delivered, total, acks, need)
	}
	if len(delays) != 1 || len(firsts) != 1 || len(spreads) != 1 ||
		delays[0] != 100*time.Millisecond || firsts[0] != 30*time.Millisecond || spreads[0] != 70*time.Millisecond {
		t.Fatalf("delays %v firsts %v spreads %v", delays, firsts, spreads)
	}
}
