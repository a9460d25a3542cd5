package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Clock is the time a Checker runs on. Tests drive a fake one; nil means
// real time.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed (at once if
	// d <= 0).
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Event is a state change of one backend's check.
type Event struct {
	Target  Target
	Healthy bool
	// Reason says why: the last probe's failure and the count, such as
	// "http GET /healthz: status 503 (3 of 3 failed)", or what passed, such
	// as "tcp connect 10.0.0.12:80 ok (2 of 2 passed)".
	Reason string
	At     time.Time // when the deciding probe ended, on the Checker's clock
}

// errProbeTimeout is the cause of a probe context the Checker ended.
var errProbeTimeout = errors.New("health check: probe timed out")

// Checker runs one backend's probes. Create it with NewChecker and run it
// with Run; Healthy, LastError and LastLatency may be called from any
// goroutine.
type Checker struct {
	prober Prober
	spec   Spec
	target Target
	events chan<- Event
	clock  Clock

	// Owned by Run.
	passes, fails int // consecutive

	mu          sync.Mutex
	healthy     bool
	lastErr     string
	lastLatency time.Duration
}

// NewChecker returns a checker that probes t with p according to s
// (defaults applied) and sends each state change on events (nil: none).
// initial is the state before the first probe. The engine starts backends as
// up: after a restart of the balancer, backends that were serving must keep
// their traffic while the first probes run (Fall of them are needed to take
// a backend down), rather than all be dropped at once until Rise probes have
// passed. clock nil means real time. NewChecker does not validate s (give
// it the spec NewProber accepted); a non-positive Interval or Timeout is
// taken as the default and Rise or Fall below 1 as 1.
func NewChecker(p Prober, s Spec, t Target, initial bool, events chan<- Event, clock Clock) *Checker {
	if clock == nil {
		clock = systemClock{}
	}
	s = s.WithDefaults()
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	s.Rise, s.Fall = max(s.Rise, 1), max(s.Fall, 1)
	return &Checker{prober: p, spec: s, target: t, events: events, clock: clock, healthy: initial}
}

// Run probes until ctx is done. The first probe starts after a random delay
// in [0, Interval), and each next one Interval ±10% after the start of the
// previous one (at once if the previous probe took longer), so the checks of
// many backends spread out instead of firing together. At most one probe is
// in flight; its context ends after Timeout. Run sends each state change on
// the events channel, blocking until it is taken or ctx is done, and never
// sends after it returns. Call Run at most once at a time.
func (c *Checker) Run(ctx context.Context) {
	wait := time.Duration(rand.Int64N(int64(c.spec.Interval)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(wait):
		}
		start := c.clock.Now()
		err := c.probe(ctx)
		if ctx.Err() != nil {
			return // the result of an interrupted probe means nothing
		}
		end := c.clock.Now()
		ev, changed := c.record(err, end.Sub(start), end)
		if changed && c.events != nil {
			select {
			case c.events <- ev:
			case <-ctx.Done():
				return
			}
		}
		wait = c.jitter() - c.clock.Now().Sub(start)
	}
}

// jitter returns Interval ±10%, uniformly.
func (c *Checker) jitter() time.Duration {
	i := int64(c.spec.Interval)
	return time.Duration(i - i/10 + rand.Int64N(i/5+1))
}

// probe runs one probe whose context ends after Timeout on the clock.
func (c *Checker) probe(ctx context.Context) error {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := c.clock.After(c.spec.Timeout)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-timeout:
			cancel(errProbeTimeout)
		case <-done:
		}
	}()
	return c.prober.Probe(pctx, c.target)
}

// record counts a probe's result and returns the event if the state changes.
func (c *Checker) record(err error, latency time.Duration, at time.Time) (Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastLatency = latency
	if err == nil {
		c.lastErr = ""
		c.passes++
		c.fails = 0
		if c.healthy || c.passes < c.spec.Rise {
			return Event{}, false
		}
		c.healthy = true
		return Event{Target: c.target, Healthy: true, At: at,
			Reason: fmt.Sprintf("%s ok (%d of %d passed)", c.spec.name(c.target), c.passes, c.spec.Rise)}, true
	}
	c.lastErr = err.Error()
	c.fails++
	c.passes = 0
	if !c.healthy || c.fails < c.spec.Fall {
		return Event{}, false
	}
	c.healthy = false
	return Event{Target: c.target, Healthy: false, At: at,
		Reason: fmt.Sprintf("%s (%d of %d failed)", c.lastErr, c.fails, c.spec.Fall)}, true
}

// Healthy reports the current state.
func (c *Checker) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.healthy
}

// LastError returns the last probe's failure, or "" if it passed or none ran.
func (c *Checker) LastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// LastLatency returns how long the last probe took, on the Checker's clock.
// A passing IPv4 DSR-path probe always takes the whole Timeout (see the
// package doc).
func (c *Checker) LastLatency() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastLatency
}
