package main

// The phases of a run, in order: join storm → convergence → idle → lone changes → churn →
// restart storm (optional) → correctness.

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// meter measures one phase: server CPU (its process tree), the generator's CPU, and what else ran
// on the server's core.
type meter struct {
	b    *bench
	t    time.Time
	cpu  time.Duration
	core time.Duration
	gen  time.Duration
}

func (b *bench) meter() meter {
	return meter{b: b, t: time.Now(), cpu: sampleTree(int(b.pid.Load())).cpu, core: coreBusy(b.o.serverCore), gen: selfCPU()}
}

func (m meter) stop() (CPU, time.Duration) {
	el := time.Since(m.t).Seconds()
	cpu := sampleTree(int(m.b.pid.Load())).cpu - m.cpu
	core := coreBusy(m.b.o.serverCore) - m.core
	c := CPU{Seconds: round1(cpu.Seconds())}
	if el > 0 {
		c.Percent = round1(100 * cpu.Seconds() / el)
		c.OtherOnCorePct = round1(max(0, 100*(core-cpu).Seconds()/el))
	}
	return c, selfCPU() - m.gen
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func (b *bench) convergedCount(epoch int32) int {
	n := 0
	for _, nd := range b.nodes {
		if nd.converged.Load() && nd.epoch.Load() >= epoch {
			n++
		}
	}
	return n
}

// sampleMemory keeps the server tree's peak resident size (sampled VmRSS and the kernel's VmHWM).
// With -memprofile it also writes F.peak: the generator's heap when its own resident size was
// highest (profiled again whenever it grows by a quarter), since the end of a run hides the peak.
func (b *bench) sampleMemory(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	profiledKB := int64(64 << 10)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s := sampleTree(int(b.pid.Load()))
			v := max(s.rssKB, s.hwmKB)
			if v > b.peakKB.Load() {
				b.peakKB.Store(v)
			}
			if own, _ := selfRSSKB(); b.o.memProfile != "" && own > profiledKB*5/4 {
				profiledKB = own
				writeHeapProfile(b.o.memProfile + ".peak")
			}
		}
	}
}

// writeGoroutines: the count and stacks of every goroutine (a leak on reconnects shows here).
func writeGoroutines(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Printf("goroutine profile: %v", err)
		return
	}
	defer f.Close()
	pprof.Lookup("goroutine").WriteTo(f, 1)
}

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Printf("heap profile: %v", err)
		return
	}
	defer f.Close()
	pprof.WriteHeapProfile(f)
}

func (b *bench) runAll(ctx context.Context, res *Results) {
	b.start = time.Now()
	gen0 := selfCPU()
	server0 := sampleTree(int(b.pid.Load())).cpu
	serverBefore := time.Duration(0) // CPU of servers stopped by a restart
	memCtx, stopMem := context.WithCancel(ctx)
	defer stopMem()
	go b.sampleMemory(memCtx)

	nodesCtx, stopNodes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	ok := b.join(nodesCtx, &wg, res)
	if ok && ctx.Err() == nil {
		b.countDrops.Store(true)
		b.idle(ctx, res)
		b.loneChanges(ctx, res)
		if b.o.churn > 0 && b.o.churnRate > 0 {
			b.churn(ctx, res)
		}
	}
	res.PeakRSSMB = float64(b.peakKB.Load() / 1024)
	if b.o.restart && ok && ctx.Err() == nil {
		serverBefore = sampleTree(int(b.pid.Load())).cpu - server0
		b.restart(ctx, res)
		server0 = 0 // the new process's CPU counts from its start
	}
	b.correctness(res)
	if b.o.memProfile != "" { // while every node is still connected
		writeHeapProfile(b.o.memProfile)
		writeGoroutines(b.o.memProfile + ".goroutines")
	}

	for _, nd := range b.nodes {
		res.Messages += nd.msgs.Load()
		res.WireMB += float64(nd.wireBytes.Load()) / 1e6
		res.StreamErrors += int64(nd.streamErrs.Load())
	}
	res.WireMB = round1(res.WireMB)
	res.MessageKinds = map[string]int64{}
	for i, name := range kindNames {
		res.MessageKinds[name] = b.kinds[i].Load()
	}
	b.errMu.Lock()
	res.StreamErrorKinds = b.errKinds
	b.errMu.Unlock()
	res.ConvergenceDrops = b.convergenceDrops.Load()
	res.UnknownPeers = b.unknownPeers.Load()
	log.Printf("frames decoded once and reused: %d hits, %d decoded; slices of big messages: %d hits, %d decoded",
		b.frames.hits.Load(), b.frames.misses.Load(), b.slices.hits.Load(), b.slices.misses.Load())
	res.ServerCPUS = round1((serverBefore + sampleTree(int(b.pid.Load())).cpu - server0).Seconds())
	res.GeneratorCPUS = round1((selfCPU() - gen0).Seconds())
	res.WallS = round1(time.Since(b.start).Seconds())
	_, hwm := selfRSSKB()
	res.GeneratorPeakMB = float64(hwm / 1024)

	stopNodes()
	for _, nd := range b.nodes {
		nd.connMu.Lock()
		if nd.conn != nil {
			nd.conn.Close()
		}
		nd.connMu.Unlock()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// join starts every node (at most -concurrency registering at once) and waits until all see
// their expected peers online.
func (b *bench) join(ctx context.Context, wg *sync.WaitGroup, res *Results) bool {
	n := len(b.nodes)
	log.Printf("join: %d nodes, %d at a time", n, b.o.concurrency)
	m := b.meter()
	for _, nd := range b.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); b.run(ctx, nd) }()
	}
	deadline := time.Now().Add(b.o.convergeTimeout)
	lastLog := time.Now()
	converged := 0
	for ctx.Err() == nil && time.Now().Before(deadline) {
		converged = b.convergedCount(0)
		if converged == n {
			break
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			log.Printf("join: %.0fs first maps %d, converged %d, registration failures %d",
				time.Since(m.t).Seconds(), b.firstMaps.Load(), converged, b.regFailures.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.JoinServerCPU, _ = m.stop()
	res.ConvergedNodes = converged
	res.ConvergedS = -1
	if converged == n {
		res.ConvergedS = round1(time.Since(m.t).Seconds())
	}
	var reg, fm, peers []time.Duration
	for _, nd := range b.nodes {
		if nd.registered.Load() {
			res.Registered++
			reg = append(reg, nd.regLatency)
		}
		if nd.firstMap > 0 {
			fm = append(fm, nd.firstMap)
		}
		peers = append(peers, time.Duration(nd.peers.expCount)*time.Millisecond)
	}
	res.RegisterFailures = b.regFailures.Load()
	res.Register, res.FirstMap, res.ExpectedPeers = dist(reg), dist(fm), dist(peers)
	log.Printf("join: converged %d/%d in %.1fs, server CPU %.1fs", converged, n, time.Since(m.t).Seconds(), res.JoinServerCPU.Seconds)
	return converged == n
}

func (b *bench) totalMessages() int64 {
	var t int64
	for _, nd := range b.nodes {
		t += nd.msgs.Load()
	}
	return t
}

func (b *bench) idle(ctx context.Context, res *Results) {
	log.Printf("idle: %s", b.o.idle)
	m := b.meter()
	msgs := b.totalMessages()
	sleepCtx(ctx, b.o.idle)
	res.IdleServerCPU, _ = m.stop()
	res.IdleS = round1(time.Since(m.t).Seconds())
	res.IdleMessages = b.totalMessages() - msgs
	s := sampleTree(int(b.pid.Load()))
	res.IdleRSSMB = float64(s.rssKB / 1024)
}

// change sends one endpoint change of node i; the change log then waits for every node that
// must see i.
func (b *bench) change(ctx context.Context, i int) (*change, error) {
	c := b.changes.start(i, b.model.expectedPeers(i))
	if c == nil {
		return nil, nil
	}
	nd := b.nodes[i]
	base := (*nd.eps.Load())[len(*nd.eps.Load())-1]
	eps := []netip.AddrPort{markerAddr(c.seq), base}
	return c, b.sendEndpoints(ctx, nd, eps)
}

func (b *bench) loneChanges(ctx context.Context, res *Results) {
	if b.o.lone <= 0 {
		return
	}
	log.Printf("lone changes: %d", b.o.lone)
	rng := rand.New(rand.NewPCG(b.o.seed, 1))
	first := b.changes.lastSeq() + 1
	for k := 0; k < b.o.lone && ctx.Err() == nil; k++ {
		c, err := b.change(ctx, rng.IntN(len(b.nodes)))
		if err != nil || c == nil {
			log.Printf("lone change: %v", err)
			continue
		}
		for wait := time.Now(); ctx.Err() == nil && time.Since(wait) < 10*time.Second && b.changes.busy(c.node); {
			time.Sleep(2 * time.Millisecond)
		}
		first, last := b.changes.timing(c.seq)
		log.Printf("lone change %d: first receiver %.1f ms, last %.1f ms", k+1,
			float64(first.Microseconds())/1000, float64(last.Microseconds())/1000)
		sleepCtx(ctx, time.Second)
	}
	b.changes.abandon()
	delays, _, _, delivered, total, _, _ := b.changes.summary(first, b.changes.lastSeq())
	res.Lone = dist(delays)
	res.LoneLost = total - delivered
}

func (b *bench) churn(ctx context.Context, res *Results) {
	o := b.o
	log.Printf("churn: %.0f changes/s for %s", o.churnRate, o.churn)
	rng := rand.New(rand.NewPCG(b.o.seed, 2))
	cr := &ChurnResult{Rate: o.churnRate}
	first := b.changes.lastSeq() + 1
	var sending sync.WaitGroup
	var errs int64
	var errMu sync.Mutex
	m := b.meter()
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.churnRate))
	end := time.After(o.churn)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
			i := rng.IntN(len(b.nodes))
			for tries := 0; tries < 20 && (b.changes.busy(i) || !b.nodes[i].streaming.Load()); tries++ {
				i = rng.IntN(len(b.nodes))
			}
			sending.Add(1)
			go func() {
				defer sending.Done()
				if _, err := b.change(ctx, i); err != nil {
					errMu.Lock()
					errs++
					errMu.Unlock()
				}
			}()
		}
	}
	tick.Stop()
	cr.ServerCPU, _ = m.stop()
	cr.DurationS = round1(time.Since(m.t).Seconds())
	sending.Wait()
	for wait := time.Now(); ctx.Err() == nil && time.Since(wait) < o.settle && b.changes.inFlight() > 0; {
		time.Sleep(20 * time.Millisecond)
	}
	_, gen := m.stop()
	cr.GeneratorCPUS = round1(gen.Seconds())
	b.changes.abandon()
	delays, firsts, spreads, delivered, changes, receipts, need := b.changes.summary(first, b.changes.lastSeq())
	cr.Delivered, cr.Changes, cr.Receipts, cr.ReceiptsNeed = delivered, changes, receipts, need
	cr.Delay, cr.FirstDelay, cr.Spread = dist(delays), dist(firsts), dist(spreads)
	cr.SendErrors = errs
	res.Churn = cr
	log.Printf("churn: %d/%d delivered, p50 %.0f ms, p99 %.0f ms", cr.Delivered, cr.Changes, cr.Delay.P50, cr.Delay.P99)
}

// restart asks the wrapper to restart the server (a line "@@restart" on stdout; it answers
// "ready PID DOWN_SECONDS STARTUP_CPU_SECONDS" on stdin) and waits until every node is back on a
// new stream with its expected peers online, without registering again.
func (b *bench) restart(ctx context.Context, res *Results) {
	log.Printf("restart: asking the wrapper")
	rr := &RestartResult{ReconvergedS: -1}
	res.Restart = rr
	b.countDrops.Store(false)
	epoch := b.epoch.Add(1)
	errsBefore := int64(0)
	for _, nd := range b.nodes {
		errsBefore += int64(nd.streamErrs.Load())
	}
	fmt.Fprintln(os.Stdout, "@@restart")
	line, err := b.control.ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) < 4 || f[0] != "ready" {
		rr.Findings = append(rr.Findings, fmt.Sprintf("no restart (wrapper answered %q, %v)", line, err))
		return
	}
	pid, _ := strconv.Atoi(f[1])
	rr.DownS, _ = strconv.ParseFloat(f[2], 64)
	startup, _ := strconv.ParseFloat(f[3], 64)
	res.restartStartupCPU = time.Duration(startup * float64(time.Second))
	b.pid.Store(int64(pid))
	b.peakKB.Store(0)
	m := b.meter()
	m.cpu = 0 // the new process's CPU counts from its start; startup is reported apart
	deadline := time.Now().Add(b.o.restartTimeout)
	lastLog := time.Now()
	n := len(b.nodes)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		rr.Reconverged = b.convergedCount(epoch)
		if rr.Reconverged == n {
			rr.ReconvergedS = round1(time.Since(m.t).Seconds())
			break
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			log.Printf("restart: %.0fs reconverged %d/%d", time.Since(m.t).Seconds(), rr.Reconverged, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rr.ServerCPU, _ = m.stop()
	rr.ServerCPU.Seconds = round1(rr.ServerCPU.Seconds - startup)
	rr.StartupCPUS = startup
	rr.ServerPeakRSSMB = float64(b.peakKB.Load() / 1024)
	if s := sampleTree(pid); s.hwmKB/1024 > int64(rr.ServerPeakRSSMB) {
		rr.ServerPeakRSSMB = float64(s.hwmKB / 1024)
	}
	var errsAfter int64
	for _, nd := range b.nodes {
		errsAfter += int64(nd.streamErrs.Load())
	}
	rr.StreamErrors = errsAfter - errsBefore
	if rr.Reconverged < n {
		for _, nd := range b.nodes {
			if !(nd.converged.Load() && nd.epoch.Load() >= epoch) && len(rr.Findings) < 10 {
				last := ""
				if p := nd.lastErr.Load(); p != nil {
					last = *p
				}
				rr.Findings = append(rr.Findings, fmt.Sprintf("node %d: streaming %v, last error %q", nd.idx, nd.streaming.Load(), last))
			}
		}
	}
	log.Printf("restart: reconverged %d/%d after %.1fs", rr.Reconverged, n, rr.ReconvergedS)
}

// correctness: every node's peer set equals its expected set, all online.
func (b *bench) correctness(res *Results) {
	var missing, extra, offline, selfPeers int
	for _, nd := range b.nodes {
		nd.mu.Lock()
		mi, ex, off := nd.peers.diff()
		sp := nd.peers.selfAsPeer
		nd.mu.Unlock()
		missing += mi
		extra += ex
		offline += off
		selfPeers += sp
		if mi == 0 && ex == 0 && off == 0 && nd.registered.Load() {
			res.CorrectNodes++
		} else if len(res.CorrectnessIssues) < 10 {
			res.CorrectnessIssues = append(res.CorrectnessIssues, fmt.Sprintf(
				"node %d (%s): %d missing, %d extra, %d offline of %d expected",
				nd.idx, b.model.names[b.model.class[nd.idx]], mi, ex, off, nd.peers.expCount))
		}
	}
	if missing+extra+offline+selfPeers > 0 {
		res.CorrectnessIssues = append(res.CorrectnessIssues, fmt.Sprintf(
			"in all: %d missing, %d extra, %d offline peers; listed as its own peer %d times", missing, extra, offline, selfPeers))
	}
	res.Correct = res.CorrectNodes == len(b.nodes) && selfPeers == 0
}
