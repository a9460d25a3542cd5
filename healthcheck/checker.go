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
	// outstanding receives the result of an abandoned Probe call that has
	// not been seen to return (nil: none), started at outstandingSince.
	outstanding      <-chan error
	outstandingSince time.Time

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
// many backends spread out instead of firing together. Each probe's context
// ends after Timeout. Run sends each state change on the events channel,
// blocking until it is taken or ctx is done, and never sends after it
// returns. Call Run at most once at a time.
//
// A probe that has not returned a Timeout after its context ended (2 ×
// Timeout after it started) is abandoned: Run counts it as failed ("tcp
// connect 10.0.0.12:80: probe did not return within 2s (timeout 1s)") and
// goes on with its schedule. Until the abandoned Probe call returns, Run
// starts no other: each probe that falls due meanwhile is counted as failed
// at once ("... not started: the previous probe is still running after
// 3s"). So at most one Probe call per Checker is ever outstanding, and one
// that hangs takes the backend down after Fall probes as a failing one
// would. The abandoned call's result, when it comes, is discarded. Run
// returns when ctx is done even if a Probe call has not returned; that call's
// goroutine ends when Probe returns, and a later Run of the same Checker
// starts no probe until it has.
func (c *Checker) Run(ctx context.Context) {
	wait := time.Duration(rand.Int64N(int64(c.spec.Interval)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(wait):
		}
		start := c.clock.Now()
		latency, err := c.probe(ctx, start)
		if ctx.Err() != nil {
			return // the result of an interrupted probe means nothing
		}
		ev, changed := c.record(err, latency, c.clock.Now())
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

// probe runs the probe that is due at start and returns how long it took
// and its result. Its context ends after Timeout on the clock; if Probe has
// not returned a Timeout later, probe abandons it and fails. While an
// abandoned Probe call has not returned, probe starts none and fails at
// once, with the time the outstanding call has run so far as its latency.
func (c *Checker) probe(ctx context.Context, start time.Time) (time.Duration, error) {
	if c.outstanding != nil {
		select {
		case <-c.outstanding: // returned at last; its result is discarded
			c.outstanding = nil
		default:
			ran := start.Sub(c.outstandingSince)
			return ran, fmt.Errorf("%s: not started: the previous probe is still running after %v",
				c.spec.name(c.target), ran)
		}
	}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := c.clock.After(c.spec.Timeout)
	abandon := c.clock.After(c.abandonAfter())
	// Buffered, so that the goroutine ends when Probe returns even if
	// nobody waits for the result any more.
	result := make(chan error, 1)
	go func() { result <- c.prober.Probe(pctx, c.target) }()
	for {
		select {
		case err := <-result:
			return c.clock.Now().Sub(start), err
		case <-timeout:
			timeout = nil
			cancel(errProbeTimeout)
		case <-abandon:
			select {
			case err := <-result: // a result that is in is never discarded
				return c.clock.Now().Sub(start), err
			default:
			}
			cancel(errProbeTimeout)
			c.outstanding, c.outstandingSince = result, start
			return c.clock.Now().Sub(start), fmt.Errorf("%s: probe did not return within %v (timeout %v)",
				c.spec.name(c.target), c.abandonAfter(), c.spec.Timeout)
		case <-ctx.Done():
			// Run returns; the call ends soon with its context, if it heeds
			// it. A later Run must not start a second one beside it.
			c.outstanding, c.outstandingSince = result, start
			return 0, ctx.Err()
		}
	}
}

// abandonAfter is how long after its start a probe that has not returned is
// counted as failed: its Timeout plus a grace of another Timeout for a
// prober that heeds its context late. Probers bound themselves by Timeout,
// so this is reached only by a Probe call that is stuck, such as a netlink
// call waiting for the kernel's rtnl lock.
func (c *Checker) abandonAfter() time.Duration {
	return 2 * c.spec.Timeout
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
// package doc). An abandoned probe took 2 × Timeout; for a probe not started
// because an abandoned one is still running, LastLatency is how long that
// one has run.
func (c *Checker) LastLatency() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastLatency
}
