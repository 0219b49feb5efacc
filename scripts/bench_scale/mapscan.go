package main

// A minimal reader for the JSON of a tailcfg.MapResponse. It extracts only what the benchmark
// tracks (peer ids, keys, online flags, the churn marker in endpoints) and skips every other value
// without building it: at 10,000 nodes every node reads ~10,000 peers, so decoding whole
// tailcfg.Node values would make the generator, not the server, the bottleneck.

import (
	"bytes"
	"errors"
	"strconv"
)

var errBadJSON = errors.New("mapscan: malformed JSON")

// Online states as read from JSON: absent, false or true.
const (
	onlineAbsent int8 = iota
	onlineFalse
	onlineTrue
)

// peerRec is one entry of Peers, PeersChanged or PeersChangedPatch.
type peerRec struct {
	id     int64
	key    []byte // raw "nodekey:…" text, a sub-slice of the message (Peers/PeersChanged only)
	online int8
	hasEP  bool   // the entry carries Endpoints
	mark   uint32 // churn marker found in Endpoints (0: none)
}

type idBool struct {
	id int64
	on bool
}

// mapMsg is one decoded message; reused between messages (reset clears it).
type mapMsg struct {
	selfID       int64
	hasPeers     bool // Peers present: a full peer list replacing the previous one
	peers        []peerRec
	changed      []peerRec
	patches      []peerRec
	removed      []int64
	onlineChange []idBool
	seenChanges  int
	keepAlive    bool
}

func (m *mapMsg) reset() {
	m.selfID = 0
	m.hasPeers = false
	m.peers = m.peers[:0]
	m.changed = m.changed[:0]
	m.patches = m.patches[:0]
	m.removed = m.removed[:0]
	m.onlineChange = m.onlineChange[:0]
	m.seenChanges = 0
	m.keepAlive = false
}

// scanMap fills m from one MapResponse JSON document.
func scanMap(b []byte, m *mapMsg) error {
	m.reset()
	_, err := eachField(b, skipWS(b, 0), func(key []byte, i int) (int, error) {
		switch string(key) {
		case "Node":
			var rec peerRec
			j, err := scanNode(b, i, &rec)
			m.selfID = rec.id
			return j, err
		case "Peers":
			m.hasPeers = true
			return scanNodes(b, i, &m.peers)
		case "PeersChanged":
			return scanNodes(b, i, &m.changed)
		case "PeersChangedPatch":
			return scanNodes(b, i, &m.patches)
		case "PeersRemoved":
			return scanIDs(b, i, &m.removed)
		case "OnlineChange":
			return eachField(b, i, func(k []byte, j int) (int, error) {
				id, _ := strconv.ParseInt(string(k), 10, 64)
				on := hasPrefixAt(b, j, "true")
				m.onlineChange = append(m.onlineChange, idBool{id, on})
				return skipValue(b, j)
			})
		case "PeerSeenChange":
			return eachField(b, i, func(_ []byte, j int) (int, error) {
				m.seenChanges++
				return skipValue(b, j)
			})
		case "KeepAlive":
			m.keepAlive = hasPrefixAt(b, i, "true")
		}
		return skipValue(b, i)
	})
	return err
}

// scanNodes reads an array of node objects (or null) into *out.
func scanNodes(b []byte, i int, out *[]peerRec) (int, error) {
	if hasPrefixAt(b, i, "null") {
		return i + 4, nil
	}
	return eachElem(b, i, func(j int) (int, error) {
		*out = append(*out, peerRec{})
		return scanNode(b, j, &(*out)[len(*out)-1])
	})
}

// scanNode reads the fields of a tailcfg.Node or tailcfg.PeerChange that the benchmark uses.
func scanNode(b []byte, i int, r *peerRec) (int, error) {
	if hasPrefixAt(b, i, "null") {
		return i + 4, nil
	}
	return eachField(b, i, func(key []byte, j int) (int, error) {
		switch string(key) {
		case "ID", "NodeID":
			end := scanNumberEnd(b, j)
			v, err := strconv.ParseInt(string(b[j:end]), 10, 64)
			if err != nil {
				return 0, errBadJSON
			}
			r.id = v
			return end, nil
		case "Key":
			if j < len(b) && b[j] == '"' {
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				r.key = b[j+1 : end-1]
				return end, nil
			}
		case "Online":
			switch {
			case hasPrefixAt(b, j, "true"):
				r.online = onlineTrue
			case hasPrefixAt(b, j, "false"):
				r.online = onlineFalse
			}
		case "Endpoints":
			if hasPrefixAt(b, j, "null") {
				return j + 4, nil
			}
			r.hasEP = true
			return eachElem(b, j, func(k int) (int, error) {
				end, err := skipString(b, k)
				if err != nil {
					return 0, err
				}
				if v, ok := parseMarker(b[k+1 : end-1]); ok {
					r.mark = v
				}
				return end, nil
			})
		}
		return skipValue(b, j)
	})
}

func scanIDs(b []byte, i int, out *[]int64) (int, error) {
	if hasPrefixAt(b, i, "null") {
		return i + 4, nil
	}
	return eachElem(b, i, func(j int) (int, error) {
		end := scanNumberEnd(b, j)
		v, err := strconv.ParseInt(string(b[j:end]), 10, 64)
		if err != nil {
			return 0, errBadJSON
		}
		*out = append(*out, v)
		return end, nil
	})
}

// eachField walks an object starting at b[i] == '{'; fn gets the raw key (escapes are not
// decoded: no key the benchmark reads has any) and the index of its value, and returns the index
// after the value. Returns the index after the closing brace.
func eachField(b []byte, i int, fn func(key []byte, i int) (int, error)) (int, error) {
	if hasPrefixAt(b, i, "null") {
		return i + 4, nil
	}
	if i >= len(b) || b[i] != '{' {
		return 0, errBadJSON
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errBadJSON
		}
		end, err := skipString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : end-1]
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, errBadJSON
		}
		i, err = fn(key, skipWS(b, i+1))
		if err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errBadJSON
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errBadJSON
		}
		i = skipWS(b, i+1)
	}
}

// eachElem walks an array starting at b[i] == '['; fn gets each element's index and returns the
// index after it.
func eachElem(b []byte, i int, fn func(i int) (int, error)) (int, error) {
	if i >= len(b) || b[i] != '[' {
		return 0, errBadJSON
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		i, err = fn(i)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errBadJSON
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errBadJSON
		}
		i = skipWS(b, i+1)
	}
}

// skipValue returns the index just after the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errBadJSON
	default: // number, true, false, null
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r' {
				break
			}
			j++
		}
		if j == i {
			return 0, errBadJSON
		}
		return j, nil
	}
}

// skipString returns the index after the closing quote of the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"') // vectorised: strings are most of a map's bytes
		if k < 0 {
			return 0, errBadJSON
		}
		q := j + k
		escapes := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			escapes++
		}
		if escapes%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

func scanNumberEnd(b []byte, i int) int {
	j := i
	for j < len(b) && (b[j] == '-' || (b[j] >= '0' && b[j] <= '9')) {
		j++
	}
	return j
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefixAt(b []byte, i int, s string) bool {
	return len(b)-i >= len(s) && string(b[i:i+len(s)]) == s
}
