package main

// The result: result.json (every figure, machine-readable) and the table printed at the end.

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Dist summarises durations in milliseconds.
type Dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func dist(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pct := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Dist{Count: len(s), P50: pct(0.50), P99: pct(0.99), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

// Phase CPU: seconds of CPU and the share of one core over the phase's wall time.
type CPU struct {
	Seconds float64 `json:"s"`
	Percent float64 `json:"pct"`
	// Everything else that ran on the server's core meanwhile (a shared machine's noise).
	OtherOnCorePct float64 `json:"other_on_core_pct"`
}

type ChurnResult struct {
	Rate         float64 `json:"rate_per_s"`
	DurationS    float64 `json:"duration_s"`
	Changes      int     `json:"changes"`
	Delivered    int     `json:"delivered"` // changes every expected receiver saw
	Receipts     int64   `json:"receipts"`  // (change, receiver) pairs seen
	ReceiptsNeed int64   `json:"receipts_expected"`
	SendErrors   int64   `json:"send_errors"`
	Delay        Dist    `json:"delay"`
	// To the first receiver (mostly the wait for the server's next flush), and from the first to
	// the last (the flush and the stragglers): each change's delay is the sum of the two.
	FirstDelay    Dist    `json:"first_receiver_delay"`
	Spread        Dist    `json:"first_to_last"`
	ServerCPU     CPU     `json:"server_cpu"`
	GeneratorCPUS float64 `json:"generator_cpu_s"`
}

type RestartResult struct {
	DownS           float64  `json:"down_s"`        // restart asked → new server ready
	ReconvergedS    float64  `json:"reconverged_s"` // ready → every node on a new stream and converged; -1: timeout
	Reconverged     int      `json:"reconverged_nodes"`
	ServerCPU       CPU      `json:"server_cpu"` // new server, ready → reconverged
	ServerPeakRSSMB float64  `json:"server_peak_rss_mb"`
	StartupCPUS     float64  `json:"startup_cpu_s"` // new server from its start until ready
	StreamErrors    int64    `json:"stream_errors"` // streams that broke (≥ N: each breaks once)
	Findings        []string `json:"findings,omitempty"`
}

type Results struct {
	Label      string   `json:"label"`
	Server     string   `json:"server"`
	Nodes      int      `json:"nodes"`
	Policy     string   `json:"policy"`
	Users      int      `json:"users,omitempty"`
	CapVersion int      `json:"cap_version"`
	Started    string   `json:"started"`
	Flags      []string `json:"flags"`

	Registered       int     `json:"registered"`
	RegisterFailures int64   `json:"register_failures"`
	Register         Dist    `json:"register_latency"`
	FirstMap         Dist    `json:"first_map_latency"`
	JoinServerCPU    CPU     `json:"join_server_cpu"` // start → converged (or timeout)
	ConvergedS       float64 `json:"converged_s"`     // -1: not within the timeout
	ConvergedNodes   int     `json:"converged_nodes"`
	ExpectedPeers    Dist    `json:"expected_peers"` // peers per node (the "_ms" names are counts here)

	IdleS         float64 `json:"idle_s"`
	IdleServerCPU CPU     `json:"idle_server_cpu"`
	IdleMessages  int64   `json:"idle_messages"`
	IdleRSSMB     float64 `json:"server_idle_rss_mb"`
	PeakRSSMB     float64 `json:"server_peak_rss_mb"` // max of sampled VmRSS and VmHWM, before any restart

	Lone     Dist           `json:"lone_change_delay"`
	LoneLost int            `json:"lone_changes_undelivered"`
	Churn    *ChurnResult   `json:"churn,omitempty"`
	Restart  *RestartResult `json:"restart,omitempty"`

	CorrectNodes      int              `json:"correct_nodes"`
	Correct           bool             `json:"correct"`
	CorrectnessIssues []string         `json:"correctness_issues,omitempty"`
	ConvergenceDrops  int64            `json:"convergence_drops"` // converged nodes that lost it (restart excluded)
	StreamErrors      int64            `json:"stream_errors"`
	StreamErrorKinds  map[string]int64 `json:"stream_error_kinds,omitempty"` // digits removed; the first 20 kinds
	UnknownPeers      int64            `json:"unknown_peers"`
	Messages          int64            `json:"messages"`
	WireMB            float64          `json:"wire_mb"`
	MessageKinds      map[string]int64 `json:"message_kinds"`

	restartStartupCPU time.Duration

	WallS           float64 `json:"wall_s"`
	GeneratorCPUS   float64 `json:"generator_cpu_s"`
	GeneratorPeakMB float64 `json:"generator_peak_rss_mb"`
	ServerCPUS      float64 `json:"server_cpu_total_s"`
}

func (r *Results) table(w io.Writer) {
	row := func(name, value string) { fmt.Fprintf(w, "  %-34s %s\n", name, value) }
	d := func(x Dist) string {
		if x.Count == 0 {
			return "—"
		}
		return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(x.P50), ms(x.P99), ms(x.Max), x.Count)
	}
	cpu := func(c CPU) string {
		return fmt.Sprintf("%.1f s, %.0f %% of a core (others on its core: %.0f %%)", c.Seconds, c.Percent, c.OtherOnCorePct)
	}
	fmt.Fprintf(w, "\nbench-scale %s: %d nodes, policy %s\n", r.Label, r.Nodes, r.Policy)
	row("registered", fmt.Sprintf("%d / %d (failures %d)", r.Registered, r.Nodes, r.RegisterFailures))
	row("registration latency", d(r.Register))
	row("first map latency", d(r.FirstMap))
	conv := "NOT converged"
	if r.ConvergedS >= 0 {
		conv = fmt.Sprintf("%.1f s", r.ConvergedS)
	}
	row("converged", fmt.Sprintf("%s (%d / %d nodes)", conv, r.ConvergedNodes, r.Nodes))
	row("server CPU, join storm", cpu(r.JoinServerCPU))
	row("server CPU, idle", cpu(r.IdleServerCPU))
	row("server RSS idle / peak", fmt.Sprintf("%.0f MB / %.0f MB", r.IdleRSSMB, r.PeakRSSMB))
	row("lone change delay", d(r.Lone)+lostNote(r.LoneLost))
	if c := r.Churn; c != nil {
		row(fmt.Sprintf("churn %.0f/s for %.0f s, delay", c.Rate, c.DurationS), d(c.Delay))
		row("  to the first receiver", d(c.FirstDelay))
		row("  first to last receiver", d(c.Spread))
		row("churn delivered", fmt.Sprintf("%d / %d changes, %d / %d receipts, %d send errors",
			c.Delivered, c.Changes, c.Receipts, c.ReceiptsNeed, c.SendErrors))
		row("server CPU, churn", cpu(c.ServerCPU))
	}
	if x := r.Restart; x != nil {
		rc := "NOT reconverged"
		if x.ReconvergedS >= 0 {
			rc = fmt.Sprintf("%.1f s", x.ReconvergedS)
		}
		row("restart: down / reconverged", fmt.Sprintf("%.1f s / %s (%d nodes; nodes never register again)", x.DownS, rc, x.Reconverged))
		row("server CPU, restart", cpu(x.ServerCPU))
		row("server peak RSS after restart", fmt.Sprintf("%.0f MB", x.ServerPeakRSSMB))
	}
	ok := "PASS"
	if !r.Correct {
		ok = "FAIL"
	}
	row("correctness", fmt.Sprintf("%s (%d / %d nodes see exactly their expected peers)", ok, r.CorrectNodes, r.Nodes))
	row("server CPU, whole run", fmt.Sprintf("%.1f s", r.ServerCPUS))
	row("generator CPU / wall / peak RSS", fmt.Sprintf("%.1f s / %.1f s / %.0f MB", r.GeneratorCPUS, r.WallS, r.GeneratorPeakMB))
	row("stream errors / convergence drops", fmt.Sprintf("%d / %d", r.StreamErrors, r.ConvergenceDrops))
}

func ms(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func lostNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("  (%d undelivered)", n)
}
