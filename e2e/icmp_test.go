//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// icmpSeen records, per server, the quoted flows (IP version and client port)
// of ICMP "fragmentation needed" / "packet too big" messages it received.
type icmpSeen struct {
	mu    sync.Mutex
	ports map[string][]icmpFlow
}

// icmpFlow names a test flow by its IP version and client port: an IPv4 and
// an IPv6 connection may share a port number.
type icmpFlow struct {
	v6   bool
	port uint16
}

func (s *icmpSeen) watch(t *testing.T, l *dsrLab, h *labnet.Host) {
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := h.Sniff(ctx, func(f []byte, out bool) {
		if out || len(f) < 14 {
			return
		}
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		var quoted []byte
		v6 := false
		if m, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && m.TypeCode.Type() == 3 && m.TypeCode.Code() == 4 {
			if len(m.Payload) >= 28 {
				ihl := int(m.Payload[0]&0xf) * 4
				quoted = m.Payload[ihl:]
			}
		}
		if m, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok && m.TypeCode.Type() == 2 {
			if len(m.Payload) >= 4+48 {
				quoted, v6 = m.Payload[4+40:], true
			}
		}
		if len(quoted) >= 4 {
			s.mu.Lock()
			s.ports[h.Name] = append(s.ports[h.Name], icmpFlow{v6, binary.BigEndian.Uint16(quoted[2:])})
			s.mu.Unlock()
		}
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); stop() })
}

// Acceptance (hostile 3): "fragmentation needed" and "packet too big"
// messages about a server's reply reach the server that owns the flow, so
// path-MTU discovery works through DSR; a ping to the VIP is answered.
func TestICMPThroughDSR(t *testing.T) {
	l := newDSRLab(t, 3)
	l.startBalancer(l.config(l.servers, ""))
	seen := &icmpSeen{ports: map[string][]icmpFlow{}}
	for _, s := range l.servers {
		seen.watch(t, l, s)
	}
	in := newInjector(t, l.client)
	o := frameOpts{dst: l.lb.MAC, src: l.client.MAC}
	router4, router6 := netip.MustParseAddr("198.18.0.254"), netip.MustParseAddr("2001:db8:18::fe")

	owner := map[icmpFlow]string{} // client flow → server
	for _, vip := range []netip.Addr{vip4, vip6} {
		for i := 0; i < 30; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err := l.client.Dial(ctx, "tcp", netip.AddrPortFrom(vip, 7000).String())
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintln(c, "hi")
			name, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
			owner[icmpFlow{vip.Is6(), port}] = strings.TrimSpace(name)
			// The server's reply as a router on the way back would quote it.
			client := l.client.Addr4
			if vip.Is6() {
				client = l.client.Addr6
			}
			var frame []byte
			if vip.Is4() {
				inner := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: vip.AsSlice(), DstIP: client.AsSlice(), Length: 1500, IHL: 5}
				tcp := &layers.TCP{SrcPort: 7000, DstPort: layers.TCPPort(port), ACK: true, Seq: 1}
				quoted := o.serializeRaw(t, inner, tcp)[:28]
				eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv4}
				ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: router4.AsSlice(), DstIP: vip.AsSlice()}
				msg := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400}
				frame = o.serialize(t, eth, ip, msg, gopacket.Payload(quoted))
			} else {
				inner := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: vip.AsSlice(), DstIP: client.AsSlice(), Length: 1460}
				tcp := &layers.TCP{SrcPort: 7000, DstPort: layers.TCPPort(port), ACK: true, Seq: 1}
				quoted := o.serializeRaw(t, inner, tcp)[:48]
				eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv6}
				ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: router6.AsSlice(), DstIP: vip.AsSlice()}
				msg := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
				msg.SetNetworkLayerForChecksum(ip)
				frame = o.serialize(t, eth, ip, msg, gopacket.Payload(append([]byte{0, 0, 5, 0x28}, quoted...)))
			}
			if err := in.send(t, frame); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every message reached exactly the server owning its flow.
	deadline := time.Now().Add(3 * time.Second)
	for {
		seen.mu.Lock()
		n := 0
		for _, ps := range seen.ports {
			n += len(ps)
		}
		seen.mu.Unlock()
		if n >= len(owner) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen.mu.Lock()
	got := 0
	for srv, ports := range seen.ports {
		for _, p := range ports {
			got++
			if owner[p] != srv {
				t.Errorf("ICMP for the flow from port %d (IPv6 %v, on %s) reached %s", p.port, p.v6, owner[p], srv)
			}
		}
	}
	seen.mu.Unlock()
	if got != len(owner) {
		t.Errorf("%d ICMP errors reached a server, want %d", got, len(owner))
	}
	t.Logf("%d ICMP errors (v4 frag-needed and v6 packet-too-big) each reached the server owning the quoted flow", got)

	// Ping the VIPs: a server answers, from the VIP.
	for _, vip := range []netip.Addr{vip4, vip6} {
		if err := ping(l.client, vip); err != nil {
			t.Errorf("ping %s: %v", vip, err)
		}
	}
}

// serializeRaw serializes layers without fixing lengths (a quoted header
// keeps the lengths it had).
func (o frameOpts) serializeRaw(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ping sends ICMP echo requests from h to dst and waits for a reply.
func ping(h *labnet.Host, dst netip.Addr) error {
	var c *icmp.PacketConn
	err := h.NS.Do(func() error {
		var err error
		if dst.Is4() {
			c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		} else {
			c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		}
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	var typ icmp.Type = ipv4.ICMPTypeEcho
	proto := 1
	if dst.Is6() {
		typ, proto = ipv6.ICMPTypeEchoRequest, 58
	}
	for seq := 1; seq <= 3; seq++ {
		m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0x1234, Seq: seq, Data: []byte("dsrlb")}}
		b, err := m.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // try the next sequence number
			}
			rm, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil {
				continue
			}
			if e, ok := rm.Body.(*icmp.Echo); ok && (rm.Type == ipv4.ICMPTypeEchoReply || rm.Type == ipv6.ICMPTypeEchoReply) && e.ID == 0x1234 {
				if from.String() != dst.String() {
					return fmt.Errorf("reply from %s, not the VIP", from)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply")
}

// Acceptance (hostile 4): a UDP datagram larger than the MTU, sent as
// fragments in any order (first fragment last, too), reaches one backend
// whole and is answered.
func TestFragmentsAnyOrder(t *testing.T) {
	l := newDSRLab(t, 3)
	l.startBalancer(l.config(l.servers, ""))
	in := newInjector(t, l.client)
	o := frameOpts{dst: l.lb.MAC, src: l.client.MAC}
	pc, pc6 := l.clientUDP(40125, 40126)
	for id := 1; id <= 12; id++ {
		payload := []byte(strings.Repeat(fmt.Sprintf("datagram %d ", id), 300)) // ~3.6 KB
		var frags [][]byte
		sock := pc
		if id%2 == 1 {
			frags = fragments4(t, o, l.client.Addr4, 40125, payload, uint16(id))
		} else {
			frags = fragments6(t, o, l.client.Addr6, 40126, payload, uint32(id))
			sock = pc6
		}
		// Reverse order: the first fragment (with the ports) arrives last.
		for i := len(frags) - 1; i >= 0; i-- {
			if err := in.send(t, frags[i]); err != nil {
				t.Fatal(err)
			}
		}
		sock.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 65536)
		n, _, err := sock.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d (%d fragments, last first): no answer: %v", id, len(frags), err)
		}
		name, echo, _ := strings.Cut(string(buf[:n]), " ")
		if echo != string(payload) {
			t.Fatalf("datagram %d: %s echoed %d bytes, want the %d sent", id, name, len(echo), len(payload))
		}
	}
}

// udpDatagram returns the UDP header and payload of a datagram from sport to
// port 5353, its checksum computed over ip's pseudo-header.
func udpDatagram(t *testing.T, ip gopacket.NetworkLayer, sport uint16, payload []byte) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: 5353}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fragments4 splits a UDP datagram to vip4:5353 into IPv4 fragments of at
// most 1480 bytes of payload.
func fragments4(t *testing.T, o frameOpts, src netip.Addr, sport uint16, payload []byte, id uint16) [][]byte {
	l4 := udpDatagram(t, &layers.IPv4{Version: 4, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: vip4.AsSlice()}, sport, payload)
	var out [][]byte
	for off := 0; off < len(l4); off += 1480 {
		end := min(off+1480, len(l4))
		flags := layers.IPv4MoreFragments
		if end == len(l4) {
			flags = 0
		}
		eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv4}
		f := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: vip4.AsSlice(),
			Id: id, Flags: flags, FragOffset: uint16(off / 8)}
		out = append(out, o.serialize(t, eth, f, gopacket.Payload(l4[off:end])))
	}
	return out
}

// fragments6 does the same with IPv6 fragment headers.
func fragments6(t *testing.T, o frameOpts, src netip.Addr, sport uint16, payload []byte, id uint32) [][]byte {
	l4 := udpDatagram(t, &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: vip6.AsSlice()}, sport, payload)
	var out [][]byte
	for off := 0; off < len(l4); off += 1448 {
		end := min(off+1448, len(l4))
		eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv6}
		f := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: src.AsSlice(), DstIP: vip6.AsSlice()}
		more := uint16(1)
		if end == len(l4) {
			more = 0
		}
		fh := make([]byte, 8)
		fh[0] = byte(layers.IPProtocolUDP)
		binary.BigEndian.PutUint16(fh[2:], uint16(off)|more) // offset in 8-byte units << 3 == bytes
		binary.BigEndian.PutUint32(fh[4:], id)
		out = append(out, o.serialize(t, eth, f, gopacket.Payload(append(fh, l4[off:end]...))))
	}
	return out
}
