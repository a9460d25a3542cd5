package dataplane

import "time"

// The switch of RingConfig.Auto between the worker's two rings.
const (
	// autoBacklogFor is how long a worker on its ring of slots must find the
	// slot autoBacklogSlots ahead of it already filled before it moves to
	// the ring of blocks: it is falling behind.
	autoBacklogFor = 5 * time.Millisecond
	// autoWindow is the span over which the worker's rate is measured.
	autoWindow = 100 * time.Millisecond
	// On the ring of blocks, autoLowWindows windows in a row at less than
	// autoLowShare of the rate it had when it moved there take the worker
	// back to the ring of slots: the load has dropped.
	autoLowShare   = 0.6
	autoLowWindows = 3
	// autoProbeAfter is how long the worker stays on the ring of blocks
	// before it tries the ring of slots again (and comes back at once if it
	// falls behind again): a move made because of a hiccup (the worker
	// preempted) rather than the load must not last.
	autoProbeAfter = 10 * time.Second
	// autoDwell is the least time on the ring of slots, after a move back
	// that was not a probe, before the next move to blocks.
	autoDwell = time.Second
)

// autoState decides, from what a worker sees of its own backlog and rate,
// which of its two rings the kernel should fill. It is the worker's own,
// and does no I/O.
type autoState struct {
	blocks      bool  // the kernel fills the ring of blocks
	since       int64 // monotonic ns of the last move
	probe       bool  // the last move to slots was a probe
	backlogFrom int64 // on slots: start of the current run of backlogged looks, 0 if none

	winStart  int64  // the current rate window
	winFrames uint64 // frames received when it started
	lastRate  float64
	rateIn    float64 // frames a second in the last window before the move to blocks
	low       int     // windows in a row below autoLowShare × rateIn
}

// observe takes a look at time now (monotonic ns): the worker has received
// frames so far and, on the ring of slots, is backlogged or not. It reports
// whether the worker should move to the other ring; the caller then moves
// and calls moved.
func (a *autoState) observe(now int64, frames uint64, backlogged bool) (move bool) {
	if a.winStart == 0 {
		a.winStart, a.winFrames = now, frames
	}
	windowEnded := false
	if dt := now - a.winStart; dt >= int64(autoWindow) {
		a.lastRate = float64(frames-a.winFrames) * 1e9 / float64(dt)
		a.winStart, a.winFrames = now, frames
		windowEnded = true
	}
	if !a.blocks {
		if !backlogged {
			a.backlogFrom = 0
			return false
		}
		if a.backlogFrom == 0 {
			a.backlogFrom = now
		}
		dwell := int64(autoDwell)
		if a.probe {
			dwell = 0
		}
		return now-a.backlogFrom >= int64(autoBacklogFor) && now-a.since >= dwell
	}
	if now-a.since >= int64(autoProbeAfter) {
		return true
	}
	if windowEnded {
		if a.lastRate < autoLowShare*a.rateIn {
			a.low++
		} else {
			a.low = 0
		}
	}
	return a.low >= autoLowWindows
}

// moved records a move made at now, with frames received so far (to blocks
// if blocks).
func (a *autoState) moved(now int64, frames uint64, blocks bool) {
	if blocks {
		a.rateIn = a.lastRate
		if dt := now - a.winStart; a.winStart != 0 && dt >= int64(autoWindow)/10 {
			a.rateIn = max(a.rateIn, float64(frames-a.winFrames)*1e9/float64(dt))
		}
	} else {
		a.probe = now-a.since >= int64(autoProbeAfter)
	}
	a.blocks, a.since, a.backlogFrom, a.low = blocks, now, 0, 0
}
