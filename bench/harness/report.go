package harness

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/bench/latency"
	"github.com/dsrlb/dsrlb/bench/testbed"
	"github.com/dsrlb/dsrlb/dataplane"
)

// Report is everything a run measured: the raw windows and the summaries.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Command is the command line, as main sets it.
	Command   []string     `json:"command,omitempty"`
	Machine   Machine      `json:"machine"`
	Config    ConfigRecord `json:"config"`
	Generator string       `json:"generator"`
	// GeneratorThreads is how many threads (processes for trafgen) the
	// throughput phase's generator ran: Config.GenThreads, but 1 for
	// trafgen with a rate (gen.Threads).
	GeneratorThreads int `json:"generator_threads"`
	// DsrlbSource says which dsrlb ran: the commit it was built from.
	DsrlbSource string   `json:"dsrlb_source,omitempty"`
	Notes       []string `json:"notes"`
	Namespaces  []string `json:"namespaces"`
	// BackgroundBusy is the CPUs' busy fraction with no load, before the
	// first window.
	BackgroundBusy float64 `json:"background_busy"`

	Measurements []Measurement `json:"measurements"`

	Throughput []ModeSummary `json:"throughput"`
	Ratios     []Ratio       `json:"ratios"`

	LatencyGenerator string           `json:"latency_generator,omitempty"`
	LatencyRate      float64          `json:"latency_rate_pps,omitempty"`
	StampEvery       int              `json:"stamp_every,omitempty"`
	LatencyBatch     int              `json:"latency_batch,omitempty"` // most frames per kick of the latency generator
	Latency          []LatencySummary `json:"latency,omitempty"`
	LatencyCPU       []ModeSummary    `json:"latency_cpu,omitempty"`

	Interrupted bool     `json:"interrupted"`
	Errors      []string `json:"errors,omitempty"`

	// The latency phase's usable windows pooled by mode (poolLatency).
	pooled        map[string][]int64   // latency samples
	pooledTransit map[string][]int64   // transit samples; a mode is here once its transit was measured
	pooledToLB    map[string][]int64   // generator-to-lb latencies (balancer modes)
	pooledWait    map[string]*RingWait // dsrlb's ring-wait counts
}

// setGenerator records the throughput phase's generator and how many
// threads it really runs, with a note when that is not what was asked.
func (r *Report) setGenerator(g gen.Generator, cfg Config) {
	r.Generator = g.Name()
	r.GeneratorThreads = gen.Threads(g, &gen.Load{Threads: cfg.GenThreads, Rate: cfg.Rate})
	if r.GeneratorThreads != cfg.GenThreads {
		r.Notes = append(r.Notes, fmt.Sprintf("%s: %d thread(s), not the %d of --gen-threads: with a rate trafgen runs a single worker, whatever -P says",
			g.Name(), r.GeneratorThreads, cfg.GenThreads))
	}
}

// bridgeNetfilterNote says what became of br_netfilter's hooks in the
// switch namespace: left on (leaveOn, --br-netfilter) or turned off, where
// the module is loaded (its sysctls exist).
func bridgeNetfilterNote(leaveOn, loaded bool) string {
	switch {
	case !loaded && leaveOn:
		return "br_netfilter: not loaded (no bridge-nf-call-* sysctls in the switch namespace): --br-netfilter had no hook to leave on"
	case !loaded:
		return "br_netfilter: not loaded (no bridge-nf-call-* sysctls in the switch namespace)"
	case leaveOn:
		return "br_netfilter: bridge-nf-call-* left ON in the switch namespace"
	}
	return "br_netfilter: bridge-nf-call-* OFF in the switch namespace"
}

// Machine describes where the run happened.
type Machine struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model"`
}

// ConfigRecord is the run's configuration as it goes into JSON.
type ConfigRecord struct {
	Modes           []string `json:"modes"`
	Workers         []int    `json:"workers"`
	Reps            int      `json:"reps"`
	LatencyReps     int      `json:"latency_reps"`
	Warmup          string   `json:"warmup"`
	Window          string   `json:"window"`
	Sinks           int      `json:"sinks"`
	Flows           int      `json:"flows"`
	Traffic         string   `json:"traffic"`
	GenThreads      int      `json:"gen_threads"`
	Rate            float64  `json:"rate_pps"`
	RPS             string   `json:"rps"`
	BridgeNetfilter bool     `json:"bridge_netfilter"`
	SinkPass        bool     `json:"sink_pass"`
}

// Measurement is one window of one mode.
type Measurement struct {
	Phase     string  `json:"phase"`
	Rep       int     `json:"rep"`
	Mode      string  `json:"mode"`
	Generator string  `json:"generator"`
	Threads   int     `json:"gen_threads"`
	Rate      float64 `json:"rate_pps"` // asked of the generator; 0 is flat out
	RPS       bool    `json:"rps"`

	Window testbed.Window `json:"window"` // raw counter deltas

	OfferedPPS   float64 `json:"offered_pps"`
	LBInPPS      float64 `json:"lb_in_pps"`
	LBOutPPS     float64 `json:"lb_out_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	Loss         float64 `json:"loss"`
	// CPUBusy is the busy fraction of all CPUs over the window.
	CPUBusy     float64 `json:"cpu_busy"`
	CPUNsPerPkt float64 `json:"cpu_ns_per_pkt"`

	Latency           *latency.Summary `json:"latency,omitempty"`
	NegativeLatencies int              `json:"negative_latencies,omitempty"`
	// Transit is the time from the frame's arrival on the balancer's eth0
	// to its arrival at sink s1, per frame; set in the latency phase for
	// balancer modes. The counts are latency.Transit's: frames seen on the
	// lb only (most went to other sinks), at s1 only (the lb's probe
	// missed them), with a negative transit, or seen twice by one probe.
	Transit               *latency.Summary `json:"transit,omitempty"`
	TransitUpstreamOnly   int              `json:"transit_lb_only,omitempty"`
	TransitDownstreamOnly int              `json:"transit_sink_only,omitempty"`
	NegativeTransits      int              `json:"negative_transits,omitempty"`
	TransitDuplicates     int              `json:"transit_duplicates,omitempty"`
	// ToLB is the latency from the stamp to the frame's arrival on the
	// balancer's eth0 (every stamped frame, whichever sink it then goes to):
	// the same hops as the direct path's whole path, so it shows what the
	// balancer's receive work, done on the generator's CPU, adds there.
	ToLB *latency.Summary `json:"to_lb,omitempty"`
	// RingWait is dsrlb's own count of how long frames waited in its
	// receive rings during the window (from its admin endpoint).
	RingWait *RingWait `json:"ring_wait,omitempty"`
	// FlowTracking is how many of dsrlb's workers tracked flows at the
	// window's end: 0 in the steady state; more means a table changed and
	// the window measured the tracking path.
	FlowTracking int `json:"flow_tracking,omitempty"`

	Gen      gen.Result `json:"gen"`
	ModeNote string     `json:"mode_note,omitempty"`
	Error    string     `json:"error,omitempty"`
	// Stalled is set (by the summaries) when the generator stalled in the
	// window: it offered less than stalledShare of the direct path's median
	// or its transmit ring made no progress for a while (Gen.Stalled). Such
	// a window enters no statistic and no ratio; it is counted and reported.
	Stalled bool `json:"stalled,omitempty"`

	// latencyRaw, transitRaw and toLBRaw are the window's samples behind
	// Latency, Transit and ToLB, until summarizeLatency pools them (if the
	// window is usable) and drops them.
	latencyRaw, transitRaw, toLBRaw []int64
}

// usable reports whether a window enters the statistics: it neither failed
// nor stalled.
func (m *Measurement) usable() bool { return m.Error == "" && !m.Stalled }

// saturated reports whether every CPU was busy in the window
// (SaturatedBusy): the balancer, not a stalled generator, set its rate.
// Without per-CPU figures, all CPUs together.
func (m *Measurement) saturated() bool {
	if len(m.Window.PerCPUBusy) == 0 {
		return m.CPUBusy >= SaturatedBusy
	}
	return slices.Min(m.Window.PerCPUBusy) >= SaturatedBusy
}

func (m *Measurement) setWindow(w testbed.Window) {
	m.Window = w
	if w.Seconds <= 0 {
		return
	}
	m.OfferedPPS = float64(w.Offered) / w.Seconds
	m.LBInPPS = float64(w.LBIn) / w.Seconds
	m.LBOutPPS = float64(w.LBOut) / w.Seconds
	m.DeliveredPPS = float64(w.Delivered) / w.Seconds
	m.Loss = lossFraction(w.Offered, w.Delivered)
	if t := w.CPU.Total(); t > 0 {
		m.CPUBusy = float64(w.CPU.Busy()) / float64(t)
	}
	m.CPUNsPerPkt = perPacketNs(w.CPU.Busy(), testbed.UserHZ, w.Delivered)
}

func (m *Measurement) setTransit(t *latency.Transit) {
	s := latency.Summarize(t.Samples)
	m.Transit, m.transitRaw = &s, t.Samples
	m.TransitUpstreamOnly, m.TransitDownstreamOnly = t.UpstreamOnly, t.DownstreamOnly
	m.NegativeTransits, m.TransitDuplicates = t.Negative, t.Duplicates
}

// ModeSummary sums up one mode's windows of one phase.
type ModeSummary struct {
	Mode      string `json:"mode"`
	Phase     string `json:"phase"`
	Delivered Stat   `json:"delivered_pps"`
	Offered   Stat   `json:"offered_pps"`
	LBIn      Stat   `json:"lb_in_pps"`
	LBOut     Stat   `json:"lb_out_pps"`
	Loss      Stat   `json:"loss"`
	CPUBusy   Stat   `json:"cpu_busy"`
	CPUNs     Stat   `json:"cpu_ns_per_pkt"`
	// ExtraCPUNs is median CPUNs minus the direct path's median, when the
	// direct path was measured.
	ExtraCPUNs *float64 `json:"extra_cpu_ns_per_pkt,omitempty"`
	// CPUNsSaturated and ExtraCPUNsSaturated are the same over the windows
	// in which every CPU was busy (SaturatedBusy), the direct path's too: a
	// window in which the generator stalled spent its CPU differently.
	CPUNsSaturated      Stat     `json:"cpu_ns_per_pkt_saturated"`
	ExtraCPUNsSaturated *float64 `json:"extra_cpu_ns_per_pkt_saturated,omitempty"`
	// LowerBound is set when the balancer sent (almost) everything offered:
	// the generator, not the balancer, was the limit.
	LowerBound bool `json:"lower_bound"`
	// Stalled counts windows in which the generator stalled (see
	// Measurement.Stalled), left out of every statistic.
	Stalled int `json:"stalled"`
	Failed  int `json:"failed"`
}

// LatencySummary is one mode's latency, all repetitions pooled.
type LatencySummary struct {
	Mode     string          `json:"mode"`
	Pooled   latency.Summary `json:"pooled"`
	AddedP50 *time.Duration  `json:"added_p50_ns,omitempty"`
	AddedP99 *time.Duration  `json:"added_p99_ns,omitempty"`
	// Transit is the transit through the balancer (see Measurement), all
	// repetitions pooled; nil for the direct path.
	Transit *latency.Summary `json:"transit_pooled,omitempty"`
	// ToLB is the generator-to-lb latency (see Measurement), all
	// repetitions pooled; nil for the direct path.
	ToLB *latency.Summary `json:"to_lb_pooled,omitempty"`
	// RingWait is dsrlb's ring-wait counts (see Measurement), all
	// repetitions summed; nil for other modes.
	RingWait *RingWait `json:"ring_wait_pooled,omitempty"`
}

// lowerBoundShare is how much of the offered load a balancer must send for
// its rate to count as a lower bound.
const lowerBoundShare = 0.99

// stalledShare: a window offering less than this share of the direct
// path's median offered rate had a stalled generator.
const stalledShare = 0.05

func newReport(cfg Config) *Report {
	r := &Report{
		Started: time.Now(),
		Machine: machine(),
		Config: ConfigRecord{
			Modes: cfg.Modes, Workers: cfg.Workers, Reps: cfg.Reps, LatencyReps: cfg.LatencyReps,
			Warmup: cfg.Warmup.String(), Window: cfg.Window.String(), Sinks: cfg.Sinks, Flows: cfg.Flows,
			Traffic: cfg.Traffic.String(), GenThreads: cfg.GenThreads, Rate: cfg.Rate, RPS: cfg.RPS,
			BridgeNetfilter: cfg.BridgeNetfilter, SinkPass: cfg.SinkPass,
		},
		pooled:        map[string][]int64{},
		pooledTransit: map[string][]int64{},
		pooledToLB:    map[string][]int64{},
		pooledWait:    map[string]*RingWait{},
	}
	a, p := gen.FlowSpace(cfg.Flows)
	r.Notes = append(r.Notes, fmt.Sprintf("flows: %d (%d source addresses x %d source ports)", a*p, a, p))
	switch cfg.RPS {
	case "nft":
		r.Notes = append(r.Notes, "RPS: on the balancer's eth0 (all CPUs) for nft only")
	case "all":
		r.Notes = append(r.Notes, "RPS: on the balancer's eth0 (all CPUs) for nft and dsrlb")
	default:
		r.Notes = append(r.Notes, "RPS: off")
	}
	if slices.Contains(cfg.Modes, ModeNftLocal) {
		r.Notes = append(r.Notes, "nft-local: the nft reference with RPS off: each frame is balanced on the CPU that sent it, in its softirq")
	}
	if !cfg.SinkPass {
		r.Notes = append(r.Notes, "sinks: drop every frame at netdev ingress (nft)")
	}
	return r
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// maxPooled bounds the samples pooled per mode.
const maxPooled = 8 << 20

func (r *Report) latencySamples(mode string, s []int64) { pool(r.pooled, mode, s) }

// transitSamples pools a window's transit samples; the mode counts as
// measured even when s is empty.
func (r *Report) transitSamples(mode string, s []int64) { pool(r.pooledTransit, mode, s) }

// ringWaits adds a latency window's ring-wait counts to its mode's.
func (r *Report) ringWaits(mode string, w RingWait) {
	if r.pooledWait[mode] == nil {
		r.pooledWait[mode] = &RingWait{}
	}
	r.pooledWait[mode].Add(w)
}

// toLBSamples pools a window's generator-to-lb latencies.
func (r *Report) toLBSamples(mode string, s []int64) { pool(r.pooledToLB, mode, s) }

// pool appends s to m[mode], unless that would make it longer than
// maxPooled; m[mode] exists afterwards.
func pool(m map[string][]int64, mode string, s []int64) {
	if len(m[mode])+len(s) <= maxPooled {
		m[mode] = append(m[mode], s...)
	} else if _, ok := m[mode]; !ok {
		m[mode] = nil
	}
}

// modeOrder returns the modes in the order they were first measured.
func (r *Report) modeOrder(phase string) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range r.Measurements {
		if m.Phase == phase && !seen[m.Mode] {
			seen[m.Mode] = true
			out = append(out, m.Mode)
		}
	}
	return out
}

// markStalled sets Measurement.Stalled on phase's windows.
func (r *Report) markStalled(phase string) {
	var directOffered []float64
	for _, m := range r.Measurements {
		if m.Phase == phase && m.Mode == "direct" && m.Error == "" && !m.Gen.Stalled {
			directOffered = append(directOffered, m.OfferedPPS)
		}
	}
	dOff := Median(directOffered)
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Phase == phase && m.Error == "" {
			m.Stalled = m.Gen.Stalled || dOff > 0 && m.OfferedPPS < stalledShare*dOff
		}
	}
}

func (r *Report) summarize(phase string) []ModeSummary {
	r.markStalled(phase)
	var out []ModeSummary
	for _, mode := range r.modeOrder(phase) {
		s := ModeSummary{Mode: mode, Phase: phase}
		var del, off, in, outp, loss, busy, cpu, cpuSat []float64
		for _, m := range r.Measurements {
			if m.Phase != phase || m.Mode != mode {
				continue
			}
			if m.Error == errInterrupted {
				continue
			}
			if m.Error != "" {
				s.Failed++
				continue
			}
			if m.Stalled {
				s.Stalled++
				continue
			}
			del = append(del, m.DeliveredPPS)
			off = append(off, m.OfferedPPS)
			in = append(in, m.LBInPPS)
			outp = append(outp, m.LBOutPPS)
			loss = append(loss, m.Loss)
			busy = append(busy, m.CPUBusy)
			cpu = append(cpu, m.CPUNsPerPkt)
			if m.saturated() {
				cpuSat = append(cpuSat, m.CPUNsPerPkt)
			}
		}
		s.Delivered, s.Offered, s.LBIn, s.LBOut = NewStat(del), NewStat(off), NewStat(in), NewStat(outp)
		s.Loss, s.CPUBusy, s.CPUNs, s.CPUNsSaturated = NewStat(loss), NewStat(busy), NewStat(cpu), NewStat(cpuSat)
		if mode != "direct" && s.Offered.Median > 0 && s.LBOut.Median >= lowerBoundShare*s.Offered.Median {
			s.LowerBound = true
		}
		out = append(out, s)
	}
	for i := range out {
		for _, d := range out {
			if d.Mode == "direct" && out[i].Mode != "direct" {
				out[i].ExtraCPUNs = extra(out[i].CPUNs, d.CPUNs)
				out[i].ExtraCPUNsSaturated = extra(out[i].CPUNsSaturated, d.CPUNsSaturated)
			}
		}
	}
	return out
}

// extra is a's median minus direct's, or nil if either has no window.
func extra(a, direct Stat) *float64 {
	if a.N == 0 || direct.N == 0 {
		return nil
	}
	x := a.Median - direct.Median
	return &x
}

func (r *Report) values(phase, mode string, f func(*Measurement) float64) []float64 {
	var v []float64
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Phase == phase && m.Mode == mode && m.usable() {
			v = append(v, f(m))
		}
	}
	return v
}

// capacity is what the throughput phase measured of mode's capacity: the
// median delivered rate of its saturated windows (every CPU busy), or, when
// none was, of all its windows, which then bounds it only from below.
func (r *Report) capacity(mode string) (pps float64, saturated, windows int) {
	var all, sat []float64
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Phase != PhaseThroughput || m.Mode != mode || !m.usable() {
			continue
		}
		all = append(all, m.DeliveredPPS)
		if m.saturated() && m.DeliveredPPS > 0 {
			sat = append(sat, m.DeliveredPPS)
		}
	}
	if len(sat) > 0 {
		return Median(sat), len(sat), len(all)
	}
	return Median(all), 0, len(all)
}

// latencyRate is the latency phase's default rate: latencyRateTarget of the
// slowest balancer's capacity (of direct's, if no balancer ran). A window
// in which the generator could not keep every CPU busy measured the
// generator, not the balancer: it counts only when a mode had no other.
func (r *Report) latencyRate() (float64, string, error) {
	slowest, from, saturated, windows := math.Inf(1), "", 0, 0
	for _, direct := range []bool{false, true} {
		for _, s := range r.Throughput {
			if (s.Mode == "direct") != direct {
				continue
			}
			if c, sat, n := r.capacity(s.Mode); c > 0 && c < slowest {
				slowest, from, saturated, windows = c, s.Mode, sat, n
			}
		}
		if from != "" {
			break
		}
	}
	if from == "" {
		return 0, "", errors.New("no throughput results to derive a rate from; give --latency-rate")
	}
	rate := latencyRateTarget * slowest
	of := fmt.Sprintf("the median of its %d saturated windows (of %d)", saturated, windows)
	if saturated == 0 {
		of = fmt.Sprintf("the median of its %d windows, none saturated: a lower bound", windows)
	}
	which := "the slowest balancer"
	if from == "direct" {
		which = "no balancer ran"
	}
	return rate, fmt.Sprintf("latency rate: %.0f%% of %s's delivered rate (%s), %s: %.0f pps", latencyRateTarget*100, from, which, of, rate), nil
}

// saturatedRatios returns num's delivered pps over den's, per repetition
// in which both windows had every CPU busy.
func (r *Report) saturatedRatios(num, den string) []float64 {
	var q []float64
	busy := func(m *Measurement) float64 {
		if !m.saturated() {
			return 0
		}
		return m.DeliveredPPS
	}
	a, b := r.pairedValues(PhaseThroughput, num, den, busy)
	for i := range a {
		if a[i] > 0 && b[i] > 0 {
			q = append(q, a[i]/b[i])
		}
	}
	return q
}

// pairedValues returns f of num's and den's windows of the same
// repetitions.
func (r *Report) pairedValues(phase, num, den string, f func(*Measurement) float64) (a, b []float64) {
	byRep := map[int]*Measurement{}
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Phase == phase && m.Mode == den && m.usable() {
			byRep[m.Rep] = m
		}
	}
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Phase == phase && m.Mode == num && m.usable() && byRep[m.Rep] != nil {
			a = append(a, f(m))
			b = append(b, f(byRep[m.Rep]))
		}
	}
	return a, b
}

func (r *Report) summarizeThroughput() {
	r.Throughput = r.summarize(PhaseThroughput)
	delivered := func(m *Measurement) float64 { return m.DeliveredPPS }
	modes := r.modeOrder(PhaseThroughput)
	for _, num := range modes {
		if !strings.HasPrefix(num, "dsrlb") {
			continue
		}
		dens := append(slices.Clone(kernelReferences), "direct")
		base, alt := strings.CutSuffix(num, AltSuffix)
		if alt {
			dens = append(dens, base)
		}
		for _, den := range dens {
			if contains(modes, den) && len(r.values(PhaseThroughput, num, delivered)) > 0 && len(r.values(PhaseThroughput, den, delivered)) > 0 {
				a, b := r.pairedValues(PhaseThroughput, num, den, delivered)
				ratio := NewRatio(num, den, a, b)
				ratio.OfMedians = safeDiv(Median(r.values(PhaseThroughput, num, delivered)), Median(r.values(PhaseThroughput, den, delivered)))
				if q := r.saturatedRatios(num, den); len(q) > 0 {
					ratio.Saturated = &SaturatedRatio{Median: Median(q), Reps: len(q)}
				}
				if alt && den == base {
					ca, cb := r.pairedValues(PhaseThroughput, num, den, func(m *Measurement) float64 { return m.CPUNsPerPkt })
					if c := NewRatio(num, den, ca, cb).Paired; c.N > 0 {
						ratio.CPUNs = &c
					}
				}
				r.Ratios = append(r.Ratios, ratio)
			}
		}
	}
}

// summarizeLatency sums up the latency phase; it runs once, after it.
func (r *Report) summarizeLatency() {
	r.LatencyCPU = r.summarize(PhaseLatency) // marks the stalled windows
	r.poolLatency()
	var direct *latency.Summary
	for _, mode := range r.modeOrder(PhaseLatency) {
		s := LatencySummary{Mode: mode, Pooled: latency.Summarize(r.pooled[mode])}
		if t, ok := r.pooledTransit[mode]; ok && mode != "direct" {
			ts := latency.Summarize(t)
			s.Transit = &ts
		}
		s.RingWait = r.pooledWait[mode]
		if t, ok := r.pooledToLB[mode]; ok && mode != "direct" {
			ts := latency.Summarize(t)
			s.ToLB = &ts
		}
		r.Latency = append(r.Latency, s)
		if mode == "direct" && s.Pooled.Count > 0 {
			d := s.Pooled
			direct = &d
		}
	}
	if direct == nil {
		return
	}
	for i := range r.Latency {
		s := &r.Latency[i]
		if s.Mode != "direct" && s.Pooled.Count > 0 {
			p50, p99 := s.Pooled.P50-direct.P50, s.Pooled.P99-direct.P99
			s.AddedP50, s.AddedP99 = &p50, &p99
		}
	}
}

// poolLatency pools, by mode, the samples and ring-wait counts of the
// latency phase's usable windows (after markStalled: a window that failed
// or stalled enters the latency tables no more than any other), and drops
// every window's own copy of its samples.
func (r *Report) poolLatency() {
	for i := range r.Measurements {
		m := &r.Measurements[i]
		if m.Phase != PhaseLatency {
			continue
		}
		if m.usable() {
			if m.Latency != nil {
				r.latencySamples(m.Mode, m.latencyRaw)
			}
			if m.Transit != nil {
				r.transitSamples(m.Mode, m.transitRaw)
			}
			if m.ToLB != nil {
				r.toLBSamples(m.Mode, m.toLBRaw)
			}
			if m.RingWait != nil {
				r.ringWaits(m.Mode, *m.RingWait)
			}
		}
		m.latencyRaw, m.transitRaw, m.toLBRaw = nil, nil, nil
	}
}

// trackingWindows counts the windows at whose end a dsrlb worker tracked
// flows.
func (r *Report) trackingWindows() int {
	n := 0
	for _, m := range r.Measurements {
		if m.FlowTracking > 0 {
			n++
		}
	}
	return n
}

// Print writes the report as tables.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "dsrlb bench: %s, %d CPUs (%s)\n", r.Machine.Kernel, r.Machine.CPUs, r.Machine.Model)
	if len(r.Command) > 0 {
		fmt.Fprintf(w, "command: %s\n", strings.Join(r.Command, " "))
	}
	if r.DsrlbSource != "" {
		fmt.Fprintf(w, "dsrlb: %s\n", r.DsrlbSource)
	}
	frame := "60-byte UDP"
	if c.Traffic == "syn" {
		frame = "54-byte TCP SYN"
	}
	threads := c.GenThreads
	if r.GeneratorThreads > 0 {
		threads = r.GeneratorThreads
	}
	fmt.Fprintf(w, "load: %s frames to %s:%d, generator %s with %d thread(s), %s; %d sinks\n",
		frame, testbed.VIP, VIPPort, r.Generator, threads, rateText(c.Rate), c.Sinks)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	if n := r.trackingWindows(); n > 0 {
		fmt.Fprintf(w, "  - WARNING: in %d dsrlb window(s) a worker tracked flows (its table had changed): those measured the tracking path, not the steady state\n", n)
	}
	if len(r.Throughput) > 0 {
		fmt.Fprintf(w, "\nThroughput: %d reps alternating (%s), %s warm-up, %s windows; medians (min..max)\n",
			c.Reps, strings.Join(r.modeOrder(PhaseThroughput), " "), c.Warmup, c.Window)
		r.printModes(w, r.Throughput)
		for _, s := range r.Throughput {
			if s.LowerBound {
				fmt.Fprintf(w, "  %s forwarded everything offered (lb out %s of %s pps): its rate is a LOWER BOUND on its capacity;",
					s.Mode, thousands(s.LBOut.Median), thousands(s.Offered.Median))
				if s.CPUBusy.Median >= SaturatedBusy {
					fmt.Fprintf(w, " the CPUs were busy (%.0f%%): the generator, sharing them, could offer no more\n", 100*s.CPUBusy.Median)
				} else {
					fmt.Fprintf(w, " the generator was the limit\n")
				}
			}
			if s.Stalled > 0 {
				fmt.Fprintf(w, "  %s: the generator stalled (offered < %.0f%% of direct's, or its ring made no progress) in %d window(s), left out of every figure\n", s.Mode, stalledShare*100, s.Stalled)
			}
			if s.Failed > 0 {
				fmt.Fprintf(w, "  %s: %d window(s) failed (see errors / JSON)\n", s.Mode, s.Failed)
			}
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintf(w, "\nRatios of delivered pps (of medians; paired per rep min..max; both saturated: median of the paired ratios over reps in which both windows had CPUs >= %.0f%% busy):\n", 100*SaturatedBusy)
		for _, q := range r.Ratios {
			fmt.Fprintf(w, "  %-9s / %-9s %5.2f   (%.2f..%.2f)", q.Num, q.Den, q.OfMedians, q.Paired.Min, q.Paired.Max)
			if q.Saturated != nil {
				fmt.Fprintf(w, "   both saturated: %.2f (%d reps)", q.Saturated.Median, q.Saturated.Reps)
			}
			fmt.Fprintln(w)
		}
		for _, ref := range kernelReferences {
			i := slices.IndexFunc(r.Throughput, func(s ModeSummary) bool { return s.Mode == ref })
			if i < 0 {
				continue
			}
			refExtra, refExtraSat, refSat := r.Throughput[i].ExtraCPUNs, r.Throughput[i].ExtraCPUNsSaturated, r.Throughput[i].CPUNsSaturated.N
			for _, s := range r.Throughput {
				if strings.HasPrefix(s.Mode, "dsrlb") && s.ExtraCPUNs != nil && refExtra != nil && *refExtra > 0 {
					fmt.Fprintf(w, "  %-9s extra CPU over direct / %s's extra: %.2f", s.Mode, ref, *s.ExtraCPUNs / *refExtra)
					if s.ExtraCPUNsSaturated != nil && refExtraSat != nil && *refExtraSat > 0 {
						fmt.Fprintf(w, "   saturated windows only: %.2f (%d and %s's %d)", *s.ExtraCPUNsSaturated / *refExtraSat, s.CPUNsSaturated.N, ref, refSat)
					}
					fmt.Fprintln(w)
				}
			}
		}
		for _, q := range r.Ratios {
			if c := q.CPUNs; c != nil {
				fmt.Fprintf(w, "  %-9s CPU ns/pkt / %s's: %.3f   (%.3f..%.3f)   median of the paired ratios over %d reps\n", q.Num, q.Den, c.Median, c.Min, c.Max, c.N)
			}
		}
	}
	if len(r.Latency) > 0 {
		fmt.Fprintf(w, "\nLatency at %s pps offered (%s generator, 1 thread, kicks of up to %d frames, 1 in %d frames stamped; probe on sink s1; %d reps pooled)\n",
			thousands(r.LatencyRate), r.LatencyGenerator, r.LatencyBatch, r.StampEvery, c.LatencyReps)
		fmt.Fprintf(w, "  %-9s %9s %9s %9s %9s %9s %10s %10s\n", "mode", "samples", "p50", "p90", "p99", "p99.9", "+p50", "+p99")
		for _, s := range r.Latency {
			p := s.Pooled
			add := func(d *time.Duration) string {
				if d == nil {
					return "-"
				}
				return us(*d)
			}
			fmt.Fprintf(w, "  %-9s %9d %9s %9s %9s %9s %10s %10s\n", s.Mode, p.Count, us(p.P50), us(p.P90), us(p.P99), us(p.P999), add(s.AddedP50), add(s.AddedP99))
		}
		fmt.Fprintf(w, "  (+p50/+p99: added over the direct path. CPU at this rate:)\n")
		r.printModes(w, r.LatencyCPU)
		r.printTransit(w)
		r.printRingWait(w)
	}
	if r.Interrupted {
		fmt.Fprintf(w, "\nINTERRUPTED: the run was cut short; the numbers above are partial.\n")
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	var failed []string
	for _, m := range r.Measurements {
		if m.Error != "" && m.Error != errInterrupted {
			failed = append(failed, fmt.Sprintf("%s rep %d %s: %s", m.Phase, m.Rep, m.Mode, firstLine(m.Error)))
		}
	}
	for _, f := range failed {
		fmt.Fprintf(w, "failed: %s\n", f)
	}
}

// printRingWait writes dsrlb's own ring-wait distribution, if measured.
func (r *Report) printRingWait(w io.Writer) {
	var ss []LatencySummary
	for _, s := range r.Latency {
		if s.RingWait != nil && s.RingWait.Count() > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\nRing wait inside dsrlb (kernel's slot timestamp → the worker takes the frame; dsrlb's own histogram, so percentiles are bucket bounds)\n")
	fmt.Fprintf(w, "  %-12s %9s %9s %9s %9s %9s %9s\n", "mode", "frames", "mean", "p50", "p99", "p99.9", ">100µs")
	for _, s := range ss {
		rw := s.RingWait
		n := rw.Count()
		over := rw.Beyond(100 * time.Microsecond)
		fmt.Fprintf(w, "  %-12s %9d %9s %9s %9s %9s %8.2f%%\n", s.Mode, n, us(rw.Mean()), waitBound(rw.Quantile(0.5)), waitBound(rw.Quantile(0.99)), waitBound(rw.Quantile(0.999)), 100*float64(over)/float64(n))
	}
}

// waitBound prints a ring-wait quantile: "≤bound", or beyond the largest.
func waitBound(d time.Duration) string {
	if d < 0 {
		return ">" + dataplane.RingWaitBounds[len(dataplane.RingWaitBounds)-1].String()
	}
	return "≤" + us(d)
}

// printTransit writes the transit table, if any balancer's transit was
// measured, and what the matching left out.
func (r *Report) printTransit(w io.Writer) {
	var ss []LatencySummary
	for _, s := range r.Latency {
		if s.Transit != nil {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\nTransit through the balancer (arrival on lb eth0 → arrival at sink s1, kernel timestamps of the same frame; excludes the generator's scheduling)\n")
	fmt.Fprintf(w, "  %-9s %9s %9s %9s %9s %9s\n", "mode", "samples", "p50", "p90", "p99", "p99.9")
	for _, s := range ss {
		p := s.Transit
		fmt.Fprintf(w, "  %-9s %9d %9s %9s %9s %9s\n", s.Mode, p.Count, us(p.P50), us(p.P90), us(p.P99), us(p.P999))
	}
	var toLB []LatencySummary
	for _, s := range ss {
		if s.ToLB != nil && s.ToLB.Count > 0 {
			toLB = append(toLB, s)
		}
	}
	if len(toLB) > 0 {
		fmt.Fprintf(w, "  Generator → lb eth0 (stamp → arrival on the lb: the direct path's hops, with the balancer's receive work on the generator's CPU; compare with direct's latency):\n")
		for _, s := range toLB {
			p := s.ToLB
			fmt.Fprintf(w, "  %-9s %9d %9s %9s %9s %9s\n", s.Mode, p.Count, us(p.P50), us(p.P90), us(p.P99), us(p.P999))
		}
	}
	for _, s := range ss {
		var sinkOnly, negative, dup int
		for _, m := range r.Measurements {
			if m.Phase == PhaseLatency && m.Mode == s.Mode && m.Transit != nil && m.usable() {
				sinkOnly += m.TransitDownstreamOnly
				negative += m.NegativeTransits
				dup += m.TransitDuplicates
			}
		}
		if sinkOnly+negative+dup > 0 {
			fmt.Fprintf(w, "  %s: left out %d frame(s) seen at s1 but not on the lb (its probe missed them, or at a window's edge), %d with a negative transit, %d seen twice\n",
				s.Mode, sinkOnly, negative, dup)
		}
	}
}

func (r *Report) printModes(w io.Writer, ss []ModeSummary) {
	fmt.Fprintf(w, "  %-9s %-28s %12s %12s %7s %6s %-20s %9s\n", "mode", "delivered pps", "offered", "lb out", "loss", "CPU", "CPU ns/pkt", "extra")
	for _, s := range ss {
		if s.Delivered.N == 0 {
			fmt.Fprintf(w, "  %-9s no successful window\n", s.Mode)
			continue
		}
		extra := "-"
		if s.ExtraCPUNs != nil {
			extra = fmt.Sprintf("%+.0f", *s.ExtraCPUNs)
		}
		lbOut := "-"
		if s.Mode != "direct" {
			lbOut = thousands(s.LBOut.Median)
		}
		fmt.Fprintf(w, "  %-9s %-28s %12s %12s %6.1f%% %5.0f%% %-20s %9s\n", s.Mode,
			fmt.Sprintf("%s (%s..%s)", thousands(s.Delivered.Median), thousands(s.Delivered.Min), thousands(s.Delivered.Max)),
			thousands(s.Offered.Median), lbOut, 100*s.Loss.Median, 100*s.CPUBusy.Median,
			fmt.Sprintf("%.0f (%.0f..%.0f)", s.CPUNs.Median, s.CPUNs.Min, s.CPUNs.Max), extra)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// thousands formats v rounded, with commas: 1234567 → "1,234,567".
func thousands(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// us formats d in microseconds with one decimal.
func us(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/1e3)
}

func rateText(rate float64) string {
	if rate <= 0 {
		return "flat out"
	}
	return thousands(rate) + " pps"
}
