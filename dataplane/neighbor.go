package dataplane

import (
	"encoding/binary"
	"net/netip"

	"github.com/dsrlb/dsrlb/internal/csum"
)

// The balancer attracts VIP traffic by answering ARP requests (IPv4) and
// neighbour solicitations (IPv6) for its VIPs with its interface MAC, and by
// announcing the VIPs when they appear (gratuitous ARP, unsolicited NA). This
// file encodes and decodes those frames; responder_linux.go does the I/O.

const (
	arpFrameLen   = ethHeaderLen + 28
	arpOpRequest  = 1
	arpOpReply    = 2
	icmp6NS       = 135
	icmp6NA       = 136
	naFrameLen    = ethHeaderLen + 40 + 24 + 8 // NA with a target link-layer address option
	naRouter      = 0x80
	naSolicited   = 0x40
	naOverride    = 0x20
	ndOptSrcLL    = 1
	ndOptTargetLL = 2
)

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// arpRequest is an ARP request for an IPv4 address.
type arpRequest struct {
	senderMAC [6]byte
	senderIP  netip.Addr
	target    netip.Addr
}

// parseARPRequest decodes an Ethernet/IPv4 ARP request. ok is false for any
// other frame.
func parseARPRequest(frame []byte) (req arpRequest, ok bool) {
	if len(frame) < arpFrameLen || binary.BigEndian.Uint16(frame[12:]) != etherTypeARP {
		return req, false
	}
	a := frame[ethHeaderLen:]
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != etherTypeIPv4 ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:]) != arpOpRequest {
		return req, false
	}
	req.senderMAC = [6]byte(a[8:14])
	req.senderIP = netip.AddrFrom4([4]byte(a[14:18]))
	req.target = netip.AddrFrom4([4]byte(a[24:28]))
	return req, true
}

// appendARP appends an ARP frame: op from (mac, ip) to (tmac, tip), sent to
// ethernet destination dst.
func appendARP(b []byte, dst [6]byte, op uint16, mac [6]byte, ip netip.Addr, tmac [6]byte, tip netip.Addr) []byte {
	b = append(b, dst[:]...)
	b = append(b, mac[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeARP)
	b = binary.BigEndian.AppendUint16(b, 1) // Ethernet
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, mac[:]...)
	ip4 := ip.As4()
	b = append(b, ip4[:]...)
	b = append(b, tmac[:]...)
	t4 := tip.As4()
	return append(b, t4[:]...)
}

// arpReply answers req on behalf of mac.
func arpReply(b []byte, req arpRequest, mac [6]byte) []byte {
	return appendARP(b, req.senderMAC, arpOpReply, mac, req.target, req.senderMAC, req.senderIP)
}

// gratuitousARP announces that vip is at mac (a broadcast request with
// sender = target = vip, which every stack accepts as an update).
func gratuitousARP(b []byte, vip netip.Addr, mac [6]byte) []byte {
	return appendARP(b, broadcastMAC, arpOpRequest, mac, vip, [6]byte{}, vip)
}

// neighborSolicitation is an IPv6 NS for a target address.
type neighborSolicitation struct {
	srcMAC [6]byte
	src    netip.Addr // :: for duplicate address detection
	target netip.Addr
}

// parseNS decodes an Ethernet/IPv6 neighbour solicitation without extension
// headers. ok is false for any other frame or a bad ICMPv6 checksum.
func parseNS(frame []byte) (ns neighborSolicitation, ok bool) {
	if len(frame) < ethHeaderLen+40+24 || binary.BigEndian.Uint16(frame[12:]) != etherTypeIPv6 {
		return ns, false
	}
	ip := frame[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 || plen < 24 || 40+plen > len(ip) {
		return ns, false
	}
	icmp := ip[40 : 40+plen]
	if icmp[0] != icmp6NS || icmp[1] != 0 {
		return ns, false
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	if icmpv6Checksum(src, dst, icmp) != 0 {
		return ns, false
	}
	ns.srcMAC = [6]byte(frame[6:12])
	ns.src = src
	ns.target = netip.AddrFrom16([16]byte(icmp[8:24]))
	return ns, !ns.target.IsMulticast()
}

// neighborAdvertisement appends an NA saying target is at mac. dstMAC and
// dst are where it goes; flags are naSolicited/naOverride.
func neighborAdvertisement(b []byte, dstMAC [6]byte, dst, target netip.Addr, mac [6]byte, flags byte) []byte {
	b = append(b, dstMAC[:]...)
	b = append(b, mac[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv6)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, 32)
	b = append(b, protoICMPv6, 255)
	t16, d16 := target.As16(), dst.As16()
	b = append(b, t16[:]...)
	b = append(b, d16[:]...)
	icmp := len(b)
	b = append(b, icmp6NA, 0, 0, 0, flags, 0, 0, 0)
	b = append(b, t16[:]...)
	b = append(b, ndOptTargetLL, 1)
	b = append(b, mac[:]...)
	sum := icmpv6Checksum(target, dst, b[icmp:])
	binary.BigEndian.PutUint16(b[icmp+2:], sum)
	return b
}

// naReply answers ns on behalf of mac.
func naReply(b []byte, ns neighborSolicitation, mac [6]byte) []byte {
	if !ns.src.IsUnspecified() {
		return neighborAdvertisement(b, ns.srcMAC, ns.src, ns.target, mac, naSolicited|naOverride)
	}
	// DAD probe: answer to all nodes, unsolicited.
	return neighborAdvertisement(b, allNodesMAC, allNodes, ns.target, mac, naOverride)
}

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}
)

// unsolicitedNA announces that vip is at mac to all nodes.
func unsolicitedNA(b []byte, vip netip.Addr, mac [6]byte) []byte {
	return neighborAdvertisement(b, allNodesMAC, allNodes, vip, mac, naOverride)
}

// solicitedNodeMAC is the Ethernet multicast address that neighbour
// solicitations for a are sent to (33:33:ff + the address's last 3 bytes).
func solicitedNodeMAC(a netip.Addr) [6]byte {
	b := a.As16()
	return [6]byte{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// icmpv6Checksum returns the ICMPv6 checksum of msg over the IPv6
// pseudo-header. Over a message whose checksum field is filled in it returns 0
// when the checksum is right.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	sum := csum.Add(csum.Add(0, s[:]), d[:]) + uint32(len(msg)) + protoICMPv6
	return ^csum.Fold(csum.Add(sum, msg))
}
