package dataplane

import "time"

// RingConfig sizes a worker's TPACKET_V3 receive ring.
type RingConfig struct {
	// BlockSize is the size of one ring block in bytes: a power of two,
	// a multiple of the page size, large enough for a 64 KiB GSO frame.
	BlockSize int
	// Blocks is the number of blocks per worker.
	Blocks int
	// BlockTimeout is how long the kernel keeps a partly filled block before
	// handing it to the worker. It bounds the latency added at low rates.
	BlockTimeout time.Duration
	// TxBatch is the most frames handed to the kernel in one sendmmsg.
	TxBatch int
}

// DefaultRingConfig is 64 blocks of 256 KiB (16 MiB per worker), a 1 ms
// block timeout and transmit batches of 256 frames.
var DefaultRingConfig = RingConfig{BlockSize: 1 << 18, Blocks: 64, BlockTimeout: time.Millisecond, TxBatch: 256}

func (c RingConfig) withDefaults() RingConfig {
	d := DefaultRingConfig
	if c.BlockSize > 0 {
		d.BlockSize = c.BlockSize
	}
	if c.Blocks > 0 {
		d.Blocks = c.Blocks
	}
	if c.BlockTimeout > 0 {
		d.BlockTimeout = c.BlockTimeout
	}
	if c.TxBatch > 0 {
		d.TxBatch = c.TxBatch
	}
	return d
}

// Offsets into a TPACKET_V3 block (struct tpacket_block_desc, hdr.bh1).
const (
	blockStatusOff   = 8
	blockNumPktsOff  = 12
	blockFirstPktOff = 16

	// sizeofVnetHdr is struct virtio_net_hdr, which precedes every frame in
	// the ring and every frame we send, because of PACKET_VNET_HDR.
	sizeofVnetHdr = 10
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM

	// minFrameOff is the lowest offset in a ring frame slot that is free:
	// after struct tpacket3_hdr (48 bytes) and struct sockaddr_ll (20 bytes).
	minFrameOff = 48 + 20
)
