package harness

import (
	"context"
	"time"

	"github.com/dsrlb/dsrlb/bench/testbed"
	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/admin"
	"github.com/dsrlb/dsrlb/internal/config"
)

// RingWait is a histogram of how long frames waited in dsrlb's receive
// rings (dataplane.Stats.RingWait, summed over workers): dsrlb's own
// measurement of its queueing, from the kernel's slot timestamp to the
// worker taking the frame.
type RingWait struct {
	// Buckets are frame counts by bucket, bounded by
	// dataplane.RingWaitBounds (the last one beyond them).
	Buckets [dataplane.NumRingWaitBuckets]uint64 `json:"buckets"`
	SumNs   uint64                               `json:"sum_ns"`
}

// Count is the number of frames counted.
func (w *RingWait) Count() uint64 {
	var n uint64
	for _, c := range w.Buckets {
		n += c
	}
	return n
}

// Sub returns w − v (the counts of a window between snapshots v and w).
func (w RingWait) Sub(v RingWait) RingWait {
	for i := range w.Buckets {
		w.Buckets[i] -= v.Buckets[i]
	}
	w.SumNs -= v.SumNs
	return w
}

// Add adds v to w.
func (w *RingWait) Add(v RingWait) {
	for i := range w.Buckets {
		w.Buckets[i] += v.Buckets[i]
	}
	w.SumNs += v.SumNs
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1),
// or -1 if that is the last, unbounded bucket, or no frame was counted.
func (w *RingWait) Quantile(q float64) time.Duration {
	n := w.Count()
	if n == 0 {
		return -1
	}
	var cum uint64
	for i, c := range w.Buckets {
		cum += c
		if float64(cum) >= q*float64(n) {
			if i < len(dataplane.RingWaitBounds) {
				return dataplane.RingWaitBounds[i]
			}
			return -1
		}
	}
	return -1
}

// Beyond returns the number of frames that waited longer than d, one of
// dataplane.RingWaitBounds (the frames in the buckets above it).
func (w *RingWait) Beyond(d time.Duration) uint64 {
	var n uint64
	for i := 1; i < len(w.Buckets); i++ {
		if dataplane.RingWaitBounds[i-1] >= d {
			n += w.Buckets[i]
		}
	}
	return n
}

// Mean is the mean wait.
func (w *RingWait) Mean() time.Duration {
	if n := w.Count(); n > 0 {
		return time.Duration(w.SumNs / n)
	}
	return 0
}

// ringWaiter is a mode that reports its ring waits (dsrlb).
type ringWaiter interface {
	RingWait(ctx context.Context, b *testbed.Bed) (RingWait, error)
}

// RingWait reads dsrlb's ring-wait counts from its admin endpoint (the
// default address, in the balancer's namespace).
func (d *Dsrlb) RingWait(ctx context.Context, b *testbed.Bed) (RingWait, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := admin.Client{Addr: config.DefaultAdmin, HTTP: b.LB.HTTPClient(false)}
	st, err := c.Status(ctx)
	if err != nil {
		return RingWait{}, err
	}
	var w RingWait
	for _, s := range st.Workers {
		w.Add(RingWait{Buckets: s.RingWait, SumNs: s.RingWaitNs})
	}
	return w, nil
}
