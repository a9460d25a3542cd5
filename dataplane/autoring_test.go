package dataplane

import (
	"testing"
	"time"
)

// autoClock drives an autoState through looks at a fixed step and rate.
type autoClock struct {
	t      *testing.T
	a      autoState
	now    int64
	frames uint64
}

// run looks every step for d at rate frames a second, backlogged or not,
// and returns the time of the first look that asks for a move (-1: none),
// recording the move as made.
func (c *autoClock) run(d, step time.Duration, rate float64, backlogged bool) time.Duration {
	start := c.now
	for c.now-start < int64(d) {
		c.now += int64(step)
		c.frames += uint64(rate * step.Seconds())
		if c.a.observe(c.now, c.frames, backlogged) {
			c.a.moved(c.now, c.frames, !c.a.blocks)
			return time.Duration(c.now - start)
		}
	}
	return -1
}

func TestAutoStateMoves(t *testing.T) {
	step := 100 * time.Microsecond
	c := &autoClock{t: t, now: int64(time.Hour)}

	// Keeping up: no move, however long and fast.
	if got := c.run(3*time.Second, step, 400e3, false); got != -1 {
		t.Fatalf("moved after %v without a backlog", got)
	}
	// Backlogged looks broken by one that is not: the run starts again.
	c.run(4*time.Millisecond, step, 400e3, true)
	c.run(step, step, 400e3, false)
	if got := c.run(4*time.Millisecond, step, 400e3, true); got != -1 {
		t.Fatalf("moved after an interrupted backlog (%v)", got)
	}
	// Falling behind for autoBacklogFor: to blocks, after 5 ms and not before.
	c.run(step, step, 400e3, false)
	got := c.run(time.Second, step, 400e3, true)
	if got < autoBacklogFor || got > autoBacklogFor+2*step || !c.a.blocks {
		t.Fatalf("moved to blocks after %v of backlog (blocks %v), want %v", got, c.a.blocks, autoBacklogFor)
	}
	if c.a.rateIn < 390e3 || c.a.rateIn > 410e3 {
		t.Fatalf("rate when it moved: %.0f, want 400k", c.a.rateIn)
	}
	// On blocks: the same rate, or a dip of two windows, keeps it there.
	if got := c.run(2*time.Second, step, 400e3, false); got != -1 {
		t.Fatalf("left blocks after %v at the same rate", got)
	}
	c.run(2*autoWindow, step, 100e3, false)
	if got := c.run(time.Second, step, 300e3, false); got != -1 {
		t.Fatalf("left blocks after a dip (%v)", got)
	}
	// The rate well down for three windows: back to slots, not a probe.
	got = c.run(2*time.Second, step, 200e3, false)
	if got < autoLowWindows*autoWindow-autoWindow || got > (autoLowWindows+1)*autoWindow || c.a.blocks || c.a.probe {
		t.Fatalf("left blocks after %v at half the rate (blocks %v, probe %v), want about %v", got, c.a.blocks, c.a.probe, autoLowWindows*autoWindow)
	}
	// Within autoDwell of that, a backlog does not move it.
	if got := c.run(autoDwell/2, step, 400e3, true); got != -1 {
		t.Fatalf("moved to blocks %v after coming back", got)
	}
	if got := c.run(autoDwell, step, 400e3, true); got == -1 || !c.a.blocks {
		t.Fatal("still on slots, backlogged, after the dwell")
	}
	// Saturated on blocks: after autoProbeAfter it tries slots, and comes
	// back as soon as it falls behind again (no dwell after a probe).
	got = c.run(2*autoProbeAfter, step, 400e3, false)
	if got < autoProbeAfter || got > autoProbeAfter+step || c.a.blocks || !c.a.probe {
		t.Fatalf("probe after %v (blocks %v, probe %v), want %v", got, c.a.blocks, c.a.probe, autoProbeAfter)
	}
	if got := c.run(time.Second, step, 400e3, true); got < autoBacklogFor || got > autoBacklogFor+2*step || !c.a.blocks {
		t.Fatalf("back on blocks %v after the probe found a backlog (blocks %v), want %v", got, c.a.blocks, autoBacklogFor)
	}
}
