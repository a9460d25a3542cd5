package dataplane

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/net/bpf"
)

// filterSnapLen is what the socket filter accepts of a frame: all of it, up
// to a 64 KiB TSO/GSO super-frame plus headers.
const filterSnapLen = 1 << 18

// maxFilterVIPs bounds the per-VIP comparisons in the socket filter (classic
// BPF jumps reach at most 255 instructions). With more VIPs the filter only
// selects IP and IPv6 frames and the workers drop the rest as not_vip.
const maxFilterVIPs = 48

// vipFilter returns a classic BPF program that accepts only IPv4/IPv6 frames
// addressed to one of vips (plus VLAN-tagged frames still carrying their tag,
// which the workers parse). Everything else never leaves the kernel.
func vipFilter(vips []netip.Addr) []bpf.Instruction {
	var v4, v6 []netip.Addr
	for _, a := range vips {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	exact := len(v4)+len(v6) <= maxFilterVIPs

	// Layout: header, the v4 block, the v6 block, reject, accept. Jumps are
	// resolved after the blocks are laid out.
	const (
		reject = -1
		accept = -2
	)
	type insn struct {
		i         bpf.Instruction
		jt, jf    int // absolute targets for conditional jumps (or reject/accept)
		condition bool
	}
	var prog []insn
	emit := func(i bpf.Instruction) { prog = append(prog, insn{i: i}) }
	cond := func(val uint32, jt, jf int) {
		prog = append(prog, insn{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: val}, jt: jt, jf: jf, condition: true})
	}
	v4Start, v6Start := -3, -4 // placeholders patched below

	emit(bpf.LoadAbsolute{Off: 12, Size: 2})
	cond(etherTypeIPv4, v4Start, len(prog)+1)
	cond(etherTypeIPv6, v6Start, len(prog)+1)
	cond(etherTypeVLAN, accept, len(prog)+1)
	cond(etherTypeQinQ, accept, reject)

	v4At := len(prog)
	if !exact {
		emit(bpf.Jump{}) // placeholder, becomes accept
		prog[len(prog)-1] = insn{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0}, jt: accept, jf: accept, condition: true}
	} else {
		emit(bpf.LoadAbsolute{Off: ethHeaderLen + 16, Size: 4})
		for i, a := range v4 {
			next := reject
			if i+1 < len(v4) {
				next = len(prog) + 1
			}
			b := a.As4()
			cond(binary.BigEndian.Uint32(b[:]), accept, next)
		}
		if len(v4) == 0 {
			cond(0, reject, reject)
		}
	}

	v6At := len(prog)
	if !exact {
		prog = append(prog, insn{i: bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0}, jt: accept, jf: accept, condition: true})
	} else {
		for i, a := range v6 {
			b := a.As16()
			nextVIP := reject
			if i+1 < len(v6) {
				nextVIP = len(prog) + 8 // 4 loads + 4 compares per VIP
			}
			for w := 0; w < 4; w++ {
				emit(bpf.LoadAbsolute{Off: uint32(ethHeaderLen + 24 + 4*w), Size: 4})
				onMatch := len(prog) + 1
				if w == 3 {
					onMatch = accept
				}
				cond(binary.BigEndian.Uint32(b[4*w:]), onMatch, nextVIP)
			}
		}
		if len(v6) == 0 {
			cond(0, reject, reject)
		}
	}
	rejectAt := len(prog)
	emit(bpf.RetConstant{Val: 0})
	acceptAt := len(prog)
	emit(bpf.RetConstant{Val: filterSnapLen})

	resolve := func(t int) int {
		switch t {
		case reject:
			return rejectAt
		case accept:
			return acceptAt
		case v4Start:
			return v4At
		case v6Start:
			return v6At
		}
		return t
	}
	out := make([]bpf.Instruction, len(prog))
	for pc, in := range prog {
		if !in.condition {
			out[pc] = in.i
			continue
		}
		j := in.i.(bpf.JumpIf)
		j.SkipTrue = uint8(resolve(in.jt) - pc - 1)
		j.SkipFalse = uint8(resolve(in.jf) - pc - 1)
		out[pc] = j
	}
	return out
}
