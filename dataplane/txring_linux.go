package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// txRing is a worker's transmit path: a second AF_PACKET socket, bound to
// the interface for sending only (protocol 0: it receives nothing), with a
// TPACKET_V2 TX ring. The worker copies each forwarded frame into the next
// free slot and marks it; one send call then hands every marked slot to the
// kernel, which builds and transmits a packet per slot and frees the slot
// when that packet is freed.
//
// Against sendmmsg from the receive ring, this saves the per-message work of
// the system call (copying and checking a msghdr and an iovec per frame) and
// a page allocation per frame (the kernel copies the whole frame into the
// packet's linear area: see put).
type txRing struct {
	fd        int
	mem       []byte
	frameSize int
	frames    int
	cur       int // next slot to fill
	marked    int // slots marked since the last kick
}

// txDataOff is where a frame starts in a TX slot (no PACKET_TX_HAS_OFF):
// TPACKET2_HDRLEN - sizeof(struct sockaddr_ll).
const txDataOff = 32

func openTxRing(ifindex, frameSize, frames int) (*txRing, error) {
	perBlock := ringBlockSize / frameSize
	blocks := (max(frames, 1) + perBlock - 1) / perBlock
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket(AF_PACKET)", err)
	}
	t := &txRing{fd: fd, frameSize: frameSize, frames: blocks * perBlock}
	if err := t.setup(ifindex, blocks); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// txSndBuf bounds the bytes of packets in flight from the TX ring (sent but
// not yet freed by the driver); it must not be what limits the ring.
const txSndBuf = 8 << 20

func (t *txRing) setup(ifindex, blocks int) error {
	err := setSockOpts(t.fd, " on the transmit socket", []sockOpt{
		{"PACKET_VERSION=TPACKET_V2", unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2, true},
		{"PACKET_VNET_HDR", unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1, true},
		// A slot the kernel cannot send (malformed) is skipped and freed
		// instead of stopping the ring at it.
		{"PACKET_LOSS", unix.SOL_PACKET, unix.PACKET_LOSS, 1, true},
		{"PACKET_QDISC_BYPASS", unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1, false},
		{"SO_SNDBUFFORCE", unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, txSndBuf, false},
	})
	if err != nil {
		return err
	}
	mem, err := mapRing(t.fd, unix.PACKET_TX_RING, blocks, t.frameSize, t.frames)
	if err != nil {
		return err
	}
	t.mem = mem
	// Protocol 0: the socket is bound to the interface for sending and
	// receives nothing.
	if err := unix.Bind(t.fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind the transmit socket to ifindex %d: %w", ifindex, os.NewSyscallError("bind", err))
	}
	return nil
}

func (t *txRing) slot(i int) []byte {
	off := i * t.frameSize
	return t.mem[off : off+t.frameSize : off+t.frameSize]
}

// put copies frame (a virtio_net_hdr followed by the Ethernet frame) into the
// next free slot and marks it for sending. It reports false, and sends
// nothing, if the frame does not fit a slot or every slot is still in flight
// after a kick.
func (t *txRing) put(frame []byte) bool {
	s := t.slot(t.cur)
	h := slotHdr(s)
	if len(frame) > len(s)-txDataOff {
		return false
	}
	if atomic.LoadUint32(&h.Status) != unix.TP_STATUS_AVAILABLE {
		// The slot's packet is still in flight (or waits to be sent):
		// send what is marked, which is all the kernel needs to free
		// slots whose packets are done.
		t.kick()
		if atomic.LoadUint32(&h.Status) != unix.TP_STATUS_AVAILABLE {
			return false
		}
	}
	d := s[txDataOff:]
	copy(d, frame)
	// hdr_len is how much of the frame the kernel copies into the packet's
	// linear area. It attaches the rest as a reference to this slot, marked
	// zero-copy, and copies it again into a newly allocated page wherever
	// the packet is orphaned or cloned (crossing a veth, for one): a small
	// frame is cheaper copied whole, once. A GSO frame keeps its value.
	if d[1] == 0 { // gso_type VIRTIO_NET_HDR_GSO_NONE
		binary.LittleEndian.PutUint16(d[2:], uint16(len(frame)-sizeofVnetHdr))
	}
	h.Len = uint32(len(frame))
	atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
	if t.cur++; t.cur == t.frames {
		t.cur = 0
	}
	t.marked++
	return true
}

// kick asks the kernel to send every marked slot. Slots it could not send
// (the device is busy or down) stay marked, and the next kick tries again.
func (t *txRing) kick() {
	if t.marked == 0 {
		return
	}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(t.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			break
		}
	}
	// The kernel takes slots in order: if it took the last one, it took
	// them all.
	last := t.cur - 1
	if last < 0 {
		last = t.frames - 1
	}
	if atomic.LoadUint32(&slotHdr(t.slot(last)).Status) != unix.TP_STATUS_SEND_REQUEST {
		t.marked = 0
	}
}

func (t *txRing) close() error {
	var errs []error
	if t.mem != nil {
		errs = append(errs, unix.Munmap(t.mem))
		t.mem = nil
	}
	if t.fd >= 0 {
		errs = append(errs, unix.Close(t.fd))
		t.fd = -1
	}
	return errors.Join(errs...)
}
