package main

import (
	"encoding/json"
	"net/netip"
	"testing"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/ptr"
)

// The scanner must read what encoding/json reads from a real tailcfg.MapResponse, whatever other
// fields surround the ones it keeps.
func TestScanMapMatchesEncodingJSON(t *testing.T) {
	k1, k2 := key.NewNode().Public(), key.NewNode().Public()
	resp := tailcfg.MapResponse{
		Node: &tailcfg.Node{ID: 7, Name: "self \"quoted\" {x}", Key: key.NewNode().Public()},
		Peers: []*tailcfg.Node{
			{ID: 1, Key: k1, Online: ptr.To(true), Endpoints: []netip.AddrPort{markerAddr(70000), netip.MustParseAddrPort("192.0.2.1:5")},
				Hostinfo: (&tailcfg.Hostinfo{Hostname: "a]b}c", Services: []tailcfg.Service{{Proto: "tcp", Port: 1}}}).View(),
				CapMap:   tailcfg.NodeCapMap{"x": {`{"a":[1,2,{"b":"\"}"}]}`}}},
			{ID: 2, Key: k2, Online: ptr.To(false)},
		},
		PeersChanged:      []*tailcfg.Node{{ID: 3, Key: k2}},
		PeersRemoved:      []tailcfg.NodeID{4, 5},
		PeersChangedPatch: []*tailcfg.PeerChange{{NodeID: 1, Online: ptr.To(false), Endpoints: []netip.AddrPort{markerAddr(9)}}, {NodeID: 2, DERPRegion: 3}},
		OnlineChange:      map[tailcfg.NodeID]bool{8: true, 9: false},
		PeerSeenChange:    map[tailcfg.NodeID]bool{8: true},
		KeepAlive:         true,
	}
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var m mapMsg
	if err := scanMap(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.selfID != 7 || !m.hasPeers || len(m.peers) != 2 || !m.keepAlive {
		t.Fatalf("top level: %+v", m)
	}
	p := m.peers[0]
	if p.id != 1 || string(p.key) != k1.String() || p.online != onlineTrue || !p.hasEP || p.mark != 70000 {
		t.Fatalf("peer 0: %+v", p)
	}
	if q := m.peers[1]; q.id != 2 || q.online != onlineFalse || q.hasEP || q.mark != 0 {
		t.Fatalf("peer 1: %+v", q)
	}
	if len(m.changed) != 1 || m.changed[0].id != 3 || m.changed[0].online != onlineAbsent {
		t.Fatalf("changed: %+v", m.changed)
	}
	if len(m.removed) != 2 || m.removed[1] != 5 {
		t.Fatalf("removed: %v", m.removed)
	}
	if len(m.patches) != 2 || m.patches[0].id != 1 || m.patches[0].online != onlineFalse || m.patches[0].mark != 9 || m.patches[1].online != onlineAbsent {
		t.Fatalf("patches: %+v", m.patches)
	}
	if len(m.onlineChange) != 2 || m.seenChanges != 1 {
		t.Fatalf("online %v seen %d", m.onlineChange, m.seenChanges)
	}
	var empty mapMsg
	if err := scanMap([]byte(`{"KeepAlive":true}`), &empty); err != nil || empty.hasPeers || !empty.keepAlive {
		t.Fatalf("keepalive: %v %+v", err, empty)
	}
	if err := scanMap([]byte(`{"Peers":[{"ID":1,`), &empty); err == nil {
		t.Fatal("truncated input accepted")
	}
}

func TestModelVisibilityIsSymmetric(t *testing.T) {
	m := newModel(500, true, 40)
	for i := 0; i < 500; i += 7 {
		for j := 0; j < 500; j += 3 {
			if m.sees(i, j) != m.sees(j, i) {
				t.Fatalf("%d sees %d: %v, reverse %v", i, j, m.sees(i, j), m.sees(j, i))
			}
		}
	}
}
