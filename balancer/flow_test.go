package balancer

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func randomFlow(r *rand.Rand) Flow {
	var a [4]byte
	for i := range a {
		a[i] = byte(r.Uint32())
	}
	return Flow{
		Src: netip.AddrFrom4(a), Dst: vip4,
		SrcPort: uint16(r.Uint32()), DstPort: 80, Proto: TCP,
	}
}

// TestFlowHashSpread: random flows through a 3-backend table land within 1% of a third each.
func TestFlowHashSpread(t *testing.T) {
	m := mustMaglev(t, backendKeys(3), equalWeights(3), DefaultTableSize, 11)
	r := rand.New(rand.NewPCG(5, 6))
	const flows = 100_000
	for _, hash := range []struct {
		name string
		fn   func(*Flow) uint64
	}{{"Hash", func(f *Flow) uint64 { return f.Hash(11) }}, {"Hash3", func(f *Flow) uint64 { return f.Hash3(11) }}} {
		var counts [3]int
		for range flows {
			f := randomFlow(r)
			counts[m.Lookup(hash.fn(&f))]++
		}
		for i, c := range counts {
			if share := float64(c) / flows; share < 1.0/3-0.01 || share > 1.0/3+0.01 {
				t.Errorf("%s: backend %d got %.4f of flows, want 0.3333 ± 0.01", hash.name, i, share)
			}
		}
	}
	// Sequential source ports from one client must spread too.
	var counts [3]int
	f := Flow{Src: netip.MustParseAddr("192.0.2.7"), Dst: vip4, DstPort: 443, Proto: TCP}
	for p := range flows / 2 {
		f.SrcPort = uint16(p)
		counts[m.Lookup(f.Hash(0))]++
	}
	for i, c := range counts {
		if share := float64(c) / (flows / 2); share < 1.0/3-0.01 || share > 1.0/3+0.01 {
			t.Errorf("sequential ports: backend %d got %.4f of flows, want 0.3333 ± 0.01", i, share)
		}
	}
}

// TestFlowHashAvalanche: flipping any one input bit flips about half of the output bits.
func TestFlowHashAvalanche(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const trials = 200
	for bit := range 16*8*2 + 16*2 + 8 + 64 { // src, dst, ports, proto, seed
		flips := 0
		for range trials {
			var s, d [16]byte
			for i := range s {
				s[i], d[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			f := Flow{Src: netip.AddrFrom16(s), Dst: netip.AddrFrom16(d), SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Proto: Protocol(r.Uint32())}
			seed := r.Uint64()
			before := f.Hash(seed)
			switch b := bit; {
			case b < 128:
				s[b/8] ^= 1 << (b % 8)
				f.Src = netip.AddrFrom16(s)
			case b < 256:
				d[(b-128)/8] ^= 1 << (b % 8)
				f.Dst = netip.AddrFrom16(d)
			case b < 272:
				f.SrcPort ^= 1 << (b - 256)
			case b < 288:
				f.DstPort ^= 1 << (b - 272)
			case b < 296:
				f.Proto ^= 1 << (b - 288)
			default:
				seed ^= 1 << (b - 296)
			}
			flips += bits.OnesCount64(before ^ f.Hash(seed))
		}
		if avg := float64(flips) / trials; avg < 29 || avg > 35 {
			t.Errorf("input bit %d flips %.1f output bits on average, want about 32", bit, avg)
		}
	}
}

func TestFlowHashProperties(t *testing.T) {
	f := Flow{Src: netip.MustParseAddr("192.0.2.1"), Dst: vip4, SrcPort: 40000, DstPort: 80, Proto: TCP}
	g := f
	g.SrcPort, g.DstPort = 1, 2
	if f.Hash3(3) != g.Hash3(3) {
		t.Error("Hash3 depends on ports")
	}
	if f.Hash(3) == g.Hash(3) {
		t.Error("Hash ignores ports")
	}
	g = f
	g.Proto = UDP
	if f.Hash3(3) == g.Hash3(3) || f.Hash(3) == g.Hash(3) {
		t.Error("hashes ignore the protocol")
	}
	if f.Hash(3) == f.Hash(4) || f.Hash3(3) == f.Hash3(4) {
		t.Error("hashes ignore the seed")
	}
	var zero Flow // must not panic
	_ = zero.Hash(0)
}

// TestFlowHashGolden pins hash values: every dsrlb process, on every run and release, must
// send a flow to the same backend, so a change here must be deliberate.
func TestFlowHashGolden(t *testing.T) {
	f4 := Flow{Src: netip.MustParseAddr("192.0.2.1"), Dst: vip4, SrcPort: 40000, DstPort: 80, Proto: TCP}
	f6 := Flow{Src: netip.MustParseAddr("2001:db8::42"), Dst: vip6, SrcPort: 5353, DstPort: 53, Proto: UDP}
	for _, tc := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"f4.Hash(0)", f4.Hash(0), 0x5324c095ca0e1728},
		{"f4.Hash(42)", f4.Hash(42), 0x1d78ab61be713721},
		{"f4.Hash3(42)", f4.Hash3(42), 0x189fc353a1a745f0},
		{"f6.Hash(42)", f6.Hash(42), 0x8f81b2be9004213e},
		{"f6.Hash3(42)", f6.Hash3(42), 0xc8a48f3e8bc87e63},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func BenchmarkFlowHash(b *testing.B) {
	f := Flow{Src: netip.MustParseAddr("2001:db8::42"), Dst: vip6, SrcPort: 5353, DstPort: 53, Proto: UDP}
	b.ReportAllocs()
	var sink uint64
	for b.Loop() {
		f.SrcPort++
		sink += f.Hash(sink)
	}
	_ = sink
}

// TestAddrWords: the words hashed are the address's 16-byte form, IPv4 included.
func TestAddrWords(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::42", "::", "0.0.0.0", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s)
		b := a.As16()
		hi, lo := addrWords(a)
		if hi != binary.BigEndian.Uint64(b[:8]) || lo != binary.BigEndian.Uint64(b[8:]) {
			t.Errorf("addrWords(%s) = %#x, %#x; want As16 %x", s, hi, lo, b)
		}
	}
	if hi, lo := addrWords(netip.Addr{}); hi != 0 || lo != 0 {
		t.Errorf("addrWords(zero) = %#x, %#x", hi, lo)
	}
}
