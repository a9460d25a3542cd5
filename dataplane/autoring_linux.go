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
	// A move under way (to the ring other returns): a goroutine of its
	// own replaces the group's program and reports on switching when the
	// kernel is done; moveAt is when it began.
	switching  chan error
	moveAt     int64
	force      atomic.Bool  // tests: move at the next look, whatever st says
	hold       atomic.Bool  // tests: move only when forced
	slowSwitch atomic.Int64 // tests: ns the replacement takes beyond the kernel's (a slow grace period)
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

// active returns the ring the kernel fills (during a move: the one it
// filled before).
func (a *autoRing) active() *ring {
	if a.st.blocks {
		return a.blocks
	}
	return a.slots
}

// other returns the ring the kernel does not fill (during a move: the one
// it fills next).
func (a *autoRing) other() *ring {
	if a.st.blocks {
		return a.slots
	}
	return a.blocks
}

// autoLook lets the worker's autoState look at its ring at now (busy: it
// just took a batch from it) and starts a move to the other ring if it says
// so.
func (d *Dataplane) autoLook(w *Worker, a *autoRing, now int64, busy bool) {
	backlogged := busy && !a.st.blocks && a.slots.backlogged()
	move := !a.hold.Load() && a.st.observe(now, w.c.received, backlogged)
	if move || a.force.CompareAndSwap(true, false) {
		a.moveAt = now
		a.switching = make(chan error, 1)
		go d.switchProgram(a, !a.st.blocks, a.switching)
	}
}

// switchProgram has the kernel fill worker a's ring of blocks (to) or of
// slots, and reports on done when no CPU can still be writing into the
// other: replacing the fanout program waits for an RCU grace period,
// milliseconds on a quiet machine, and was seen to take half a second on a
// loaded one. The program is the whole group's: the other workers' choices
// stay as they are in it, and their moves wait for this one.
func (d *Dataplane) switchProgram(a *autoRing, to bool, done chan<- error) {
	d.sys.autoMu.Lock()
	defer d.sys.autoMu.Unlock()
	d.sys.autoOn[a.idx] = to
	err := attachBPF(a.slots.fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, autoFanoutProgram(d.sys.autoCPUs, d.sys.autoOn))
	if err != nil {
		d.sys.autoOn[a.idx] = !to
	} else if slow := a.slowSwitch.Load(); slow > 0 {
		time.Sleep(time.Duration(slow))
	}
	done <- err
}

// autoStep is one turn of the worker's loop while a move is under way.
// Until the new program is in place on every CPU the kernel fills either
// ring, so the worker reads both, and the new ring never fills up while the
// kernel takes its time. A flow's frames keep their order: a CPU changes
// programs between two frames and writes each frame before it takes the
// next, so every frame the new ring holds came after the frames of its flow
// that went to the old one, and those were written before it. The worker
// therefore counts what the new ring holds, then empties the old ring, and
// forwards those frames only once nothing is left being written into the
// old one.
func (d *Dataplane) autoStep(w *Worker, a *autoRing) error {
	old, next := a.active(), a.other()
	select {
	case err := <-a.switching:
		a.switching = nil
		d.autoMoved(w, a, old, err)
		return nil
	default:
	}
	n := next.readyRun()
	took := d.takeReady(w, old)
	if n > 0 && old.settled() {
		d.processUpTo(w, next, n)
		took = true
	}
	if took {
		w.publish()
		return nil
	}
	// Nothing to take, or the new ring's frames wait for a block of the
	// old one to be handed over (within its timeout): the new ring then
	// wakes poll at once, and the worker spins until then.
	if err := waitEither(old, next, 1); err != unix.EINTR {
		return err
	}
	return nil
}

// autoMoved finishes the move the program's replacement reported on, with
// err: it forwards what is left in the ring the kernel no longer fills, and
// the worker goes on with the other.
func (d *Dataplane) autoMoved(w *Worker, a *autoRing, old *ring, err error) {
	to, began := !a.st.blocks, a.moveAt
	if err != nil {
		d.cfg.Log.Warn("ring auto: could not switch rings; trying again in a second", "interface", d.ifi.Name, "worker", a.idx, "to_blocks", to, "err", err)
		a.st.since, a.st.backlogFrom = began, 0
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
			"interface", d.ifi.Name, "worker", a.idx, "pps", int64(a.st.rateIn), "switch", time.Duration(done-began).Round(time.Microsecond))
	} else {
		reason := "the rate dropped"
		if a.st.probe {
			reason = "a try after " + autoProbeAfter.String()
		}
		d.cfg.Log.Info("ring auto: back to the ring of slots", "interface", d.ifi.Name, "worker", a.idx, "reason", reason,
			"pps", int64(rate), "switch", time.Duration(done-began).Round(time.Microsecond))
	}
}

// takeReady forwards every frame ready in r, and reports whether there was
// any.
func (d *Dataplane) takeReady(w *Worker, r *ring) (took bool) {
	for r.ready() {
		d.processBatch(w, r)
		took = true
	}
	return took
}

// drainRing forwards every frame left in r, which the kernel no longer
// fills. A block it was filling is handed over by the block timeout.
func (d *Dataplane) drainRing(w *Worker, r *ring) {
	d.takeReady(w, r)
	for deadline := time.Now().Add(50 * blockTimeoutMs * time.Millisecond); r.bsize > 0 && r.pending() && time.Now().Before(deadline); {
		r.wait(1)
		d.takeReady(w, r)
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

// readyRun returns how many frames are ready from the current slot on, in a
// row, up to a batch (of a ring of blocks: 1 if the current block is).
func (r *ring) readyRun() int {
	if r.bsize > 0 {
		if r.ready() {
			return 1
		}
		return 0
	}
	n := 0
	for i := r.cur; n < r.batch && atomic.LoadUint32(&slotHdr(r.slot(i)).Status)&unix.TP_STATUS_USER != 0; n++ {
		if i++; i == r.frames {
			i = 0
		}
	}
	return n
}

// inFlightWindow is how far past the current slot settled looks for frames
// written while the current one is still being written: more slots than
// CPUs can be writing at once.
const inFlightWindow = 256

// settled reports whether r, which the worker has just emptied, holds no
// frame the worker cannot see yet. The kernel hands out slots in order but
// each CPU writes its own, so a ready slot past the current one means the
// current one is still being written; a block the kernel is still filling
// has frames in it that come out with the block.
func (r *ring) settled() bool {
	if r.bsize > 0 {
		return !r.pending()
	}
	if r.ready() {
		return false
	}
	for k, i := 1, r.cur; k <= min(inFlightWindow, r.frames-1); k++ {
		if i++; i == r.frames {
			i = 0
		}
		if atomic.LoadUint32(&slotHdr(r.slot(i)).Status)&unix.TP_STATUS_USER != 0 {
			return false
		}
	}
	return true
}
