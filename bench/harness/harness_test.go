package harness

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/bench/latency"
	"github.com/dsrlb/dsrlb/bench/testbed"
)

var testBackends = []Backend{
	{Addr: netip.MustParseAddr("198.18.0.11"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}},
	{Addr: netip.MustParseAddr("198.18.0.12"), MAC: net.HardwareAddr{2, 0, 0, 0, 0, 4}},
}

func TestNftRuleset(t *testing.T) {
	got := NftRuleset("eth0", netip.MustParseAddrPort("198.18.0.100:9"), net.HardwareAddr{2, 0, 0, 0, 0, 2}, testBackends)
	want := `table netdev dsrlb_bench {
	chain ingress {
		type filter hook ingress device "eth0" priority 0; policy accept;
		ip daddr 198.18.0.100 udp dport 9 ether saddr set 02:00:00:00:00:02 ether daddr set jhash ip saddr . udp sport mod 2 map { 0 : 02:00:00:00:00:03, 1 : 02:00:00:00:00:04 } fwd to "eth0"
		ip daddr 198.18.0.100 tcp dport 9 ether saddr set 02:00:00:00:00:02 ether daddr set jhash ip saddr . tcp sport mod 2 map { 0 : 02:00:00:00:00:03, 1 : 02:00:00:00:00:04 } fwd to "eth0"
	}
}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDsrlbArgs(t *testing.T) {
	got := DsrlbArgs("eth0", netip.MustParseAddrPort("198.18.0.100:9"), 2, testBackends)
	want := []string{"run", "--interface", "eth0", "--vip", "198.18.0.100:9/udp", "--vip", "198.18.0.100:9/tcp",
		"--backend", "198.18.0.11,mac=02:00:00:00:00:03", "--backend", "198.18.0.12,mac=02:00:00:00:00:04", "--workers", "2"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestChooseGenerator(t *testing.T) {
	for _, tc := range []struct {
		want      string
		traffic   gen.Traffic
		pktgen    bool
		trafgen   string
		name      string
		notes     int
		wantError bool
	}{
		{"auto", gen.UDP, true, "/usr/sbin/trafgen", "pktgen", 0, false},
		{"auto", gen.UDP, false, "/usr/sbin/trafgen", "trafgen", 1, false},
		{"auto", gen.SYN, true, "/usr/sbin/trafgen", "trafgen", 1, false},
		{"auto", gen.UDP, false, "", "txring", 2, false},
		{"pktgen", gen.UDP, false, "/usr/sbin/trafgen", "", 0, true},
		{"pktgen", gen.SYN, true, "", "", 0, true},
		{"trafgen", gen.UDP, true, "", "", 0, true},
		{"txring", gen.SYN, true, "/usr/sbin/trafgen", "txring", 0, false},
		{"pktgenx", gen.UDP, true, "", "", 0, true},
	} {
		g, notes, err := ChooseGenerator(tc.want, tc.traffic, tc.pktgen, tc.trafgen)
		if tc.wantError {
			if err == nil {
				t.Errorf("%+v: no error", tc)
			}
			continue
		}
		if err != nil || g.Name() != tc.name || len(notes) != tc.notes {
			t.Errorf("%+v: got %v, %q, %v", tc, g, notes, err)
		}
	}
}

func TestStats(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd median %v", m)
	}
	v := []float64{4, 1, 3, 2}
	if m := Median(v); m != 2.5 || v[0] != 4 {
		t.Errorf("even median %v, input %v", m, v)
	}
	if s := NewStat([]float64{5, 1, 9}); s != (Stat{Median: 5, Min: 1, Max: 9, N: 3}) {
		t.Errorf("NewStat = %+v", s)
	}
	if (NewStat(nil) != Stat{}) || Median(nil) != 0 {
		t.Error("empty stats are not zero")
	}
	r := NewRatio("a", "b", []float64{100, 200, 300}, []float64{200, 0, 100})
	if r.OfMedians != 2 || r.Paired.N != 2 || r.Paired.Min != 0.5 || r.Paired.Max != 3 {
		t.Errorf("NewRatio = %+v", r)
	}
	if got := perPacketNs(150, 100, 500_000); got != 3000 {
		t.Errorf("perPacketNs = %v, want 3000 (1.5 CPU-s over 500k frames)", got)
	}
	if perPacketNs(1, 100, 0) != 0 || lossFraction(0, 5) != 0 {
		t.Error("zero frames")
	}
	if got := lossFraction(1000, 900); math.Abs(got-0.1) > 1e-12 {
		t.Errorf("lossFraction = %v", got)
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -12345: "-12,345", math.NaN(): "-"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

// measurement builds a window: rates in frames over one second, busy ticks
// out of 200 (2 CPUs at USER_HZ 100).
func measurement(phase, mode string, rep int, offered, lbOut, delivered, busy uint64) Measurement {
	var m Measurement
	m.Phase, m.Mode, m.Rep = phase, mode, rep
	m.setWindow(testbed.Window{Seconds: 1, Offered: offered, LBIn: offered, LBOut: lbOut, Delivered: delivered,
		CPU: testbed.CPUTimes{System: busy, Idle: 200 - busy}})
	return m
}

// withSamples gives a latency window its latency samples, as measure does.
func withSamples(m Measurement, samples ...int64) Measurement {
	s := latency.Summarize(samples)
	m.Latency, m.latencyRaw = &s, samples
	return m
}

// withToLB gives a latency window its generator-to-lb samples.
func withToLB(m Measurement, toLB ...int64) Measurement {
	s := latency.Summarize(toLB)
	m.ToLB, m.toLBRaw = &s, toLB
	return m
}

func TestSummaries(t *testing.T) {
	r := newReport(Config{Flows: 10, RPS: "nft", Reps: 2})
	for rep := 1; rep <= 2; rep++ {
		r.Measurements = append(r.Measurements,
			measurement(PhaseThroughput, "dsrlb-w2", rep, 300_000, 200_000, 200_000, 200),
			measurement(PhaseThroughput, "nft", rep, 250_000, 250_000, 250_000, 200),
			measurement(PhaseThroughput, "direct", rep, 500_000, 0, 500_000, 200),
		)
	}
	r.Measurements = append(r.Measurements, Measurement{Phase: PhaseThroughput, Mode: "nft", Rep: 3, Error: "boom"})
	r.summarizeThroughput()
	if len(r.Throughput) != 3 {
		t.Fatalf("summaries: %+v", r.Throughput)
	}
	d, n, x := r.Throughput[0], r.Throughput[1], r.Throughput[2]
	if d.Mode != "dsrlb-w2" || d.Delivered.Median != 200_000 || d.LowerBound || math.Abs(d.Loss.Median-1.0/3) > 1e-9 {
		t.Errorf("dsrlb summary %+v", d)
	}
	if !n.LowerBound || n.Failed != 1 || n.Delivered.N != 2 {
		t.Errorf("nft summary %+v", n)
	}
	// 2 CPU-seconds over 200k frames = 10 µs; over 500k = 4 µs.
	if d.ExtraCPUNs == nil || math.Abs(*d.ExtraCPUNs-6000) > 1e-6 || x.ExtraCPUNs != nil {
		t.Errorf("extra CPU: dsrlb %v, direct %v", d.ExtraCPUNs, x.ExtraCPUNs)
	}
	if len(r.Ratios) != 2 || r.Ratios[0].Den != "nft" || r.Ratios[0].OfMedians != 0.8 || r.Ratios[1].OfMedians != 0.4 || r.Ratios[0].Paired.N != 2 {
		t.Errorf("ratios %+v", r.Ratios)
	}

	nft1 := withToLB(withSamples(measurement(PhaseLatency, "nft", 1, 1000, 1000, 1000, 20), 5000, 6000), 3000, 4000)
	nft2 := withToLB(withSamples(measurement(PhaseLatency, "nft", 2, 1000, 1000, 1000, 20), 7000), 5000)
	for i, m := range []*Measurement{&nft1, &nft2} {
		tr := latency.MatchTransit(
			[]latency.Arrival{{Frame: latency.FrameID{StampNs: 1, Seq: uint32(i)}, RxNs: 100}, {Frame: latency.FrameID{StampNs: 2, Seq: uint32(i)}, RxNs: 200}},
			[]latency.Arrival{{Frame: latency.FrameID{StampNs: 1, Seq: uint32(i)}, RxNs: 100 + 1000*int64(i+1)}, {Frame: latency.FrameID{StampNs: 3, Seq: 9}, RxNs: 300}})
		m.setTransit(&tr)
	}
	if nft2.Transit == nil || nft2.Transit.Count != 1 || nft2.Transit.P50 != 2000 || nft2.TransitUpstreamOnly != 1 || nft2.TransitDownstreamOnly != 1 {
		t.Errorf("nft measurement: transit %+v, lb only %d, sink only %d", nft2.Transit, nft2.TransitUpstreamOnly, nft2.TransitDownstreamOnly)
	}
	dsrlb := withSamples(measurement(PhaseLatency, "dsrlb-w2", 1, 1000, 1000, 1000, 20))
	dsrlb.setTransit(&latency.Transit{}) // measured, no sample
	r.Measurements = append(r.Measurements, dsrlb, nft1, nft2,
		withSamples(measurement(PhaseLatency, "direct", 1, 1000, 0, 1000, 10), 1000, 2000, 3000))
	r.summarizeLatency()
	if len(r.Latency) != 3 || r.Latency[1].AddedP50 == nil || *r.Latency[1].AddedP50 != 4000 || r.Latency[2].AddedP50 != nil {
		t.Errorf("latency %+v", r.Latency)
	}
	if d, n, x := r.Latency[0].Transit, r.Latency[1].Transit, r.Latency[2].Transit; d == nil || d.Count != 0 || n == nil || n.Count != 2 || n.Min != 1000 || n.Max != 2000 || x != nil {
		t.Errorf("transit: dsrlb %+v, nft %+v, direct %+v", d, n, x)
	}
	if d, n, x := r.Latency[0].ToLB, r.Latency[1].ToLB, r.Latency[2].ToLB; d != nil || n == nil || n.Count != 3 || n.Min != 3000 || n.P50 != 4000 || n.Max != 5000 || x != nil {
		t.Errorf("generator to lb: dsrlb %+v, nft %+v, direct %+v", d, n, x)
	}

	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{"dsrlb-w2  / nft        0.80", "nft forwarded everything offered", "LOWER BOUND", "failed: throughput rep 3 nft: boom", "+p50",
		"Transit through the balancer", "  nft               2     1.0µs     2.0µs     2.0µs     2.0µs\n", "  dsrlb-w2          0 ",
		"nft: left out 2 frame(s) seen at s1 but not on the lb",
		"Generator → lb eth0", "  nft               3     4.0µs     5.0µs     5.0µs     5.0µs\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// An A/B variant is compared with its base mode: delivered pps and CPU per
// packet, both paired per repetition. Here the CPU medians are equal (5 µs
// each) while the paired ratios are 0.5, 2.0 and 0.8.
func TestAltSummary(t *testing.T) {
	r := newReport(Config{Flows: 10, RPS: "nft", Reps: 3})
	for rep, d := range [][2]uint64{{200_000, 400_000}, {500_000, 250_000}, {400_000, 500_000}} { // base, alt delivered
		r.Measurements = append(r.Measurements,
			measurement(PhaseThroughput, "dsrlb-w1", rep+1, d[0], d[0], d[0], 200),
			measurement(PhaseThroughput, "dsrlb-w1"+AltSuffix, rep+1, d[1], d[1], d[1], 200),
			measurement(PhaseThroughput, "nft", rep+1, 250_000, 250_000, 250_000, 200),
		)
	}
	r.summarizeThroughput()
	var alt *Ratio
	for i := range r.Ratios {
		if r.Ratios[i].Num == "dsrlb-w1-alt" && r.Ratios[i].Den == "dsrlb-w1" {
			alt = &r.Ratios[i]
		} else if r.Ratios[i].CPUNs != nil {
			t.Errorf("%s / %s: a CPU ratio, though not an A/B pair", r.Ratios[i].Num, r.Ratios[i].Den)
		}
	}
	if alt == nil || alt.OfMedians != 1 || alt.Paired.Min != 0.5 || alt.Paired.Max != 2 {
		t.Fatalf("no dsrlb-w1-alt / dsrlb-w1 ratio of 1 (0.5..2) in %+v", r.Ratios)
	}
	if c := alt.CPUNs; c == nil || math.Abs(c.Median-0.8) > 1e-9 || c.Min != 0.5 || c.Max != 2 || c.N != 3 {
		t.Errorf("CPU ratio %+v, want the paired 0.5, 2.0, 0.8: median 0.8", alt.CPUNs)
	}
	var out bytes.Buffer
	r.Print(&out)
	if want := "dsrlb-w1-alt CPU ns/pkt / dsrlb-w1's: 0.800   (0.500..2.000)   median of the paired ratios over 3 reps"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}

func TestVIPMACFlag(t *testing.T) {
	for _, tc := range []struct {
		def   string
		flags []string
		want  string
	}{
		{"auto", nil, "auto"},
		{"auto", []string{"--busy-poll", "0", "--vip-mac", "interface"}, "interface"},
		{"interface", []string{"--vip-mac=auto"}, "auto"},
		{"auto", []string{"--vip-mac", "interface", "-vip-mac=auto"}, "auto"},
		{"auto", []string{"--vip-mac"}, "auto"}, // no value: dsrlb will complain
	} {
		if got := vipMACFlag(tc.def, tc.flags); got != tc.want {
			t.Errorf("vipMACFlag(%q, %q) = %q, want %q", tc.def, tc.flags, got, tc.want)
		}
	}
}

// A repetition in which the generator left CPU idle does not enter the
// both-saturated comparison.
func TestSaturatedRatio(t *testing.T) {
	r := newReport(Config{Flows: 10, RPS: "nft", Reps: 3})
	r.Measurements = append(r.Measurements,
		measurement(PhaseThroughput, "dsrlb-w1", 1, 250_000, 250_000, 250_000, 200),
		measurement(PhaseThroughput, "nft", 1, 300_000, 300_000, 300_000, 200),
		measurement(PhaseThroughput, "dsrlb-w1", 2, 250_000, 250_000, 250_000, 200),
		measurement(PhaseThroughput, "nft", 2, 200_000, 200_000, 200_000, 160), // 80 % busy: a stalled generator
		measurement(PhaseThroughput, "dsrlb-w1", 3, 270_000, 270_000, 270_000, 200),
		measurement(PhaseThroughput, "nft", 3, 300_000, 300_000, 300_000, 200),
	)
	r.summarizeThroughput()
	q := r.Ratios[0]
	if q.Den != "nft" || q.OfMedians != 250.0/300 {
		t.Fatalf("ratio %+v, want dsrlb-w1 / nft = 0.83 of medians", q)
	}
	if q.Saturated == nil || math.Abs(q.Saturated.Median-(250.0/300+270.0/300)/2) > 1e-9 || q.Saturated.Reps != 2 {
		t.Errorf("saturated ratio %+v, want the median of 0.83 and 0.90 over 2 reps", q.Saturated)
	}
	var out bytes.Buffer
	r.Print(&out)
	if !strings.Contains(out.String(), "both saturated: 0.87 (2 reps)") {
		t.Errorf("no both-saturated ratio in:\n%s", out.String())
	}
}

func TestValidateLatencyBatch(t *testing.T) {
	for _, tc := range []struct {
		batch int
		ok    bool
	}{{0, true}, {1, true}, {256, true}, {-1, false}, {257, false}} {
		c := Config{
			Modes: []string{"direct"}, Window: time.Second, GenThreads: 1,
			RPS: "nft", VIPMAC: "auto", Traffic: gen.UDP, Latency: true, LatencyBatch: tc.batch,
		}
		if err := c.validate(); (err == nil) != tc.ok {
			t.Errorf("latency batch %d: validate() = %v, want ok %v", tc.batch, err, tc.ok)
		}
	}
}

// The latency rate is half the slowest balancer's capacity, measured in its
// saturated windows: windows in which the generator left CPUs idle measured
// the generator.
func TestLatencyRate(t *testing.T) {
	r := &Report{}
	add := func(mode string, busy float64, pps ...float64) {
		for _, v := range pps {
			r.Measurements = append(r.Measurements, Measurement{Phase: PhaseThroughput, Mode: mode, CPUBusy: busy, DeliveredPPS: v})
		}
		if !slices.ContainsFunc(r.Throughput, func(s ModeSummary) bool { return s.Mode == mode }) {
			r.Throughput = append(r.Throughput, ModeSummary{Mode: mode})
		}
	}
	if _, _, err := r.latencyRate(); err == nil {
		t.Error("no measurements: no error")
	}
	add("direct", 1, 500e3, 520e3)
	rate, note, err := r.latencyRate()
	if err != nil || rate != 255e3 || !strings.Contains(note, "no balancer ran") {
		t.Errorf("direct only: %v, %q, %v; want 255000", rate, note, err)
	}
	add("dsrlb-w1", 0.99, 240e3, 250e3, 230e3, 245e3)
	add("nft", 1, 300e3, 260e3)
	add("nft", 0.7, 160e3, 170e3, 180e3)
	rate, note, err = r.latencyRate()
	if err != nil || rate != 121250 || !strings.Contains(note, "dsrlb-w1's") || !strings.Contains(note, "4 saturated windows (of 4)") {
		t.Errorf("got %v, %q, %v; want half of dsrlb-w1's 242,500", rate, note, err)
	}
	// A mode never saturated counts with all its windows, as a lower bound.
	add("dsrlb-w2", 0.9, 200e3, 210e3, 220e3)
	rate, note, err = r.latencyRate()
	if err != nil || rate != 105e3 || !strings.Contains(note, "none saturated") {
		t.Errorf("got %v, %q, %v; want half of dsrlb-w2's 210,000", rate, note, err)
	}
}

// The extra CPU per packet is also compared over saturated windows only: a
// window in which the generator stalled costs more CPU per frame, and it
// would flatter whichever balancer stalled the generator.
func TestExtraCPUSaturated(t *testing.T) {
	r := newReport(Config{Flows: 10, RPS: "nft", Reps: 2})
	for rep := 1; rep <= 2; rep++ {
		r.Measurements = append(r.Measurements,
			measurement(PhaseThroughput, "dsrlb-w1", rep, 200_000, 200_000, 200_000, 200), // 10 µs/frame
			measurement(PhaseThroughput, "direct", rep, 500_000, 0, 500_000, 200),         // 4 µs
		)
	}
	r.Measurements = append(r.Measurements,
		measurement(PhaseThroughput, "nft", 1, 250_000, 250_000, 250_000, 200), // 8 µs, saturated
		measurement(PhaseThroughput, "nft", 2, 100_000, 100_000, 100_000, 150), // 15 µs, 75 % busy
	)
	r.summarizeThroughput()
	var d, n *ModeSummary
	for i := range r.Throughput {
		switch r.Throughput[i].Mode {
		case "dsrlb-w1":
			d = &r.Throughput[i]
		case "nft":
			n = &r.Throughput[i]
		}
	}
	if d == nil || n == nil || n.ExtraCPUNs == nil || math.Abs(*n.ExtraCPUNs-7500) > 1e-6 ||
		n.ExtraCPUNsSaturated == nil || math.Abs(*n.ExtraCPUNsSaturated-4000) > 1e-6 || n.CPUNsSaturated.N != 1 ||
		d.ExtraCPUNsSaturated == nil || math.Abs(*d.ExtraCPUNsSaturated-6000) > 1e-6 {
		t.Fatalf("summaries: dsrlb %+v, nft %+v", d, n)
	}
	var out bytes.Buffer
	r.Print(&out)
	if want := "dsrlb-w1  extra CPU over direct / nft's extra: 0.80   saturated windows only: 1.50 (2 and nft's 1)"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}

// An A/B twin runs after its base mode in odd repetitions and before it in
// even ones; other modes keep their places.
func TestRepOrder(t *testing.T) {
	modes := []Mode{&Dsrlb{Workers: 1}, &Dsrlb{Workers: 1, Label: AltSuffix}, &Dsrlb{Workers: 2}, &Dsrlb{Workers: 2, Label: AltSuffix}, &Nft{}, Direct{}}
	names := func(ms []Mode) string {
		var n []string
		for _, m := range ms {
			n = append(n, m.Name())
		}
		return strings.Join(n, " ")
	}
	for r, want := range map[int]string{
		1: "dsrlb-w1 dsrlb-w1-alt dsrlb-w2 dsrlb-w2-alt nft direct",
		2: "dsrlb-w1-alt dsrlb-w1 dsrlb-w2-alt dsrlb-w2 nft direct",
		3: "dsrlb-w1 dsrlb-w1-alt dsrlb-w2 dsrlb-w2-alt nft direct",
	} {
		if got := names(repOrder(modes, r)); got != want {
			t.Errorf("rep %d: %s, want %s", r, got, want)
		}
	}
	if got := names(modes); got != "dsrlb-w1 dsrlb-w1-alt dsrlb-w2 dsrlb-w2-alt nft direct" {
		t.Errorf("repOrder changed its argument: %s", got)
	}
	plain := []Mode{&Dsrlb{Workers: 1}, &Nft{}, Direct{}}
	if got := names(repOrder(plain, 2)); got != "dsrlb-w1 nft direct" {
		t.Errorf("without twins, rep 2: %s", got)
	}
}

// nft-local is the reference without RPS: never given RPS, whatever --rps
// says, and a denominator of its own in the ratios and the extra-CPU lines.
func TestNftLocal(t *testing.T) {
	local, nft, direct := &Nft{Local: true}, &Nft{}, Direct{}
	if local.Name() != ModeNftLocal || nft.Name() != "nft" {
		t.Fatalf("names %q, %q", local.Name(), nft.Name())
	}
	for _, tc := range []struct {
		rps               string
		local, nft, dsrlb bool
	}{{"nft", false, true, false}, {"all", false, true, true}, {"none", false, false, false}} {
		h := &harness{cfg: Config{RPS: tc.rps}}
		if h.rpsFor(local) != tc.local || h.rpsFor(nft) != tc.nft || h.rpsFor(&Dsrlb{Workers: 1}) != tc.dsrlb || h.rpsFor(direct) {
			t.Errorf("--rps %s: nft-local %v, nft %v, dsrlb %v, direct %v", tc.rps, h.rpsFor(local), h.rpsFor(nft), h.rpsFor(&Dsrlb{Workers: 1}), h.rpsFor(direct))
		}
	}
	c := Config{Modes: []string{"nft-local", "direct"}, Window: time.Second, GenThreads: 1, RPS: "nft", VIPMAC: "auto"}
	if err := c.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	c.Modes = []string{"nft-remote"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), `mode "nft-remote"`) {
		t.Errorf("validate of an unknown mode: %v", err)
	}

	r := newReport(Config{Flows: 10, RPS: "nft", Reps: 2, Modes: []string{"dsrlb", "nft", "nft-local", "direct"}})
	for rep := 1; rep <= 2; rep++ {
		r.Measurements = append(r.Measurements,
			measurement(PhaseThroughput, "dsrlb-w1", rep, 200_000, 200_000, 200_000, 200),  // 10 µs/frame
			measurement(PhaseThroughput, "nft", rep, 160_000, 160_000, 160_000, 200),       // 12.5 µs
			measurement(PhaseThroughput, "nft-local", rep, 250_000, 250_000, 250_000, 200), // 8 µs
			measurement(PhaseThroughput, "direct", rep, 500_000, 0, 500_000, 200),          // 4 µs
		)
	}
	r.summarizeThroughput()
	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{
		"dsrlb-w1  / nft        1.25",
		"dsrlb-w1  / nft-local  0.80",
		"dsrlb-w1  extra CPU over direct / nft's extra: 0.71",
		"dsrlb-w1  extra CPU over direct / nft-local's extra: 1.50",
		"nft-local: the nft reference with RPS off",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// A window in which the generator stalled (offered almost nothing, or its
// ring made no progress) enters no median and no ratio; it is counted and
// reported.
func TestStalledWindowsLeftOut(t *testing.T) {
	r := newReport(Config{Flows: 10, RPS: "nft", Reps: 3})
	for rep := 1; rep <= 3; rep++ {
		r.Measurements = append(r.Measurements,
			measurement(PhaseThroughput, "dsrlb-w1", rep, 250_000, 250_000, 250_000, 200),
			measurement(PhaseThroughput, "direct", rep, 500_000, 0, 500_000, 200),
		)
	}
	r.Measurements = append(r.Measurements,
		measurement(PhaseThroughput, "nft", 1, 300_000, 300_000, 300_000, 200),
		measurement(PhaseThroughput, "nft", 2, 5_000, 5_000, 5_000, 200), // 1 % of direct's offer
		measurement(PhaseThroughput, "nft", 3, 280_000, 280_000, 280_000, 200),
	)
	r.Measurements[len(r.Measurements)-1].Gen.Stalled = true // the txring generator saw no progress
	r.summarizeThroughput()
	for _, s := range r.Throughput {
		if s.Mode != "nft" {
			continue
		}
		if s.Stalled != 2 || s.Delivered.Median != 300_000 || s.Delivered.Min != 300_000 {
			t.Errorf("nft: %d stalled, delivered %+v; want 2 stalled and the one good window's 300,000", s.Stalled, s.Delivered)
		}
	}
	for _, q := range r.Ratios {
		if q.Den == "nft" && (q.OfMedians != 250.0/300 || q.Paired.Min != 250.0/300 || q.Paired.Max != 250.0/300) {
			t.Errorf("dsrlb-w1 / nft: %+v; want 0.83 from rep 1 only", q)
		}
	}
	var out bytes.Buffer
	r.Print(&out)
	if !strings.Contains(out.String(), "nft: the generator stalled") || !strings.Contains(out.String(), "in 2 window(s), left out of every figure") {
		t.Errorf("the stalls are not reported:\n%s", out.String())
	}
}

// Saturated means every CPU busy, not the average: one CPU at 100 % and one
// at 96.5 % (98.25 % together) is not saturated.
func TestSaturatedPerCPU(t *testing.T) {
	m := measurement(PhaseThroughput, "nft", 1, 300_000, 300_000, 300_000, 197)
	if !m.saturated() {
		t.Fatalf("98.5 %% busy without per-CPU figures: not saturated")
	}
	m.Window.PerCPUBusy = []float64{1, 0.965}
	if m.saturated() {
		t.Error("CPUs 100 % and 96.5 % busy counted as saturated")
	}
	m.Window.PerCPUBusy = []float64{0.99, 0.985}
	if !m.saturated() {
		t.Error("CPUs 99 % and 98.5 % busy not counted as saturated")
	}
}

// A --vip-mac the generator could not target is refused in dsrlb's flags.
func TestValidateVIPMACFlags(t *testing.T) {
	c := Config{Modes: []string{"dsrlb"}, Workers: []int{1}, Window: time.Second, GenThreads: 1, RPS: "nft", VIPMAC: "auto",
		DsrlbFlags: []string{"--vip-mac", "interface"}, AltFlags: []string{"--vip-mac=auto"}}
	if err := c.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	c.AltFlags = []string{"--vip-mac", "02:00:5e:00:01:01"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), `alt-flags: --vip-mac "02:00:5e:00:01:01"`) {
		t.Errorf("a literal MAC in --alt-flags: %v", err)
	}
}

// The latency tables pool only the windows every other table counts: not
// one whose generator or mode failed to stop cleanly, nor one in which the
// generator stalled.
func TestLatencyPoolsUsableWindowsOnly(t *testing.T) {
	r := newReport(Config{Flows: 10, RPS: "nft", LatencyReps: 3})
	var wait RingWait
	wait.Buckets[0] = 10
	window := func(rep int, sample int64) Measurement {
		m := withToLB(withSamples(measurement(PhaseLatency, "dsrlb-w1", rep, 1000, 1000, 1000, 20), sample, sample+1), sample)
		m.setTransit(&latency.Transit{Samples: []int64{sample}})
		w := wait
		m.RingWait = &w
		return m
	}
	good, failed, stalled := window(1, 1000), window(2, 90_000), window(3, 80_000)
	failed.Error = "dsrlb exited during the measurement (signal: killed)"
	stalled.Gen.Stalled = true
	r.Measurements = append(r.Measurements, good, failed, stalled,
		withSamples(measurement(PhaseLatency, "direct", 1, 1000, 0, 1000, 10), 500))
	r.summarizeLatency()
	if len(r.Latency) != 2 || r.Latency[0].Mode != "dsrlb-w1" {
		t.Fatalf("latency summaries %+v", r.Latency)
	}
	s := r.Latency[0]
	if s.Pooled.Count != 2 || s.Pooled.Max != 1001 {
		t.Errorf("pooled latency %+v, want the good window's 2 samples (max 1001ns)", s.Pooled)
	}
	if s.Transit == nil || s.Transit.Count != 1 || s.Transit.Max != 1000 {
		t.Errorf("pooled transit %+v, want the good window's 1 sample", s.Transit)
	}
	if s.ToLB == nil || s.ToLB.Count != 1 || s.ToLB.Max != 1000 {
		t.Errorf("pooled generator-to-lb %+v, want the good window's 1 sample", s.ToLB)
	}
	if s.RingWait == nil || s.RingWait.Count() != 10 {
		t.Errorf("pooled ring wait %+v, want the good window's 10 frames", s.RingWait)
	}
	if s.AddedP50 == nil || *s.AddedP50 != 500 {
		t.Errorf("added p50 %v, want the good window's 1000ns - direct's 500ns", s.AddedP50)
	}
}

// With a rate trafgen runs one worker whatever -P says: the report says 1
// thread, and why.
func TestTrafgenRateThreads(t *testing.T) {
	cfg := Config{Flows: 10, RPS: "nft", GenThreads: 4, Rate: 200_000}
	r := newReport(cfg)
	r.setGenerator(gen.Trafgen{}, cfg)
	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{"generator trafgen with 1 thread(s), 200,000 pps", "trafgen: 1 thread(s), not the 4 of --gen-threads"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if r.GeneratorThreads != 1 {
		t.Errorf("recorded %d generator threads, want 1", r.GeneratorThreads)
	}
	cfg.Rate = 0
	r = newReport(cfg)
	r.setGenerator(gen.Trafgen{}, cfg)
	out.Reset()
	r.Print(&out)
	if !strings.Contains(out.String(), "generator trafgen with 4 thread(s), flat out") || strings.Contains(out.String(), "not the 4") {
		t.Errorf("flat out, 4 threads:\n%s", out.String())
	}
}

// --br-netfilter claims no hook left on where br_netfilter is not loaded.
func TestBridgeNetfilterNote(t *testing.T) {
	for _, tc := range []struct {
		leaveOn, loaded bool
		want            string
	}{
		{true, true, "bridge-nf-call-* left ON"},
		{false, true, "bridge-nf-call-* OFF"},
		{true, false, "not loaded (no bridge-nf-call-* sysctls in the switch namespace): --br-netfilter had no hook to leave on"},
		{false, false, "not loaded"},
	} {
		got := bridgeNetfilterNote(tc.leaveOn, tc.loaded)
		if !strings.Contains(got, tc.want) || !tc.loaded && strings.Contains(got, " ON") {
			t.Errorf("leave on %v, loaded %v: %q, want %q", tc.leaveOn, tc.loaded, got, tc.want)
		}
	}
}
