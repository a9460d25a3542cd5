package gen

import "time"

// TxRing is the built-in generator: per thread, one AF_PACKET socket bound
// to the load's interface with a TPACKET_V2 transmit ring (PACKET_QDISC_BYPASS,
// PACKET_LOSS), its thread locked and pinned to a CPU. The thread writes up to
// Batch frames into free ring slots, then kicks the kernel with one
// send(MSG_DONTWAIT); with a rate it sleeps (nanosleep, 1 ns timer slack)
// until the next frame is due but at least txPace, so frames leave in
// bursts of about rate × 50 µs (3 frames at 60 kpps): a wake-up and a kick
// per frame would cost more CPU than the frame's whole path.
//
// Each frame's flow is drawn from the load's flow space by a per-thread
// xorshift generator; stamps, when asked for, are CLOCK_MONOTONIC read
// (through the vDSO, see monoClock) just before the frame is written into
// the ring, so a stamp precedes the kick by at most one batch's writing time.
type TxRing struct {
	// Frames is the ring's slots per thread (default 4096).
	Frames int
	// Batch is the most frames written before a kick (default 256 flat
	// out, 32 with a rate).
	Batch int
}

// Name implements Generator.
func (TxRing) Name() string { return "txring" }

// Ring geometry: a slot holds struct tpacket2_hdr (32 bytes, where the
// kernel expects the frame to start without PACKET_TX_HAS_OFF) and a frame.
const (
	txPace      = 50 * time.Microsecond
	txFrameSize = 128
	txDataOff   = 32
	txBlockSize = 1 << 16
)
