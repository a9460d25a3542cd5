package dataplane

import (
	"encoding/binary"
	"net/netip"
)

// EtherType values the dataplane understands.
const (
	etherTypeIPv4  = 0x0800
	etherTypeARP   = 0x0806
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	etherTypeIPv6  = 0x86dd
	ethHeaderLen   = 14
	vlanTagLen     = 4
	maxVLANTags    = 2
	maxIPv6ExtHdrs = 8
)

// IP protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6DestOpts = 60
	ip6NoNext   = 59
)

// Packet is what Parse learns about a frame. The caller owns it and reuses it
// for every frame; Parse overwrites every field. It holds no reference into
// the frame, so it stays valid after the frame's buffer is reused.
type Packet struct {
	// L3 is the offset of the IP header in the frame (after any VLAN tags).
	L3 int
	// Tags is the number of 802.1Q/802.1ad tags present in the frame bytes.
	Tags int
	// Src and Dst are the IP addresses.
	Src, Dst netip.Addr
	// Proto is the transport protocol (the last IPv6 next-header value).
	Proto uint8
	// SrcPort and DstPort are valid when HasPorts is true.
	SrcPort, DstPort uint16
	HasPorts         bool
	// TCPFlags is the flags byte of a TCP header (FIN 0x01, SYN 0x02, RST
	// 0x04, PSH 0x08, ACK 0x10, ...); valid when Proto is TCP and HasPorts.
	TCPFlags uint8
	// Fragment is true for any IP fragment (first or later); Ports are only
	// present in the first. An IPv6 atomic fragment (offset 0, no more
	// fragments) is a whole packet, not a fragment.
	Fragment bool
	// LaterFragment is true for a fragment after the first: nothing of the
	// transport header is there (no ports, no ICMP type).
	LaterFragment bool
	// ICMPType is valid when Proto is ICMP or ICMPv6 and the header is present.
	ICMPType uint8
	// Inner is the flow quoted by an ICMP error (destination unreachable,
	// fragmentation needed / packet too big, time exceeded, parameter
	// problem); valid when HasInner. Its ports are always present.
	Inner    InnerFlow
	HasInner bool
}

// InnerFlow is the header an ICMP error quotes: the packet that caused it.
type InnerFlow struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// Reason says why a frame was not forwarded. Counters are kept per reason.
type Reason uint8

// Drop reasons. Keep in sync with reasonNames.
const (
	Forwarded       Reason = iota
	DropRunt               // shorter than an Ethernet header
	DropNotIP              // not IPv4/IPv6 (ARP and NDP are answered by the neighbour responder, not here)
	DropBadIPHeader        // truncated or inconsistent IPv4/IPv6 header
	DropBadL4Header        // TCP/UDP header truncated
	DropNotVIP             // destination is not a configured VIP
	DropNoService          // VIP known, but no service for this protocol and port
	DropNoBackend          // service has no backend able to take the flow
	DropProtocol           // protocol the balancer does not carry (ICMP, other)
	DropNDP                // IPv6 neighbour discovery for a VIP: handled by the responder
	DropTruncated          // the ring captured less than the whole frame
	DropTxError            // no room to transmit (every TX ring slot in flight) or the kernel refused a large frame
	DropLoop               // sent by the very backend it would go to: a server without the VIP forwarding it back (a loop)
	numReasons
)

var reasonNames = [numReasons]string{
	Forwarded:       "forwarded",
	DropRunt:        "runt",
	DropNotIP:       "not_ip",
	DropBadIPHeader: "bad_ip_header",
	DropBadL4Header: "bad_l4_header",
	DropNotVIP:      "not_vip",
	DropNoService:   "no_service",
	DropNoBackend:   "no_backend",
	DropProtocol:    "unsupported_protocol",
	DropNDP:         "ndp",
	DropTruncated:   "truncated",
	DropTxError:     "tx_error",
	DropLoop:        "loop",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Parse reads the Ethernet, IP and transport headers of frame into p. It
// returns Forwarded when the frame is a well-formed IP packet, or the reason
// it cannot be. It never allocates and never panics on any input.
func Parse(frame []byte, p *Packet) Reason {
	*p = Packet{}
	if len(frame) < ethHeaderLen {
		return DropRunt
	}
	off := 12
	et := binary.BigEndian.Uint16(frame[off:])
	for et == etherTypeVLAN || et == etherTypeQinQ {
		if p.Tags == maxVLANTags || len(frame) < off+vlanTagLen+2 {
			return DropNotIP
		}
		p.Tags++
		off += vlanTagLen
		et = binary.BigEndian.Uint16(frame[off:])
	}
	off += 2
	p.L3 = off
	switch et {
	case etherTypeIPv4:
		return parseIPv4(frame[off:], p)
	case etherTypeIPv6:
		return parseIPv6(frame[off:], p)
	}
	return DropNotIP
}

func parseIPv4(b []byte, p *Packet) Reason {
	if len(b) < 20 || b[0]>>4 != 4 {
		return DropBadIPHeader
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || len(b) < ihl || total < ihl {
		return DropBadIPHeader
	}
	// A TSO/GSO super-frame's total length covers the whole frame; anything
	// longer than what arrived is a lie. Shorter is Ethernet padding.
	if total > len(b) {
		return DropBadIPHeader
	}
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Proto = b[9]
	frag := binary.BigEndian.Uint16(b[6:])
	const moreFragments, offsetMask = 0x2000, 0x1fff
	if frag&(moreFragments|offsetMask) != 0 {
		p.Fragment = true
		if frag&offsetMask != 0 {
			p.LaterFragment = true // no transport header
			return Forwarded
		}
	}
	return parseL4(b[ihl:total], p)
}

func parseIPv6(b []byte, p *Packet) Reason {
	if len(b) < 40 || b[0]>>4 != 6 {
		return DropBadIPHeader
	}
	payload := int(binary.BigEndian.Uint16(b[4:]))
	if 40+payload > len(b) {
		return DropBadIPHeader
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	rest := b[40 : 40+payload]
	for i := 0; ; i++ {
		switch next {
		case ip6HopByHop, ip6Routing, ip6DestOpts:
			if i == maxIPv6ExtHdrs || len(rest) < 8 {
				return DropBadIPHeader
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				return DropBadIPHeader
			}
			next, rest = rest[0], rest[n:]
			continue
		case ip6Fragment:
			if i == maxIPv6ExtHdrs || len(rest) < 8 {
				return DropBadIPHeader
			}
			// An atomic fragment (offset 0, no more fragments: RFC 6946)
			// is a whole packet, balanced as its flow.
			fo := binary.BigEndian.Uint16(rest[2:])
			offset, more := fo&^7, fo&1 != 0
			p.Fragment = offset != 0 || more
			next, rest = rest[0], rest[8:]
			if offset != 0 {
				p.Proto, p.LaterFragment = next, true
				return Forwarded
			}
			continue
		}
		break
	}
	p.Proto = next
	return parseL4(rest, p)
}

func parseL4(b []byte, p *Packet) Reason {
	switch p.Proto {
	case protoTCP:
		if len(b) < 20 {
			return DropBadL4Header
		}
		p.TCPFlags = b[13]
	case protoUDP:
		if len(b) < 8 {
			return DropBadL4Header
		}
	case protoICMP, protoICMPv6:
		if len(b) < 4 {
			return DropBadL4Header
		}
		p.ICMPType = b[0]
		if isICMPError(p.Proto, p.ICMPType) && len(b) >= 8 {
			p.HasInner = parseInner(b[8:], p.Proto == protoICMPv6, &p.Inner)
		}
		return Forwarded
	default:
		return Forwarded
	}
	p.SrcPort = binary.BigEndian.Uint16(b[0:])
	p.DstPort = binary.BigEndian.Uint16(b[2:])
	p.HasPorts = true
	return Forwarded
}

// tcpSYN and tcpACK are TCP header flags.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// Opens reports whether the packet opens a TCP connection: SYN without ACK.
// Only such a packet can be known to start a flow; anything else may belong
// to one that began before the balancer saw it.
func (p *Packet) Opens() bool {
	return p.Proto == protoTCP && p.HasPorts && p.TCPFlags&(tcpSYN|tcpACK) == tcpSYN
}

// isICMPError reports whether an ICMP or ICMPv6 type is an error that quotes
// the offending packet's headers.
func isICMPError(proto, typ uint8) bool {
	if proto == protoICMP {
		return typ == 3 || typ == 11 || typ == 12 // unreachable (incl. frag needed), time exceeded, parameter problem
	}
	return typ >= 1 && typ <= 4 // unreachable, packet too big, time exceeded, parameter problem
}

// parseInner reads the IP header and ports quoted in an ICMP error. Only TCP
// and UDP quotes (without IPv6 extension headers) are of use to the balancer.
func parseInner(b []byte, v6 bool, f *InnerFlow) bool {
	var l4 []byte
	if !v6 {
		if len(b) < 20 || b[0]>>4 != 4 {
			return false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl+4 || binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return false
		}
		f.Src = netip.AddrFrom4([4]byte(b[12:16]))
		f.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		f.Proto = b[9]
		l4 = b[ihl:]
	} else {
		if len(b) < 44 || b[0]>>4 != 6 {
			return false
		}
		f.Src = netip.AddrFrom16([16]byte(b[8:24]))
		f.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		f.Proto = b[6]
		l4 = b[40:]
	}
	if f.Proto != protoTCP && f.Proto != protoUDP {
		return false
	}
	f.SrcPort = binary.BigEndian.Uint16(l4[0:])
	f.DstPort = binary.BigEndian.Uint16(l4[2:])
	return true
}

// Rewrite performs the DSR rewrite in place: destination MAC = dst, source
// MAC = src. Nothing else in the frame changes.
func Rewrite(frame []byte, dst, src [6]byte) {
	copy(frame[0:6], dst[:])
	copy(frame[6:12], src[:])
}
