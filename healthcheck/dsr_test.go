package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// Tier 1: the DSR prober's frames, filters and demultiplexing, over a fake
// link. Frames are checked with, and answers built by, gopacket, so the
// code under test is not checked against itself.

var (
	lbMAC   = [6]byte{2, 0, 0, 0, 0, 1}
	lbAddr4 = netip.MustParseAddr("198.18.0.1")
	lbAddr6 = netip.MustParseAddr("2001:db8:18::1")
	vip4    = netip.MustParseAddr("198.18.0.100")
	vip6    = netip.MustParseAddr("2001:db8:18::100")
)

func backendMAC(i int) [6]byte { return [6]byte{2, 0, 0, 0, byte(i >> 8), byte(i)} }

// serialize builds a frame from layers with gopacket, checksums included.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	for _, l := range ls {
		if tcp, ok := l.(*layers.TCP); ok {
			tcp.SetNetworkLayerForChecksum(ls[1].(gopacket.NetworkLayer))
		}
		if icmp, ok := l.(*layers.ICMPv6); ok {
			icmp.SetNetworkLayerForChecksum(ls[1].(gopacket.NetworkLayer))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tcpAnswerFrame is a server's answer from vip:vport to dst:dport, built by
// gopacket.
func tcpAnswerFrame(t testing.TB, from [6]byte, vip netip.Addr, vport uint16, dst netip.Addr, dport uint16, ack uint32, syn, rst bool) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(from[:]), DstMAC: net.HardwareAddr(lbMAC[:])}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(vport), DstPort: layers.TCPPort(dport), Seq: 777, Ack: ack, ACK: true, SYN: syn, RST: rst, Window: 65000,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}}}
	var ip gopacket.SerializableLayer
	if vip.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: vip.AsSlice(), DstIP: dst.AsSlice()}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: vip.AsSlice(), DstIP: dst.AsSlice()}
	}
	return serialize(t, eth, ip, tcp)
}

// naFrame is a neighbour advertisement from mac (holding ip) for target to
// the balancer, built by gopacket.
func naFrame(t testing.TB, mac [6]byte, ip, target netip.Addr) []byte {
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip.AsSlice(), DstIP: lbAddr6.AsSlice()}
	return serialize(t,
		&layers.Ethernet{SrcMAC: net.HardwareAddr(mac[:]), DstMAC: net.HardwareAddr(lbMAC[:]), EthernetType: layers.EthernetTypeIPv6},
		ip6,
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)},
		&layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: target.AsSlice()})
}

// arpAnswerFrame is an ARP frame from mac with sender address ip to the
// balancer, built by gopacket: op 2 is a reply saying ip is at mac, op 1 a
// request sent from ip (unicast, as a server re-checking the balancer sends
// it; a broadcast parses the same).
func arpAnswerFrame(t testing.TB, mac [6]byte, ip netip.Addr, op uint16) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: net.HardwareAddr(mac[:]), DstMAC: net.HardwareAddr(lbMAC[:]), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
			SourceHwAddress: mac[:], SourceProtAddress: ip.AsSlice(), DstHwAddress: lbMAC[:], DstProtAddress: lbAddr4.AsSlice()})
}

// decoded is a frame the prober sent, decoded by gopacket.
type decoded struct {
	eth *layers.Ethernet
	arp *layers.ARP
	ip4 *layers.IPv4
	ip6 *layers.IPv6
	tcp *layers.TCP
	ns  *layers.ICMPv6NeighborSolicitation
}

func decode(t testing.TB, f []byte) decoded {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode %x: %v", f, el.Error())
	}
	var d decoded
	d.eth, _ = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	d.arp, _ = p.Layer(layers.LayerTypeARP).(*layers.ARP)
	d.ip4, _ = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	d.ip6, _ = p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	d.tcp, _ = p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	d.ns, _ = p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	if icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); icmp != nil && d.ns != nil {
		again := serialize(t, d.eth, d.ip6, icmp, d.ns)
		if len(f) < len(again) || !bytes.Equal(again, f[:len(again)]) {
			t.Fatalf("ICMPv6 checksum or lengths wrong:\n sent %x\n want %x", f, again)
		}
	}
	if d.tcp != nil {
		// Checksums: gopacket recomputes them; the bytes must not change.
		var ip gopacket.SerializableLayer = d.ip4
		if d.ip6 != nil {
			ip = d.ip6
		}
		again := serialize(t, d.eth, ip, d.tcp)
		if len(f) < len(again) || !bytes.Equal(again, f[:len(again)]) {
			t.Fatalf("checksums or lengths wrong:\n sent %x\n want %x", f, again)
		}
	}
	return d
}

// fakeLink records what the prober sends and lets a test react to it.
type fakeLink struct {
	addrs  []ifaceAddr
	mu     sync.Mutex
	sent   [][]byte
	onSend func([]byte) // runs on the sending goroutine
}

func (l *fakeLink) name() string { return "fake0" }
func (l *fakeLink) mac() [6]byte { return lbMAC }
func (l *fakeLink) close() error { return nil }
func (l *fakeLink) source(vip netip.Addr) (netip.Addr, error) {
	if a, ok := pickSource(l.addrs, vip); ok {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("no address for %s", vip)
}
func (l *fakeLink) send(f []byte) error {
	f = bytes.Clone(f)
	l.mu.Lock()
	l.sent = append(l.sent, f)
	l.mu.Unlock()
	if l.onSend != nil {
		l.onSend(f)
	}
	return nil
}

func (l *fakeLink) frames() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slicesClone(l.sent)
}

func slicesClone(s [][]byte) [][]byte { return append([][]byte(nil), s...) }

var labAddrs = []ifaceAddr{
	{prefix: netip.MustParsePrefix("198.18.0.1/24"), usable: true, preferred: true},
	{prefix: netip.MustParsePrefix("fe80::1/64"), usable: true, preferred: true},
	{prefix: netip.MustParsePrefix("2001:db8:18::1/64"), usable: true, preferred: true},
}

// server is how a fake backend answers the prober.
type server struct {
	synACK, rst, arp bool
	// announce sends, as the SYN-ACK or RST leaves, an ARP request from the
	// VIP: a server with arp_announce=0 resolving the balancer's address.
	announce bool
	badAck   bool // acknowledge the wrong sequence number
	// via answers from another MAC: the SYN went on to another server (a
	// backend forwarding it back through the balancer).
	via [6]byte
}

// answer makes the fake link answer as the servers do, synchronously.
func answer(t testing.TB, p *PacketDSRProber, servers map[[6]byte]server) func([]byte) {
	return func(f []byte) {
		d := decode(t, f)
		mac := [6]byte(d.eth.DstMAC)
		s := servers[mac]
		switch {
		case d.arp != nil && s.arp:
			p.deliver(arpAnswerFrame(t, mac, netip.AddrFrom4([4]byte(d.arp.DstProtAddress)), 2))
		case d.ns != nil && s.arp: // the VIP on the server's NIC
			target := netip.AddrFrom16([16]byte(d.ns.TargetAddress))
			p.deliver(naFrame(t, mac, target, target))
		case d.tcp != nil && d.tcp.SYN && (s.synACK || s.rst):
			if s.announce && d.ip4 != nil {
				p.deliver(arpAnswerFrame(t, mac, netip.AddrFrom4([4]byte(d.ip4.DstIP)), 1))
			}
			ack := d.tcp.Seq + 1
			if s.badAck {
				ack++
			}
			src, dst := tcpAddrs(d)
			from := mac
			if s.via != ([6]byte{}) {
				from = s.via
			}
			p.deliver(tcpAnswerFrame(t, from, dst, uint16(d.tcp.DstPort), src, uint16(d.tcp.SrcPort), ack, s.synACK, s.rst))
		}
	}
}

func tcpAddrs(d decoded) (src, dst netip.Addr) {
	if d.ip4 != nil {
		return netip.AddrFrom4([4]byte(d.ip4.SrcIP)), netip.AddrFrom4([4]byte(d.ip4.DstIP))
	}
	return netip.AddrFrom16([16]byte(d.ip6.SrcIP)), netip.AddrFrom16([16]byte(d.ip6.DstIP))
}

func newFakeProber(t *testing.T, servers map[[6]byte]server) (*PacketDSRProber, *fakeLink) {
	l := &fakeLink{addrs: labAddrs}
	p := newPacketDSRProber(l)
	l.onSend = answer(t, p, servers)
	return p, l
}

// expired returns a context that is already done: the fake servers answer
// synchronously, so every answer is in before the probe looks.
func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestProbeDSRFrames(t *testing.T) {
	mac := backendMAC(11)
	p, l := newFakeProber(t, map[[6]byte]server{mac: {synACK: true}})
	if err := p.ProbeDSR(expired(), vip4, 80, mac); err != nil {
		t.Fatalf("healthy backend: %v", err)
	}
	sent := l.frames()
	if len(sent) != 3 {
		t.Fatalf("sent %d frames, want ARP request, SYN, RST", len(sent))
	}
	for i, f := range sent {
		if len(f) < minFrameLen {
			t.Errorf("frame %d is %d bytes, shorter than an Ethernet minimum frame", i, len(f))
		}
	}
	arp := decode(t, sent[0])
	if arp.arp == nil || arp.arp.Operation != layers.ARPRequest ||
		!bytes.Equal(arp.eth.DstMAC, mac[:]) || !bytes.Equal(arp.eth.SrcMAC, lbMAC[:]) ||
		!bytes.Equal(arp.arp.SourceHwAddress, lbMAC[:]) || !bytes.Equal(arp.arp.SourceProtAddress, lbAddr4.AsSlice()) ||
		!bytes.Equal(arp.arp.DstProtAddress, vip4.AsSlice()) {
		t.Errorf("ARP request wrong: %+v %+v", arp.eth, arp.arp)
	}
	syn := decode(t, sent[1])
	if syn.ip4 == nil || syn.tcp == nil || !syn.tcp.SYN || syn.tcp.ACK || syn.tcp.RST ||
		!bytes.Equal(syn.eth.DstMAC, mac[:]) || !syn.ip4.SrcIP.Equal(lbAddr4.AsSlice()) || !syn.ip4.DstIP.Equal(vip4.AsSlice()) ||
		syn.tcp.DstPort != 80 || syn.tcp.SrcPort < probePortFirst || syn.ip4.Flags != layers.IPv4DontFragment || syn.ip4.TTL != 64 {
		t.Errorf("SYN wrong: %+v %+v", syn.ip4, syn.tcp)
	}
	rst := decode(t, sent[2])
	if rst.tcp == nil || !rst.tcp.RST || rst.tcp.SYN || rst.tcp.SrcPort != syn.tcp.SrcPort || rst.tcp.DstPort != 80 || rst.tcp.Seq != syn.tcp.Seq+1 {
		t.Errorf("RST wrong: %+v (SYN %+v)", rst.tcp, syn.tcp)
	}

	// IPv6: a neighbour solicitation instead of ARP; the NS and the SYN
	// come from the global address, not fe80::1.
	p6, l6 := newFakeProber(t, map[[6]byte]server{mac: {synACK: true}})
	if err := p6.ProbeDSR(expired(), vip6, 443, mac); err != nil {
		t.Fatalf("healthy IPv6 backend: %v", err)
	}
	sent = l6.frames()
	if len(sent) != 3 {
		t.Fatalf("IPv6: sent %d frames, want NS, SYN, RST", len(sent))
	}
	ns := decode(t, sent[0])
	solicited := netip.MustParseAddr("ff02::1:ff00:100") // vip6's solicited-node group
	if ns.ns == nil || ns.ip6.HopLimit != 255 || !bytes.Equal(ns.eth.DstMAC, mac[:]) || !ns.ip6.SrcIP.Equal(lbAddr6.AsSlice()) ||
		!ns.ip6.DstIP.Equal(solicited.AsSlice()) || !ns.ns.TargetAddress.Equal(vip6.AsSlice()) ||
		len(ns.ns.Options) != 1 || ns.ns.Options[0].Type != layers.ICMPv6OptSourceAddress || !bytes.Equal(ns.ns.Options[0].Data, lbMAC[:]) {
		t.Errorf("neighbour solicitation wrong: %+v %+v", ns.ip6, ns.ns)
	}
	syn = decode(t, sent[1])
	if syn.ip6 == nil || !syn.tcp.SYN || !syn.ip6.SrcIP.Equal(lbAddr6.AsSlice()) || !syn.ip6.DstIP.Equal(vip6.AsSlice()) || syn.tcp.DstPort != 443 {
		t.Errorf("IPv6 SYN wrong: %+v %+v", syn.ip6, syn.tcp)
	}
	if rst := decode(t, sent[2]); !rst.tcp.RST || rst.tcp.Seq != syn.tcp.Seq+1 {
		t.Errorf("IPv6 RST wrong: %+v", rst.tcp)
	}
}

func TestProbeDSRVerdicts(t *testing.T) {
	mac := backendMAC(11)
	what := "dsr probe VIP 198.18.0.100:80 via 02:00:00:00:00:0b: "
	for _, tc := range []struct {
		name string
		srv  server
		vip  netip.Addr
		want string // "" means pass
	}{
		{"SYN-ACK", server{synACK: true}, vip4, ""},
		{"RST", server{rst: true}, vip4, what + "connection refused (RST)"},
		{"silence", server{}, vip4, what + "no SYN-ACK (is the VIP on the server's lo?)"},
		{"wrong ack ignored", server{synACK: true, badAck: true}, vip4, what + "no SYN-ACK (is the VIP on the server's lo?)"},
		{"another server's SYN-ACK ignored", server{synACK: true, via: backendMAC(12)}, vip4, what + "no SYN-ACK (is the VIP on the server's lo?)"},
		{"answers ARP", server{synACK: true, arp: true}, vip4,
			what + "server answers ARP for VIP 198.18.0.100 (arp_ignore/arp_announce not set: run dsrlb server up)"},
		{"ARP requests from the VIP", server{synACK: true, announce: true}, vip4,
			what + "server sends ARP requests from VIP 198.18.0.100 (arp_announce is not 2: run dsrlb server up)"},
		{"IPv6 SYN-ACK", server{synACK: true}, vip6, ""},
		{"IPv6 silence", server{}, vip6, "dsr probe VIP [2001:db8:18::100]:80 via 02:00:00:00:00:0b: no SYN-ACK (is the VIP on the server's lo?)"},
		{"answers neighbour solicitations", server{synACK: true, arp: true}, vip6,
			"dsr probe VIP [2001:db8:18::100]:80 via 02:00:00:00:00:0b: server answers neighbour solicitations for VIP 2001:db8:18::100 (is the VIP on its NIC instead of lo? run dsrlb server up)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newFakeProber(t, map[[6]byte]server{mac: tc.srv})
			err := p.ProbeDSR(expired(), tc.vip, 80, mac)
			if (tc.want == "") != (err == nil) || (err != nil && err.Error() != tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if len(p.syns) != 0 || len(p.neighs) != 0 {
				t.Fatalf("waiters left behind: %d SYN, %d ARP", len(p.syns), len(p.neighs))
			}
		})
	}
}

func TestProbeDSRErrors(t *testing.T) {
	p, _ := newFakeProber(t, nil)
	mac := backendMAC(11)
	for _, tc := range []struct {
		vip  netip.Addr
		port uint16
		mac  [6]byte
		want string
	}{
		{netip.Addr{}, 80, mac, "is not usable"},
		{vip4, 0, mac, "no port"},
		{vip4, 80, [6]byte{}, "no backend MAC"},
		{netip.MustParseAddr("192.0.2.1"), 80, mac, ""}, // any IPv4 address will do as source
	} {
		err := p.ProbeDSR(expired(), tc.vip, tc.port, tc.mac)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "no SYN-ACK") {
				t.Errorf("%v: %v", tc.vip, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v:%d via %x: %v, want %q", tc.vip, tc.port, tc.mac, err, tc.want)
		}
	}
	p.link.(*fakeLink).addrs = labAddrs[:1]
	if err := p.ProbeDSR(expired(), vip6, 80, mac); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("no IPv6 source: %v", err)
	}
	p.Close()
	if err := p.ProbeDSR(expired(), vip4, 80, mac); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after Close: %v", err)
	}
}

// TestProbeDSRConcurrent runs many probes at once and answers them all,
// shuffled, after the last SYN went out: each probe must get its own
// backend's answer, and decoys (wrong ack, wrong port, another MAC's ARP
// answer) must reach nobody.
func TestProbeDSRConcurrent(t *testing.T) {
	const n = 60
	l := &fakeLink{addrs: labAddrs}
	p := newPacketDSRProber(l)
	syns := make(chan decoded, 2*n)
	l.onSend = func(f []byte) {
		if d := decode(t, f); d.tcp != nil && d.tcp.SYN {
			syns <- d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	// Backend i: up if i%3 == 0, refusing if i%3 == 1, silent if i%3 == 2;
	// odd ones probe the IPv6 VIP. All share the VIP and port.
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		vip := vip4
		if i%2 == 1 {
			vip = vip6
		}
		wg.Go(func() { results[i] = p.ProbeDSR(ctx, vip, 80, backendMAC(i)) })
	}
	var answers [][]byte
	for range n {
		d := <-syns
		i := int(d.eth.DstMAC[5]) | int(d.eth.DstMAC[4])<<8
		src, dst := tcpAddrs(d)
		sport, ack := uint16(d.tcp.SrcPort), d.tcp.Seq+1
		mac := backendMAC(i)
		switch i % 3 {
		case 0:
			answers = append(answers, tcpAnswerFrame(t, mac, dst, 80, src, sport, ack, true, false))
		case 1:
			answers = append(answers, tcpAnswerFrame(t, mac, dst, 80, src, sport, ack, false, true))
		case 2:
			answers = append(answers,
				tcpAnswerFrame(t, mac, dst, 80, src, sport, ack+1, true, false), // wrong ack
				tcpAnswerFrame(t, mac, dst, 81, src, sport, ack, true, false),   // wrong port
				arpAnswerFrame(t, backendMAC(n+1), vip4, 2),                     // a MAC nobody probes
				arpAnswerFrame(t, backendMAC(n+1), vip4, 1),                     // a request from the VIP, by a MAC nobody probes
				arpAnswerFrame(t, mac, netip.MustParseAddr("198.18.0.11"), 1))   // a request from the server's own address, as arp_announce=2 sends it
		}
	}
	rand.Shuffle(len(answers), func(i, j int) { answers[i], answers[j] = answers[j], answers[i] })
	for _, a := range answers {
		p.deliver(a)
	}
	cancel() // ends the IPv4 probes' ARP listening
	wg.Wait()
	for i, err := range results {
		var want string
		switch i % 3 {
		case 1:
			want = "connection refused (RST)"
		case 2:
			want = "no SYN-ACK"
		}
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("backend %d: %v, want %q", i, err, want)
		}
		if mac := backendMAC(i); err != nil && !strings.Contains(err.Error(), net.HardwareAddr(mac[:]).String()) {
			t.Errorf("backend %d: reason %q does not name its MAC", i, err)
		}
	}
}

func TestParse(t *testing.T) {
	mac := backendMAC(11)
	synack := tcpAnswerFrame(t, mac, vip4, 80, lbAddr4, 61234, 1001, true, false)
	h, ok := parseTCP(synack)
	want := tcpHeader{from: mac, src: vip4, dst: lbAddr4, sport: 80, dport: 61234, seq: 777, ack: 1001, flags: tcpSYN | tcpACK}
	if !ok || h != want {
		t.Fatalf("IPv4 SYN-ACK: %+v %v, want %+v", h, ok, want)
	}
	h, ok = parseTCP(tcpAnswerFrame(t, mac, vip6, 80, lbAddr6, 61234, 1001, false, true))
	want = tcpHeader{from: mac, src: vip6, dst: lbAddr6, sport: 80, dport: 61234, seq: 777, ack: 1001, flags: tcpRST | tcpACK}
	if !ok || h != want {
		t.Fatalf("IPv6 RST: %+v %v, want %+v", h, ok, want)
	}
	withOptions := ipv4WithOptions(t)
	if h, ok := parseTCP(withOptions); !ok || h.sport != 80 || h.dport != 61234 || h.flags != tcpSYN|tcpACK {
		t.Fatalf("IPv4 with options: %+v %v", h, ok)
	}
	if a, kind, ok := parseARP(arpAnswerFrame(t, mac, vip4, 2)); !ok || a.ip != vip4 || a.mac != mac || kind != neighReply {
		t.Fatalf("ARP reply: %+v %v %v", a, kind, ok)
	}
	request := arpAnswerFrame(t, mac, vip4, 1)
	if a, kind, ok := parseARP(request); !ok || a.ip != vip4 || a.mac != mac || kind != neighRequest {
		t.Fatalf("ARP request: %+v %v %v", a, kind, ok)
	}

	bad := map[string][]byte{
		"short":      synack[:30],
		"cut in TCP": synack[:ethLen+ipv4Len+10],
		"fragment":   setByte(synack, ethLen+6, 0x20), // MF
		"later frag": setByte(synack, ethLen+7, 0x01), // offset 8
		"UDP":        setByte(synack, ethLen+9, 17),
		"version":    setByte(synack, ethLen, 0x65),
		"IHL 4":      setByte(synack, ethLen, 0x44),
		"TCP doff 4": setByte(synack, ethLen+ipv4Len+12, 0x40),
		"IPv6 ext":   setByte(tcpAnswerFrame(t, mac, vip6, 80, lbAddr6, 61234, 1, true, false), ethLen+6, 0),
	}
	for name, f := range bad {
		if _, ok := parseTCP(f); ok {
			t.Errorf("%s: parsed as TCP", name)
		}
	}
	badARP := map[string][]byte{
		"ARP op 3":      setByte(request, ethLen+7, 3),
		"ARP op 0":      setByte(request, ethLen+7, 0),
		"ARP not IPv4":  setByte(request, ethLen+2, 0x86),
		"ARP not Ether": setByte(request, ethLen+1, 6),
		"ARP hlen 8":    setByte(request, ethLen+4, 8),
		"ARP cut":       request[:ethLen+arpLen-1],
		"ARP as IPv4":   setByte(request, 13, 0x00),
		"TCP":           synack,
		"IPv6 advert":   naFrame(t, mac, vip6, vip6),
	}
	for name, f := range badARP {
		if _, _, ok := parseARP(f); ok {
			t.Errorf("%s: parsed as ARP", name)
		}
	}
}

func setByte(f []byte, i int, v byte) []byte {
	f = bytes.Clone(f)
	f[i] = v
	return f
}

// ipv4WithOptions is a SYN-ACK whose IPv4 header carries 4 bytes of options.
func ipv4WithOptions(t testing.TB) []byte {
	mac := backendMAC(11)
	return serialize(t,
		&layers.Ethernet{SrcMAC: net.HardwareAddr(mac[:]), DstMAC: net.HardwareAddr(lbMAC[:]), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: vip4.AsSlice(), DstIP: lbAddr4.AsSlice(),
			Options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}},
		&layers.TCP{SrcPort: 80, DstPort: 61234, Seq: 1, Ack: 2, SYN: true, ACK: true, Window: 1000})
}

func TestFilters(t *testing.T) {
	mac := backendMAC(11)
	ip4 := func(dport uint16, syn, rst bool) []byte {
		return tcpAnswerFrame(t, mac, vip4, 80, lbAddr4, dport, 1, syn, rst)
	}
	ip6 := func(dport uint16, syn, rst bool) []byte {
		return tcpAnswerFrame(t, mac, vip6, 80, lbAddr6, dport, 1, syn, rst)
	}
	noACK := func(f []byte, off int) []byte { return setByte(f, off, f[off]&^tcpACK) }
	for _, tc := range []struct {
		name   string
		filter []bpf.Instruction
		frame  []byte
		pass   bool
	}{
		{"v4 SYN-ACK", ipv4AnswerFilter, ip4(61000, true, false), true},
		{"v4 RST-ACK", ipv4AnswerFilter, ip4(65535, false, true), true},
		{"v4 options", ipv4AnswerFilter, ipv4WithOptions(t), true},
		{"v4 below range", ipv4AnswerFilter, ip4(60999, true, false), false},
		{"v4 plain ACK", ipv4AnswerFilter, ip4(61000, false, false), false},
		{"v4 SYN", ipv4AnswerFilter, noACK(ip4(61000, true, false), ethLen+ipv4Len+13), false},
		{"v4 fragment", ipv4AnswerFilter, setByte(ip4(61000, true, false), ethLen+6, 0x20), false},
		{"v4 UDP", ipv4AnswerFilter, setByte(ip4(61000, true, false), ethLen+9, 17), false},
		{"v6 SYN-ACK", ipv6AnswerFilter, ip6(61000, true, false), true},
		{"v6 RST-ACK", ipv6AnswerFilter, ip6(62000, false, true), true},
		{"v6 below range", ipv6AnswerFilter, ip6(443, true, false), false},
		{"v6 plain ACK", ipv6AnswerFilter, ip6(61000, false, false), false},
		{"v6 SYN", ipv6AnswerFilter, noACK(ip6(61000, true, false), ethLen+ipv6Len+13), false},
		{"v6 not TCP", ipv6AnswerFilter, setByte(ip6(61000, true, false), ethLen+6, 17), false},
		{"v6 neighbour advertisement", ipv6AnswerFilter, naFrame(t, mac, vip6, vip6), true},
		{"v6 neighbour solicitation", ipv6AnswerFilter, neighborSolicitation(nil, lbMAC, mac, lbAddr6, vip6), false},
		{"ARP reply", arpFilter, arpAnswerFrame(t, mac, vip4, 2), true},
		{"ARP request", arpFilter, arpAnswerFrame(t, mac, vip4, 1), true},
		{"ARP op 3", arpFilter, setByte(arpAnswerFrame(t, mac, vip4, 1), ethLen+7, 3), false},
		{"ARP not IPv4", arpFilter, setByte(arpAnswerFrame(t, mac, vip4, 1), ethLen+2, 0x86), false},
	} {
		if n := runFilter(t, tc.filter, tc.frame); (n > 0) != tc.pass {
			t.Errorf("%s: filter kept %d bytes, want pass %v", tc.name, n, tc.pass)
		}
	}
}

func runFilter(t testing.TB, filter []bpf.Instruction, frame []byte) int {
	vm, err := bpf.NewVM(filter)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	return min(n, len(frame)) // as the kernel cuts it
}

func TestPickSource(t *testing.T) {
	addrs := []ifaceAddr{
		{prefix: netip.MustParsePrefix("198.18.0.1/24"), usable: true, preferred: true},
		{prefix: netip.MustParsePrefix("10.0.0.5/8"), usable: true, preferred: true},
		{prefix: netip.MustParsePrefix("fe80::1/64"), usable: true, preferred: true},
		{prefix: netip.MustParsePrefix("2001:db8:18::1/64"), usable: false, preferred: true}, // tentative
		{prefix: netip.MustParsePrefix("2001:db8:18::2/64"), usable: true, preferred: false}, // deprecated
		{prefix: netip.MustParsePrefix("2001:db8:99::1/64"), usable: true, preferred: true},
	}
	for _, tc := range []struct{ vip, want string }{
		{"198.18.0.100", "198.18.0.1"},
		{"10.1.2.3", "10.0.0.5"},
		{"192.0.2.1", "198.18.0.1"},
		{"2001:db8:18::100", "2001:db8:18::2"},
		{"2001:db8:77::1", "2001:db8:99::1"},
	} {
		got, ok := pickSource(addrs, netip.MustParseAddr(tc.vip))
		if !ok || got.String() != tc.want {
			t.Errorf("source for %s: %v %v, want %s", tc.vip, got, ok, tc.want)
		}
	}
	if got, ok := pickSource(addrs[:3], vip6); ok {
		t.Errorf("only link-local IPv6: picked %v", got)
	}
}

// FuzzParseFrame feeds arbitrary frames to the parsers: they must not
// panic, what parseTCP reads must survive a rebuild, and every frame
// deliver would act on must pass the socket filter, cut or not.
func FuzzParseFrame(f *testing.F) {
	mac := backendMAC(11)
	f.Add(tcpAnswerFrame(f, mac, vip4, 80, lbAddr4, 61234, 1001, true, false))
	f.Add(tcpAnswerFrame(f, mac, vip6, 80, lbAddr6, 61234, 1001, false, true))
	f.Add(ipv4WithOptions(f))
	f.Add(arpAnswerFrame(f, mac, vip4, 2))
	f.Add(arpAnswerFrame(f, mac, vip4, 1)) // a server's request from the VIP
	f.Add(tcpFrame(nil, mac, lbMAC, lbAddr4, vip4, 61000, 80, 1, 0, tcpSYN))
	f.Add(arpRequest(nil, mac, lbMAC, lbAddr4, vip4))
	f.Add(naFrame(f, mac, vip6, vip6))
	f.Add(neighborSolicitation(nil, mac, lbMAC, lbAddr6, vip6))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if a, kind, ok := parseARP(frame); ok {
			n := runFilter(t, arpFilter, frame)
			if n == 0 {
				t.Fatalf("filter drops an ARP frame deliver acts on: %+v (%v)", a, kind)
			}
			if cut, cutKind, ok := parseARP(frame[:n]); !ok || cut != a || cutKind != kind {
				t.Fatalf("ARP frame cut to %d bytes parses as %+v %v (%v), want %+v %v", n, cut, cutKind, ok, a, kind)
			}
		}
		if na, ok := parseNA(frame); ok {
			n := runFilter(t, ipv6AnswerFilter, frame)
			if n == 0 {
				t.Fatalf("filter drops a neighbour advertisement deliver acts on: %+v", na)
			}
			if cut, ok := parseNA(frame[:min(n, len(frame))]); !ok || cut != na {
				t.Fatalf("advertisement cut to %d bytes parses as %+v (%v), want %+v", n, cut, ok, na)
			}
		}
		h, ok := parseTCP(frame)
		if !ok {
			return
		}
		again, ok := parseTCP(tcpFrame(nil, mac, h.from, h.src, h.dst, h.sport, h.dport, h.seq, h.ack, h.flags))
		if !ok || again != h {
			t.Fatalf("rebuilt %+v parses as %+v (%v)", h, again, ok)
		}
		if h.flags&tcpACK == 0 || h.flags&(tcpSYN|tcpRST) == 0 || h.dport < probePortFirst {
			return
		}
		filter := ipv4AnswerFilter
		if h.src.Is6() {
			filter = ipv6AnswerFilter
		}
		n := runFilter(t, filter, frame)
		if n == 0 {
			t.Fatalf("filter drops a frame deliver acts on: %+v", h)
		}
		if cut, ok := parseTCP(frame[:n]); !ok || cut != h {
			t.Fatalf("frame cut to %d bytes parses as %+v (%v), want %+v", n, cut, ok, h)
		}
	})
}
