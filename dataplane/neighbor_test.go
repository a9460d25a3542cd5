package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestARPReply(t *testing.T) {
	asker := [6]byte{2, 0, 0, 0, 0, 2}
	req := appendARP(nil, broadcastMAC, arpOpRequest, asker, client4, [6]byte{}, vip4)
	r, ok := parseARPRequest(req)
	if !ok || r.target != vip4 || r.senderIP != client4 || r.senderMAC != asker {
		t.Fatalf("parse: %+v %v", r, ok)
	}
	rep := arpReply(nil, r, lbMAC)
	p := gopacket.NewPacket(rep, layers.LayerTypeEthernet, gopacket.Default)
	a, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if a == nil || a.Operation != layers.ARPReply || !net.IP(a.SourceProtAddress).Equal(vip4.AsSlice()) ||
		net.HardwareAddr(a.SourceHwAddress).String() != net.HardwareAddr(lbMAC[:]).String() ||
		!net.IP(a.DstProtAddress).Equal(client4.AsSlice()) {
		t.Fatalf("bad reply: %v", p)
	}
	if _, ok := parseARPRequest(rep); ok {
		t.Fatal("a reply parsed as a request")
	}
}

// solicitation builds, with gopacket, a neighbour solicitation for vip6
// from client6 at asker, sent to dstMAC and dst.
func solicitation(t *testing.T, asker [6]byte, dstMAC net.HardwareAddr, dst net.IP) gopacket.SerializeBuffer {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: asker[:], DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: client6.AsSlice(), DstIP: dst}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: vip6.AsSlice(), Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: asker[:]}}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp, ns); err != nil {
		t.Fatal(err)
	}
	return buf
}

func TestNeighborAdvertisement(t *testing.T) {
	asker := [6]byte{2, 0, 0, 0, 0, 2}
	buf := solicitation(t, asker, net.HardwareAddr{0x33, 0x33, 0xff, 0, 1, 0}, net.ParseIP("ff02::1:ff00:100"))
	got, ok := parseNS(buf.Bytes())
	if !ok || got.target != vip6 || got.src != client6 {
		t.Fatalf("parse: %+v %v", got, ok)
	}
	bad := append([]byte(nil), buf.Bytes()...)
	bad[len(bad)-1] ^= 1
	if _, ok := parseNS(bad); ok {
		t.Fatal("NS with a bad checksum accepted")
	}
	rep := naReply(nil, got, lbMAC)
	p := gopacket.NewPacket(rep, layers.LayerTypeEthernet, gopacket.Default)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	i6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if na == nil || i6 == nil {
		t.Fatalf("reply does not decode: %v", p)
	}
	if netip.AddrFrom16([16]byte(na.TargetAddress)) != vip6 || !na.Solicited() || !na.Override() ||
		netip.AddrFrom16([16]byte(i6.DstIP)) != client6 || i6.HopLimit != 255 {
		t.Fatalf("bad NA: %v", p)
	}
	if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || [6]byte(na.Options[0].Data) != lbMAC {
		t.Fatalf("NA option: %+v", na.Options)
	}
	if icmpv6Checksum(vip6, client6, rep[ethHeaderLen+40:]) != 0 {
		t.Fatal("NA checksum wrong")
	}
	if solicitedNodeMAC(vip6) != [6]byte{0x33, 0x33, 0xff, 0, 1, 0} {
		t.Fatalf("solicited-node MAC %x", solicitedNodeMAC(vip6))
	}
}

func TestInsertVLANTag(t *testing.T) {
	frame := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 1, 80, []byte("x"))
	buf := make([]byte, 100+len(frame))
	mac := 100
	copy(buf[mac:], frame)
	vh := buf[mac-sizeofVnetHdr:]
	vh[0] = vnetNeedsCsum
	vh[2], vh[3] = 54, 0                                    // hdr_len: the headers up to the TCP payload
	vh[6], vh[7] = 34, 0                                    // csum_start at the TCP header
	start := insertVLANTag(buf, mac, etherTypeVLAN, 0x302a) // PCP 1, VLAN 42
	if start != mac-sizeofVnetHdr-vlanTagLen {
		t.Fatalf("start %d", start)
	}
	if hl, cs := binary.LittleEndian.Uint16(buf[start+2:]), binary.LittleEndian.Uint16(buf[start+6:]); hl != 58 || cs != 38 {
		t.Fatalf("hdr_len %d, csum_start %d: want both moved by the tag, to 58 and 38", hl, cs)
	}
	out := buf[start+sizeofVnetHdr : mac+len(frame)]
	if tpid, tci := binary.BigEndian.Uint16(out[12:]), binary.BigEndian.Uint16(out[14:]); tpid != etherTypeVLAN || tci != 0x302a {
		t.Fatalf("tag %#04x %#04x, want %#04x %#04x", tpid, tci, etherTypeVLAN, 0x302a)
	}
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	d, _ := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
	if d == nil || d.VLANIdentifier != 42 || p.Layer(layers.LayerTypeTCP) == nil {
		t.Fatalf("tagged frame: %v", p)
	}
	if string(out[:12]) != string(frame[:12]) || string(out[16:]) != string(frame[12:]) {
		t.Fatal("MACs or payload changed")
	}
}
