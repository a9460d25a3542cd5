package harness

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
)

// The report's ring-wait table (the histogram's own methods are tested in
// dataplane).
func TestRingWait(t *testing.T) {
	var w RingWait // 90 ≤10µs, 8 ≤100µs, 1 ≤1ms, 1 beyond
	w.Buckets[0], w.Buckets[3], w.Buckets[6], w.Buckets[dataplane.NumRingWaitBuckets-1], w.SumNs = 90, 8, 1, 1, uint64(time.Second)
	r := &Report{pooledWait: map[string]*RingWait{}}
	r.ringWaits("dsrlb-w1", w)
	r.ringWaits("dsrlb-w1", w)
	r.Latency = []LatencySummary{{Mode: "dsrlb-w1", RingWait: r.pooledWait["dsrlb-w1"]}, {Mode: "nft"}}
	var out bytes.Buffer
	r.printRingWait(&out)
	for _, want := range []string{"Ring wait inside dsrlb", "  dsrlb-w1           200", "≤10.0µs", "≤1000.0µs", ">100ms", "2.00%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ring wait table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "nft") {
		t.Errorf("ring wait table has a row for nft:\n%s", out.String())
	}
}

// A window measured while dsrlb tracked flows is flagged: it is not the
// steady state the throughput figures describe.
func TestTrackingFlagged(t *testing.T) {
	r := &Report{Measurements: []Measurement{{Mode: "dsrlb-w1"}, {Mode: "dsrlb-w1", FlowTracking: 1}, {Mode: "nft"}}}
	var out bytes.Buffer
	r.Print(&out)
	if !strings.Contains(out.String(), "WARNING: in 1 dsrlb window(s) a worker tracked flows") {
		t.Errorf("report does not flag the tracking window:\n%s", out.String())
	}
	r.Measurements[1].FlowTracking = 0
	out.Reset()
	r.Print(&out)
	if strings.Contains(out.String(), "tracked flows") {
		t.Errorf("report flags tracking with none:\n%s", out.String())
	}
}
