package main

// A node's view of its peers, kept as two bitsets over node indices (present, online): at 10,000
// nodes that is 2.5 KB per node, where a map of peer structs would cost ~100× more.

import "math/bits"

type peerSet struct {
	present, online []uint64
	exp             []uint64 // shared, read-only: who this node must see (its class's bitset)
	self            int
	expCount        int
	// Counters kept in step with the bitsets.
	expPresent, unexpPresent, expOnline int
	selfAsPeer                          int // times the server listed the node among its own peers
}

func newPeerSet(n, self int, exp []uint64, expCount int) peerSet {
	w := (n + 63) / 64
	return peerSet{present: make([]uint64, w), online: make([]uint64, w), exp: exp, self: self, expCount: expCount}
}

func (p *peerSet) converged() bool {
	return p.expPresent == p.expCount && p.expOnline == p.expCount && p.unexpPresent == 0
}

func bit(s []uint64, i int) bool { return s[i>>6]&(1<<(i&63)) != 0 }

// replace starts a full peer list: everything is forgotten, then add is called per entry.
func (p *peerSet) replace() {
	clear(p.present)
	clear(p.online)
	p.expPresent, p.unexpPresent, p.expOnline = 0, 0, 0
}

// add records peer i as present (a full Node entry: its Online flag is authoritative).
func (p *peerSet) add(i int, online bool) {
	if i == p.self {
		p.selfAsPeer++
		return
	}
	w, m := i>>6, uint64(1)<<(i&63)
	exp := p.exp[w]&m != 0
	if p.present[w]&m == 0 {
		p.present[w] |= m
		if exp {
			p.expPresent++
		} else {
			p.unexpPresent++
		}
	}
	p.setOnline(i, online)
}

func (p *peerSet) remove(i int) {
	w, m := i>>6, uint64(1)<<(i&63)
	if p.present[w]&m == 0 {
		return
	}
	p.setOnline(i, false)
	p.present[w] &^= m
	if p.exp[w]&m != 0 {
		p.expPresent--
	} else {
		p.unexpPresent--
	}
}

// setOnline changes the online flag of a present peer (changes for unknown peers are ignored, as a
// real client does).
func (p *peerSet) setOnline(i int, on bool) {
	w, m := i>>6, uint64(1)<<(i&63)
	if p.present[w]&m == 0 || (p.online[w]&m != 0) == on {
		return
	}
	if on {
		p.online[w] |= m
	} else {
		p.online[w] &^= m
	}
	if p.exp[w]&m != 0 {
		if on {
			p.expOnline++
		} else {
			p.expOnline--
		}
	}
}

// diff counts peers missing from and extra to the expected set (for the final correctness check).
func (p *peerSet) diff() (missing, extra, offline int) {
	for w := range p.present {
		exp := p.exp[w]
		if w == p.self>>6 {
			exp &^= 1 << (p.self & 63)
		}
		missing += bits.OnesCount64(exp &^ p.present[w])
		extra += bits.OnesCount64(p.present[w] &^ exp)
		offline += bits.OnesCount64(exp & p.present[w] &^ p.online[w])
	}
	return
}
