//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// injector sends raw frames out of a host's eth0.
type injector struct {
	c   *packet.Conn
	src net.HardwareAddr
}

func newInjector(t *testing.T, h *labnet.Host) *injector {
	t.Helper()
	var c *packet.Conn
	err := h.NS.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, 0, nil) // protocol 0: sends only
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &injector{c: c, src: h.MAC}
}

func (in *injector) send(t *testing.T, frame []byte) error {
	_, err := in.c.WriteTo(frame, &packet.Addr{HardwareAddr: frame[:6]})
	return err
}

// frameOpts builds frames from the client to the balancer's MAC.
type frameOpts struct {
	dst, src net.HardwareAddr
}

func (o frameOpts) serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func (o frameOpts) udp4(t *testing.T, src netip.Addr, sport, dport uint16, payload []byte, mod func(*layers.IPv4)) []byte {
	eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: vip4.AsSlice()}
	if mod != nil {
		mod(ip)
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	return o.serialize(t, eth, ip, udp, gopacket.Payload(payload))
}

// Acceptance (hostile 1): a named corpus of malformed and odd frames goes
// through a running balancer: nothing crashes, each frame is dropped under
// the right reason, filtered in the kernel, or forwarded and answered, and
// legitimate traffic sent between them is all delivered.
func TestMalformedCorpus(t *testing.T) { malformedCorpus(t, "", "ring=frames") }

// The same corpus through a worker on a TPACKET_V3 ring (ring: blocks), which
// reads the frames, their VLAN tags and the virtio headers of checksum
// offload from blocks, and sends the jumbo frame (larger than a transmit
// slot) on its own.
func TestMalformedCorpusBlocks(t *testing.T) { malformedCorpus(t, "ring: blocks\n", "ring=blocks") }

// The same through ring: auto on the lab's two workers, spread by CPU: each
// worker's two rings in one fanout group (the workers stay on their slots
// unless they fall behind).
func TestMalformedCorpusAuto(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("fanout: cpu with two workers needs two CPUs")
	}
	malformedCorpus(t, "ring: auto\nfanout: cpu\ncpus: 0-1\n", "ring=auto")
}

// malformedCorpus runs the corpus through a balancer whose config has extra
// at its top and whose start-up log says ring.
func malformedCorpus(t *testing.T, extra, ring string) {
	l := newDSRLab(t, 3)
	// Jumbo frames need a jumbo segment.
	for _, h := range append([]*labnet.Host{l.client, l.lb}, l.servers...) {
		if out, err := h.NS.Command("ip", "link", "set", "eth0", "mtu", "9000").CombinedOutput(); err != nil {
			t.Fatalf("%s mtu: %v %s", h.Name, err, out)
		}
		if out, err := l.net.Switch.Command("ip", "link", "set", h.Port, "mtu", "9000").CombinedOutput(); err != nil {
			t.Fatalf("%s port mtu: %v %s", h.Name, err, out)
		}
	}
	l.startBalancer(l.config(l.servers, extra))
	if !strings.Contains(l.lbOut.String(), ring) {
		t.Fatalf("the balancer's start-up log does not say %s:\n%s", ring, l.lbOut.String())
	}
	in := newInjector(t, l.client)
	o := frameOpts{dst: l.lb.MAC, src: l.client.MAC}
	client := l.client.Addr4

	// A UDP socket on the client receives the answers to forwarded frames.
	pc, pc6 := l.clientUDP(40123, 40124)

	base := o.udp4(t, client, 40123, 5353, []byte("legit"), nil)
	setIPv4 := func(f []byte, off int, v ...byte) []byte {
		g := append([]byte(nil), f...)
		copy(g[14+off:], v)
		return g
	}
	tcp := func(mod func(*layers.IPv4)) []byte {
		eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: client.AsSlice(), DstIP: vip4.AsSlice()}
		mod(ip)
		tc := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 1000}
		tc.SetNetworkLayerForChecksum(ip)
		return o.serialize(t, eth, ip, tc)
	}
	v6 := func(ext []gopacket.SerializableLayer, next layers.IPProtocol, payload []byte, dport uint16) []byte {
		eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: o.dst, EthernetType: layers.EthernetTypeIPv6}
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: l.client.Addr6.AsSlice(), DstIP: vip6.AsSlice()}
		udp := &layers.UDP{SrcPort: 40124, DstPort: layers.UDPPort(dport)}
		udp.SetNetworkLayerForChecksum(ip)
		ls := append([]gopacket.SerializableLayer{eth, ip}, ext...)
		return o.serialize(t, append(ls, udp, gopacket.Payload(payload))...)
	}
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolUDP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}

	tagged := func(f []byte, tags ...uint16) []byte {
		out := append([]byte(nil), f[:12]...)
		for _, tpid := range tags {
			out = binary.BigEndian.AppendUint16(out, tpid)
			out = binary.BigEndian.AppendUint16(out, 7)
		}
		return append(out, f[12:]...)
	}
	badExt := v6([]gopacket.SerializableLayer{hbh, dst}, layers.IPProtocolIPv6HopByHop, []byte("x"), 5353)
	badExt[14+40+1] = 30 // hop-by-hop header claims 248 bytes

	const (
		answered = "answered" // forwarded, and the server's answer arrives
		fwd      = "forwarded"
		filtered = "filtered" // never reaches the workers: the socket filter drops it in the kernel
	)
	corpus := []struct {
		name  string
		frame []byte
		want  string // a drop reason, or one of the above
		reply string // for answered: the UDP socket the answer comes to ("4" or "6")
	}{
		{"runt", base[:20], filtered, ""},
		{"truncated ipv4 header", base[:34], "bad_ip_header", ""},
		{"ipv4 total length beyond frame", setIPv4(base, 2, 0x05, 0xdc), "bad_ip_header", ""},
		{"bad ihl", setIPv4(base, 0, 0x43), "bad_ip_header", ""},
		{"bad version", setIPv4(base, 0, 0x65), "bad_ip_header", ""},
		{"truncated tcp header", setIPv4(tcp(func(ip *layers.IPv4) {})[:14+20+10], 2, 0, 30), "bad_l4_header", ""},
		{"truncated udp header", setIPv4(base[:14+20+4], 2, 0, 24), "bad_l4_header", ""},
		{"truncated ipv6 header", v6(nil, layers.IPProtocolUDP, []byte("x"), 5353)[:54+4], "bad_ip_header", ""},
		{"ipv6 extension header beyond payload", badExt, "bad_ip_header", ""},
		{"sctp to the vip", setIPv4(base, 9, 132), "unsupported_protocol", ""},
		{"udp to a port without service", o.udp4(t, client, 40123, 9999, []byte("x"), nil), "no_service", ""},
		{"not for a vip", func() []byte { f := append([]byte(nil), base...); copy(f[30:], []byte{198, 18, 0, 77}); return f }(), filtered, ""},
		{"arp for another address", func() []byte {
			eth := &layers.Ethernet{SrcMAC: o.src, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
			arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: o.src, SourceProtAddress: client.AsSlice(), DstHwAddress: make([]byte, 6),
				DstProtAddress: []byte{198, 18, 0, 77}}
			return o.serialize(t, eth, arp)
		}(), filtered, ""},
		{"ipv4 options", o.udp4(t, client, 40123, 5353, []byte("opts"), func(ip *layers.IPv4) {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}), answered, "4"},
		{"ttl 1", o.udp4(t, client, 40123, 5353, []byte("ttl1"), func(ip *layers.IPv4) { ip.TTL = 1 }), answered, "4"},
		{"ipv6 extension headers", v6([]gopacket.SerializableLayer{hbh, dst}, layers.IPProtocolIPv6HopByHop, []byte("ext"), 5353), answered, "6"},
		{"jumbo", o.udp4(t, client, 40123, 5353, []byte(strings.Repeat("j", 8000)), nil), answered, "4"},
		{"double vlan tag", tagged(base, 0x88a8, 0x8100), fwd, ""},
	}

	reasons := func() map[string]uint64 {
		st := l.status(t)
		out := map[string]uint64{}
		for _, w := range st.Workers {
			out["received"] += w.Received
			for i, n := range w.Reasons {
				out[st.Reasons[i]] += n
			}
		}
		return out
	}
	legit, err := l.client.Dial(context.Background(), "udp", fmt.Sprintf("%s:5353", vip4))
	if err != nil {
		t.Fatal(err)
	}
	defer legit.Close()
	settle := func(before map[string]uint64, wantReceived uint64) map[string]uint64 {
		// Counters are published per ring block: wait for them to move.
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			now := reasons()
			if now["received"]-before["received"] >= wantReceived || time.Now().After(deadline) {
				return now
			}
		}
	}
	const copies = 3
	// quiet returns the counters once they stop moving: earlier traffic (the
	// readiness probe's connection teardown) must not count for an entry.
	quiet := func() map[string]uint64 {
		sameReceived := func(a, b map[string]uint64) bool { return a["received"] == b["received"] }
		return settled(reasons, sameReceived, 150*time.Millisecond, 3*time.Second)
	}
	for _, c := range corpus {
		before := quiet()
		for i := 0; i < copies; i++ {
			if err := in.send(t, c.frame); err != nil {
				t.Fatalf("%s: send: %v", c.name, err)
			}
		}
		if c.want == answered {
			sock := pc
			if c.reply == "6" {
				sock = pc6
			}
			for i := 0; i < copies; i++ {
				sock.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 65536)
				n, _, err := sock.ReadFrom(buf)
				if err != nil {
					t.Errorf("%s: answer %d of %d: %v", c.name, i+1, copies, err)
					break
				}
				if !strings.HasPrefix(string(buf[:n]), "srv") {
					t.Errorf("%s: odd answer %q", c.name, buf[:min(n, 40)])
				}
			}
		}
		// Legitimate traffic in between is all delivered.
		if _, err := udpAsk(legit, "legit after "+c.name); err != nil {
			t.Errorf("legitimate request after %q: %v", c.name, err)
		}
		wantRecv := uint64(copies + 1) // the corpus frames and the legit request
		if c.want == filtered {
			wantRecv = 1
		}
		after := settle(before, wantRecv)
		got := after["received"] - before["received"]
		switch c.want {
		case filtered:
			if got != 1 {
				t.Errorf("%s: workers received %d frames, want only the legit one (the filter drops the rest)", c.name, got)
			}
		case answered, fwd:
			if d := after["forwarded"] - before["forwarded"]; d != copies+1 {
				t.Errorf("%s: forwarded %d, want %d", c.name, d, copies+1)
			}
		default:
			if d := after[c.want] - before[c.want]; d != copies {
				t.Errorf("%s: %s went up by %d, want %d (all reasons: %v)", c.name, c.want, d, copies, diff(before, after))
			}
		}
		t.Logf("%-38s %-20s %v", c.name, c.want, diff(before, after))
	}
	if out := l.stopBalancer(); !strings.Contains(out, "dsrlb: received") {
		t.Errorf("the balancer did not shut down cleanly:\n%s", out)
	}
	_ = unix.ETH_P_ALL
}

// clientUDP opens UDP sockets on the client, IPv4 on port4 and IPv6 on
// port6, closed when the test ends.
func (l *dsrLab) clientUDP(port4, port6 int) (pc4, pc6 net.PacketConn) {
	for _, s := range []struct {
		addr string
		pc   *net.PacketConn
	}{{fmt.Sprintf(":%d", port4), &pc4}, {fmt.Sprintf("[::]:%d", port6), &pc6}} {
		pc, err := l.client.ListenPacket("udp", s.addr)
		if err != nil {
			l.t.Fatal(err)
		}
		l.t.Cleanup(func() { pc.Close() })
		*s.pc = pc
	}
	return pc4, pc6
}

func diff(a, b map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range b {
		if d := v - a[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
