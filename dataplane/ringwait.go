package dataplane

import "time"

// RingWaitBounds are the upper bounds of the buckets of a worker's ring-wait
// histogram: how long a frame waited in the receive ring, from the kernel's
// timestamp on the slot to the moment the worker took the batch holding it.
// A last bucket, beyond the largest bound, takes the rest.
var RingWaitBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 100 * time.Millisecond,
}

// NumRingWaitBuckets is the length of Stats.RingWait: one bucket per bound
// and one beyond the last.
const NumRingWaitBuckets = len(RingWaitBounds) + 1

// ringWaitBucket returns the bucket of a wait of ns nanoseconds. A negative
// wait (the wall clock was stepped back) counts as no wait.
func ringWaitBucket(ns int64) int {
	for i, b := range RingWaitBounds {
		if ns <= int64(b) {
			return i
		}
	}
	return len(RingWaitBounds)
}

// observeRingWait counts one frame that waited ns nanoseconds in the ring.
func (c *counts) observeRingWait(ns int64) {
	ns = max(ns, 0)
	c.ringWait[ringWaitBucket(ns)]++
	c.ringWaitNs += uint64(ns)
}

// RingWaits is a ring-wait histogram: frame counts by bucket of
// RingWaitBounds (the last one beyond them) and the frames' total wait. A
// worker's is in Stats (RingWait, RingWaitNs).
type RingWaits struct {
	Buckets [NumRingWaitBuckets]uint64 `json:"buckets"`
	SumNs   uint64                     `json:"sum_ns"`
}

// RingWaits returns the worker's ring-wait histogram.
func (s *Stats) RingWaits() RingWaits {
	return RingWaits{Buckets: s.RingWait, SumNs: s.RingWaitNs}
}

// Count is the number of frames counted.
func (w *RingWaits) Count() uint64 {
	var n uint64
	for _, c := range w.Buckets {
		n += c
	}
	return n
}

// Sub returns w − v (the counts between snapshots v and w).
func (w RingWaits) Sub(v RingWaits) RingWaits {
	for i := range w.Buckets {
		w.Buckets[i] -= v.Buckets[i]
	}
	w.SumNs -= v.SumNs
	return w
}

// Add adds v to w.
func (w *RingWaits) Add(v RingWaits) {
	for i := range w.Buckets {
		w.Buckets[i] += v.Buckets[i]
	}
	w.SumNs += v.SumNs
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1),
// or -1 if that is the last, unbounded bucket, or no frame was counted.
func (w *RingWaits) Quantile(q float64) time.Duration {
	n := w.Count()
	if n == 0 {
		return -1
	}
	var cum uint64
	for i, c := range w.Buckets {
		cum += c
		if float64(cum) >= q*float64(n) {
			if i < len(RingWaitBounds) {
				return RingWaitBounds[i]
			}
			return -1
		}
	}
	return -1
}

// Beyond returns the number of frames that waited longer than d, one of
// RingWaitBounds (the frames in the buckets above it).
func (w *RingWaits) Beyond(d time.Duration) uint64 {
	var n uint64
	for i := 1; i < len(w.Buckets); i++ {
		if RingWaitBounds[i-1] >= d {
			n += w.Buckets[i]
		}
	}
	return n
}

// Mean is the mean wait.
func (w *RingWaits) Mean() time.Duration {
	if n := w.Count(); n > 0 {
		return time.Duration(w.SumNs / n)
	}
	return 0
}
