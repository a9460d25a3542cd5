package gen

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func testLoad(tr Traffic, flows int) *Load {
	return &Load{
		Interface: "eth0",
		SrcMAC:    net.HardwareAddr{2, 0, 0, 0, 0, 1},
		DstMAC:    net.HardwareAddr{2, 0, 0, 0, 0, 2},
		VIP:       netip.MustParseAddrPort("198.18.0.100:9"),
		Flows:     flows,
		Traffic:   tr,
		Threads:   1,
	}
}

func TestFlowSpace(t *testing.T) {
	for _, tc := range []struct{ n, addrs, ports int }{
		{0, 1, 1},
		{1, 1, 1},
		{1000, 1, 1000},
		{1024, 1, 1024},
		{1025, 2, 1024},
		{65536, 64, 1024},
		{MaxFlows, 65536, 1024},
	} {
		a, p := FlowSpace(tc.n)
		if a != tc.addrs || p != tc.ports {
			t.Errorf("FlowSpace(%d) = %d x %d, want %d x %d", tc.n, a, p, tc.addrs, tc.ports)
		}
		if tc.n > 0 && a*p < tc.n {
			t.Errorf("FlowSpace(%d) holds only %d flows", tc.n, a*p)
		}
	}
}

// Write must produce, for any flow, exactly the frame gopacket builds for
// that flow with checksums computed: that checks the fields and the
// incremental checksum code at once.
func TestWriteMatchesGopacket(t *testing.T) {
	for _, tr := range []Traffic{UDP, SYN} {
		l := testLoad(tr, 65536)
		tmpl, err := NewTemplate(l)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.Flows() != 65536 {
			t.Fatalf("Flows() = %d", tmpl.Flows())
		}
		_, ports := FlowSpace(l.Flows)
		buf := make([]byte, 128)
		for _, i := range []int{0, 1, 1023, 1024, 5000, 65535} {
			seq := uint32(0x12345678 + i)
			var stamp int64
			var payload []byte
			if tr == UDP && i%2 == 1 {
				stamp = 1_700_000_000_123_456_789 + int64(i)
				payload = make([]byte, UDPFrameLen-PayloadOffset)
				binary.BigEndian.PutUint32(payload, StampMagic)
				binary.BigEndian.PutUint64(payload[4:], uint64(stamp))
				binary.BigEndian.PutUint32(payload[12:], seq)
			}
			n := tmpl.Write(buf, i, seq, stamp)
			base := SourceBase.As4()
			src := netip.AddrFrom4([4]byte{base[0], base[1], byte((i / ports) >> 8), byte(i / ports)})
			want, err := buildFrame(l.SrcMAC, l.DstMAC, src, l.VIP, uint16(FirstPort+i%ports), tr, seq, payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], want) {
				t.Fatalf("%s flow %d:\n got %x\nwant %x", tr, i, buf[:n], want)
			}
			if tr == UDP && stamp != 0 {
				got, gotSeq, ok := ReadStamp(buf[:n])
				if !ok || got != stamp || gotSeq != seq {
					t.Fatalf("ReadStamp = %d, %d, %v; want %d, %d", got, gotSeq, ok, stamp, seq)
				}
			}
		}
	}
}

func TestFrameLayout(t *testing.T) {
	for _, tc := range []struct {
		tr   Traffic
		size int
	}{{UDP, UDPFrameLen}, {SYN, SYNFrameLen}} {
		tmpl, err := NewTemplate(testLoad(tc.tr, 10))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 128)
		n := tmpl.Write(buf, 7, 99, 0)
		if n != tc.size {
			t.Fatalf("%s: %d bytes, want %d", tc.tr, n, tc.size)
		}
		p := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("%s: no IPv4 layer: %v", tc.tr, p)
		}
		if ip.DstIP.String() != "198.18.0.100" || ip.SrcIP.String() != "198.19.0.0" || ip.TTL != 64 || int(ip.Length) != n-14 {
			t.Errorf("%s: IPv4 %v > %v ttl %d len %d", tc.tr, ip.SrcIP, ip.DstIP, ip.TTL, ip.Length)
		}
		switch tc.tr {
		case UDP:
			u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if u == nil || u.SrcPort != 1031 || u.DstPort != 9 || len(u.Payload) != 18 {
				t.Errorf("UDP layer %+v", u)
			}
			if _, _, ok := ReadStamp(buf[:n]); ok {
				t.Error("unstamped frame reads as stamped")
			}
		case SYN:
			c, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if c == nil || !c.SYN || c.ACK || c.SrcPort != 1031 || c.DstPort != 9 || c.Seq != 99 {
				t.Errorf("TCP layer %+v", c)
			}
		}
	}
}

func TestWriteDoesNotAllocate(t *testing.T) {
	tmpl, err := NewTemplate(testLoad(UDP, 65536))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 128)
	i := 0
	if n := testing.AllocsPerRun(1000, func() { i++; tmpl.Write(buf, i%65536, uint32(i), int64(i)) }); n != 0 {
		t.Fatalf("Write allocates %v times per frame", n)
	}
}

func BenchmarkWrite(b *testing.B) {
	tmpl, err := NewTemplate(testLoad(UDP, 65536))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tmpl.Write(buf, i&65535, uint32(i), 0)
	}
}
