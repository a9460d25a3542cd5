package dataplane

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// filterSnapLen is what the socket filter accepts of a frame: all of it, up
// to a 64 KiB TSO/GSO super-frame plus headers.
const filterSnapLen = 1 << 18

// maxFilterVIPs bounds the per-VIP comparisons in the socket filter. With
// more VIPs the filter only selects IP and IPv6 frames and the workers drop
// the rest as not_vip.
const maxFilterVIPs = 48

// vipFilter returns a classic BPF program that accepts only IPv4/IPv6 frames
// addressed to one of vips (plus VLAN-tagged frames still carrying their tag,
// which the workers parse). Everything else never leaves the kernel.
//
// Classic BPF jumps skip at most 255 instructions, so the program is laid
// out for short jumps: the EtherType dispatch has its own returns, each
// address family's block its own reject, and every IPv6 VIP (8 loads and
// compares) its own accept. No jump then spans more than the IPv4 block
// (about two instructions per VIP) or one IPv6 VIP's block; the assembler
// checks every jump anyway and falls back to the coarse program.
func vipFilter(vips []netip.Addr) []bpf.Instruction {
	vips = slices.Clone(vips)
	slices.SortFunc(vips, netip.Addr.Compare)
	vips = slices.Compact(vips) // a widened filter joins two overlapping sets
	if len(vips) > maxFilterVIPs {
		return coarseFilter()
	}
	var v4, v6 []netip.Addr
	for _, a := range vips {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}

	var a assembler
	const next = 0 // a jump to the next instruction
	reject, accept, inet, inet6 := a.label(), a.label(), a.label(), a.label()
	a.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
	a.jeq(etherTypeIPv4, inet, next)
	a.jeq(etherTypeIPv6, inet6, next)
	a.jeq(etherTypeVLAN, accept, next)
	a.jeq(etherTypeQinQ, accept, reject)
	a.mark(reject)
	a.emit(bpf.RetConstant{Val: 0})
	a.mark(accept)
	a.emit(bpf.RetConstant{Val: filterSnapLen})

	a.mark(inet)
	if len(v4) == 0 {
		a.emit(bpf.RetConstant{Val: 0}) // jumps only go forward
	} else {
		rejectV4, acceptV4 := a.label(), a.label()
		a.emit(bpf.LoadAbsolute{Off: ethHeaderLen + 16, Size: 4})
		for i, vip := range v4 {
			miss := next
			if i == len(v4)-1 {
				miss = rejectV4
			}
			b := vip.As4()
			a.jeq(binary.BigEndian.Uint32(b[:]), acceptV4, miss)
		}
		a.mark(rejectV4)
		a.emit(bpf.RetConstant{Val: 0})
		a.mark(acceptV4)
		a.emit(bpf.RetConstant{Val: filterSnapLen})
	}

	a.mark(inet6)
	for _, vip := range v6 {
		b := vip.As16()
		nextVIP := a.label()
		for w := range 4 {
			a.emit(bpf.LoadAbsolute{Off: uint32(ethHeaderLen + 24 + 4*w), Size: 4})
			a.jeq(binary.BigEndian.Uint32(b[4*w:]), next, nextVIP)
		}
		a.emit(bpf.RetConstant{Val: filterSnapLen})
		a.mark(nextVIP)
	}
	a.emit(bpf.RetConstant{Val: 0})

	prog, ok := a.assemble()
	if !ok {
		return coarseFilter()
	}
	return prog
}

// coarseFilter accepts every IPv4, IPv6 and VLAN-tagged frame.
func coarseFilter() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv4, SkipTrue: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv6, SkipTrue: 3},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeVLAN, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeQinQ, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: filterSnapLen},
	}
}

// assembler lays out a classic BPF program with conditional jumps to labels.
type assembler struct {
	prog   []bpf.Instruction
	at     []int // label -> pc; label 0 is "the next instruction"
	fixups []fixup
}

type fixup struct{ pc, jt, jf int }

func (a *assembler) label() int {
	if len(a.at) == 0 {
		a.at = append(a.at, -1) // label 0
	}
	a.at = append(a.at, -1)
	return len(a.at) - 1
}

func (a *assembler) mark(l int)             { a.at[l] = len(a.prog) }
func (a *assembler) emit(i bpf.Instruction) { a.prog = append(a.prog, i) }
func (a *assembler) jeq(val uint32, jt, jf int) {
	a.fixups = append(a.fixups, fixup{len(a.prog), jt, jf})
	a.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
}

// assemble resolves the jumps; false if one is out of reach (or backward, or
// to an unmarked label).
func (a *assembler) assemble() ([]bpf.Instruction, bool) {
	skip := func(pc, l int) (uint8, bool) {
		if l == 0 {
			return 0, true
		}
		d := a.at[l] - pc - 1
		return uint8(d), a.at[l] >= 0 && d >= 0 && d <= 255
	}
	for _, f := range a.fixups {
		j := a.prog[f.pc].(bpf.JumpIf)
		var okT, okF bool
		j.SkipTrue, okT = skip(f.pc, f.jt)
		j.SkipFalse, okF = skip(f.pc, f.jf)
		if !okT || !okF {
			return nil, false
		}
		a.prog[f.pc] = j
	}
	return a.prog, true
}
