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
