package lab

import (
	"encoding/binary"
	"net/netip"
)

// EtherTypes the capture looks at.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8

	protoICMPv6         = 58
	icmpv6RouterSolicit = 133 // first Neighbor Discovery type
	icmpv6Redirect      = 137 // last Neighbor Discovery type
)

// ipSource returns the IP source address of an Ethernet frame carrying IPv4
// or IPv6, behind up to two VLAN tags. Other frames (ARP, truncated
// headers) report false, and so does IPv6 Neighbor Discovery (ICMPv6 types
// 133-137 right after the IPv6 header): answering ARP and ND for the VIP is
// the balancer's job, not a reply that bypassed DSR.
func ipSource(frame []byte) (netip.Addr, bool) {
	if len(frame) < 14 {
		return netip.Addr{}, false
	}
	et := binary.BigEndian.Uint16(frame[12:14])
	p := frame[14:]
	for tags := 0; (et == etherTypeVLAN || et == etherTypeQinQ) && tags < 2; tags++ {
		if len(p) < 4 {
			return netip.Addr{}, false
		}
		et = binary.BigEndian.Uint16(p[2:4])
		p = p[4:]
	}
	switch et {
	case etherTypeIPv4:
		if len(p) < 20 || p[0]>>4 != 4 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(p[12:16])), true
	case etherTypeIPv6:
		if len(p) < 40 || p[0]>>4 != 6 {
			return netip.Addr{}, false
		}
		if p[6] == protoICMPv6 && len(p) > 40 && p[40] >= icmpv6RouterSolicit && p[40] <= icmpv6Redirect {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(p[8:24])), true
	}
	return netip.Addr{}, false
}
