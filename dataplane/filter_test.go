package dataplane

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// buildFrame builds an Ethernet frame; a TCP segment is a SYN.
func buildFrame(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	return buildFrameWith(t, src, dst, proto, sport, dport, payload, false)
}

// buildAck builds a TCP segment with only ACK set: a connection under way.
func buildAck(t testing.TB, src, dst netip.Addr, sport, dport uint16) []byte {
	t.Helper()
	return buildFrameWith(t, src, dst, layers.IPProtocolTCP, sport, dport, nil, true)
}

func buildFrameWith(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, sport, dport uint16, payload []byte, ack bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}}
	var ip gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ip, ls = ip4, []gopacket.SerializableLayer{eth, ip4}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		ip, ls = ip6, []gopacket.SerializableLayer{eth, ip6}
	}
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: !ack, ACK: ack, Seq: 1, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, udp)
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func runFilter(t *testing.T, prog []bpf.Instruction, frame []byte) int {
	t.Helper()
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("filter does not load: %v", err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestVIPFilter(t *testing.T) {
	vip4a, vip4b := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101")
	vip6 := netip.MustParseAddr("2001:db8::100")
	other4, other6 := netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("2001:db8::100:1")
	client4, client6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	for _, vips := range [][]netip.Addr{{vip4a, vip4b, vip6}, manyVIPs(vip4a, vip4b, vip6)} {
		prog := vipFilter(vips)
		cases := []struct {
			name   string
			frame  []byte
			accept bool
		}{
			{"v4 to vip a", buildFrame(t, client4, vip4a, layers.IPProtocolTCP, 1000, 80, nil), true},
			{"v4 to vip b", buildFrame(t, client4, vip4b, layers.IPProtocolUDP, 1000, 53, nil), true},
			{"v4 to other", buildFrame(t, client4, other4, layers.IPProtocolTCP, 1000, 80, nil), false},
			{"v6 to vip", buildFrame(t, client6, vip6, layers.IPProtocolTCP, 1000, 80, nil), true},
			{"v6 to other", buildFrame(t, client6, other6, layers.IPProtocolTCP, 1000, 80, nil), false},
			{"arp", arp, false},
		}
		for _, c := range cases {
			got := runFilter(t, prog, c.frame) > 0
			if len(vips) > maxFilterVIPs && (c.name == "v4 to other" || c.name == "v6 to other") {
				c.accept = true // coarse filter: every IP frame
			}
			if got != c.accept {
				t.Errorf("%d vips, %s: accepted=%v, want %v", len(vips), c.name, got, c.accept)
			}
		}
	}
	// Only v4 VIPs: v6 frames are rejected, and vice versa.
	if runFilter(t, vipFilter([]netip.Addr{vip4a}), buildFrame(t, client6, vip6, layers.IPProtocolTCP, 1, 80, nil)) != 0 {
		t.Error("v6 frame accepted by a v4-only filter")
	}
	if runFilter(t, vipFilter([]netip.Addr{vip6}), buildFrame(t, client4, vip4a, layers.IPProtocolTCP, 1, 80, nil)) != 0 {
		t.Error("v4 frame accepted by a v6-only filter")
	}
}

// Up to maxFilterVIPs VIPs, of either family or both, the filter is exact:
// every VIP's frames pass, tagged frames pass, and nothing else does. (IPv6
// VIPs cost 8 instructions each: laid out naively, jumps past 255
// instructions wrap and the first VIPs' frames are rejected.)
func TestVIPFilterExactAtTheLimit(t *testing.T) {
	client4, client6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	v6 := func(i int) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: 1}) }
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}) }
	tagged := buildFrame(t, client4, v4(0), layers.IPProtocolUDP, 1000, 53, nil)
	tagged = append(tagged[:12:12], append([]byte{0x81, 0x00, 0, 7}, tagged[12:]...)...)
	qinq := buildFrame(t, client4, v4(0), layers.IPProtocolUDP, 1000, 53, nil)
	qinq = append(qinq[:12:12], append([]byte{0x88, 0xa8, 0, 7}, qinq[12:]...)...)
	// Near misses that differ from a VIP in one 32-bit word only, the first
	// three included: a wrong offset or word lets one of them pass.
	nearMiss := func(vip netip.Addr) []netip.Addr {
		var out []netip.Addr
		for w := range 4 {
			b := vip.As16()
			b[4*w] ^= 0x40
			out = append(out, netip.AddrFrom16(b))
		}
		return out
	}
	for _, mix := range []struct{ n4, n6 int }{{maxFilterVIPs, 0}, {0, maxFilterVIPs}, {maxFilterVIPs / 2, maxFilterVIPs / 2}, {1, maxFilterVIPs - 1}} {
		var vips []netip.Addr
		for i := range mix.n4 {
			vips = append(vips, v4(i))
		}
		for i := range mix.n6 {
			vips = append(vips, v6(i))
		}
		// The widened filter of a table change joins old and new sets.
		for _, list := range [][]netip.Addr{vips, append(slices.Clone(vips), vips...)} {
			prog := vipFilter(list)
			for _, vip := range vips {
				src := client4
				if vip.Is6() {
					src = client6
				}
				if runFilter(t, prog, buildFrame(t, src, vip, layers.IPProtocolTCP, 1000, 80, nil)) == 0 {
					t.Errorf("%d IPv4 + %d IPv6 VIPs: a frame to %s is rejected", mix.n4, mix.n6, vip)
				}
			}
			if runFilter(t, prog, buildFrame(t, client4, v4(200), layers.IPProtocolTCP, 1000, 80, nil)) != 0 ||
				runFilter(t, prog, buildFrame(t, client6, v6(200), layers.IPProtocolTCP, 1000, 80, nil)) != 0 {
				t.Errorf("%d IPv4 + %d IPv6 VIPs: a frame to another address passes (not the exact filter)", mix.n4, mix.n6)
			}
			if runFilter(t, prog, tagged) == 0 || runFilter(t, prog, qinq) == 0 {
				t.Errorf("%d IPv4 + %d IPv6 VIPs: a VLAN-tagged (802.1Q or QinQ) frame is rejected", mix.n4, mix.n6)
			}
			for _, vip := range vips {
				if !vip.Is6() {
					continue
				}
				for _, miss := range nearMiss(vip) {
					if !slices.Contains(vips, miss) && runFilter(t, prog, buildFrame(t, client6, miss, layers.IPProtocolTCP, 1000, 80, nil)) != 0 {
						t.Errorf("%d IPv4 + %d IPv6 VIPs: %s, one word off VIP %s, passes", mix.n4, mix.n6, miss, vip)
					}
				}
			}
		}
	}
}

func manyVIPs(keep ...netip.Addr) []netip.Addr {
	out := append([]netip.Addr(nil), keep...)
	for i := 0; i < maxFilterVIPs; i++ {
		out = append(out, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	return out
}

// The FanoutCPU program maps each listed CPU to its worker's index and any
// other CPU to cpu % workers. The bpf package's VM has no CPU-number
// extension, so the program runs with its first instruction (A = the CPU)
// replaced by a constant load of each CPU in turn.
func TestCPUFanoutProgram(t *testing.T) {
	cpus := []int{5, 2, 7}
	prog := cpuFanoutProgram(cpus)
	if ext, ok := prog[0].(bpf.LoadExtension); !ok || ext.Num != bpf.ExtCPUID {
		t.Fatalf("first instruction %v, want a load of the CPU number", prog[0])
	}
	for cpu, want := range map[int]int{5: 0, 2: 1, 7: 2, 0: 0, 1: 1, 4: 1, 9: 0} {
		p := append([]bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(cpu)}}, prog[1:]...)
		vm, err := bpf.NewVM(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := vm.Run(make([]byte, 60))
		if err != nil || got != want {
			t.Errorf("frame received on CPU %d: worker %d (%v), want %d", cpu, got, err, want)
		}
	}
}

func TestCheckFanout(t *testing.T) {
	for _, c := range []struct {
		f    Fanout
		n    int
		cpus []int
		ok   bool
	}{
		{FanoutHash, 4, nil, true},
		{FanoutCPU, 1, nil, true},
		{FanoutCPU, 2, []int{3, 1}, true},
		{FanoutCPU, 2, nil, false},
		{FanoutCPU, 3, []int{0, 1}, false},
		{FanoutCPU, 2, []int{1, 1}, false},
		{Fanout(7), 2, nil, false},
	} {
		if err := checkFanout(c.f, c.n, c.cpus); (err == nil) != c.ok {
			t.Errorf("checkFanout(%v, %d workers, CPUs %v) = %v, want ok %v", c.f, c.n, c.cpus, err, c.ok)
		}
	}
	for _, s := range []string{"hash", "cpu"} {
		if f, err := ParseFanout(s); err != nil || f.String() != s {
			t.Errorf("ParseFanout(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFanout("lb"); err == nil {
		t.Error(`ParseFanout("lb") succeeded`)
	}
}

// The assembler refuses what classic BPF cannot encode: a jump beyond 255
// instructions, a backward jump, a jump to a label never marked.
func TestAssemblerRefuses(t *testing.T) {
	// skipping builds a jump over n instructions to a return.
	skipping := func(n int) ([]bpf.Instruction, bool) {
		var a assembler
		l := a.label()
		a.jeq(1, l, 0)
		for range n {
			a.emit(bpf.RetConstant{Val: 0})
		}
		a.mark(l)
		a.emit(bpf.RetConstant{Val: 1})
		return a.assemble()
	}
	if prog, ok := skipping(255); !ok || prog[0].(bpf.JumpIf).SkipTrue != 255 {
		t.Errorf("a jump over 255: ok %v, %v", ok, prog[:min(len(prog), 1)])
	}
	if _, ok := skipping(256); ok {
		t.Error("a jump over 256 assembled")
	}
	var back assembler
	l := back.label()
	back.mark(l)
	back.emit(bpf.RetConstant{Val: 0})
	back.jeq(1, l, 0)
	back.emit(bpf.RetConstant{Val: 1})
	if _, ok := back.assemble(); ok {
		t.Error("a backward jump assembled")
	}
	var unmarked assembler
	unmarked.jeq(1, unmarked.label(), 0)
	unmarked.emit(bpf.RetConstant{Val: 1})
	if _, ok := unmarked.assemble(); ok {
		t.Error("a jump to an unmarked label assembled")
	}
}
