package main

// The tailnet the benchmark builds: who owns each node and who must see whom. The wrapper asks for
// the plan (`bench_scale plan`), creates the users and keys it names with the server's CLI, and the
// generator rebuilds the same model from the same flags, so it knows every node's expected peer
// set exactly.

import (
	"fmt"
	"math/bits"
	"strings"
)

// model: classes are owners. Plain: one user "bench". Realistic: users u1..uK (classes 0..K-1),
// then tag:shared (class K) and tag:team1..tag:teamT (classes K+1..K+T).
type model struct {
	n        int
	realism  bool
	users    int
	groups   int
	teams    int
	class    []int32    // per node
	names    []string   // per class: user name or tag
	size     []int      // nodes per class
	classExp [][]uint64 // per class: bitset of nodes a node of this class must see (may include itself)
	visible  [][]bool   // class × class
}

func newModel(n int, realistic bool, users int) *model {
	m := &model{n: n, realism: realistic}
	if !realistic {
		m.names = []string{"bench"}
		m.class = make([]int32, n)
		m.visible = [][]bool{{true}}
	} else {
		m.users = max(1, users)
		m.groups = max(2, (m.users+7)/8)
		m.teams = min(m.groups, 4)
		for u := 1; u <= m.users; u++ {
			m.names = append(m.names, fmt.Sprintf("u%d", u))
		}
		m.names = append(m.names, "tag:shared")
		for t := 1; t <= m.teams; t++ {
			m.names = append(m.names, fmt.Sprintf("tag:team%d", t))
		}
		m.assign()
		m.buildVisibility()
	}
	m.size = make([]int, len(m.names))
	for _, c := range m.class {
		m.size[c]++
	}
	words := (n + 63) / 64
	m.classExp = make([][]uint64, len(m.names))
	for c := range m.names {
		m.classExp[c] = make([]uint64, words)
	}
	for i, ci := range m.class {
		for c := range m.names {
			if m.visible[c][ci] {
				m.classExp[c][i/64] |= 1 << (i % 64)
			}
		}
	}
	return m
}

// assign spreads ~3 % tagged nodes evenly over the indices (at least one per tag) and deals the
// others round-robin over the users.
func (m *model) assign() {
	tagClasses := 1 + m.teams
	nTag := min(max(tagClasses, m.n*3/100), m.n/2)
	stride := m.n
	if nTag > 0 {
		stride = m.n / nTag
	}
	m.class = make([]int32, m.n)
	tagged, untagged := 0, 0
	for i := range m.n {
		if nTag > 0 && i%stride == 0 && tagged < nTag {
			m.class[i] = int32(m.users + tagged%tagClasses)
			tagged++
			continue
		}
		m.class[i] = int32(untagged % m.users)
		untagged++
	}
}

// groupsOf: user u (0-based) is in group u mod G; every fifth user also in the next group, so
// visibility is not transitive.
func (m *model) groupsOf(u int) []int {
	g := []int{u % m.groups}
	if (u+1)%5 == 0 {
		g = append(g, (u+1)%m.groups)
	}
	return g
}

func (m *model) inGroup(u, g int) bool {
	for _, x := range m.groupsOf(u) {
		if x == g {
			return true
		}
	}
	return false
}

// reach mirrors the ACLs written by policyText: src class may open connections to dst class.
func (m *model) reach(src, dst int) bool {
	isUser := func(c int) bool { return c < m.users }
	shared := m.users
	switch {
	case isUser(src) && isUser(dst):
		for _, g := range m.groupsOf(src) {
			if m.inGroup(dst, g) {
				return true
			}
		}
		return false
	case isUser(src) && dst == shared:
		return true
	case isUser(src): // a team tag: reachable by its group
		return m.inGroup(src, dst-shared-1)
	case src > shared && dst == shared: // team servers reach the shared servers
		return true
	}
	return false
}

// buildVisibility: peers are symmetric in tailscale: A and B see each other if either may reach
// the other.
func (m *model) buildVisibility() {
	c := len(m.names)
	m.visible = make([][]bool, c)
	for a := range c {
		m.visible[a] = make([]bool, c)
		for b := range c {
			m.visible[a][b] = m.reach(a, b) || m.reach(b, a)
		}
	}
}

// expectedPeers: how many peers node i must see.
func (m *model) expectedPeers(i int) int {
	n := 0
	for _, w := range m.classExp[m.class[i]] {
		n += bits.OnesCount64(w)
	}
	if m.sees(i, i) {
		n--
	}
	return n
}

func (m *model) sees(i, j int) bool {
	return m.classExp[m.class[i]][j/64]&(1<<(j%64)) != 0
}

// policyText is the HuJSON policy of the realistic model. Users have no e-mail: "uN@".
func (m *model) policyText() string {
	var s strings.Builder
	s.WriteString("// bench-scale realistic policy (generated)\n{\n  \"groups\": {\n")
	for g := range m.groups {
		var members []string
		for u := range m.users {
			if m.inGroup(u, g) {
				members = append(members, fmt.Sprintf("%q", m.names[u]+"@"))
			}
		}
		sep := ","
		if g == m.groups-1 {
			sep = ""
		}
		fmt.Fprintf(&s, "    \"group:g%d\": [%s]%s\n", g+1, strings.Join(members, ", "), sep)
	}
	s.WriteString("  },\n  \"tagOwners\": {\n")
	tags := m.names[m.users:]
	for t, tag := range tags {
		sep := ","
		if t == len(tags)-1 {
			sep = ""
		}
		fmt.Fprintf(&s, "    %q: [\"u1@\"]%s\n", tag, sep)
	}
	s.WriteString("  },\n  \"acls\": [\n")
	for g := range m.groups {
		fmt.Fprintf(&s, "    {\"action\": \"accept\", \"src\": [\"group:g%d\"], \"dst\": [\"group:g%d:*\"]},\n", g+1, g+1)
	}
	for t := 1; t <= m.teams; t++ {
		fmt.Fprintf(&s, "    {\"action\": \"accept\", \"src\": [\"group:g%d\"], \"dst\": [\"tag:team%d:*\"]},\n", t, t)
		fmt.Fprintf(&s, "    {\"action\": \"accept\", \"src\": [\"tag:team%d\"], \"dst\": [\"tag:shared:*\"]},\n", t)
	}
	s.WriteString("    {\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"tag:shared:*\"]}\n  ]\n}\n")
	return s.String()
}

// planKey is one pre-auth key the wrapper must create: for a user, or tagged (owned by the first
// user, as the policy's tagOwners say).
type planKey struct {
	Owner string   `json:"owner"`
	User  string   `json:"user"`
	Tags  []string `json:"tags,omitempty"`
}

type plan struct {
	Users  []string  `json:"users"`
	Keys   []planKey `json:"keys"`
	Policy string    `json:"policy,omitempty"`
}

func (m *model) plan() plan {
	var p plan
	if !m.realism {
		p.Users = []string{"bench"}
		p.Keys = []planKey{{Owner: "bench", User: "bench"}}
		return p
	}
	p.Users = m.names[:m.users]
	for c, name := range m.names {
		if m.size[c] == 0 {
			continue
		}
		if c < m.users {
			p.Keys = append(p.Keys, planKey{Owner: name, User: name})
		} else {
			p.Keys = append(p.Keys, planKey{Owner: name, User: m.names[0], Tags: []string{name}})
		}
	}
	p.Policy = m.policyText()
	return p
}
