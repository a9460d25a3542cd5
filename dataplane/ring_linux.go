package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ring is one AF_PACKET socket with a TPACKET_V3 RX ring, used by one worker
// to receive and (with sendmmsg, straight from the ring) to transmit.
type ring struct {
	fd        int
	mem       []byte
	blockSize int
	blocks    int
	cur       int

	// transmit batch: iovecs point into ring memory of blocks not yet
	// released.
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	n    int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openRing opens a socket bound to ifindex, receiving through the VIP filter
// into a TPACKET_V3 ring, joined to fanout group fanoutID.
func openRing(ifindex int, cfg RingConfig, fanoutID uint16, filter []bpf.Instruction) (*ring, error) {
	// Protocol 0 receives nothing until bind, so no unfiltered frame slips
	// in while the socket is being set up.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket(AF_PACKET)", err)
	}
	r := &ring{fd: fd, blockSize: cfg.BlockSize, blocks: cfg.Blocks}
	if err := r.setup(ifindex, cfg, fanoutID, filter); err != nil {
		r.close()
		return nil, err
	}
	r.msgs = make([]unix.Mmsghdr, cfg.TxBatch)
	r.iovs = make([]unix.Iovec, cfg.TxBatch)
	for i := range r.msgs {
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.Iovlen = 1
	}
	return r, nil
}

func (r *ring) setup(ifindex int, cfg RingConfig, fanoutID uint16, filter []bpf.Instruction) error {
	fd := r.fd
	if err := setFilter(fd, filter); err != nil {
		return err
	}
	opts := []struct {
		name      string
		opt, val  int
		mandatory bool
	}{
		{"PACKET_VERSION=TPACKET_V3", unix.PACKET_VERSION, unix.TPACKET_V3, true},
		{"PACKET_VNET_HDR", unix.PACKET_VNET_HDR, 1, true},
		{"PACKET_IGNORE_OUTGOING", unix.PACKET_IGNORE_OUTGOING, 1, true},
		{"PACKET_QDISC_BYPASS", unix.PACKET_QDISC_BYPASS, 1, false},
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, o.val); err != nil && o.mandatory {
			return fmt.Errorf("set %s: %w", o.name, os.NewSyscallError("setsockopt", err))
		}
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.Blocks),
		Frame_size:     uint32(cfg.BlockSize), // V3 frames are variable; must divide the block
		Frame_nr:       uint32(cfg.Blocks),
		Retire_blk_tov: uint32(max(1, cfg.BlockTimeout.Milliseconds())),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("set PACKET_RX_RING (%d blocks of %d bytes): %w", cfg.Blocks, cfg.BlockSize, os.NewSyscallError("setsockopt", err))
	}
	mem, err := unix.Mmap(fd, 0, cfg.BlockSize*cfg.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED|unix.MAP_POPULATE)
	if err != nil {
		// MAP_LOCKED fails under a small RLIMIT_MEMLOCK; the ring works without.
		mem, err = unix.Mmap(fd, 0, cfg.BlockSize*cfg.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	}
	if err != nil {
		return fmt.Errorf("mmap rx ring: %w", os.NewSyscallError("mmap", err))
	}
	r.mem = mem
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind to ifindex %d: %w", ifindex, os.NewSyscallError("bind", err))
	}
	fanout := int(fanoutID) | unix.PACKET_FANOUT_HASH<<16
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, fanout); err != nil {
		return fmt.Errorf("join PACKET_FANOUT group %d: %w", fanoutID, os.NewSyscallError("setsockopt", err))
	}
	return nil
}

// setFilter attaches (or atomically replaces) the socket's classic BPF filter.
func setFilter(fd int, filter []bpf.Instruction) error {
	raw, err := bpf.Assemble(filter)
	if err != nil {
		return fmt.Errorf("assemble socket filter: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attach socket filter: %w", os.NewSyscallError("setsockopt", err))
	}
	return nil
}

func (r *ring) block(i int) []byte {
	off := i * r.blockSize
	return r.mem[off : off+r.blockSize : off+r.blockSize]
}

func blockStatus(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[blockStatusOff])) }

// ready reports whether the current block belongs to userspace.
func (r *ring) ready() bool {
	return atomic.LoadUint32(blockStatus(r.block(r.cur)))&unix.TP_STATUS_USER != 0
}

// wait blocks in poll until the current block is ready or timeoutMs passes.
func (r *ring) wait(timeoutMs int) error {
	fds := [1]unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
	for !r.ready() {
		_, err := unix.Poll(fds[:], timeoutMs)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		return nil
	}
	return nil
}

// release hands the current block back to the kernel and moves on.
func (r *ring) release() {
	atomic.StoreUint32(blockStatus(r.block(r.cur)), unix.TP_STATUS_KERNEL)
	r.cur++
	if r.cur == r.blocks {
		r.cur = 0
	}
}

// queue adds buf (which lives in ring memory) to the transmit batch, flushing
// the batch when it is full. It returns the number of frames the kernel
// refused.
func (r *ring) queue(buf []byte) (refused int) {
	r.iovs[r.n].Base = &buf[0]
	r.iovs[r.n].SetLen(len(buf))
	r.n++
	if r.n == len(r.msgs) {
		return r.flush()
	}
	return 0
}

// flush sends the transmit batch with as few sendmmsg calls as the kernel
// allows. It returns the number of frames the kernel refused.
func (r *ring) flush() (refused int) {
	sent := 0
	for sent < r.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(r.fd),
			uintptr(unsafe.Pointer(&r.msgs[sent])), uintptr(r.n-sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			// The first frame of the rest was refused (queue full, frame
			// rejected): count it and go on with the next.
			refused++
			sent++
		default:
			sent += int(n)
		}
	}
	r.n = 0
	return refused
}

// kernelDrops returns the frames the kernel dropped for want of ring space
// since the last call (reading resets the kernel's counter).
func (r *ring) kernelDrops() uint64 {
	st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

func (r *ring) close() error {
	var errs []error
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
