package harness

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
)

func TestRingWait(t *testing.T) {
	last := dataplane.NumRingWaitBuckets - 1
	var a, z RingWait
	a.Buckets[0], a.SumNs = 5, 1000
	z.Buckets[0], z.Buckets[3], z.Buckets[6], z.Buckets[last], z.SumNs = 95, 8, 1, 1, 1000+uint64(time.Second)
	w := z.Sub(a) // 90 ≤10µs, 8 ≤100µs, 1 ≤1ms, 1 beyond
	if w.Count() != 100 || w.Buckets[0] != 90 || w.SumNs != uint64(time.Second) || w.Mean() != 10*time.Millisecond {
		t.Fatalf("window %+v (count %d, mean %v)", w, w.Count(), w.Mean())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 10 * time.Microsecond}, {0.9, 10 * time.Microsecond}, {0.95, 100 * time.Microsecond}, {0.99, time.Millisecond}, {0.999, -1}} {
		if got := w.Quantile(c.q); got != c.want {
			t.Errorf("quantile %v = %v, want %v", c.q, got, c.want)
		}
	}
	var none RingWait
	if none.Quantile(0.5) != -1 || none.Mean() != 0 {
		t.Errorf("empty: quantile %v mean %v", none.Quantile(0.5), none.Mean())
	}

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
