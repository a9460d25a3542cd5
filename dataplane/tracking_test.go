package dataplane

import (
	"net/netip"
	"testing"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/google/gopacket/layers"
)

// maglevMAC is the MAC of the backend that tab's Maglev picks for the flow
// client4:sport → vip4:dport over proto.
func maglevMAC(t *testing.T, tab *balancer.Table, proto balancer.Protocol, sport, dport uint16) [6]byte {
	t.Helper()
	svc := tab.Lookup(vip4, proto, dport)
	if svc == nil {
		t.Fatalf("no service for %v port %d", proto, dport)
	}
	f := balancer.Flow{Src: client4, Dst: vip4, SrcPort: sport, DstPort: dport, Proto: proto}
	i, ok := svc.Pick(f.Hash(tab.Seed()))
	if !ok {
		t.Fatal("no backend")
	}
	return svc.Backend(i).MAC
}

// movedPorts returns source ports of flows to vip4:dport over proto whose
// backend in from stays in to but which to's Maglev sends elsewhere (moved),
// and of flows that both tables send to the same backend (stay).
func movedPorts(t *testing.T, from, to *balancer.Table, proto balancer.Protocol, dport uint16, n int) (moved, stay []uint16) {
	t.Helper()
	for sport := uint16(2000); len(moved) < n || len(stay) < n; sport++ {
		if sport == 0 {
			t.Fatal("not enough flows of each kind")
		}
		a, b := maglevMAC(t, from, proto, sport, dport), maglevMAC(t, to, proto, sport, dport)
		switch {
		case a == b && len(stay) < n:
			stay = append(stay, sport)
		case a != b && a != backendMAC(3) && len(moved) < n:
			moved = append(moved, sport)
		}
	}
	return moved, stay
}

// addBackend is tab with a backend added to every service: the address of
// the service's first backend with last byte last, and MAC mac.
func addBackend(t *testing.T, tab *balancer.Table, last byte, mac [6]byte) *balancer.Table {
	t.Helper()
	var specs []balancer.ServiceSpec
	for _, s := range tab.Services() {
		spec := balancer.ServiceSpec{Name: s.Name(), Key: s.Key(), Backends: s.Backends()}
		a := spec.Backends[0].Addr.As16()
		a[15] = last
		spec.Backends = append(spec.Backends, balancer.Backend{Addr: netip.AddrFrom16(a).Unmap(), MAC: mac, Weight: 1, Slot: uint16(mac[5])})
		specs = append(specs, spec)
	}
	out, err := balancer.NewTable(tab.Seed(), specs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func handleTo(t *testing.T, w *Worker, frame []byte, tab *balancer.Table, now int64) [6]byte {
	t.Helper()
	if r := w.Handle(frame, tab, now); r != Forwarded {
		t.Fatalf("not forwarded: %v", r)
	}
	return [6]byte(frame[0:6])
}

// Until the table changes, a worker forwards by Maglev alone and its flow
// table stays untouched; new flows are counted by their TCP SYNs.
func TestStatelessSteadyState(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1<<12, 1e12)
	for sport := uint16(1000); sport < 1500; sport++ {
		syn := buildFrame(t, client4, vip4, layers.IPProtocolTCP, sport, 80, nil)
		ack := buildAck(t, client4, vip4, sport, 80)
		udp := buildFrame(t, client4, vip4, layers.IPProtocolUDP, sport, 53, nil)
		want := maglevMAC(t, tab, balancer.TCP, sport, 80)
		if got := handleTo(t, w, syn, tab, int64(sport)); got != want {
			t.Fatalf("SYN from port %d to %x, Maglev says %x", sport, got, want)
		}
		if got := handleTo(t, w, ack, tab, int64(sport)); got != want {
			t.Fatalf("ACK from port %d to %x, Maglev says %x", sport, got, want)
		}
		if got, want := handleTo(t, w, udp, tab, int64(sport)), maglevMAC(t, tab, balancer.UDP, sport, 53); got != want {
			t.Fatalf("UDP from port %d to %x, Maglev says %x", sport, got, want)
		}
	}
	if w.Tracking() || w.flows.Live != 0 || w.flows.Evictions != 0 {
		t.Fatalf("tracking %v, %d entries, %d evictions: want no flow state with one table", w.Tracking(), w.flows.Live, w.flows.Evictions)
	}
	if w.c.flowsNew != 500 {
		t.Fatalf("new flows %d, want 500 (the SYNs)", w.c.flowsNew)
	}
}

// After a change, within the grace period: a packet that opens a connection
// follows the new table, anything else the old one (it may belong to a flow
// under way); after it, an unknown flow follows the new table.
func TestTrackingGrace(t *testing.T) {
	const idle = int64(1e9)
	tab := testTable(t)
	tab2 := changedTable(t, tab)
	moved, _ := movedPorts(t, tab, tab2, balancer.TCP, 80, 4)
	movedUDP, _ := movedPorts(t, tab, tab2, balancer.UDP, 53, 2)
	w := NewWorker(lbMAC, 1<<12, idle)
	handleTo(t, w, buildFrame(t, client6, vip6, layers.IPProtocolTCP, 1, 80, nil), tab, 1) // the table in force
	const change = 100
	for _, c := range []struct {
		name  string
		frame []byte
		at    int64
		table *balancer.Table // whose Maglev choice it gets
	}{
		{"ACK in grace", buildAck(t, client4, vip4, moved[0], 80), change, tab},
		{"SYN in grace", buildFrame(t, client4, vip4, layers.IPProtocolTCP, moved[1], 80, nil), change + idle/2, tab2},
		{"UDP in grace", buildFrame(t, client4, vip4, layers.IPProtocolUDP, movedUDP[0], 53, nil), change + idle - 1, tab},
		{"ACK after grace", buildAck(t, client4, vip4, moved[2], 80), change + idle + 1, tab2},
		{"UDP after grace", buildFrame(t, client4, vip4, layers.IPProtocolUDP, movedUDP[1], 53, nil), change + idle + 1, tab2},
	} {
		var p Packet
		Parse(c.frame, &p)
		proto, port := balancer.TCP, uint16(80)
		if p.Proto == protoUDP {
			proto, port = balancer.UDP, 53
		}
		want := maglevMAC(t, c.table, proto, p.SrcPort, port)
		if got := handleTo(t, w, c.frame, tab2, c.at); got != want {
			t.Errorf("%s: sent to %x, want %x", c.name, got, want)
		}
		// Remembered: the same flow goes the same way later.
		again := buildAck(t, client4, vip4, p.SrcPort, 80)
		if proto == balancer.UDP {
			again = buildFrame(t, client4, vip4, layers.IPProtocolUDP, p.SrcPort, 53, nil)
		}
		if got := handleTo(t, w, again, tab2, c.at+idle/4); got != want {
			t.Errorf("%s, its next packet: sent to %x, want %x", c.name, got, want)
		}
	}
	if !w.Tracking() {
		t.Fatal("not tracking after a table change")
	}
}

// Changes that follow each other keep every flow where it was: flows older
// than the first change on the first table's choice, flows begun between the
// changes on the choice they were given.
func TestTrackingChainedChanges(t *testing.T) {
	tab := testTable(t)
	tab2 := changedTable(t, tab)
	tab3 := addBackend(t, tab2, 77, backendMAC(5))
	w := NewWorker(lbMAC, 1<<12, 1e12)
	handleTo(t, w, buildFrame(t, client6, vip6, layers.IPProtocolTCP, 1, 80, nil), tab, 1)
	oldFlows, _ := movedPorts(t, tab, tab2, balancer.TCP, 80, 8)
	// A connection opened under tab2, which tab3 would move.
	var mid uint16
	for sport := uint16(30000); ; sport++ {
		m := maglevMAC(t, tab2, balancer.TCP, sport, 80)
		if m != maglevMAC(t, tab3, balancer.TCP, sport, 80) && m != backendMAC(3) {
			mid = sport
			break
		}
	}
	midMAC := handleTo(t, w, buildFrame(t, client4, vip4, layers.IPProtocolTCP, mid, 80, nil), tab2, 10)
	if midMAC != maglevMAC(t, tab2, balancer.TCP, mid, 80) {
		t.Fatal("a SYN under tab2 did not get tab2's choice")
	}
	for _, sport := range oldFlows {
		want := maglevMAC(t, tab, balancer.TCP, sport, 80)
		if got := handleTo(t, w, buildAck(t, client4, vip4, sport, 80), tab3, 20); got != want {
			t.Errorf("flow %d older than both changes: sent to %x, want the first table's %x", sport, got, want)
		}
	}
	if got := handleTo(t, w, buildAck(t, client4, vip4, mid, 80), tab3, 20); got != midMAC {
		t.Errorf("flow begun between the changes: sent to %x, want %x", got, midMAC)
	}
}

// Tracking ends once the grace period is over and no live flow is held off
// its Maglev backend, and not before.
func TestTrackingEnds(t *testing.T) {
	const idle = int64(1e9)
	tab := testTable(t)
	tab2 := changedTable(t, tab)
	moved, stay := movedPorts(t, tab, tab2, balancer.TCP, 80, 1)
	w := NewWorker(lbMAC, 1<<10, idle)
	handleTo(t, w, buildFrame(t, client6, vip6, layers.IPProtocolTCP, 1, 80, nil), tab, 1)
	sweepAll := func(now int64) {
		for range len(w.flows.sets)/sweepSets + 1 {
			w.maintain(now)
		}
	}
	handleTo(t, w, buildAck(t, client4, vip4, stay[0], 80), tab2, 10) // the change
	// No flow is held off its Maglev backend yet, but one may still show
	// up: tracking goes on until the grace period ends.
	sweepAll(10 + idle/2)
	if !w.Tracking() {
		t.Fatal("tracking ended within the grace period")
	}
	held := buildAck(t, client4, vip4, moved[0], 80)
	now := 10 + idle/2 + 1
	heldMAC := handleTo(t, w, held, tab2, now) // under way before the change: kept on tab's choice
	if heldMAC != maglevMAC(t, tab, balancer.TCP, moved[0], 80) {
		t.Fatal("a flow under way since before the change was moved")
	}
	// The held flow stays busy past the grace period: tracking goes on.
	for range 5 {
		now += idle / 2
		if got := handleTo(t, w, held, tab2, now); got != heldMAC {
			t.Fatalf("held flow moved to %x at %d", got, now)
		}
		sweepAll(now)
		if !w.Tracking() {
			t.Fatalf("tracking ended at %d with a live flow held off its Maglev backend", now)
		}
		w.track.sweepAt = 0 // don't wait for the pause between passes
	}
	// It goes quiet: after its idle timeout (the table keeps times in
	// coarse units: well after it), the sweep ends tracking.
	now += idle + idle/8
	sweepAll(now)
	if w.Tracking() {
		t.Fatal("still tracking after every held flow expired")
	}
	if w.flows.Live != 0 {
		t.Fatalf("%d flow-table entries left after the sweep, want the expired ones cleared", w.flows.Live)
	}
	// From then on Maglev alone decides, and the table is not touched.
	if got, want := handleTo(t, w, held, tab2, now+1), maglevMAC(t, tab2, balancer.TCP, moved[0], 80); got != want {
		t.Fatalf("after tracking, sent to %x, want Maglev's %x", got, want)
	}
	if w.flows.Live != 0 {
		t.Fatal("the flow table was written while not tracking")
	}
}

// Entries still live when tracking ends stay in the flow table; when
// tracking starts again so much later that their 32-bit times have wrapped,
// they are forgotten instead of coming back to life, fresh, on their old
// backends.
func TestTrackingForgetsWrappedEntries(t *testing.T) {
	const idle = int64(1e6) // time units of 1 ns: times wrap after 2^32 ns
	tab := testTable(t)
	tab2 := changedTable(t, tab)
	_, stay := movedPorts(t, tab, tab2, balancer.TCP, 80, 1)
	w := NewWorker(lbMAC, 1<<10, idle)
	if w.flows.wrapNs() != 1<<32 {
		t.Fatalf("wrapNs %d, want 2^32 for a 1 ms idle timeout", w.flows.wrapNs())
	}
	handleTo(t, w, buildFrame(t, client6, vip6, layers.IPProtocolTCP, 1, 80, nil), tab, 1)
	fresh := buildAck(t, client4, vip4, stay[0], 80)
	handleTo(t, w, fresh, tab2, 10) // the change: the flow is remembered
	now := 10 + idle + 1
	handleTo(t, w, fresh, tab2, now) // busy up to the sweep
	for range len(w.flows.sets)/sweepSets + 1 {
		w.maintain(now)
	}
	if w.Tracking() || w.flows.Live != 1 {
		t.Fatalf("tracking %v, %d entries: want tracking over with the busy flow's entry left", w.Tracking(), w.flows.Live)
	}
	f := balancer.Flow{Src: client4, Dst: vip4, SrcPort: stay[0], DstPort: 80, Proto: balancer.TCP}
	key, hash := keyOf(&f), f.Hash(tab2.Seed())
	later := now + 1<<32 // exactly one wrap: the entry's time reads as now
	if w.flows.Lookup(hash, &key, later) == nil {
		t.Fatal("the test's premise: a wrapped entry looks fresh to Lookup")
	}
	// Back to the first table: tracking starts again, on another flow's
	// frame.
	handleTo(t, w, buildFrame(t, client6, vip6, layers.IPProtocolTCP, 2, 80, nil), tab, later)
	if !w.Tracking() {
		t.Fatal("a new change did not start tracking")
	}
	if w.flows.Lookup(hash, &key, later) != nil {
		t.Fatal("the entry from before the wrap came back to life")
	}
	if w.flows.Live != 1 {
		t.Fatalf("%d flow-table entries, want only the new flow's", w.flows.Live)
	}
}

// A flow whose remembered backend is no longer in the table, or whose
// service is gone, does not keep the worker tracking.
func TestHeldOff(t *testing.T) {
	tab := testTable(t)
	tab2 := changedTable(t, tab)
	moved, stay := movedPorts(t, tab, tab2, balancer.TCP, 80, 1)
	w := NewWorker(lbMAC, 1<<10, 1e12)
	w.track.cur = tab2
	entry := func(sport uint16, backend netip.Addr) *flowEntry {
		return &flowEntry{key: flowKey{src: client4.As16(), dst: vip4.As16(), srcPort: sport, dstPort: 80, proto: uint8(balancer.TCP)}, backend: backend.As16()}
	}
	addrOf := func(tb *balancer.Table, mac [6]byte) netip.Addr {
		for _, b := range tb.Lookup(vip4, balancer.TCP, 80).Backends() {
			if b.MAC == mac {
				return b.Addr
			}
		}
		t.Fatalf("no backend %x", mac)
		return netip.Addr{}
	}
	for _, c := range []struct {
		name string
		e    *flowEntry
		want bool
	}{
		{"on tab's choice, moved by tab2", entry(moved[0], addrOf(tab, maglevMAC(t, tab, balancer.TCP, moved[0], 80))), true},
		{"on the choice of both", entry(stay[0], addrOf(tab2, maglevMAC(t, tab2, balancer.TCP, stay[0], 80))), false},
		{"on a removed backend", entry(moved[0], addrOf(tab, backendMAC(3))), false},
		{"service gone", func() *flowEntry { e := entry(moved[0], addrOf(tab, backendMAC(1))); e.key.dstPort = 81; return e }(), false},
	} {
		if got := w.heldOff(c.e); got != c.want {
			t.Errorf("%s: heldOff %v, want %v", c.name, got, c.want)
		}
	}
}

// macChangedTable is tab with backend 1's MAC changed in every service: a
// new table that sends every flow where tab does.
func macChangedTable(t testing.TB, tab *balancer.Table) *balancer.Table {
	t.Helper()
	return editTable(t, tab, func(spec *balancer.ServiceSpec) {
		for i := range spec.Backends {
			if spec.Backends[i].MAC == backendMAC(1) {
				spec.Backends[i].MAC = [6]byte{2, 0, 0, 0, 9, 1}
			}
		}
	})
}

// The dataplane names a published table's flows: a new table that sends
// every flow alike keeps the name, one that moves flows gets its own.
func TestPublishNamesFlows(t *testing.T) {
	var d Dataplane
	tab := testTable(t)
	d.publish(tab)
	first := d.table.Load().flows
	if first != tab.Gen() {
		t.Fatalf("first table's flows %d, want its Gen %d", first, tab.Gen())
	}
	mac := macChangedTable(t, tab)
	d.publish(mac)
	if got := d.table.Load(); got.t != mac || got.flows != first {
		t.Fatalf("after a MAC change: table %p flows %d, want %p and %d", got.t, got.flows, mac, first)
	}
	moved := changedTable(t, mac)
	d.publish(moved)
	if got := d.table.Load().flows; got != moved.Gen() {
		t.Fatalf("after a backend change: flows %d, want %d", got, moved.Gen())
	}
	if d.Table() != moved {
		t.Fatal("Table() is not the table last published")
	}
}

// A new table with the same flows is no change to a worker: it keeps no
// flow state, and every frame goes where Maglev (and the new MACs) say.
// A table with other flows starts tracking.
func TestSameFlowsKeepStateless(t *testing.T) {
	tab := testTable(t)
	mac := macChangedTable(t, tab)
	w := NewWorker(lbMAC, 1<<12, 1e12)
	send := func(tb *balancer.Table, flows uint64, sport uint16, now int64) [6]byte {
		t.Helper()
		f := buildAck(t, client4, vip4, sport, 80)
		if r := w.handle(f, tb, flows, now); r != Forwarded {
			t.Fatalf("port %d: %v", sport, r)
		}
		return [6]byte(f[0:6])
	}
	for sport := uint16(1000); sport < 1100; sport++ {
		send(tab, tab.Gen(), sport, 1)
	}
	for sport := uint16(1000); sport < 1100; sport++ {
		if got, want := send(mac, tab.Gen(), sport, 2), maglevMAC(t, mac, balancer.TCP, sport, 80); got != want {
			t.Fatalf("port %d after the MAC change: to %x, want %x", sport, got, want)
		}
	}
	if w.Tracking() || w.flows.Live != 0 {
		t.Fatalf("after a table with the same flows: tracking %v, %d entries; want none", w.Tracking(), w.flows.Live)
	}
	moved := changedTable(t, mac)
	send(moved, moved.Gen(), 1000, 3)
	if !w.Tracking() {
		t.Fatal("a table with other flows did not start tracking")
	}
}
