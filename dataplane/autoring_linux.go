package dataplane

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// autoRing is worker idx's pair of rings under RingConfig.Auto: its ring of
// slots and its ring of blocks, which shares the slots' transmit ring. The
// fanout group holds every worker's ring of slots (member i for worker i),
// then every worker's ring of blocks (member n+i); the group's program says
// which of its two rings the kernel fills for each worker.
type autoRing struct {
	idx           int
	slots, blocks *ring
	st            autoState
	force         atomic.Bool // tests: move at the next look, whatever st says
	hold          atomic.Bool // tests: move only when forced
}

// autoFanoutProgram is the fanout program that gives each of len(onBlocks)
// workers' frames to its ring of blocks (onBlocks[i]) or of slots. With
// cpus (FanoutCPU, several workers) a frame is the worker's that
// cpuFanoutProgram would give it to; with one worker every frame is its.
func autoFanoutProgram(cpus []int, onBlocks []bool) []bpf.Instruction {
	n := len(onBlocks)
	member := func(i int) uint32 {
		if onBlocks[i] {
			return uint32(n + i)
		}
		return uint32(i)
	}
	if len(cpus) == 0 || n == 1 {
		return []bpf.Instruction{bpf.RetConstant{Val: member(0)}}
	}
	return cpuMemberProgram(cpus, member)
}

// active returns the ring the kernel fills.
func (a *autoRing) active() *ring {
	if a.st.blocks {
		return a.blocks
	}
	return a.slots
}

// autoLook lets the worker's autoState look at its ring at now (busy: it
// just took a batch from it) and moves to the other ring if it says so.
func (d *Dataplane) autoLook(w *Worker, a *autoRing, now int64, busy bool) {
	backlogged := busy && !a.st.blocks && a.slots.backlogged()
	move := !a.hold.Load() && a.st.observe(now, w.c.received, backlogged)
	if move || a.force.CompareAndSwap(true, false) {
		d.autoMove(w, a, now)
	}
}

// autoMove has the kernel fill the worker's other ring, then takes every
// frame left in the one it left before the worker goes on with the other, so
// that each flow's frames keep their order. Replacing the fanout program
// returns once no CPU can still be writing to the old ring (it waits for an
// RCU grace period); meanwhile new frames wait in the other ring.
func (d *Dataplane) autoMove(w *Worker, a *autoRing, now int64) {
	to := !a.st.blocks
	old := a.active()
	// The program is the whole group's: the other workers' choices stay
	// as they are in it, and their moves wait for this one.
	d.sys.autoMu.Lock()
	d.sys.autoOn[a.idx] = to
	err := attachBPF(a.slots.fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, autoFanoutProgram(d.sys.autoCPUs, d.sys.autoOn))
	if err != nil {
		d.sys.autoOn[a.idx] = !to
	}
	d.sys.autoMu.Unlock()
	if err != nil {
		d.cfg.Log.Warn("ring auto: could not switch rings; trying again in a second", "interface", d.ifi.Name, "worker", a.idx, "to_blocks", to, "err", err)
		a.st.since, a.st.backlogFrom = now, 0
		return
	}
	d.drainRing(w, old)
	w.c.ringMoves++
	w.c.onBlocks = to
	done, _ := d.clock()
	rate := a.st.lastRate
	a.st.moved(done, w.c.received, to)
	if to {
		d.cfg.Log.Info("ring auto: the worker fell behind on its ring of slots; the kernel now fills its ring of blocks",
			"interface", d.ifi.Name, "worker", a.idx, "pps", int64(a.st.rateIn), "switch", time.Duration(done-now).Round(time.Microsecond))
	} else {
		reason := "the rate dropped"
		if a.st.probe {
			reason = "a try after " + autoProbeAfter.String()
		}
		d.cfg.Log.Info("ring auto: back to the ring of slots", "interface", d.ifi.Name, "worker", a.idx, "reason", reason,
			"pps", int64(rate), "switch", time.Duration(done-now).Round(time.Microsecond))
	}
}

// drainRing forwards every frame left in r, which the kernel no longer
// fills. A block it was filling is handed over by the block timeout.
func (d *Dataplane) drainRing(w *Worker, r *ring) {
	for r.ready() {
		d.processBatch(w, r)
	}
	for deadline := time.Now().Add(50 * blockTimeoutMs * time.Millisecond); r.bsize > 0 && r.pending() && time.Now().Before(deadline); {
		r.wait(1)
		for r.ready() {
			d.processBatch(w, r)
		}
	}
}

// backlogged reports whether the slot an eighth of the ring ahead of the
// worker is already filled.
func (r *ring) backlogged() bool {
	i := r.cur + r.frames/8
	if i >= r.frames {
		i -= r.frames
	}
	return atomic.LoadUint32(&slotHdr(r.slot(i)).Status)&unix.TP_STATUS_USER != 0
}

// pending reports whether the current block of a ring of blocks that the
// kernel no longer fills still holds frames: handed over, or not yet (its
// timeout will).
func (r *ring) pending() bool {
	if r.ready() {
		return true
	}
	bd := (*unix.TpacketHdrV1)(unsafe.Pointer(&r.mem[r.bcur*r.bsize+blockStatusOff]))
	return atomic.LoadUint32(&bd.Num_pkts) > 0
}
