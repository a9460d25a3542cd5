package harness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/bench/latency"
	"github.com/dsrlb/dsrlb/bench/testbed"
)

// VIPPort is the benchmark service's port (discard).
const VIPPort = 9

// DefaultLatencyBatch is the latency generator's kick size: frames leave in
// bursts of about rate × 50 µs (6 at 120 kpps) and a late wake-up makes a
// bigger one; kicks of 4 split them, for one system call per 4 frames.
const DefaultLatencyBatch = 4

// Config says what to measure.
type Config struct {
	// Modes are "dsrlb", "nft", "nft-local" and "direct", in the order
	// each repetition runs them.
	Modes []string
	// Workers are the dsrlb worker counts; each is a mode of its own
	// ("dsrlb-w1", "dsrlb-w2").
	Workers     []int
	Reps        int
	LatencyReps int
	Warmup      time.Duration
	Window      time.Duration
	Sinks       int
	Flows       int
	Traffic     gen.Traffic
	// Generator is "auto", "pktgen", "trafgen" or "txring".
	Generator  string
	GenThreads int
	// Rate is the throughput phase's offered rate; 0 is flat out.
	Rate float64
	// Latency runs the latency phase (txring generator, stamped frames).
	Latency bool
	// LatencyRate is the latency phase's offered rate; 0 takes half the
	// slowest balancer's median delivered rate from the throughput phase,
	// over its saturated windows when it had any.
	LatencyRate float64
	// LatencyBatch is the most frames the latency phase's generator writes
	// before it hands them to the kernel in one send (0: DefaultLatencyBatch).
	// The kernel sends a kick's frames one after another, each through the
	// whole veth path and the balancer's receive work before the next, and
	// every frame was stamped before the first left: a frame late in a big
	// kick carries the sending of those before it in its latency.
	LatencyBatch int
	// RPS is "nft" (RPS on the balancer's interface for the nft reference
	// only), "all" (for every balancer) or "none".
	RPS             string
	BridgeNetfilter bool
	SinkPass        bool
	// DsrlbBin is a dsrlb binary; "" builds one from the module.
	DsrlbBin string
	// DsrlbFlags are added to every `dsrlb run` (e.g. --busy-poll 0).
	DsrlbFlags []string
	// AltBin and AltFlags, when either is set, add a mode dsrlb-wN-alt
	// beside each dsrlb-wN: AltBin (default DsrlbBin) run with DsrlbFlags
	// and AltFlags, measured in the same alternation, for A/B comparisons.
	AltBin   string
	AltFlags []string
	// VIPMAC is dsrlb's --vip-mac: "auto" (a virtual MAC, the generator
	// sends to it) or "interface"; a --vip-mac in DsrlbFlags or AltFlags
	// overrides it for those modes.
	VIPMAC string
	// LatencyPin, in the latency phase, pins dsrlb's workers off the
	// generator's CPU (0) and, during each dsrlb window, the harness's own
	// threads onto it.
	LatencyPin  bool
	TrafgenRing string
	// Progress receives a line per phase and measurement; nil discards.
	Progress io.Writer
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Modes) == 0 {
		errs = append(errs, errors.New("modes: none"))
	}
	for _, m := range c.Modes {
		if m != "dsrlb" && m != "nft" && m != ModeNftLocal && m != "direct" {
			errs = append(errs, fmt.Errorf("mode %q: want dsrlb, nft, nft-local or direct", m))
		}
	}
	if slices.Contains(c.Modes, "dsrlb") && len(c.Workers) == 0 {
		errs = append(errs, errors.New("workers: none"))
	}
	if c.VIPMAC != "auto" && c.VIPMAC != "interface" {
		errs = append(errs, fmt.Errorf("vip-mac %q: want auto or interface", c.VIPMAC))
	}
	// The generator sends to the MAC the VIPs answer on: the bench knows
	// it for these two values only.
	for _, fl := range []struct {
		name  string
		flags []string
	}{{"dsrlb-flags", c.DsrlbFlags}, {"alt-flags", c.AltFlags}} {
		if v := vipMACFlag("auto", fl.flags); v != "auto" && v != "interface" {
			errs = append(errs, fmt.Errorf("%s: --vip-mac %q: the bench takes auto or interface (the generator must know the MAC to send to)", fl.name, v))
		}
	}
	for _, w := range c.Workers {
		if w < 1 || w > 256 {
			errs = append(errs, fmt.Errorf("workers %d: want 1..256", w))
		}
	}
	if c.Reps < 0 || c.LatencyReps < 0 {
		errs = append(errs, errors.New("reps: negative"))
	}
	if c.Window < 100*time.Millisecond || c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("window %v, warm-up %v: want a window of at least 100ms", c.Window, c.Warmup))
	}
	if c.GenThreads < 1 || c.GenThreads > runtime.NumCPU() {
		errs = append(errs, fmt.Errorf("generator threads %d: want 1..%d (CPUs)", c.GenThreads, runtime.NumCPU()))
	}
	if c.RPS != "nft" && c.RPS != "all" && c.RPS != "none" {
		errs = append(errs, fmt.Errorf("rps %q: want nft, all or none", c.RPS))
	}
	if c.LatencyBatch < 0 || c.LatencyBatch > 256 {
		errs = append(errs, fmt.Errorf("latency batch %d: want 1..256 (0: %d)", c.LatencyBatch, DefaultLatencyBatch))
	}
	if c.Latency && c.Traffic != gen.UDP {
		errs = append(errs, errors.New("latency: stamps ride in UDP payloads; use --traffic udp or --latency=false"))
	}
	return errors.Join(errs...)
}

// Run builds the testbed, measures, tears everything down and returns the
// report. When ctx is cancelled it stops at once, tears down and returns
// what it has, marked Interrupted.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if err := testbed.Tools(); err != nil {
		return nil, err
	}
	rep := newReport(cfg)
	trafgenPath, _ := exec.LookPath("trafgen")
	g, notes, err := ChooseGenerator(cfg.Generator, cfg.Traffic, gen.PktgenAvailable(), trafgenPath)
	if err != nil {
		return nil, err
	}
	if tg, ok := g.(gen.Trafgen); ok {
		tg.RingSize = cfg.TrafgenRing
		g = tg
	}
	rep.Notes = append(rep.Notes, notes...)
	rep.setGenerator(g, cfg)

	h := &harness{cfg: cfg, rep: rep, gen: g, vip: netip.AddrPortFrom(testbed.VIP, VIPPort)}
	if slices.Contains(cfg.Modes, "dsrlb") && cfg.DsrlbBin == "" {
		h.progress("build: go build -o TMP/dsrlb ./cmd/dsrlb")
		bin, cleanup, err := buildDsrlb(ctx)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		h.cfg.DsrlbBin = bin
		rep.DsrlbSource = sourceVersion()
	} else if h.cfg.DsrlbBin != "" {
		rep.DsrlbSource = "binary " + h.cfg.DsrlbBin
	}
	if len(cfg.DsrlbFlags) > 0 {
		rep.Notes = append(rep.Notes, "dsrlb run with extra flags: "+strings.Join(cfg.DsrlbFlags, " "))
	}
	if slices.Contains(cfg.Modes, "dsrlb") {
		if cfg.VIPMAC == "auto" {
			rep.Notes = append(rep.Notes, "dsrlb: --vip-mac auto (VIPs on a virtual MAC, pinned on the bridge; the generator sends to it; the lb's kernel drops the frames as not its own, no nft rule)")
		} else {
			rep.Notes = append(rep.Notes, "dsrlb: --vip-mac interface (VIPs on the lb's own MAC; an nft netdev ingress rule drops the frames after dsrlb's taps)")
		}
	}
	if cfg.AltBin != "" || len(cfg.AltFlags) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("dsrlb-wN%s: binary %s, extra flags %q; it runs after its base mode in odd repetitions, before it in even ones", AltSuffix, cmp.Or(cfg.AltBin, "the same"), strings.Join(cfg.AltFlags, " ")))
	}
	h.progress("setup: building the testbed (gen, lb, %d sinks on one bridge)", cfg.Sinks)
	bed, err := testbed.Build(testbed.Spec{Sinks: cfg.Sinks, BridgeNetfilter: cfg.BridgeNetfilter, SinkPass: cfg.SinkPass})
	if err != nil {
		return nil, err
	}
	h.bed = bed
	rep.Namespaces = bed.Net.Namespaces()
	rep.Notes = append(rep.Notes, bridgeNetfilterNote(cfg.BridgeNetfilter, bed.BridgeNetfilterLoaded))
	defer func() {
		h.progress("teardown: deleting namespaces %s*", bed.Spec.Prefix)
		if err := bed.Close(); err != nil {
			rep.Errors = append(rep.Errors, "teardown: "+err.Error())
		}
	}()
	h.background(ctx)
	for _, m := range cfg.Modes {
		switch m {
		case "direct":
			h.modes = append(h.modes, Direct{})
		case "nft":
			h.modes = append(h.modes, &Nft{VIP: h.vip})
		case ModeNftLocal:
			h.modes = append(h.modes, &Nft{VIP: h.vip, Local: true})
		case "dsrlb":
			for _, w := range cfg.Workers {
				h.modes = append(h.modes, &Dsrlb{Bin: h.cfg.DsrlbBin, Workers: w, VIP: h.vip, Flags: h.cfg.DsrlbFlags,
					VirtualMAC: vipMACFlag(cfg.VIPMAC, h.cfg.DsrlbFlags) == "auto"})
				if cfg.AltBin != "" || len(cfg.AltFlags) > 0 {
					bin := cmp.Or(cfg.AltBin, h.cfg.DsrlbBin)
					flags := slices.Concat(h.cfg.DsrlbFlags, cfg.AltFlags)
					h.modes = append(h.modes, &Dsrlb{Bin: bin, Workers: w, VIP: h.vip, Flags: flags, Label: AltSuffix,
						VirtualMAC: vipMACFlag(cfg.VIPMAC, flags) == "auto"})
				}
			}
		}
	}

	load := gen.Load{
		Interface: bed.Gen.Link, NS: bed.Gen.NS, SrcMAC: bed.Gen.MAC, VIP: h.vip,
		Flows: cfg.Flows, Traffic: cfg.Traffic, Threads: cfg.GenThreads, Rate: cfg.Rate,
	}
	for r := 1; r <= cfg.Reps && ctx.Err() == nil; r++ {
		for _, m := range repOrder(h.modes, r) {
			if ctx.Err() != nil {
				break
			}
			h.measure(ctx, PhaseThroughput, r, m, h.gen, load, nil)
		}
	}
	rep.summarizeThroughput()

	if cfg.Latency && ctx.Err() == nil {
		if err := h.latencyPhase(ctx, load); err != nil {
			rep.Errors = append(rep.Errors, "latency: "+err.Error())
		}
	}
	rep.Interrupted = ctx.Err() != nil
	rep.Finished = time.Now()
	return rep, nil
}

// vipMACFlag returns the value of the last --vip-mac in flags, or def.
func vipMACFlag(def string, flags []string) string {
	v := def
	for i, f := range flags {
		switch {
		case (f == "--vip-mac" || f == "-vip-mac") && i+1 < len(flags):
			v = flags[i+1]
		case strings.HasPrefix(f, "--vip-mac="), strings.HasPrefix(f, "-vip-mac="):
			v = f[strings.Index(f, "=")+1:]
		}
	}
	return v
}

// Phases.
const (
	PhaseThroughput = "throughput"
	PhaseLatency    = "latency"
)

type harness struct {
	cfg   Config
	rep   *Report
	bed   *testbed.Bed
	gen   gen.Generator
	vip   netip.AddrPort
	modes []Mode
	// pinInstrument: the latency phase's dsrlb windows run the harness's
	// threads on CPU 0 (pinThreads), off the workers' CPUs.
	pinInstrument bool
}

func (h *harness) progress(format string, args ...any) {
	fmt.Fprintf(h.cfg.Progress, format+"\n", args...)
}

// background measures how busy the CPUs are before any load: other
// processes on the machine, whose time lands in every CPU ns/pkt figure.
func (h *harness) background(ctx context.Context) {
	a, err := h.bed.Snapshot()
	if err != nil || !sleepCtx(ctx, time.Second) {
		return
	}
	z, err := h.bed.Snapshot()
	if err != nil {
		return
	}
	c := z.CPU.Sub(a.CPU)
	if c.Total() > 0 {
		h.rep.BackgroundBusy = float64(c.Busy()) / float64(c.Total())
		h.rep.Notes = append(h.rep.Notes, fmt.Sprintf("background: CPUs %.0f%% busy with no load (1 s before the first window); that time is in every CPU figure", 100*h.rep.BackgroundBusy))
	}
}

// repOrder is the order in which repetition r runs modes: as given, except
// that an A/B twin (dsrlb-wN-alt) runs before its base mode in every even
// repetition. On this kind of machine the second window of a pair tends to
// do better whatever runs in it, so a twin always second would be favoured.
func repOrder(modes []Mode, r int) []Mode {
	out := slices.Clone(modes)
	if r%2 == 1 {
		return out
	}
	for i := 0; i+1 < len(out); i++ {
		if out[i+1].Name() == out[i].Name()+AltSuffix {
			out[i], out[i+1] = out[i+1], out[i]
			i++
		}
	}
	return out
}

// latencyRateTarget is the fraction of the slowest balancer's capacity the
// latency phase offers.
const latencyRateTarget = 0.5

// stampsPerSecond is about how many stamped frames the latency generator
// sends per second, whatever the rate.
const stampsPerSecond = 20000

func (h *harness) latencyPhase(ctx context.Context, load gen.Load) error {
	rate := h.cfg.LatencyRate
	if rate <= 0 {
		var note string
		var err error
		if rate, note, err = h.rep.latencyRate(); err != nil {
			return err
		}
		h.rep.Notes = append(h.rep.Notes, note)
	}
	stampEvery := max(1, int(rate/stampsPerSecond+0.5))
	h.rep.LatencyRate, h.rep.StampEvery = rate, stampEvery
	latGen := gen.TxRing{Batch: h.cfg.LatencyBatch}
	if latGen.Batch == 0 {
		latGen.Batch = DefaultLatencyBatch
	}
	h.rep.LatencyGenerator, h.rep.LatencyBatch = latGen.Name(), latGen.Batch
	load.Rate = rate
	load.Threads = 1
	load.StampEvery = stampEvery
	// The generator's one thread runs on CPU 0, and the balancer's receive
	// work runs there too, in its send calls. dsrlb's workers are threads:
	// on that CPU they would take turns with the instrument (and the
	// scheduler does move them there), so they are pinned to the others.
	if n := runtime.NumCPU(); n > 1 && h.cfg.LatencyPin {
		cpus := "1"
		if n > 2 {
			cpus = fmt.Sprintf("1-%d", n-1)
		}
		for _, m := range h.modes {
			if d, ok := m.(*Dsrlb); ok {
				d.PhaseFlags = []string{"--cpus", cpus}
				// All on the CPUs the generator leaves them, a fanout
				// by receiving CPU would give every frame to one worker:
				// a mode run with --fanout cpu spreads by hash here.
				if slices.ContainsFunc(d.Flags, func(f string) bool { return strings.HasPrefix(f, "--fanout") }) {
					d.PhaseFlags = append(d.PhaseFlags, "--fanout", "hash")
				}
				defer func() { d.PhaseFlags = nil }()
			}
		}
		h.rep.Notes = append(h.rep.Notes, "latency: dsrlb's workers pinned to CPU(s) "+cpus+", off the generator's CPU 0 (--cpus "+cpus+", and --fanout hash for a mode run with --fanout), and the bench's own threads (probes, Go runtime) to CPU 0 during each dsrlb window; --latency-pin=false leaves both to the scheduler")
		h.pinInstrument = true
		defer func() { h.pinInstrument = false }()
	}

	var probes latencyProbes
	var err error
	if probes.sink, err = latency.Open(h.bed.Sinks[0].NS, h.bed.Sinks[0].Link); err != nil {
		return err
	}
	if slices.ContainsFunc(h.modes, func(m Mode) bool { return m.Name() != "direct" }) {
		if probes.lb, err = latency.Open(h.bed.LB.NS, h.bed.LB.Link); err != nil {
			probes.sink.Close()
			return err
		}
		probes.sink.RecordArrivals(true)
		probes.lb.RecordArrivals(true)
		h.rep.Notes = append(h.rep.Notes, "latency: a second probe taps the balancer's "+h.bed.LB.Link+" (for transit); it costs every frame arriving there a filter run, for both balancers alike")
	}
	pctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sinkErr, lbErr error
	wg.Add(1)
	go func() { defer wg.Done(); sinkErr = probes.sink.Run(pctx) }()
	if probes.lb != nil {
		wg.Add(1)
		go func() { defer wg.Done(); lbErr = probes.lb.Run(pctx) }()
	}
	defer func() {
		stop()
		wg.Wait()
		report := func(what string, runErr error, p *latency.Probe) {
			if err := errors.Join(runErr, p.Close()); err != nil {
				h.rep.Errors = append(h.rep.Errors, what+": "+err.Error())
			}
		}
		report("latency probe", sinkErr, probes.sink)
		if probes.lb != nil {
			report("latency probe on the lb", lbErr, probes.lb)
		}
	}()
	for r := 1; r <= h.cfg.LatencyReps && ctx.Err() == nil; r++ {
		for _, m := range repOrder(h.modes, r) {
			if ctx.Err() != nil {
				break
			}
			h.measure(ctx, PhaseLatency, r, m, latGen, load, &probes)
		}
	}
	h.rep.summarizeLatency()
	return nil
}

// latencyProbes are the latency phase's probes: on sink s1, and on the
// balancer's interface when a balancer is measured (nil otherwise).
type latencyProbes struct {
	sink, lb *latency.Probe
}

// reset discards what the probes gathered so far.
func (p *latencyProbes) reset() {
	p.sink.Take()
	p.sink.TakeArrivals()
	if p.lb != nil {
		p.lb.Take()
		p.lb.TakeArrivals()
	}
}

// take returns what the probes gathered since the last take or reset:
// the sink's latencies, the lb's (toLB) and the transit between them.
// toLB and transit are nil for the direct path (no balancer) or without a
// probe on the lb.
func (p *latencyProbes) take(mode string) (samples []int64, negative int, toLB []int64, transit *latency.Transit) {
	if p.lb == nil {
		samples, negative = p.sink.Take()
		return samples, negative, nil, nil
	}
	// The balancer's probe first: a frame it saw just before is then
	// likelier to have reached the sink by the time the sink's probe is
	// read (in flight at the edge, it would count as upstream only).
	up := p.lb.TakeArrivals()
	toLB, _ = p.lb.Take()
	samples, negative = p.sink.Take()
	down := p.sink.TakeArrivals()
	if mode == "direct" {
		return samples, negative, nil, nil
	}
	t := latency.MatchTransit(up, down)
	return samples, negative, toLB, &t
}

// errInterrupted marks a window cut short by cancellation.
const errInterrupted = "interrupted"

// measure runs one window of one mode and records it.
func (h *harness) measure(ctx context.Context, phase string, rep int, mode Mode, g gen.Generator, load gen.Load, probes *latencyProbes) {
	reps := h.cfg.Reps
	if phase == PhaseLatency {
		reps = h.cfg.LatencyReps
	}
	threads := gen.Threads(g, &load)
	h.progress("[%s %d/%d] %s: starting (%s, %d thread(s), %s)", phase, rep, reps, mode.Name(), g.Name(), threads, rateText(load.Rate))
	m := Measurement{Phase: phase, Rep: rep, Mode: mode.Name(), Generator: g.Name(), Threads: threads, Rate: load.Rate}
	defer func() { h.rep.Measurements = append(h.rep.Measurements, m) }()
	fail := func(err error) {
		m.Error = err.Error()
		h.progress("[%s %d/%d] %s: %v", phase, rep, reps, mode.Name(), err)
	}

	rps := h.rpsFor(mode)
	if rps {
		if err := h.bed.RPS(h.bed.LB, testbed.CPUMask(runtime.NumCPU())); err != nil {
			fail(err)
			return
		}
		defer func() {
			if err := h.bed.RPS(h.bed.LB, "0"); err != nil && m.Error == "" {
				m.Error = err.Error()
			}
		}()
	}
	m.RPS = rps
	if err := mode.Start(ctx, h.bed); err != nil {
		if ctx.Err() != nil {
			m.Error = errInterrupted
		} else {
			fail(err)
		}
		mode.Stop()
		return
	}
	stopMode := func() {
		note, err := mode.Stop()
		m.ModeNote = note
		if err != nil && m.Error == "" && ctx.Err() == nil {
			fail(err)
		}
	}
	load.DstMAC = mode.Target(h.bed)
	run, err := g.Start(ctx, load)
	if err != nil {
		if ctx.Err() == nil {
			fail(err)
		} else {
			m.Error = errInterrupted
		}
		stopMode()
		return
	}
	stopGen := func() {
		res, err := run.Stop()
		m.Gen = res
		if err != nil && m.Error == "" {
			fail(err)
		}
	}
	unpin := func() {}
	if _, threads := mode.(*Dsrlb); phase == PhaseLatency && h.pinInstrument && threads {
		// The instrument stays off the CPUs of the balancer's threads
		// while it measures. The kernel modes have no threads to compete
		// with (their work runs in softirq, which preempts the
		// instrument's), and CPU 0 has no room to spare in them: there
		// nft-local forwards every frame inside the generator's sends, and
		// with the instrument beside it the generator fell 9 % short of
		// the offered rate. Unpinned before the generator and the mode
		// stop, which may start processes (they would inherit the pinning).
		restore, err := pinThreads(0)
		if err != nil {
			fail(err)
			stopGen()
			stopMode()
			return
		}
		unpin = restore
	}
	var a, z testbed.Snapshot
	rw, _ := mode.(statusReader)
	var waitA RingWait
	var waitErr error
	ok := sleepCtx(ctx, h.cfg.Warmup)
	if ok {
		a, err = h.bed.Snapshot()
		if probes != nil {
			probes.reset()
		}
		if rw != nil {
			waitA, _, waitErr = rw.ReadStatus(ctx, h.bed)
		}
		ok = err == nil && sleepCtx(ctx, h.cfg.Window)
	}
	if ok {
		z, err = h.bed.Snapshot()
		ok = err == nil
	}
	if ok && rw != nil && waitErr == nil {
		// Read after the port counters: the frames the window counted have
		// left the ring by now (a few more, taken meanwhile, count too).
		if waitZ, tracking, err := rw.ReadStatus(ctx, h.bed); err == nil {
			d := waitZ.Sub(waitA)
			m.RingWait, m.FlowTracking = &d, tracking
		} else {
			waitErr = err
		}
	}
	if waitErr != nil && ctx.Err() == nil {
		h.progress("[%s %d/%d] %s: no ring-wait counts: %v", phase, rep, reps, mode.Name(), waitErr)
	}
	var samples []int64
	var toLB []int64
	var transit *latency.Transit
	if probes != nil {
		samples, m.NegativeLatencies, toLB, transit = probes.take(mode.Name())
	}
	unpin()
	stopGen()
	stopMode()
	if err != nil {
		fail(err)
		return
	}
	if !ok {
		m.Error = errInterrupted // left out of the summaries
		return
	}
	w := h.bed.Window(a, z)
	m.setWindow(w)
	// The samples stay with the window: summarizeLatency pools those of
	// the windows that neither failed (a generator or mode that did not
	// stop cleanly) nor stalled, as every other table does.
	if probes != nil {
		s := latency.Summarize(samples)
		m.Latency, m.latencyRaw = &s, samples
	}
	if transit != nil {
		m.setTransit(transit)
		s := latency.Summarize(toLB)
		m.ToLB, m.toLBRaw = &s, toLB
	}
	line := fmt.Sprintf("[%s %d/%d] %s: offered %s pps, delivered %s pps, lb in/out %s/%s pps, loss %.1f%%, CPU %.0f ns/pkt",
		phase, rep, reps, mode.Name(), thousands(m.OfferedPPS), thousands(m.DeliveredPPS), thousands(m.LBInPPS), thousands(m.LBOutPPS), 100*m.Loss, m.CPUNsPerPkt)
	if m.Latency != nil {
		line += fmt.Sprintf(", latency p50 %s p99 %s (%d samples)", us(m.Latency.P50), us(m.Latency.P99), m.Latency.Count)
	}
	if m.Transit != nil {
		line += fmt.Sprintf(", transit p50 %s p99 %s (%d samples)", us(m.Transit.P50), us(m.Transit.P99), m.Transit.Count)
	}
	if m.RingWait != nil {
		line += fmt.Sprintf(", ring wait p99 %s", waitBound(m.RingWait.Quantile(0.99)))
	}
	if m.FlowTracking > 0 {
		line += fmt.Sprintf(", %d worker(s) TRACKING flows (a table changed)", m.FlowTracking)
	}
	h.progress("%s", line)
	// Let queues drain and sockets close before the next mode.
	sleepCtx(ctx, 300*time.Millisecond)
}

// rpsFor reports whether m runs with RPS on the balancer's interface:
// nft-local and direct never do.
func (h *harness) rpsFor(m Mode) bool {
	switch h.cfg.RPS {
	case "all":
		return m.Name() != "direct" && m.Name() != ModeNftLocal
	case "nft":
		return m.Name() == "nft"
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// buildDsrlb builds ./cmd/dsrlb of the module that holds the working
// directory into a temporary directory.
func buildDsrlb(ctx context.Context) (bin string, cleanup func(), err error) {
	root, err := moduleRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "dsrlb-bench-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "dsrlb")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dsrlb")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./cmd/dsrlb in %s: %w\n%s", root, err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// sourceVersion names the commit dsrlb was built from, "+changes" when
// tracked files differ from it.
func sourceVersion() string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	v := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		v += "+changes"
	}
	return v
}

// moduleRoot finds the directory of dsrlb's go.mod at or above the working
// directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/dsrlb/dsrlb\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the dsrlb module (no go.mod of github.com/dsrlb/dsrlb above the working directory); run from the repository or pass --dsrlb")
		}
		dir = parent
	}
}
