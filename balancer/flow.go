package balancer

import (
	"encoding/binary"
	"net/netip"
)

// Flow is a packet's 5-tuple, parsed by the dataplane into a struct it owns. SrcPort and
// DstPort are 0 for protocols without ports.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            Protocol
}

// Mixing constants: the 64-bit golden ratio and two odd multipliers with good avalanche.
const (
	mulAbsorb = 0x9e3779b97f4a7c15
	mulFin1   = 0xbf58476d1ce4e5b9
	mulFin2   = 0x94d049bb133111eb

	domain5 = 0x5a1d_0e55_f10b_0005 // separates Hash from Hash3
	domain3 = 0x3c6e_f372_fe94_f803
)

// Hash hashes the whole 5-tuple with seed. The result is the same in every process and on
// every run for the same flow and seed; all 64 bits are mixed. It never allocates.
func (f *Flow) Hash(seed uint64) uint64 {
	h := f.addrs(seed ^ domain5)
	return finish(absorb(h, uint64(f.SrcPort)<<24|uint64(f.DstPort)<<8|uint64(f.Proto)))
}

// Hash3 hashes only Src, Dst and Proto, so that all fragments of one IP datagram (only the
// first carries ports) pick the same backend. It never allocates.
func (f *Flow) Hash3(seed uint64) uint64 {
	h := f.addrs(seed ^ domain3)
	return finish(absorb(h, uint64(f.Proto)))
}

// addrs absorbs both addresses, as four big-endian 64-bit words of their 16-byte forms.
func (f *Flow) addrs(h uint64) uint64 {
	s, d := f.Src.As16(), f.Dst.As16()
	h = absorb(h, binary.BigEndian.Uint64(s[:8]))
	h = absorb(h, binary.BigEndian.Uint64(s[8:]))
	h = absorb(h, binary.BigEndian.Uint64(d[:8]))
	return absorb(h, binary.BigEndian.Uint64(d[8:]))
}

// absorb mixes one word into the running state: xor, multiply, fold the high half down.
func absorb(h, w uint64) uint64 {
	h = (h ^ w) * mulAbsorb
	return h ^ h>>32
}

// finish is a multiply-xorshift finalizer: each output bit depends on every input bit.
func finish(h uint64) uint64 {
	h ^= h >> 30
	h *= mulFin1
	h ^= h >> 27
	h *= mulFin2
	return h ^ h>>31
}
