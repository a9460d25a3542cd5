package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Start implements Generator.
func (g TxRing) Start(ctx context.Context, l Load) (Run, error) {
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("txring: %w", err)
	}
	tmpl, err := NewTemplate(&l)
	if err != nil {
		return nil, fmt.Errorf("txring: %w", err)
	}
	frames := g.Frames
	if frames <= 0 {
		frames = 4096
	}
	perBlock := txBlockSize / txFrameSize
	frames = (frames + perBlock - 1) / perBlock * perBlock
	batch := g.Batch
	if batch <= 0 {
		batch = 256
		if l.Rate > 0 {
			batch = 32
		}
	}
	r := &txRun{start: time.Now()}
	for i := 0; i < l.Threads; i++ {
		t := &txThread{
			run: r, tmpl: tmpl, frames: frames, batch: batch,
			cpu:   i % runtime.NumCPU(),
			rate:  l.Rate / float64(l.Threads),
			stamp: l.StampEvery,
			rng:   uint64(time.Now().UnixNano())*2654435761 + uint64(i)*0x9e3779b97f4a7c15 | 1,
		}
		if l.Traffic != UDP {
			t.stamp = 0
		}
		err := l.NS.Do(func() error { return t.open(l.Interface) })
		if err != nil {
			r.close()
			return nil, fmt.Errorf("txring: thread %d on %s in %s: %w", i, l.Interface, l.NS.Name(), err)
		}
		r.threads = append(r.threads, t)
	}
	for _, t := range r.threads {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); t.loop() }()
	}
	return r, nil
}

type txRun struct {
	threads []*txThread
	stop    atomic.Bool
	wg      sync.WaitGroup
	start   time.Time
	once    sync.Once
	res     Result
	err     error
}

// Stop ends every thread, waits up to 100 ms for the rings to drain and
// releases them.
func (r *txRun) Stop() (Result, error) {
	r.once.Do(func() {
		r.stop.Store(true)
		r.wg.Wait()
		var errs []error
		for _, t := range r.threads {
			r.res.Sent += t.submitted - t.drain()
			r.res.Retries += t.retries
			r.res.Kicks += t.kicks
			r.res.Stalled = r.res.Stalled || t.stalled
			if t.err != nil {
				errs = append(errs, t.err)
			}
		}
		r.close()
		r.err = errors.Join(errs...)
	})
	return r.res, r.err
}

func (r *txRun) close() {
	for _, t := range r.threads {
		t.close()
	}
}

// txThread is one socket and ring, used by one locked OS thread.
type txThread struct {
	run    *txRun
	tmpl   *Template
	fd     int
	ring   []byte
	frames int
	batch  int
	cpu    int
	rate   float64 // frames/s for this thread; 0 is flat out
	stamp  int
	rng    uint64

	submitted uint64 // frames marked SEND_REQUEST
	retries   uint64 // kicks refused with EAGAIN or ENOBUFS
	kicks     uint64 // kicks with new frames
	stalled   bool
	err       error
}

func (t *txThread) open(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	// Protocol 0: the socket receives nothing, it only sends.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket(AF_PACKET)", err)
	}
	t.fd = fd
	for _, o := range []struct {
		name     string
		level    int
		opt, val int
	}{
		{"PACKET_VERSION=TPACKET_V2", unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2},
		{"PACKET_QDISC_BYPASS", unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1},
		// A frame the kernel rejects is marked and skipped instead of
		// stopping the ring.
		{"PACKET_LOSS", unix.SOL_PACKET, unix.PACKET_LOSS, 1},
		// Frames in flight (not yet freed downstream) are charged to the
		// send buffer: room for the whole ring.
		{"SO_SNDBUFFORCE", unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, t.frames * 2048},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			t.close()
			return fmt.Errorf("set %s: %w", o.name, os.NewSyscallError("setsockopt", err))
		}
	}
	req := unix.TpacketReq{
		Block_size: txBlockSize,
		Block_nr:   uint32(t.frames * txFrameSize / txBlockSize),
		Frame_size: txFrameSize,
		Frame_nr:   uint32(t.frames),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		t.close()
		return fmt.Errorf("set PACKET_TX_RING (%d frames): %w", t.frames, os.NewSyscallError("setsockopt", err))
	}
	ring, err := unix.Mmap(fd, 0, t.frames*txFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.close()
		return fmt.Errorf("mmap tx ring: %w", os.NewSyscallError("mmap", err))
	}
	t.ring = ring
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		t.close()
		return fmt.Errorf("bind to %s: %w", ifname, os.NewSyscallError("bind", err))
	}
	return nil
}

func (t *txThread) close() {
	if t.ring != nil {
		unix.Munmap(t.ring)
		t.ring = nil
	}
	if t.fd > 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

func (t *txThread) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&t.ring[i*txFrameSize]))
}

func (t *txThread) next() uint64 {
	x := t.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	t.rng = x
	return x
}

// kick asks the kernel to send every frame marked SEND_REQUEST.
func (t *txThread) kick() {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(t.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EINTR:
	case unix.EAGAIN, unix.ENOBUFS:
		t.retries++
	default:
		if t.err == nil {
			t.err = os.NewSyscallError("send", e)
		}
	}
}

// loop sends until the run stops.
func (t *txThread) loop() {
	// The thread is pinned and never unlocked: it ends with the goroutine,
	// so no other goroutine (or a process it starts, which would inherit
	// the affinity) ever runs on it.
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(t.cpu)
	unix.SchedSetaffinity(0, &set) // best effort
	if t.rate > 0 {
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	}
	flows := uint64(t.tmpl.Flows())
	start := time.Now()
	lastProgress := start
	cur := 0
	var seq uint32
	clock := newMonoClock()
	for !t.run.stop.Load() {
		want := t.batch
		if t.rate > 0 {
			due := int64(t.rate * time.Since(start).Seconds())
			allowed := due - int64(t.submitted)
			if allowed <= 0 {
				wait := time.Duration(float64(int64(t.submitted)+1-due) / t.rate * 1e9)
				wait = max(wait, txPace)
				unix.Nanosleep(&unix.Timespec{Nsec: int64(min(wait, time.Millisecond))}, nil)
				continue
			}
			want = int(min(allowed, int64(t.batch)))
		}
		n := 0
		for n < want {
			st := t.status(cur)
			s := atomic.LoadUint32(st)
			if s&(unix.TP_STATUS_SEND_REQUEST|unix.TP_STATUS_SENDING) != 0 {
				break // the ring is full up to here
			}
			slot := t.ring[cur*txFrameSize : (cur+1)*txFrameSize]
			r := t.next()
			flow := int((r >> 32) * flows >> 32)
			var stamp int64
			if t.stamp > 0 && t.submitted%uint64(t.stamp) == 0 {
				stamp = clock.now()
				seq++
			}
			sq := seq
			if t.tmpl.Traffic == SYN {
				sq = uint32(r)
			}
			l := t.tmpl.Write(slot[txDataOff:], flow, sq, stamp)
			hdr := (*unix.Tpacket2Hdr)(unsafe.Pointer(&slot[0]))
			hdr.Len = uint32(l)
			atomic.StoreUint32(st, unix.TP_STATUS_SEND_REQUEST)
			t.submitted++
			n++
			if cur++; cur == t.frames {
				cur = 0
			}
		}
		t.kick()
		if n > 0 {
			t.kicks++
			lastProgress = time.Now()
			continue
		}
		// The ring is full: frames are still on their way (they are freed
		// when the last device is done with them).
		if time.Since(lastProgress) > StallTimeout {
			t.stalled = true
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 20_000}, nil)
	}
}

// drain kicks the ring until it is empty or 100 ms pass, and returns the
// frames still not sent.
func (t *txThread) drain() uint64 {
	deadline := time.Now().Add(100 * time.Millisecond)
	for {
		pending := uint64(0)
		for i := 0; i < t.frames; i++ {
			if atomic.LoadUint32(t.status(i))&(unix.TP_STATUS_SEND_REQUEST|unix.TP_STATUS_SENDING) != 0 {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return pending
		}
		t.kick()
		time.Sleep(5 * time.Millisecond)
	}
}

// monoClock reads CLOCK_MONOTONIC without a system call: the Go runtime's
// monotonic clock is CLOCK_MONOTONIC read through the vDSO, so a reference
// pair (a clock_gettime result and a time.Time taken next to it) turns
// time.Since into CLOCK_MONOTONIC nanoseconds, exact to within the
// reference's bracket (well under a microsecond).
type monoClock struct {
	base int64
	t0   time.Time
}

func newMonoClock() monoClock {
	// The reading's error is half the time between the two clock_gettime
	// calls around time.Now: keep the tightest of a few, so that a
	// preemption between them does not shift every stamp.
	var best monoClock
	width := int64(-1)
	for range 8 {
		var a, b unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
		t0 := time.Now()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		if w := b.Nano() - a.Nano(); width < 0 || w < width {
			best, width = monoClock{base: (a.Nano() + b.Nano()) / 2, t0: t0}, w
		}
	}
	return best
}

func (c monoClock) now() int64 { return c.base + int64(time.Since(c.t0)) }
