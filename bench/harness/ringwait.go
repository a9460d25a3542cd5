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
// rings (summed over workers): dsrlb's own measurement of its queueing, from
// the kernel's slot timestamp to the worker taking the frame.
type RingWait = dataplane.RingWaits

// statusReader is a mode that reports its own counters (dsrlb).
type statusReader interface {
	ReadStatus(ctx context.Context, b *testbed.Bed) (RingWait, int, error)
}

// ReadStatus reads dsrlb's ring-wait counts from its admin endpoint (the
// default address, in the balancer's namespace), and how many of its workers
// track flows (after a table change: a slower path than the steady state's).
func (d *Dsrlb) ReadStatus(ctx context.Context, b *testbed.Bed) (w RingWait, tracking int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := admin.Client{Addr: config.DefaultAdmin, HTTP: b.LB.HTTPClient(false)}
	st, err := c.Status(ctx)
	if err != nil {
		return RingWait{}, 0, err
	}
	for _, s := range st.Workers {
		w.Add(s.RingWaits())
		tracking += int(s.FlowTracking)
	}
	return w, tracking, nil
}
