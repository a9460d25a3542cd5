package dataplane

import "time"

// RingConfig sizes a worker's receive ring and says how the kernel hands
// frames over.
type RingConfig struct {
	// Blocks selects a TPACKET_V3 ring of blocks (blockSize each, the same
	// memory as Frames slots) instead of the TPACKET_V2 ring of slots. The
	// kernel then packs frames into a block and hands the block over when
	// it is full or blockTimeoutMs after its first frame, so a worker
	// touches one block header per block instead of a slot header per
	// frame, and the kernel writes the frames contiguously: less CPU per
	// frame, for up to the timeout of added latency at low rates. Frames
	// larger than a block are truncated by the kernel (and dropped as
	// truncated); a block holds any frame up to bigFrameSize.
	Blocks bool
	// Auto gives the (single) worker both rings, slots and blocks, and has
	// it move the kernel to the ring of blocks while it falls behind on the
	// slots (the slot an eighth of the ring ahead already filled for 5 ms),
	// and back once its rate drops well below what it was then (or after
	// 10 s, to try): the slots' latency when it can keep up, the blocks'
	// lower cost per frame when it cannot. Both sockets are one fanout
	// group whose classic BPF program picks the ring; each move replaces
	// the program (which waits for an RCU grace period, milliseconds),
	// and until then the worker reads both rings, emptying the old one
	// before each batch of the new, so every flow keeps its order. It
	// needs one worker, or Fanout FanoutCPU (flows spread by
	// hash cannot move one worker at a time); Blocks is then ignored.
	Auto bool
	// FrameSize is the size of one ring slot in bytes: a power of two of at
	// least 2048, so that a full-MTU Ethernet frame fits with its metadata.
	// Larger frames (jumbo frames, GSO super-frames) do not go through the
	// slots: the kernel queues them on the socket and marks their slot, and
	// the worker reads them with one recvfrom each.
	FrameSize int
	// Frames is the number of slots per worker, rounded up to fill whole
	// ring blocks.
	Frames int
	// TxBatch is the most frames a worker takes from the ring before it
	// hands the forwarded ones to the kernel in one send call.
	TxBatch int
	// TxFrames is the number of slots (of FrameSize) of a worker's
	// transmit ring: frames forwarded but not yet freed by the device. A
	// frame that finds no free slot is dropped (tx_error).
	TxFrames int
	// BusyPoll is how long a worker whose ring ran empty keeps watching it
	// before it sleeps in poll. Spinning spends that CPU time, but a worker
	// that does not sleep needs no wake-up (on a VM, waking an idle vCPU can
	// take longer than forwarding a frame). Negative: sleep at once. Workers
	// pinned to one CPU together never spin: each would keep the CPU from
	// the other while the other's frames wait.
	BusyPoll time.Duration
}

// DefaultRingConfig is 8192 receive slots of 2 KiB (16 MiB per worker),
// 1024 transmit slots (2 MiB), transmit batches of up to 64 frames and 200 µs
// of busy polling.
var DefaultRingConfig = RingConfig{FrameSize: 2048, Frames: 8192, TxBatch: 64, TxFrames: 1024, BusyPoll: 200 * time.Microsecond}

func (c RingConfig) withDefaults() RingConfig {
	d := DefaultRingConfig
	d.Blocks, d.Auto = c.Blocks, c.Auto
	if c.FrameSize > 0 {
		d.FrameSize = c.FrameSize
	}
	if c.Frames > 0 {
		d.Frames = c.Frames
	}
	if c.TxBatch > 0 {
		d.TxBatch = c.TxBatch
	}
	if c.TxFrames > 0 {
		d.TxFrames = c.TxFrames
	}
	if c.BusyPoll != 0 {
		d.BusyPoll = max(c.BusyPoll, 0)
	}
	return d
}

const (
	// ringBlockSize is the unit in which the kernel allocates ring memory.
	// Slots never straddle blocks, so it must be a multiple of FrameSize.
	ringBlockSize = 1 << 16

	// bigFrameSize bounds a frame read from the socket queue (a GSO
	// super-frame is at most 64 KiB of IP packet plus headers).
	bigFrameSize = 1 << 17

	// sizeofVnetHdr is struct virtio_net_hdr, which precedes every frame in
	// the ring and every frame we send, because of PACKET_VNET_HDR.
	sizeofVnetHdr = 10
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM

	// minFrameOff is the lowest offset in a ring slot that is free: after
	// struct tpacket2_hdr (32 bytes) and struct sockaddr_ll (20 bytes).
	minFrameOff = 32 + 20
	// minBlockFrameOff is the same for a frame in a block: after struct
	// tpacket3_hdr (48 bytes) and struct sockaddr_ll.
	minBlockFrameOff = 48 + 20

	// blockSize is a TPACKET_V3 block: room for a frame of bigFrameSize
	// with its headers, or for about 1,700 small frames.
	blockSize = 2 * bigFrameSize
	// blockTimeoutMs is how long the kernel waits, after a block's first
	// frame, before it hands over a block that is not full.
	blockTimeoutMs = 1
	// blockStatusOff is where struct tpacket_block_desc keeps the block's
	// status (after version and offset_to_priv).
	blockStatusOff = 8
)
