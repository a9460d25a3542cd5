package dataplane

import (
	"testing"
	"time"
)

func TestRingWaitBuckets(t *testing.T) {
	for _, c := range []struct {
		wait time.Duration
		want int
	}{
		{-time.Second, 0}, // the wall clock stepped back
		{0, 0},
		{10 * time.Microsecond, 0},
		{10*time.Microsecond + 1, 1},
		{99 * time.Microsecond, 3},
		{time.Millisecond, 6},
		{100 * time.Millisecond, len(RingWaitBounds) - 1},
		{100*time.Millisecond + 1, len(RingWaitBounds)},
		{time.Hour, len(RingWaitBounds)},
	} {
		if got := ringWaitBucket(int64(c.wait)); got != c.want {
			t.Errorf("ringWaitBucket(%v) = %d, want %d", c.wait, got, c.want)
		}
	}
	for i := 1; i < len(RingWaitBounds); i++ {
		if RingWaitBounds[i] <= RingWaitBounds[i-1] {
			t.Errorf("bounds not increasing at %d: %v", i, RingWaitBounds)
		}
	}
}

// The worker's ring-wait counts reach Stats through publish, as every other
// counter does.
func TestRingWaitPublished(t *testing.T) {
	w := NewWorker([6]byte{2, 0, 0, 0, 0, 1}, 64, int64(time.Minute))
	for _, d := range []time.Duration{-time.Millisecond, 5 * time.Microsecond, 30 * time.Microsecond, 30 * time.Microsecond, time.Second} {
		w.c.observeRingWait(int64(d))
	}
	var before Stats
	w.addTo(&before)
	if before.RingWait != [NumRingWaitBuckets]uint64{} {
		t.Errorf("counts visible before publish: %v", before.RingWait)
	}
	w.publish()
	var s Stats
	w.addTo(&s)
	want := [NumRingWaitBuckets]uint64{0: 2, 2: 2, NumRingWaitBuckets - 1: 1}
	if s.RingWait != want {
		t.Errorf("RingWait = %v, want %v", s.RingWait, want)
	}
	if wantNs := uint64(5*time.Microsecond + 60*time.Microsecond + time.Second); s.RingWaitNs != wantNs {
		t.Errorf("RingWaitNs = %d, want %d", s.RingWaitNs, wantNs)
	}
}

func TestRingWaits(t *testing.T) {
	last := NumRingWaitBuckets - 1
	var a, z RingWaits
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
	for _, c := range []struct {
		d    time.Duration
		want uint64
	}{{10 * time.Microsecond, 10}, {100 * time.Microsecond, 2}, {time.Millisecond, 1}, {100 * time.Millisecond, 1}} {
		if got := w.Beyond(c.d); got != c.want {
			t.Errorf("beyond %v = %d, want %d", c.d, got, c.want)
		}
	}
	var none RingWaits
	if none.Quantile(0.5) != -1 || none.Mean() != 0 {
		t.Errorf("empty: quantile %v mean %v", none.Quantile(0.5), none.Mean())
	}
	var s Stats
	s.RingWait, s.RingWaitNs = w.Buckets, w.SumNs
	if got := s.RingWaits(); got != w {
		t.Errorf("Stats.RingWaits() = %+v, want %+v", got, w)
	}
	none.Add(w)
	none.Add(w)
	if none.Count() != 200 || none.SumNs != 2*uint64(time.Second) {
		t.Errorf("added twice: %+v", none)
	}
}
