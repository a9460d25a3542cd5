package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ring is one worker's AF_PACKET socket with its RX ring, and its transmit
// ring (txRing).
//
// With a TPACKET_V2 ring (the default) the kernel hands over each slot on its
// own (TP_STATUS_USER) and wakes a sleeping worker for it, so a frame waits
// for no batch to fill. The worker takes the ready slots in order, copies the
// forwarded frames to the transmit ring, and returns the slots to the kernel.
// With a TPACKET_V3 ring (RingConfig.Blocks) the unit handed over and
// returned is a block of frames.
type ring struct {
	fd        int
	mem       []byte
	frameSize int
	frames    int
	cur       int // next slot to look at
	held      int // slots before cur that are taken but not yet returned

	// A TPACKET_V3 ring (bsize > 0): nblocks blocks of bsize bytes, bcur
	// the next to look at.
	bsize, nblocks, bcur int

	// big receives a frame that did not fit a slot (TP_STATUS_COPY).
	big []byte

	tx       *txRing // where forwarded frames go
	txShared bool    // tx belongs to another ring (RingConfig.Auto), which closes it
	batch    int     // most slots taken (and frames marked) before a kick
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// fanoutGroup is the PACKET_FANOUT group the workers' sockets join, in
// worker order: the kernel numbers the members as they join.
type fanoutGroup struct {
	id   int               // negative: none (a single worker, which spares the kernel a flow hash per frame)
	prog []bpf.Instruction // nil: PACKET_FANOUT_HASH; else PACKET_FANOUT_CBPF running prog
}

// openRing opens a socket bound to ifindex, receiving through the VIP filter
// into a TPACKET_V2 ring (or a TPACKET_V3 one: cfg.Blocks), joined to the
// fanout group, and transmitting through a TX ring of its own, or through tx
// if not nil.
func openRing(ifindex int, cfg RingConfig, group fanoutGroup, filter []bpf.Instruction, tx *txRing) (*ring, error) {
	if cfg.FrameSize < 2048 || cfg.FrameSize > ringBlockSize || cfg.FrameSize&(cfg.FrameSize-1) != 0 {
		return nil, fmt.Errorf("ring frame size %d: want a power of two from 2048 to %d", cfg.FrameSize, ringBlockSize)
	}
	perBlock := ringBlockSize / cfg.FrameSize
	blocks := (max(cfg.Frames, 1) + perBlock - 1) / perBlock
	// Protocol 0 receives nothing until bind, so no unfiltered frame slips
	// in while the socket is being set up.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket(AF_PACKET)", err)
	}
	r := &ring{fd: fd, frameSize: cfg.FrameSize, frames: blocks * perBlock}
	if cfg.Blocks {
		r.bsize = blockSize
		r.nblocks = max(1, blocks*ringBlockSize/blockSize)
	}
	if err := r.setup(ifindex, blocks, group, filter); err != nil {
		r.close()
		return nil, err
	}
	if tx != nil {
		r.tx, r.txShared = tx, true
	} else if r.tx, err = openTxRing(ifindex, cfg.FrameSize, cfg.TxFrames); err != nil {
		r.close()
		return nil, err
	}
	r.big = make([]byte, bigFrameSize)
	r.batch = cfg.TxBatch
	return r, nil
}

// rcvBuf is the socket receive buffer, which holds frames too large for a
// slot until the worker reads them: room for a few dozen GSO super-frames.
const rcvBuf = 8 << 20

func (r *ring) setup(ifindex, blocks int, group fanoutGroup, filter []bpf.Instruction) error {
	fd := r.fd
	if err := setFilter(fd, filter); err != nil {
		return err
	}
	version := sockOpt{"PACKET_VERSION=TPACKET_V2", unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2, true}
	if r.bsize > 0 {
		version = sockOpt{"PACKET_VERSION=TPACKET_V3", unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3, true}
	}
	err := setSockOpts(fd, "", []sockOpt{
		version,
		{"PACKET_VNET_HDR", unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1, true},
		{"PACKET_IGNORE_OUTGOING", unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1, true},
		// A frame larger than a slot goes to the socket's queue whole, and
		// its slot says so (TP_STATUS_COPY), instead of being truncated.
		// (A TPACKET_V3 ring ignores it: a block holds any frame.)
		{"PACKET_COPY_THRESH", unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1, true},
		{"PACKET_QDISC_BYPASS", unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1, false},
		{"SO_RCVBUFFORCE", unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf, false},
	})
	if err != nil {
		return err
	}
	var mem []byte
	if r.bsize > 0 {
		mem, err = mapBlockRing(fd, r.nblocks, r.bsize, r.frameSize)
	} else {
		mem, err = mapRing(fd, unix.PACKET_RX_RING, blocks, r.frameSize, r.frames)
	}
	if err != nil {
		return err
	}
	r.mem = mem
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind to ifindex %d: %w", ifindex, os.NewSyscallError("bind", err))
	}
	if group.id >= 0 {
		mode, name := unix.PACKET_FANOUT_HASH, "PACKET_FANOUT_HASH"
		if group.prog != nil {
			mode, name = unix.PACKET_FANOUT_CBPF, "PACKET_FANOUT_CBPF"
		}
		// The group's own flag keeps our transmitted frames out of it: the
		// socket's PACKET_IGNORE_OUTGOING does not apply to a group.
		fanout := group.id&0xffff | (mode|unix.PACKET_FANOUT_FLAG_IGNORE_OUTGOING)<<16
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, fanout); err != nil {
			return fmt.Errorf("join %s group %d: %w", name, group.id, os.NewSyscallError("setsockopt", err))
		}
		// Every member sets the group's program; until the first does, the
		// kernel gives every frame to the first member.
		if group.prog != nil {
			if err := attachBPF(fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, group.prog); err != nil {
				return fmt.Errorf("set the fanout program: %w", err)
			}
		}
	}
	return nil
}

// acceptMAC has the interface accept frames addressed to mac as long as the
// socket is open (PACKET_MR_UNICAST: the address joins the NIC's unicast
// filter, or the NIC goes promiscuous if it has no room).
func (r *ring) acceptMAC(ifindex int, mac [6]byte) error {
	mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_UNICAST, Alen: 6}
	copy(mreq.Address[:], mac[:])
	if err := unix.SetsockoptPacketMreq(r.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fmt.Errorf("accept frames for %s (PACKET_MR_UNICAST): %w", net.HardwareAddr(mac[:]), os.NewSyscallError("setsockopt", err))
	}
	return nil
}

// sockOpt is an integer socket option; a failed optional one is ignored.
type sockOpt struct {
	name      string
	level     int
	opt, val  int
	mandatory bool
}

// setSockOpts sets opts on fd, the socket named by what in errors.
func setSockOpts(fd int, what string, opts []sockOpt) error {
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil && o.mandatory {
			return fmt.Errorf("set %s%s: %w", o.name, what, os.NewSyscallError("setsockopt", err))
		}
	}
	return nil
}

// mapRing gives fd a ring (which: PACKET_RX_RING or PACKET_TX_RING) of
// frames slots of frameSize bytes in blocks of ringBlockSize, and maps it,
// locked in memory if RLIMIT_MEMLOCK allows.
func mapRing(fd, which, blocks, frameSize, frames int) ([]byte, error) {
	name := "PACKET_RX_RING"
	if which == unix.PACKET_TX_RING {
		name = "PACKET_TX_RING"
	}
	req := unix.TpacketReq{
		Block_size: ringBlockSize,
		Block_nr:   uint32(blocks),
		Frame_size: uint32(frameSize),
		Frame_nr:   uint32(frames),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, which, &req); err != nil {
		return nil, fmt.Errorf("set %s (%d slots of %d bytes): %w", name, frames, frameSize, os.NewSyscallError("setsockopt", err))
	}
	return mapRingMem(fd, name, blocks*ringBlockSize)
}

// mapBlockRing gives fd a TPACKET_V3 receive ring of blocks blocks of bsize
// bytes (frameSize only bounds the frames the kernel accepts) and maps it
// like mapRing.
func mapBlockRing(fd, blocks, bsize, frameSize int) ([]byte, error) {
	req := unix.TpacketReq3{
		Block_size:     uint32(bsize),
		Block_nr:       uint32(blocks),
		Frame_size:     uint32(frameSize),
		Frame_nr:       uint32(bsize / frameSize * blocks),
		Retire_blk_tov: blockTimeoutMs,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("set PACKET_RX_RING (TPACKET_V3, %d blocks of %d bytes): %w", blocks, bsize, os.NewSyscallError("setsockopt", err))
	}
	return mapRingMem(fd, "PACKET_RX_RING", blocks*bsize)
}

// mapRingMem maps size bytes of fd's ring, locked in memory if
// RLIMIT_MEMLOCK allows.
func mapRingMem(fd int, name string, size int) ([]byte, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED|unix.MAP_POPULATE)
	if err != nil {
		// MAP_LOCKED fails under a small RLIMIT_MEMLOCK; the ring works without.
		mem, err = unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	}
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", name, os.NewSyscallError("mmap", err))
	}
	return mem, nil
}

// setFilter attaches (or atomically replaces) the socket's classic BPF filter.
func setFilter(fd int, filter []bpf.Instruction) error {
	if err := attachBPF(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, filter); err != nil {
		return fmt.Errorf("attach socket filter: %w", err)
	}
	return nil
}

// attachBPF assembles a classic BPF program and hands it to the socket
// option level/opt, which takes a struct sock_fprog.
func attachBPF(fd, level, opt int, program []bpf.Instruction) error {
	raw, err := bpf.Assemble(program)
	if err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return os.NewSyscallError("setsockopt", unix.SetsockoptSockFprog(fd, level, opt, &fprog))
}

// slot returns ring slot i, which is valid while the worker holds it.
func (r *ring) slot(i int) []byte {
	off := i * r.frameSize
	return r.mem[off : off+r.frameSize : off+r.frameSize]
}

func slotHdr(s []byte) *unix.Tpacket2Hdr { return (*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0])) }

// next returns the current slot and its status if the kernel has handed it
// over, and moves past it; the slot is then held until release.
func (r *ring) next() (s []byte, status uint32, ok bool) {
	s = r.slot(r.cur)
	status = atomic.LoadUint32(&slotHdr(s).Status)
	if status&unix.TP_STATUS_USER == 0 {
		return nil, 0, false
	}
	r.cur++
	if r.cur == r.frames {
		r.cur = 0
	}
	r.held++
	return s, status, true
}

// block returns the current block of a TPACKET_V3 ring, which the worker may
// read while it is ready, until release.
func (r *ring) block() []byte {
	off := r.bcur * r.bsize
	return r.mem[off : off+r.bsize : off+r.bsize]
}

// status returns the status word of the current slot, or of the current
// block.
func (r *ring) status() *uint32 {
	if r.bsize > 0 {
		return (*uint32)(unsafe.Pointer(&r.mem[r.bcur*r.bsize+blockStatusOff]))
	}
	return &slotHdr(r.slot(r.cur)).Status
}

// ready reports whether the current slot (or block) belongs to userspace.
func (r *ring) ready() bool {
	return atomic.LoadUint32(r.status())&unix.TP_STATUS_USER != 0
}

// spin watches the current slot (or block) for up to d and reports whether
// it became ready.
func (r *ring) spin(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	h := r.status()
	deadline := time.Now().Add(d)
	for {
		for range 64 {
			if atomic.LoadUint32(h)&unix.TP_STATUS_USER != 0 {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		// Let a thread waiting for this CPU run first: a worker that
		// spins must not starve its neighbours.
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

// wait blocks in poll until the current slot (or block) is ready or
// timeoutMs passes.
//
// A pending socket error (ENETDOWN when the interface goes down: the kernel
// sets it on every packet socket bound there, and the ring keeps working when
// it comes back up) makes poll return POLLERR at once, every time, until
// something reads it; wait reads it (SO_ERROR clears it), so an idle worker
// sleeps instead of spinning, and the next big frame's recvfrom does not
// fail on it.
func (r *ring) wait(timeoutMs int) error {
	for !r.ready() {
		err := waitEither(r, nil, timeoutMs)
		if err == unix.EINTR {
			continue
		}
		return err
	}
	return nil
}

// waitEither blocks in poll until r or s (if not nil) has a frame ready or
// timeoutMs passes, and clears a pending socket error as wait does. It
// returns unix.EINTR when a signal came first.
func waitEither(r, s *ring, timeoutMs int) error {
	fds := [2]unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
	n := 1
	if s != nil {
		fds[1] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN | unix.POLLERR}
		n = 2
	}
	_, err := unix.Poll(fds[:n], timeoutMs)
	if err == unix.EINTR {
		return err
	}
	if err != nil {
		return os.NewSyscallError("poll", err)
	}
	for _, fd := range fds[:n] {
		if fd.Revents&unix.POLLERR != 0 {
			unix.GetsockoptInt(int(fd.Fd), unix.SOL_SOCKET, unix.SO_ERROR)
		}
	}
	return nil
}

// release hands every held slot, or the current block, back to the kernel,
// oldest first. Nothing queued for transmit may point into them any more.
func (r *ring) release() {
	if r.bsize > 0 {
		atomic.StoreUint32(r.status(), unix.TP_STATUS_KERNEL)
		if r.bcur++; r.bcur == r.nblocks {
			r.bcur = 0
		}
		return
	}
	i := r.cur - r.held
	if i < 0 {
		i += r.frames
	}
	for ; r.held > 0; r.held-- {
		atomic.StoreUint32(&slotHdr(r.slot(i)).Status, unix.TP_STATUS_KERNEL)
		if i++; i == r.frames {
			i = 0
		}
	}
}

// queue copies buf (a virtio_net_hdr and a frame) to the transmit ring,
// kicking the kernel when a batch is marked; a frame too large for a
// transmit slot (from a block: a TPACKET_V2 slot's frames always fit) is
// sent at once, after what is queued. It returns 1 if the frame could not be
// queued or sent, else 0.
func (r *ring) queue(buf []byte) (refused int) {
	if len(buf) > r.tx.frameSize-txDataOff {
		r.flush()
		if !r.send(buf) {
			return 1
		}
		return 0
	}
	if !r.tx.put(buf) {
		return 1
	}
	if r.tx.marked >= r.batch {
		r.tx.kick()
	}
	return 0
}

// flush has the kernel send every queued frame. Frames it cannot send now
// stay queued and go with the next flush.
func (r *ring) flush() { r.tx.kick() }

// recvBig reads the frame at the head of the socket queue, one that did not
// fit a slot, into r.big at offset off, preceded by its virtio_net_hdr. It
// returns the number of bytes read (header included), or -1 if there was no
// frame or it did not fit.
//
// A pending socket error fails a recvfrom before it dequeues anything (and
// is cleared by it), so it is retried once: otherwise the frame would stay
// queued and every later COPY slot would read the frame before its own.
func (r *ring) recvBig(off int) int {
	b := r.big[off:]
	retried := false
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0 && errno != unix.EAGAIN && !retried:
			retried = true
			continue
		case errno != 0 || int(n) > len(b):
			return -1
		}
		return int(n)
	}
}

// send transmits one frame at once, outside the batch. It reports whether
// the kernel took it.
func (r *ring) send(buf []byte) bool {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return errno == 0
		}
	}
}

// kernelDrops returns the frames the kernel dropped for want of ring space
// since the last call (reading resets the kernel's counter).
func (r *ring) kernelDrops() uint64 {
	if r.bsize > 0 {
		st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err != nil {
			return 0
		}
		return uint64(st.Drops)
	}
	st, err := unix.GetsockoptTpacketStats(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

func (r *ring) close() error {
	var errs []error
	if r.tx != nil && !r.txShared {
		errs = append(errs, r.tx.close())
	}
	r.tx = nil
	if r.mem != nil {
		errs = append(errs, unix.Munmap(r.mem))
		r.mem = nil
	}
	if r.fd >= 0 {
		errs = append(errs, unix.Close(r.fd))
		r.fd = -1
	}
	return errors.Join(errs...)
}
