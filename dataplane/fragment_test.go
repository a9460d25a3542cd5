package dataplane

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// fragment4 marks an IPv4 frame as a fragment: the first (offset 0, more
// fragments) or a later one at offset 8*off. The header checksum is not
// fixed up: Parse does not check it.
func fragment4(f []byte, off uint16, more bool) []byte {
	v := off & 0x1fff
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(f[ethHeaderLen+6:], v)
	return f
}

// fragment6 inserts a fragment header into an IPv6 frame at offset 8*off.
func fragment6(f []byte, off uint16, more bool) []byte {
	const ip6 = ethHeaderLen + 40
	fh := make([]byte, 8)
	fh[0] = f[ethHeaderLen+6] // the next header moves into it
	v := off << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(fh[2:], v)
	binary.BigEndian.PutUint32(fh[4:], 0x1234)
	out := append(append(append([]byte(nil), f[:ip6]...), fh...), f[ip6:]...)
	out[ethHeaderLen+6] = ip6Fragment
	binary.BigEndian.PutUint16(out[ethHeaderLen+4:], binary.BigEndian.Uint16(f[ethHeaderLen+4:])+8)
	return out
}

// Every fragment of a datagram reaches the backend its first fragment did,
// and a first fragment to a port no service serves is dropped as the whole
// datagram would be.
func TestFragmentsFollowTheFirst(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1024, 1e12)
	for sport := uint16(40000); sport < 40050; sport++ {
		for _, c := range []struct {
			name  string
			proto layers.IPProtocol
			dport uint16
		}{{"udp any port", layers.IPProtocolUDP, 5353}, {"tcp 80", layers.IPProtocolTCP, 80}} {
			first := fragment4(buildFrame(t, client4, vip4, c.proto, sport, c.dport, make([]byte, 64)), 0, true)
			if r := w.Handle(first, tab, 1); r != Forwarded {
				t.Fatalf("%s first fragment: %v", c.name, r)
			}
			later := fragment4(buildFrame(t, client4, vip4, c.proto, 1, 2, make([]byte, 64)), 9, false)
			if r := w.Handle(later, tab, 1); r != Forwarded {
				t.Fatalf("%s later fragment: %v", c.name, r)
			}
			if [6]byte(later[:6]) != [6]byte(first[:6]) {
				t.Fatalf("%s from port %d: first fragment to %x, later one to %x", c.name, sport, first[:6], later[:6])
			}
		}
	}
	first := fragment4(buildFrame(t, client4, vip4, layers.IPProtocolTCP, 40000, 22, make([]byte, 64)), 0, true)
	if r := w.Handle(first, tab, 1); r != DropNoService {
		t.Errorf("first fragment to tcp port 22 (only port 80 served): %v, want %v", r, DropNoService)
	}
}

// An IPv6 atomic fragment (offset 0, no more fragments) is a whole packet:
// it goes where the same segment without the header goes, by its flow.
func TestIPv6AtomicFragment(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1024, 1e12)
	for sport := uint16(40000); sport < 40050; sport++ {
		plain := buildAck(t, client6, vip6, sport, 80)
		atomic := fragment6(plain, 0, false)
		var p Packet
		if r := Parse(atomic, &p); r != Forwarded || p.Fragment || !p.HasPorts || p.DstPort != 80 {
			t.Fatalf("atomic fragment parsed as %v, fragment %v, ports %v %d", r, p.Fragment, p.HasPorts, p.DstPort)
		}
		if r := w.Handle(plain, tab, 1); r != Forwarded {
			t.Fatalf("plain: %v", r)
		}
		if r := w.Handle(atomic, tab, 1); r != Forwarded {
			t.Fatalf("atomic fragment: %v", r)
		}
		if [6]byte(atomic[:6]) != [6]byte(plain[:6]) {
			t.Fatalf("port %d: the atomic fragment went to %x, the plain segment to %x", sport, atomic[:6], plain[:6])
		}
	}
	var p Packet
	if Parse(fragment6(buildAck(t, client6, vip6, 1, 80), 0, true), &p); !p.Fragment || p.LaterFragment {
		t.Errorf("first IPv6 fragment: Fragment %v LaterFragment %v", p.Fragment, p.LaterFragment)
	}
	if Parse(fragment6(buildAck(t, client6, vip6, 1, 80), 3, false), &p); !p.Fragment || !p.LaterFragment {
		t.Errorf("last IPv6 fragment: Fragment %v LaterFragment %v", p.Fragment, p.LaterFragment)
	}
}

// A large ping's later fragments, which carry no ICMP header, go where its
// first fragment, the echo request, went.
func TestFragmentedPing(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 64, 1e12)
	for host := byte(1); host < 50; host++ {
		src := client4.As4()
		src[3] = host
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, DstMAC: net.HardwareAddr(lbMAC[:]), EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: src[:], DstIP: vip4.AsSlice(), Flags: layers.IPv4MoreFragments}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp, gopacket.Payload(make([]byte, 64))); err != nil {
			t.Fatal(err)
		}
		first := append([]byte(nil), buf.Bytes()...)
		if r := w.Handle(first, tab, 1); r != Forwarded {
			t.Fatalf("first fragment of the echo request: %v", r)
		}
		later := fragment4(append([]byte(nil), buf.Bytes()...), 9, false)
		if r := w.Handle(later, tab, 1); r != Forwarded {
			t.Fatalf("later fragment of the echo request: %v", r)
		}
		if [6]byte(later[:6]) != [6]byte(first[:6]) {
			t.Fatalf("pinger .%d: first fragment to %x, later one to %x", host, first[:6], later[:6])
		}
	}
}
