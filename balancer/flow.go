package balancer

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Flow is a packet's 5-tuple, parsed by the dataplane into a struct it owns. SrcPort and
// DstPort are 0 for protocols without ports.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            Protocol
}

// Mixing constants: arbitrary odd 64-bit values with about half their bits set.
const (
	k1 = 0x9e3779b97f4a7c15
	k2 = 0xbf58476d1ce4e5b9
	k3 = 0x94d049bb133111eb
	k4 = 0xd6e8feb86659fd93
	k5 = 0xa0761d6478bd642f
	k6 = 0xe7037ed1a0b428db

	domain5 = 0x5a1d0e55f10b0005 // separates Hash from Hash3
	domain3 = 0x3c6ef372fe94f803
)

// Hash hashes the whole 5-tuple with seed. The result is the same in every process and on
// every run for the same flow and seed; every output bit depends on every input bit. It
// never allocates.
func (f *Flow) Hash(seed uint64) uint64 {
	return f.mix(seed^domain5, uint64(f.SrcPort)<<24|uint64(f.DstPort)<<8|uint64(f.Proto))
}

// Hash3 hashes only Src, Dst and Proto, so that all fragments of one IP datagram (only the
// first carries ports) pick the same backend. It never allocates.
func (f *Flow) Hash3(seed uint64) uint64 {
	return f.mix(seed^domain3, uint64(f.Proto))
}

// mix folds each address into 64 bits with a 64x64->128-bit multiply (high xor low half),
// the two addresses in parallel, then folds both with rest the same way and finishes with a
// multiply-xorshift so the low bits used by Maglev's modulo are as good as the high ones.
func (f *Flow) mix(seed, rest uint64) uint64 {
	sh, sl := addrWords(f.Src)
	dh, dl := addrWords(f.Dst)
	a := mulFold(sh^seed^k1, sl^k2)
	b := mulFold(dh^seed^k3, dl^k4)
	return finish(mulFold(a^rest^k5, b^k6))
}

// addrWords returns the address's 16-byte form (IPv4 as ::ffff:a.b.c.d) as two big-endian
// words. It reads AsSlice rather than As16: AsSlice inlines into a stack buffer that is read
// back word by word, where copying As16's array costs a store-forwarding stall.
func addrWords(a netip.Addr) (hi, lo uint64) {
	b := a.AsSlice()
	switch len(b) {
	case 4:
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b))
	case 16:
		return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	}
	return 0, 0 // the zero Addr
}

// mulFold returns the xor of the high and low halves of the 128-bit product x·y.
func mulFold(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

// finish is a multiply-xorshift finalizer: each output bit depends on every input bit.
func finish(h uint64) uint64 {
	h ^= h >> 30
	h *= k2
	h ^= h >> 27
	h *= k3
	return h ^ h>>31
}
