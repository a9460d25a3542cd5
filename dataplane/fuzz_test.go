package dataplane

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzHandle feeds arbitrary frames through the whole packet path. It must
// never panic; a forwarded frame must differ from the input only in its MAC
// addresses, and decode to the same IP packet as before (checked with
// gopacket, an independent decoder).
func FuzzHandle(f *testing.F) {
	f.Add(buildFrame(f, client4, vip4, layers.IPProtocolTCP, 40000, 80, []byte("GET /")))
	f.Add(buildFrame(f, client4, vip4, layers.IPProtocolUDP, 40000, 53, []byte("q")))
	f.Add(buildFrame(f, client6, vip6, layers.IPProtocolTCP, 40000, 80, nil))
	f.Add(buildFrame(f, client4, client4, layers.IPProtocolTCP, 40000, 80, nil))
	for _, c := range regressionFrames {
		f.Add(c.frame)
	}
	// ICMP errors quoting a server's reply: the inner-header parser.
	reply := buildFrame(f, vip4, client4, layers.IPProtocolTCP, 80, 40000, nil)
	f.Add(icmpError(f, netip.MustParseAddr("198.18.0.254"), vip4, reply[ethHeaderLen:]))
	reply6 := buildFrame(f, vip6, client6, layers.IPProtocolUDP, 53, 40000, nil)
	f.Add(icmpError(f, netip.MustParseAddr("2001:db8:18::fe"), vip6, reply6[ethHeaderLen:]))
	tab := testTable(f)
	w := NewWorker(lbMAC, 1024, 1e12)
	f.Fuzz(func(t *testing.T, frame []byte) {
		in := append([]byte(nil), frame...)
		r := w.Handle(frame, tab, 1)
		if r != Forwarded {
			if !bytes.Equal(in, frame) {
				t.Fatalf("dropped (%v) frame was modified", r)
			}
			return
		}
		if !bytes.Equal(in[12:], frame[12:]) {
			t.Fatal("forwarded frame changed beyond the MAC addresses")
		}
		if [6]byte(frame[6:12]) != lbMAC {
			t.Fatal("source MAC not the balancer's")
		}
		before := gopacket.NewPacket(in, layers.LayerTypeEthernet, gopacket.Default)
		after := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		if nb, na := before.NetworkLayer(), after.NetworkLayer(); nb != nil {
			if na == nil || !bytes.Equal(nb.LayerContents(), na.LayerContents()) || !bytes.Equal(nb.LayerPayload(), na.LayerPayload()) {
				t.Fatal("IP packet differs after the rewrite")
			}
		}
	})
}

// regressionFrames are named inputs that once broke, or nearly broke, the
// parser. Each is replayed by TestRegressionFrames and seeds FuzzHandle.
var regressionFrames = []struct {
	name  string
	frame []byte
	want  Reason
}{
	{"two vlan tags then nothing", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 0, 1, 0x81, 0, 0, 2}, DropNotIP},
	{"three vlan tags", append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0}, make([]byte, 40)...), DropNotIP},
	{"ipv4 ihl 15 beyond frame", append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0x4f, 0, 0, 20}, make([]byte, 16)...), DropBadIPHeader},
	{"ipv6 hop-by-hop length beyond payload", func() []byte {
		f := make([]byte, ethHeaderLen+48)
		f[12], f[13] = 0x86, 0xdd
		f[14] = 0x60
		f[14+5] = 8 // payload 8
		f[14+6] = ip6HopByHop
		f[14+40+1] = 5 // 48 bytes of options
		return f
	}(), DropBadIPHeader},
}

func TestRegressionFrames(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 64, 1e12)
	for _, c := range regressionFrames {
		if got := w.Handle(append([]byte(nil), c.frame...), tab, 1); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// FuzzNeighbor: the ARP and NS decoders never panic, and a request that
// decodes gets an answer that decodes back to the same addresses.
func FuzzNeighbor(f *testing.F) {
	f.Add(gratuitousARP(nil, vip4, lbMAC))
	f.Add(unsolicitedNA(nil, vip6, lbMAC))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if req, ok := parseARPRequest(frame); ok {
			rep := arpReply(nil, req, lbMAC)
			if len(rep) != arpFrameLen || netip.AddrFrom4([4]byte(rep[ethHeaderLen+14:ethHeaderLen+18])) != req.target {
				t.Fatal("ARP reply does not carry the requested address")
			}
		}
		if ns, ok := parseNS(frame); ok {
			rep := naReply(nil, ns, lbMAC)
			if len(rep) != naFrameLen {
				t.Fatalf("NA length %d", len(rep))
			}
		}
	})
}
