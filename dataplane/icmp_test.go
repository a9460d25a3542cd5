package dataplane

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// icmpError builds an ICMP error from router to vip quoting quoted (a
// server's reply, as a router sees it).
func icmpError(t testing.TB, router, vip netip.Addr, quoted []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, DstMAC: net.HardwareAddr(lbMAC[:])}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if vip.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: router.AsSlice(), DstIP: vip.AsSlice()}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400} // frag needed, MTU in the low bits
		err = gopacket.SerializeLayers(buf, opts, eth, ip, icmp, gopacket.Payload(quoted))
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: router.AsSlice(), DstIP: vip.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)} // packet too big
		icmp.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, eth, ip, icmp, gopacket.Payload(append([]byte{0, 0, 5, 0x78}, quoted...)))
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An ICMP "fragmentation needed" / "packet too big" about a server's reply
// reaches the backend that owns the flow (found by the quoted header with
// addresses and ports swapped), so path-MTU discovery works through DSR.
func TestICMPErrorFollowsFlow(t *testing.T) {
	tab := testTable(t)
	for _, c := range []struct{ client, vip, router netip.Addr }{
		{client4, vip4, netip.MustParseAddr("198.18.0.254")},
		{client6, vip6, netip.MustParseAddr("2001:db8:18::fe")},
	} {
		w := NewWorker(lbMAC, 1<<12, 1e12)
		hits := map[[6]byte]int{}
		for sport := uint16(2000); sport < 2100; sport++ {
			req := buildFrame(t, c.client, c.vip, layers.IPProtocolTCP, sport, 80, nil)
			if w.Handle(req, tab, 1) != Forwarded {
				t.Fatal("request not forwarded")
			}
			owner := [6]byte(req[0:6])
			// The server's reply: VIP:80 → client:sport; the router quotes
			// its IP header and first 8 bytes (more is fine).
			reply := buildFrame(t, c.vip, c.client, layers.IPProtocolTCP, 80, sport, make([]byte, 1400))
			e := icmpError(t, c.router, c.vip, reply[ethHeaderLen:ethHeaderLen+60+8])
			if r := w.Handle(e, tab, 2); r != Forwarded {
				t.Fatalf("%s: ICMP error for flow %d: %v", c.vip, sport, r)
			}
			if got := [6]byte(e[0:6]); got != owner {
				t.Fatalf("%s: ICMP error for flow %d went to %x, the flow is on %x", c.vip, sport, got, owner)
			}
			hits[owner]++
		}
		if len(hits) != 3 {
			t.Errorf("%s: flows covered %d backends; the test should exercise all 3", c.vip, len(hits))
		}
		// An error quoting a packet that is not from the VIP is dropped.
		other := buildFrame(t, c.client, c.router, layers.IPProtocolTCP, 80, 2000, nil)
		if r := w.Handle(icmpError(t, c.router, c.vip, other[ethHeaderLen:]), tab, 2); r != DropProtocol {
			t.Errorf("%s: error quoting a foreign packet: %v, want %v", c.vip, r, DropProtocol)
		}
	}
}

func TestICMPEcho(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 64, 1e12)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, DstMAC: net.HardwareAddr(lbMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: client4.AsSlice(), DstIP: vip4.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp); err != nil {
		t.Fatal(err)
	}
	f := buf.Bytes()
	if r := w.Handle(f, tab, 1); r != Forwarded {
		t.Fatalf("echo request: %v", r)
	}
	first := [6]byte(f[0:6])
	for i := 0; i < 5; i++ { // the same pinger always reaches the same server
		g := append([]byte(nil), buf.Bytes()...)
		w.Handle(g, tab, 1)
		if [6]byte(g[0:6]) != first {
			t.Fatal("pings from one client spread over servers")
		}
	}
	icmp.TypeCode = layers.CreateICMPv4TypeCode(13, 0) // timestamp: not carried
	buf.Clear()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, icmp)
	if r := w.Handle(buf.Bytes(), tab, 1); r != DropProtocol {
		t.Errorf("ICMP timestamp: %v, want %v", r, DropProtocol)
	}
}

// A slot beyond the workers' counters is refused at the door, and reads as
// nothing: it indexed past their arrays (a panic in a worker) before.
func TestSlotBeyondCounters(t *testing.T) {
	if err := checkSlots(testTable(t)); err != nil {
		t.Fatal(err)
	}
	wide := editTable(t, testTable(t), func(s *balancer.ServiceSpec) { s.Backends[2].Slot = MaxBackendSlots })
	err := checkSlots(wide)
	if err == nil || !strings.Contains(err.Error(), "service dns backend 198.18.0.13: counter slot 4096, want below 4096") {
		t.Fatalf("checkSlots: %v", err)
	}
	d := &Dataplane{workers: []*Worker{NewWorker(lbMAC, 64, 1e12)}}
	if p, b, f := d.BackendStats(MaxBackendSlots, 0); p|b|f != 0 {
		t.Fatalf("BackendStats(%d) = %d %d %d", MaxBackendSlots, p, b, f)
	}
}

// Forwarded frames are counted per backend slot, exactly.
func TestBackendCounters(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1<<12, 1e12)
	sent := map[[6]byte]uint64{}
	bytes := map[[6]byte]uint64{}
	for sport := uint16(1); sport <= 300; sport++ {
		f := buildFrame(t, client4, vip4, layers.IPProtocolTCP, sport, 80, make([]byte, sport%7))
		w.Handle(f, tab, 1)
		sent[[6]byte(f[0:6])]++
		bytes[[6]byte(f[0:6])] += uint64(len(f))
	}
	w.publish()
	for _, b := range tab.Lookup(vip4, 6, 80).Backends() {
		c := &w.pub.backends[b.Slot]
		if c.Packets.Load() != sent[b.MAC] || c.Bytes.Load() != bytes[b.MAC] || c.NewFlows.Load() != sent[b.MAC] {
			t.Errorf("backend %s slot %d: %d pkts %d bytes %d flows, want %d %d %d", b.Addr, b.Slot,
				c.Packets.Load(), c.Bytes.Load(), c.NewFlows.Load(), sent[b.MAC], bytes[b.MAC], sent[b.MAC])
		}
	}
}

// A forwarded frame that cannot be sent leaves the forwarded counts, its
// backend's included, and is counted as tx_error.
func TestRefusedFrameUncounted(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1<<12, 1e12)
	f := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 1000, 80, nil)
	g := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 1001, 80, []byte("x"))
	w.Handle(f, tab, 1)
	w.Handle(g, tab, 1)
	w.refused(len(g)) // g could not be queued
	w.publish()
	var st Stats
	w.addTo(&st)
	if st.Reasons[Forwarded] != 1 || st.Reasons[DropTxError] != 1 || st.ForwardedBytes != uint64(len(f)) {
		t.Errorf("forwarded %d (%d bytes), tx_error %d; want 1 (%d bytes), 1", st.Reasons[Forwarded], st.ForwardedBytes, st.Reasons[DropTxError], len(f))
	}
	var pkts, bytes uint64
	for _, b := range tab.Lookup(vip4, 6, 80).Backends() {
		pkts += w.pub.backends[b.Slot].Packets.Load()
		bytes += w.pub.backends[b.Slot].Bytes.Load()
	}
	if pkts != 1 || bytes != uint64(len(f)) {
		t.Errorf("backends counted %d packets, %d bytes; want 1, %d", pkts, bytes, len(f))
	}
}

// A counter slot given to another backend (a removed backend's slot reused,
// a new SlotEpoch) starts from zero: the new backend does not inherit the
// old one's packets, bytes and flows.
func TestReusedSlotStartsAtZero(t *testing.T) {
	mk := func(mac [6]byte, epoch uint32) *balancer.Table {
		tab, err := balancer.NewTable(7, []balancer.ServiceSpec{{Name: "web", Key: balancer.ServiceKey{VIP: vip4, Proto: balancer.TCP, Port: 80},
			Backends: []balancer.Backend{{Addr: netip.MustParseAddr("198.18.0.11"), MAC: mac, Weight: 1, Slot: 5, SlotEpoch: epoch}}}})
		if err != nil {
			t.Fatal(err)
		}
		return tab
	}
	w := NewWorker(lbMAC, 1<<12, 1e12)
	old := mk([6]byte{2, 0, 0, 0, 0, 0x11}, 1)
	for sport := uint16(1); sport <= 10; sport++ {
		w.Handle(buildFrame(t, client4, vip4, layers.IPProtocolTCP, sport, 80, nil), old, 1)
	}
	w.publish()
	if got := w.pub.backends[5].Packets.Load(); got != 10 {
		t.Fatalf("slot 5: %d packets, want 10", got)
	}
	same := mk([6]byte{2, 0, 0, 0, 0, 0x11}, 1) // a new table, the same backend in the slot
	w.Handle(buildFrame(t, client4, vip4, layers.IPProtocolTCP, 11, 80, nil), same, 2)
	w.publish()
	if got := w.pub.backends[5].Packets.Load(); got != 11 {
		t.Fatalf("slot 5 after a table keeping its backend: %d packets, want 11", got)
	}
	// The slot's new backend (epoch 2), before the worker has a table with
	// it, reads as nothing; the old one (epoch 1) still reads its counts.
	d := &Dataplane{workers: []*Worker{w}}
	if p, _, _ := d.BackendStats(5, 2); p != 0 {
		t.Fatalf("slot 5's next backend, in no table yet: %d packets, want 0 (the last owner's are not its)", p)
	}
	if p, _, _ := d.BackendStats(5, 1); p != 11 {
		t.Fatalf("slot 5's backend: %d packets, want 11", p)
	}
	reused := mk([6]byte{2, 0, 0, 0, 0, 0x12}, 2)
	f := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 12, 80, nil)
	w.Handle(f, reused, 3)
	w.publish()
	b := &w.pub.backends[5]
	if b.Packets.Load() != 1 || b.Bytes.Load() != uint64(len(f)) || b.NewFlows.Load() != 1 {
		t.Fatalf("slot 5 given to another backend: %d packets, %d bytes, %d flows; want 1, %d, 1", b.Packets.Load(), b.Bytes.Load(), b.NewFlows.Load(), len(f))
	}
	if p, _, _ := d.BackendStats(5, 2); p != 1 {
		t.Fatalf("slot 5's new backend, once in a table: %d packets, want 1", p)
	}
	if p, _, _ := d.BackendStats(5, 1); p != 0 {
		t.Fatalf("slot 5's old backend after the slot moved on: %d packets, want 0", p)
	}
}
