package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tier 1: the checker's state machine on a fake clock with a scripted prober.

// fakeClock moves only when told. Every After call is reported on afters, in
// order, so a test can wait for the checker to go to sleep.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	afters chan time.Duration
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

var _ Clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), afters: make(chan time.Duration, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	}
	c.afters <- d
	return ch
}

// Advance moves the clock on by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			keep = append(keep, t)
			continue
		}
		t.c <- c.now
	}
	c.timers = keep
}

// scriptProber hands every probe to the test, which answers it.
type scriptProber struct {
	calls               chan probeCall
	inflight, maxFlight atomic.Int32
	total               atomic.Int32 // Probe calls so far
}

type probeCall struct {
	ctx   context.Context
	reply chan error
}

func (p *scriptProber) Probe(ctx context.Context, t Target) error {
	p.total.Add(1)
	n := p.inflight.Add(1)
	defer p.inflight.Add(-1)
	for {
		m := p.maxFlight.Load()
		if n <= m || p.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	c := probeCall{ctx: ctx, reply: make(chan error)}
	p.calls <- c
	return <-c.reply
}

// watchdog bounds waits for events that must come, so a broken checker
// fails the test instead of hanging it. It is not a timing threshold.
const watchdog = 30 * time.Second

type harness struct {
	t      *testing.T
	spec   Spec
	clock  *fakeClock
	prober *scriptProber
	events chan Event
	c      *Checker
	cancel context.CancelFunc
	done   chan struct{}
	sleep  time.Duration // the checker's pending sleep, once it went to sleep
	asleep bool
}

var testTarget = Target{Addr: netip.MustParseAddr("127.0.0.1"), Port: 80}

func newHarness(t *testing.T, s Spec, initial bool, events chan Event) *harness {
	t.Helper()
	h := &harness{t: t, spec: s.WithDefaults(), clock: newFakeClock(), prober: &scriptProber{calls: make(chan probeCall)}, events: events}
	h.c = NewChecker(h.prober, s, testTarget, initial, events, h.clock)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { defer close(h.done); h.c.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop cancels Run and waits for it to return, which it must do even while
// a Probe call hangs.
func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(watchdog):
		h.t.Error("Run did not return after its context was cancelled")
	}
}

// nextAfter waits for the checker's next call of Clock.After.
func (h *harness) nextAfter() time.Duration {
	h.t.Helper()
	select {
	case d := <-h.clock.afters:
		return d
	case <-time.After(watchdog):
		h.t.Fatal("the checker never called Clock.After")
		return 0
	}
}

// waitAsleep waits until the checker sleeps before its next probe.
func (h *harness) waitAsleep() time.Duration {
	h.t.Helper()
	if !h.asleep {
		h.sleep, h.asleep = h.nextAfter(), true
	}
	return h.sleep
}

// start wakes the checker and returns its next probe, unanswered.
func (h *harness) start() probeCall {
	h.t.Helper()
	h.clock.Advance(h.waitAsleep())
	h.asleep = false
	if d := h.nextAfter(); d != h.spec.Timeout {
		h.t.Fatalf("probe timeout registered as %v, want %v", d, h.spec.Timeout)
	}
	if d := h.nextAfter(); d != 2*h.spec.Timeout {
		h.t.Fatalf("probe abandonment registered after %v, want %v", d, 2*h.spec.Timeout)
	}
	select {
	case c := <-h.prober.calls:
		return c
	case <-time.After(watchdog):
		h.t.Fatal("the checker never probed")
		return probeCall{}
	}
}

// skip wakes the checker for a probe that must not start, because an
// abandoned one is still running, and waits until it has counted it as
// failed and gone to sleep again.
func (h *harness) skip() {
	h.t.Helper()
	h.clock.Advance(h.waitAsleep())
	h.asleep = false
	// A started probe would register its timeout before its goroutine
	// exists: the next After must be the sleep.
	if d := h.nextAfter(); d == h.spec.Timeout {
		h.t.Fatal("a probe started while an abandoned one was still running")
	} else {
		h.sleep, h.asleep = d, true
	}
	select {
	case <-h.prober.calls:
		h.t.Fatal("Probe called while an abandoned call was still running")
	default:
	}
}

// step runs one probe with the given result and waits until the checker has
// recorded it (and queued any event): that is when it goes to sleep again.
func (h *harness) step(result error) {
	h.t.Helper()
	h.start().reply <- result
	h.waitAsleep()
}

func (h *harness) drain() []Event {
	var evs []Event
	for {
		select {
		case ev := <-h.events:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

func TestRiseFallExactCounts(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 3}
	h := newHarness(t, s, true, make(chan Event, 100))
	fail := func(i int) error { return fmt.Errorf("tcp connect 127.0.0.1:80: failure %d", i) }

	h.step(fail(1))
	h.step(fail(2))
	if evs := h.drain(); len(evs) != 0 || !h.c.Healthy() {
		t.Fatalf("after 2 of 3 failures: events %v, healthy %v; want none, true", evs, h.c.Healthy())
	}
	if got := h.c.LastError(); got != fail(2).Error() {
		t.Fatalf("LastError = %q", got)
	}
	h.step(fail(3))
	evs := h.drain()
	if len(evs) != 1 || evs[0].Healthy || h.c.Healthy() {
		t.Fatalf("after 3 of 3 failures: events %+v, healthy %v; want one down event", evs, h.c.Healthy())
	}
	if want := "tcp connect 127.0.0.1:80: failure 3 (3 of 3 failed)"; evs[0].Reason != want {
		t.Fatalf("reason %q, want %q", evs[0].Reason, want)
	}
	if evs[0].Target != testTarget || !evs[0].At.Equal(h.clock.Now()) {
		t.Fatalf("event target %+v at %v, want %+v at %v", evs[0].Target, evs[0].At, testTarget, h.clock.Now())
	}

	h.step(nil)
	if evs := h.drain(); len(evs) != 0 || h.c.Healthy() {
		t.Fatalf("after 1 of 2 passes: events %v, healthy %v", evs, h.c.Healthy())
	}
	if h.c.LastError() != "" {
		t.Fatalf("LastError after a pass = %q, want empty", h.c.LastError())
	}
	h.step(nil)
	evs = h.drain()
	if len(evs) != 1 || !evs[0].Healthy || !h.c.Healthy() {
		t.Fatalf("after 2 of 2 passes: events %+v; want one up event", evs)
	}
	if want := "tcp connect 127.0.0.1:80 ok (2 of 2 passed)"; evs[0].Reason != want {
		t.Fatalf("reason %q, want %q", evs[0].Reason, want)
	}

	// Interrupted streaks change nothing: 2 failures, a pass, 2 failures.
	for _, err := range []error{fail(4), fail(5), nil, fail(6), fail(7), nil} {
		h.step(err)
	}
	if evs := h.drain(); len(evs) != 0 || !h.c.Healthy() {
		t.Fatalf("interrupted failure streaks: events %+v, healthy %v", evs, h.c.Healthy())
	}
}

func TestInitialDown(t *testing.T) {
	s := Spec{Kind: KindHTTP, Path: "/healthz", Interval: time.Second, Rise: 3, Fall: 2}
	h := newHarness(t, s, false, make(chan Event, 100))
	if h.c.Healthy() {
		t.Fatal("initial state not kept")
	}
	h.step(nil)
	h.step(nil)
	if evs := h.drain(); len(evs) != 0 {
		t.Fatalf("events after 2 of 3 passes: %+v", evs)
	}
	h.step(nil)
	evs := h.drain()
	if len(evs) != 1 || evs[0].Reason != "http GET /healthz ok (3 of 3 passed)" {
		t.Fatalf("events %+v", evs)
	}
}

func TestFlapNoStateChange(t *testing.T) {
	for _, tc := range []struct {
		rise, fall int
		initial    bool
		want       int // events over 40 alternating probes
	}{
		{2, 2, true, 0},
		{2, 2, false, 0},
		{2, 3, true, 0},
		{3, 2, false, 0},
		// The control: with single-probe thresholds every probe flips it.
		{1, 1, true, 40},
	} {
		t.Run(fmt.Sprintf("rise%d-fall%d-initial-%v", tc.rise, tc.fall, tc.initial), func(t *testing.T) {
			s := Spec{Kind: KindTCP, Interval: time.Second, Rise: tc.rise, Fall: tc.fall}
			h := newHarness(t, s, tc.initial, make(chan Event, 100))
			for i := range 40 {
				var err error
				if (i%2 == 0) == tc.initial { // the first probe contradicts the initial state
					err = errors.New("down")
				}
				h.step(err)
			}
			if got := len(h.drain()); got != tc.want {
				t.Fatalf("%d events, want %d", got, tc.want)
			}
		})
	}
}

func TestProbeBoundedByTimeout(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 300 * time.Millisecond, Fall: 1}
	h := newHarness(t, s, true, make(chan Event, 100))
	call := h.start()
	h.clock.Advance(s.Timeout)
	select {
	case <-call.ctx.Done():
	case <-time.After(watchdog):
		t.Fatal("probe context not ended after Timeout on the checker's clock")
	}
	if !errors.Is(context.Cause(call.ctx), errProbeTimeout) {
		t.Fatalf("probe context cause %v, want errProbeTimeout", context.Cause(call.ctx))
	}
	call.reply <- fmt.Errorf("tcp connect 127.0.0.1:80: %w", context.Cause(call.ctx))
	h.waitAsleep()
	if got := h.c.LastLatency(); got != s.Timeout {
		t.Fatalf("LastLatency %v, want %v", got, s.Timeout)
	}
	if evs := h.drain(); len(evs) != 1 || !strings.Contains(evs[0].Reason, "timed out (1 of 1 failed)") {
		t.Fatalf("events %+v", evs)
	}
}

func TestOneProbeInFlight(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 5 * time.Second}
	h := newHarness(t, s, true, make(chan Event, 100))
	slow := h.start()
	// Eight intervals pass while the probe runs, short of its abandonment
	// at 2 × Timeout.
	for range 8 {
		h.clock.Advance(s.Interval)
	}
	select {
	case <-h.prober.calls:
		t.Fatal("a second probe started while the first was in flight")
	case d := <-h.clock.afters:
		t.Fatalf("the checker scheduled something (%v) while its probe was in flight", d)
	default:
	}
	slow.reply <- nil
	// The probe overran its interval: the next one starts at once.
	if d := h.waitAsleep(); d > 0 {
		t.Fatalf("sleep after an overrunning probe %v, want <= 0", d)
	}
	if got := h.c.LastLatency(); got != 8*s.Interval {
		t.Fatalf("LastLatency %v, want %v", got, 8*s.Interval)
	}
	for range 5 {
		h.step(nil)
	}
	if m := h.prober.maxFlight.Load(); m != 1 {
		t.Fatalf("%d probes in flight at once, want 1", m)
	}
}

// A Probe call that never returns, not even when its context ends, is
// counted as failed after 2 × Timeout; the probes due while it still runs
// are counted as failed without being started, so the backend goes down
// after Fall probes. Its result, when it comes at last, changes nothing.
func TestStuckProbeFailsOnSchedule(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 300 * time.Millisecond, Rise: 2, Fall: 3}
	h := newHarness(t, s, true, make(chan Event, 100))

	stuck := h.start()
	stuckAt := h.clock.Now()
	h.clock.Advance(s.Timeout)
	select {
	case <-stuck.ctx.Done():
	case <-time.After(watchdog):
		t.Fatal("probe context not ended after Timeout")
	}
	// The grace: one more Timeout, on the checker's clock.
	h.clock.Advance(s.Timeout - time.Millisecond)
	select {
	case d := <-h.clock.afters:
		t.Fatalf("the checker went on (After %v) before 2 × Timeout", d)
	default:
	}
	h.clock.Advance(time.Millisecond)
	h.waitAsleep()
	if want := "tcp connect 127.0.0.1:80: probe did not return within 600ms (timeout 300ms)"; h.c.LastError() != want {
		t.Fatalf("LastError %q, want %q", h.c.LastError(), want)
	}
	if got := h.c.LastLatency(); got != 2*s.Timeout {
		t.Fatalf("LastLatency %v, want %v", got, 2*s.Timeout)
	}
	// The schedule goes on from the abandoned probe's start.
	if d := h.waitAsleep(); d < s.Interval-s.Interval/10-2*s.Timeout || d > s.Interval+s.Interval/10-2*s.Timeout {
		t.Fatalf("sleep after the abandoned probe %v, want Interval ±10%% less %v", d, 2*s.Timeout)
	}
	if evs := h.drain(); len(evs) != 0 || !h.c.Healthy() {
		t.Fatalf("after 1 of 3 failures: events %+v, healthy %v", evs, h.c.Healthy())
	}

	h.skip()
	if evs := h.drain(); len(evs) != 0 || !h.c.Healthy() {
		t.Fatalf("after 2 of 3 failures: events %+v, healthy %v", evs, h.c.Healthy())
	}
	h.skip()
	evs := h.drain()
	if len(evs) != 1 || evs[0].Healthy || h.c.Healthy() {
		t.Fatalf("after 3 of 3 failures: events %+v, healthy %v; want one down event", evs, h.c.Healthy())
	}
	ran := h.clock.Now().Sub(stuckAt)
	want := fmt.Sprintf("tcp connect 127.0.0.1:80: not started: the previous probe is still running after %v (3 of 3 failed)", ran)
	if evs[0].Reason != want || !evs[0].At.Equal(h.clock.Now()) {
		t.Fatalf("event %+v, want reason %q at %v", evs[0], want, h.clock.Now())
	}
	if got := h.c.LastLatency(); got != ran {
		t.Fatalf("LastLatency %v, want %v: how long the stuck probe has run", got, ran)
	}

	// Many more intervals pass: still one Probe call, no further events.
	for range 20 {
		h.skip()
	}
	if evs := h.drain(); len(evs) != 0 {
		t.Fatalf("events while staying down: %+v", evs)
	}

	// The stuck call returns a pass at last: discarded. Were it counted,
	// the next pass would be the second of Rise 2 and bring the backend up.
	stuck.reply <- nil
	h.waitReturned()
	h.step(nil)
	if evs := h.drain(); len(evs) != 0 || h.c.Healthy() {
		t.Fatalf("after the late pass and 1 of 2 passes: events %+v, healthy %v", evs, h.c.Healthy())
	}
	h.step(nil)
	if evs := h.drain(); len(evs) != 1 || !evs[0].Healthy || evs[0].Reason != "tcp connect 127.0.0.1:80 ok (2 of 2 passed)" {
		t.Fatalf("after 2 of 2 passes: events %+v; want one up event", evs)
	}
	if m, n := h.prober.maxFlight.Load(), h.prober.total.Load(); m != 1 || n != 3 {
		t.Fatalf("%d probes in flight at once, %d in all; want 1, 3", m, n)
	}
}

// A late result is discarded whatever it says: a failure that comes back
// after the probe was abandoned does not count a second time.
func TestStuckProbeLateFailureNotCounted(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 2}
	h := newHarness(t, s, true, make(chan Event, 100))
	stuck := h.start()
	h.clock.Advance(2 * s.Timeout)
	h.waitAsleep() // 1 of 2 failed: the abandoned probe
	stuck.reply <- errors.New("tcp connect 127.0.0.1:80: late failure")
	h.waitReturned()
	// Counted, the late failure would be the second of Fall 2.
	h.step(nil)
	h.step(errors.New("down"))
	if evs := h.drain(); len(evs) != 0 || !h.c.Healthy() {
		t.Fatalf("events %+v, healthy %v; want none, up", evs, h.c.Healthy())
	}
	if h.c.LastError() != "down" {
		t.Fatalf("LastError %q", h.c.LastError())
	}
}

// A prober that hangs on every call never has more than one call out,
// however long it runs; each call that returns at last lets one more start.
func TestStuckProbesAtMostOneOutstanding(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 200 * time.Millisecond, Fall: 1}
	h := newHarness(t, s, true, make(chan Event, 100))
	for range 5 {
		stuck := h.start()
		h.clock.Advance(2 * s.Timeout)
		h.waitAsleep()
		for range 3 {
			h.skip()
		}
		if n := h.prober.inflight.Load(); n != 1 {
			t.Fatalf("%d Probe calls outstanding, want 1", n)
		}
		stuck.reply <- nil // late, discarded
		h.waitReturned()
	}
	// 20 probes fell due; only the 5 that found no call outstanding started.
	if m, n := h.prober.maxFlight.Load(), h.prober.total.Load(); m != 1 || n != 5 {
		t.Fatalf("%d probes in flight at once, %d in all; want 1, 5", m, n)
	}
	// One down event, at the first abandoned probe; the late passes never
	// brought it up.
	if evs := h.drain(); len(evs) != 1 || evs[0].Healthy || h.c.Healthy() {
		t.Fatalf("events %+v, healthy %v; want one down event", evs, h.c.Healthy())
	}
}

// Stopping a checker whose Probe call hangs returns at once; the call's
// goroutine ends when Probe returns, and no other goroutine stays behind.
func TestRunStopsWithStuckProbe(t *testing.T) {
	for _, abandoned := range []bool{false, true} {
		t.Run(fmt.Sprintf("abandoned-%v", abandoned), func(t *testing.T) {
			before := runtime.NumGoroutine()
			s := Spec{Kind: KindTCP, Interval: time.Second, Timeout: 100 * time.Millisecond}
			h := newHarness(t, s, true, make(chan Event, 100))
			stuck := h.start()
			if abandoned {
				h.clock.Advance(2 * s.Timeout)
				h.waitAsleep()
			}
			h.cancel()
			select {
			case <-h.done:
			case <-time.After(watchdog):
				t.Fatal("Run did not return while its probe hung")
			}
			select {
			case <-stuck.ctx.Done():
			default:
				t.Fatal("the hung probe's context did not end with Run")
			}
			if n := h.prober.inflight.Load(); n != 1 {
				t.Fatalf("%d Probe calls outstanding, want the hung one", n)
			}
			stuck.reply <- nil
			h.waitReturned()
			for deadline := time.Now().Add(watchdog); runtime.NumGoroutine() > before; {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines left, %d before the checker", runtime.NumGoroutine(), before)
				}
				runtime.Gosched()
			}
		})
	}
}

// waitReturned waits until the hung Probe call the test has just answered
// has returned and its result is in for the checker to find at its next
// probe. Call it while the checker sleeps or after Run returned: the
// checker then does not write outstanding.
func (h *harness) waitReturned() {
	h.t.Helper()
	for deadline := time.Now().Add(watchdog); h.prober.inflight.Load() != 0 ||
		(h.c.outstanding != nil && len(h.c.outstanding) == 0); {
		if time.Now().After(deadline) {
			h.t.Fatal("the hung Probe call never returned")
		}
		runtime.Gosched()
	}
}

func TestJitter(t *testing.T) {
	const interval = 10 * time.Second
	s := Spec{Kind: KindTCP, Interval: interval}
	// First probes: uniform in [0, Interval), so spread out.
	firsts := map[time.Duration]bool{}
	for range 100 {
		h := newHarness(t, s, true, nil)
		d := h.waitAsleep()
		if d < 0 || d >= interval {
			t.Fatalf("first probe after %v, want in [0, %v)", d, interval)
		}
		firsts[d] = true
		h.stop()
	}
	if len(firsts) < 90 {
		t.Fatalf("only %d distinct first delays among 100 checkers", len(firsts))
	}
	// Later probes: Interval ±10% after the previous one started.
	h := newHarness(t, s, true, nil)
	nexts := map[time.Duration]bool{}
	for range 100 {
		h.step(nil)
		d := h.waitAsleep()
		if d < interval-interval/10 || d > interval+interval/10 {
			t.Fatalf("next probe after %v, want %v ±10%%", d, interval)
		}
		nexts[d] = true
	}
	if len(nexts) < 90 {
		t.Fatalf("only %d distinct intervals among 100 probes", len(nexts))
	}
}

func TestRunStopsAndNeverSendsAfter(t *testing.T) {
	// Unbuffered and never read: Run blocks on the send until cancelled.
	events := make(chan Event)
	s := Spec{Kind: KindTCP, Interval: time.Second, Fall: 1}
	h := newHarness(t, s, true, events)
	h.start().reply <- errors.New("down")
	// The state changes just before the send, which nothing signals: poll
	// for it, so that cancel finds Run blocked on the send.
	for deadline := time.Now().Add(watchdog); h.c.Healthy(); {
		if time.Now().After(deadline) {
			t.Fatal("the failure was never recorded")
		}
		runtime.Gosched()
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(watchdog):
		t.Fatal("Run blocked on the event send after cancel")
	}
	// Nothing may go on once Run has returned: not the send it was blocked
	// on (left to a goroutine of its own), not a probe (a loop left
	// running). Nothing signals such a goroutine, so it is given a window,
	// with the clock moving on so that any sleep it started ends: a correct
	// Run never sends or probes, whatever the window.
	for end := time.Now().Add(afterWindow); time.Now().Before(end); {
		h.clock.Advance(s.Interval)
		select {
		case ev := <-events:
			t.Fatalf("event after Run returned: %+v", ev)
		case c := <-h.prober.calls:
			c.reply <- nil
			t.Fatal("probe after Run returned")
		case <-time.After(afterWindow / 20):
		}
	}

	// Cancelled while asleep.
	h2 := newHarness(t, s, true, nil)
	h2.waitAsleep()
	h2.cancel()
	select {
	case <-h2.done:
	case <-time.After(watchdog):
		t.Fatal("Run did not return while asleep")
	}
}

// afterWindow is how long a test watches for work a stopped Checker must
// not do. A correct Checker passes whatever its length; a shorter one only
// makes a broken Checker harder to catch on a slow machine.
const afterWindow = 200 * time.Millisecond

// countProber answers at once, passing and failing in turn, so that with
// Rise = Fall = 1 every probe but the first changes the state. It counts the
// calls made with a live context: those are the ones a checker started
// while it ran.
type countProber struct {
	mu    sync.Mutex
	calls int
}

func (p *countProber) Probe(ctx context.Context, t Target) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err() // started as Run returned: not a probe of a running checker
	}
	p.calls++
	if p.calls%2 == 0 {
		return errors.New("down")
	}
	return nil
}

func (p *countProber) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Once Run has returned, the checker neither probes nor sends: on the real
// clock, probing every few milliseconds and sending an event for nearly
// every probe, nothing more happens in many intervals after Run returned.
func TestRunNeverProbesAfterReturn(t *testing.T) {
	s := Spec{Kind: KindTCP, Interval: 5 * time.Millisecond, Timeout: 2 * time.Millisecond, Rise: 1, Fall: 1}
	p := &countProber{}
	events := make(chan Event, 100000)
	c := NewChecker(p, s, testTarget, true, events, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	for deadline := time.Now().Add(watchdog); p.count() < 5 || len(events) < 3; {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("%d probes and %d events before the watchdog", p.count(), len(events))
		}
		time.Sleep(s.Interval)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(watchdog):
		t.Fatal("Run did not return after its context was cancelled")
	}
	// A probe that started before the cancel has been counted: Probe
	// counts under the lock and only with a live context.
	probes, sent := p.count(), len(events)
	time.Sleep(max(afterWindow, 20*s.Interval))
	if n := p.count(); n != probes {
		t.Errorf("%d probes after Run returned (%d before)", n-probes, probes)
	}
	if n := len(events); n != sent {
		t.Errorf("%d events after Run returned (%d before)", n-sent, sent)
	}
}
