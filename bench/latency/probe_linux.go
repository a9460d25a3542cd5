package latency

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/internal/netns"
)

type sysProbe struct {
	fd int
}

// probeBatch is the frames read per recvmmsg.
const probeBatch = 64

// probeInterval is how often a probe drains its socket. The kernel has
// stamped each frame on arrival, so reading late costs the measurement
// nothing; waking for every frame (some 20,000 a second) would cost the
// machine under test a context switch each, on the balancer's CPU as often
// as not.
const probeInterval = time.Millisecond

// probeSnap is the bytes of a frame the filter passes: enough for a stamp.
const probeSnap = gen.PayloadOffset + gen.StampLen

// stampFilter passes IPv4/UDP frames with the stamp magic at the UDP
// payload (no IP options: the generator sends none).
func stampFilter() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 5},
		bpf.LoadAbsolute{Off: 14 + 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipFalse: 3},
		bpf.LoadAbsolute{Off: gen.PayloadOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: gen.StampMagic, SkipFalse: 1},
		bpf.RetConstant{Val: probeSnap},
		bpf.RetConstant{Val: 0},
	}
}

// Open opens a probe on ifname inside ns. Nothing is read until Run.
func Open(ns *netns.NS, ifname string) (*Probe, error) {
	p := &Probe{sys: sysProbe{fd: -1}}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0 receives nothing until bind, which comes after the
		// filter is in place.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket(AF_PACKET)", err)
		}
		p.sys.fd = fd
		raw, err := bpf.Assemble(stampFilter())
		if err != nil {
			return err
		}
		prog := make([]unix.SockFilter, len(raw))
		for i, ins := range raw {
			prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			return os.NewSyscallError("setsockopt(SO_ATTACH_FILTER)", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return os.NewSyscallError("setsockopt(SO_TIMESTAMPNS)", err)
		}
		// A probe on a balancer's interface would also see the frames the
		// balancer sends back out of it; only arrivals count.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return os.NewSyscallError("setsockopt(PACKET_IGNORE_OUTGOING)", err)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return os.NewSyscallError("bind", err)
		}
		return nil
	})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("latency probe on %s in %s: %w", ifname, ns.Name(), err)
	}
	return p, nil
}

// Close releases the socket. Call it after Run has returned.
func (p *Probe) Close() error {
	if p.sys.fd >= 0 {
		err := unix.Close(p.sys.fd)
		p.sys.fd = -1
		return err
	}
	return nil
}

// Run reads stamped frames until ctx is done. Frames the interface sends
// are not read.
func (p *Probe) Run(ctx context.Context) error {
	var (
		msgs  [probeBatch]unix.Mmsghdr
		iovs  [probeBatch]unix.Iovec
		bufs  [probeBatch][probeSnap + 64]byte
		ctrls [probeBatch][128]byte
	)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.Iovlen = 1
		msgs[i].Hdr.Control = &ctrls[i][0]
	}
	offset := clockOffset()
	lastOffset := time.Now()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if time.Since(lastOffset) > 100*time.Millisecond {
			offset, lastOffset = clockOffset(), time.Now()
		}
		if err := p.drain(&msgs, &bufs, &ctrls, offset); err != nil {
			return err
		}
	}
}

// drain reads every frame queued on the socket, probeBatch at a time.
func (p *Probe) drain(msgs *[probeBatch]unix.Mmsghdr, bufs *[probeBatch][probeSnap + 64]byte, ctrls *[probeBatch][128]byte, offset int64) error {
	for {
		for i := range msgs {
			msgs[i].Hdr.SetControllen(len(ctrls[i]))
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(p.sys.fd), uintptr(unsafe.Pointer(&msgs[0])), probeBatch, unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return nil
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return os.NewSyscallError("recvmmsg", e)
		}
		for i := 0; i < int(n); i++ {
			frame := bufs[i][:min(int(msgs[i].Len), len(bufs[i]))]
			stamp, seq, ok := gen.ReadStamp(frame)
			if !ok {
				continue
			}
			rx, ok := rxTime(ctrls[i][:msgs[i].Hdr.Controllen])
			if !ok {
				continue
			}
			p.add(rx-offset-stamp, Arrival{Frame: FrameID{StampNs: stamp, Seq: seq}, RxNs: rx})
		}
	}
}

// rxTime returns the SCM_TIMESTAMPNS time (CLOCK_REALTIME ns) of a message's
// control data. It walks the headers in place: the probe reads some 20,000
// frames a second, and an allocation each (unix.ParseSocketControlMessage)
// made the bench's garbage collector a regular on the CPUs it measures.
func rxTime(ctrl []byte) (int64, bool) {
	hdr := unix.CmsgLen(0)
	for len(ctrl) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		n := int(h.Len)
		if n < hdr || n > len(ctrl) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && n-hdr >= int(unsafe.Sizeof(unix.Timespec{})) {
			return (*unix.Timespec)(unsafe.Pointer(&ctrl[hdr])).Nano(), true
		}
		next := unix.CmsgSpace(n - hdr)
		if next > len(ctrl) {
			break
		}
		ctrl = ctrl[next:]
	}
	return 0, false
}

// clockOffset returns CLOCK_REALTIME − CLOCK_MONOTONIC in ns, from the
// narrowest of five realtime/monotonic/realtime readings.
func clockOffset() int64 {
	var best, bestWidth int64 = 0, -1
	for range 5 {
		var r1, m, r2 unix.Timespec
		unix.ClockGettime(unix.CLOCK_REALTIME, &r1)
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m)
		unix.ClockGettime(unix.CLOCK_REALTIME, &r2)
		w := r2.Nano() - r1.Nano()
		if bestWidth < 0 || w < bestWidth {
			bestWidth = w
			best = r1.Nano() + w/2 - m.Nano()
		}
	}
	return best
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
