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
