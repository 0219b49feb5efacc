// bench_scale: many simulated Tailscale nodes against one control server over the real protocol
// (ts2021 Noise + HTTP/2, tailcfg messages, zstd map streams), measuring joins, convergence, idle
// cost, change latency, churn, an optional restart storm and the final correctness of every
// node's peer set. Run it through `deno task bench-scale N` (scripts/bench_scale.ts), which starts
// the server and creates the users and keys; see docs/scale.md.
//
//	bench_scale plan -n N [-policy realistic -users K]    prints the users, keys and policy to create
//	bench_scale -server URL -n N -authkeys FILE [flags]   runs the benchmark
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tailscale.com/control/controlhttp"
	"tailscale.com/control/tsp"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

type options struct {
	server          string
	n               int
	authKeys        string
	policy          string
	users           int
	concurrency     int
	convergeTimeout time.Duration
	idle            time.Duration
	lone            int
	churnRate       float64
	churn           time.Duration
	settle          time.Duration
	restart         bool
	restartTimeout  time.Duration
	pid             int
	serverCore      int
	out             string
	label           string
	srcIPs          int
	h2Window        int
	seed            uint64
	gcPercent       int
	cpuProfile      string
	memProfile      string
}

func parseFlags(args []string) (*options, *flag.FlagSet) {
	o := &options{}
	fs := flag.NewFlagSet("bench_scale", flag.ExitOnError)
	fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "control server URL")
	fs.IntVar(&o.n, "n", 20, "nodes")
	fs.StringVar(&o.authKeys, "authkeys", "", "JSON file {owner: pre-auth key} (owners from `plan`)")
	fs.StringVar(&o.policy, "policy", "plain", "plain (everyone sees everyone) or realistic (users, groups, tags)")
	fs.IntVar(&o.users, "users", 0, "users in the realistic policy (0: N/8, between 4 and 300)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "nodes registering at once in the join storm")
	fs.DurationVar(&o.convergeTimeout, "converge-timeout", 10*time.Minute, "how long the join may take")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "idle phase after convergence")
	fs.IntVar(&o.lone, "lone", 5, "single endpoint changes at idle, one at a time")
	fs.Float64Var(&o.churnRate, "churn-rate", 10, "endpoint changes per second during churn")
	fs.DurationVar(&o.churn, "churn", 30*time.Second, "churn duration (0: no churn)")
	fs.DurationVar(&o.settle, "settle", 15*time.Second, "how long to wait for changes still in flight after churn")
	fs.BoolVar(&o.restart, "restart", false, "restart storm: ask the wrapper (on stdout/stdin) to restart the server")
	fs.DurationVar(&o.restartTimeout, "restart-timeout", 10*time.Minute, "how long reconvergence after a restart may take")
	fs.IntVar(&o.pid, "pid", 0, "server pid (its process tree is sampled for CPU and memory)")
	fs.IntVar(&o.serverCore, "server-core", 1, "the core the server is pinned to")
	fs.StringVar(&o.out, "out", "", "write result.json here")
	fs.StringVar(&o.label, "label", "", "label for the result")
	fs.IntVar(&o.srcIPs, "src-ips", 16, "spread connections over this many loopback source addresses (127.0.0.2…) against local port exhaustion; 0: off")
	fs.IntVar(&o.h2Window, "h2-window", 0, "HTTP/2 receive window per map stream in bytes (twice that per connection); 0: Go's defaults, as real clients")
	fs.Uint64Var(&o.seed, "seed", 1, "seed for picking the nodes that change")
	fs.IntVar(&o.gcPercent, "gc-percent", 200, "GOGC for the generator (larger: less CPU on collection, more memory)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the generator's CPU profile here")
	fs.StringVar(&o.memProfile, "memprofile", "", "write the generator's heap profile here (at the end of the run)")
	fs.Parse(args)
	if o.users == 0 {
		o.users = min(max(o.n/8, 4), 300)
	}
	return o, fs
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetOutput(os.Stderr)
	if len(os.Args) > 1 && os.Args[1] == "plan" {
		o, _ := parseFlags(os.Args[2:])
		m := newModel(o.n, o.policy == "realistic", o.users)
		out, _ := json.MarshalIndent(m.plan(), "", "  ")
		fmt.Println(string(out))
		return
	}
	o, fs := parseFlags(os.Args[1:])
	if o.authKeys == "" {
		log.Fatal("-authkeys is required")
	}
	debug.SetGCPercent(o.gcPercent)
	if total := physicalMemory(); total > 0 {
		// GOGC's slack is welcome, but not the whole machine: a 10,000-node restart storm took the
		// generator to 16 GB of 23. Past half the memory, it collects more often instead.
		debug.SetMemoryLimit(total / 2)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()

	b, err := newBench(ctx, o)
	if err != nil {
		log.Fatal(err)
	}
	res := &Results{Label: o.label, Server: o.server, Nodes: o.n, Policy: o.policy,
		CapVersion: int(tailcfg.CurrentCapabilityVersion), Started: time.Now().UTC().Format(time.RFC3339)}
	if o.policy == "realistic" {
		res.Users = o.users
	}
	fs.Visit(func(f *flag.Flag) { res.Flags = append(res.Flags, "-"+f.Name+"="+f.Value.String()) })
	b.runAll(ctx, res)

	out, _ := json.MarshalIndent(res, "", "  ")
	if o.out != "" {
		if err := os.WriteFile(o.out, append(out, '\n'), 0o644); err != nil {
			log.Printf("writing %s: %v", o.out, err)
		}
	}
	res.table(os.Stdout)
	if !res.Correct {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type bench struct {
	o         *options
	serverURL string
	serverKey key.MachinePublic
	// Where controlhttp dials, from serverURL as ts2021.Client works it out.
	serverHost, httpPort, httpsPort string

	model     *model
	nodes     []*node
	byKey     map[string]int
	ids       *nodeIDs
	changes   *changeLog
	joinSlots chan struct{}
	// decodeSlots bounds the messages being decoded at once (one per core the generator runs on).
	decodeSlots chan struct{}
	frames      *frameCache
	slices      *frameCache // the zstd frames of big messages (decodeFrames)
	start       time.Time

	pid              atomic.Int64
	epoch            atomic.Int32
	peakKB           atomic.Int64
	regFailures      atomic.Int64
	firstMaps        atomic.Int64
	unknownPeers     atomic.Int64
	convergenceDrops atomic.Int64
	countDrops       atomic.Bool
	kinds            [len(kindNames)]atomic.Int64

	control *bufio.Reader // the wrapper's answers (restart)

	errMu    sync.Mutex
	errKinds map[string]int64 // stream errors by text, digits removed
}

func (b *bench) noteError(msg string) {
	kind := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, msg)
	if len(kind) > 160 {
		kind = kind[:160]
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if b.errKinds == nil {
		b.errKinds = map[string]int64{}
	}
	if _, ok := b.errKinds[kind]; ok || len(b.errKinds) < 20 {
		b.errKinds[kind]++
	}
}

var kindNames = [...]string{"full", "peers_changed", "peers_removed", "patch", "online_change", "peer_seen", "keepalive", "other"}

func (b *bench) countKinds(m *mapMsg) {
	any := false
	note := func(k int, c bool) {
		if c {
			b.kinds[k].Add(1)
			any = true
		}
	}
	note(0, m.hasPeers)
	note(1, len(m.changed) > 0)
	note(2, len(m.removed) > 0)
	note(3, len(m.patches) > 0)
	note(4, len(m.onlineChange) > 0)
	note(5, m.seenChanges > 0)
	note(6, m.keepAlive)
	if !any {
		b.kinds[7].Add(1)
	}
}

func newBench(ctx context.Context, o *options) (*bench, error) {
	keys := map[string]string{}
	raw, err := os.ReadFile(o.authKeys)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("%s: %w", o.authKeys, err)
	}
	b := &bench{o: o, serverURL: o.server, model: newModel(o.n, o.policy == "realistic", o.users),
		byKey: make(map[string]int, o.n), ids: newNodeIDs(o.n), changes: newChangeLog(o.n),
		joinSlots:   make(chan struct{}, max(1, o.concurrency)),
		decodeSlots: make(chan struct{}, runtime.GOMAXPROCS(0)), frames: newFrameCache(),
		slices: newFrameCacheOf(sliceCacheMaxBytes, sliceCacheEntries), control: bufio.NewReader(os.Stdin)}
	b.pid.Store(int64(o.pid))
	if b.serverHost, b.httpPort, b.httpsPort, err = dialPorts(o.server); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		b.serverKey, err = tsp.DiscoverServerKey(ctx, o.server)
		if err == nil {
			break
		}
		if attempt == 50 {
			return nil, fmt.Errorf("server key: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	loopback := strings.Contains(o.server, "://127.0.0.1:")
	for i := range o.n {
		dialer := &net.Dialer{}
		if loopback && o.srcIPs > 0 {
			dialer.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%o.srcIPs))}
		}
		nd := b.newNode(i, dialer.DialContext)
		c := b.model.class[i]
		k, ok := keys[b.model.names[c]]
		if !ok {
			return nil, fmt.Errorf("no pre-auth key for %s", b.model.names[c])
		}
		nd.authKey = k
		nd.peers = newPeerSet(o.n, i, b.model.classExp[c], b.model.expectedPeers(i))
		b.byKey[nd.nkPub.String()] = i
		b.nodes = append(b.nodes, nd)
	}
	return b, nil
}

// dialPorts: the host and the ports controlhttp tries for a server URL, as ts2021.Client picks
// them (an http URL of a private address is never tried over HTTPS).
func dialPorts(server string) (host, httpPort, httpsPort string, err error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", "", "", err
	}
	host, httpPort, httpsPort = u.Hostname(), "80", controlhttp.NoPort
	addr, _ := netip.ParseAddr(host)
	private := addr.IsPrivate() || addr.IsLoopback() || host == "localhost"
	switch {
	case u.Scheme == "https" && u.Port() != "":
		httpPort, httpsPort = "", u.Port()
	case u.Scheme == "https":
		httpsPort = "443"
	case u.Scheme != "http":
		return "", "", "", fmt.Errorf("server URL %q: http or https", server)
	case u.Port() != "":
		httpPort = u.Port()
		if !private {
			httpsPort = "443"
		}
	case !private:
		httpsPort = "443"
	}
	return host, httpPort, httpsPort, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
