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
