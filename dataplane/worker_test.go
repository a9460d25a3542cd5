package dataplane

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"unsafe"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	lbMAC   = [6]byte{2, 0, 0, 0, 0, 0xb}
	vip4    = netip.MustParseAddr("198.18.0.100")
	vip6    = netip.MustParseAddr("2001:db8:18::100")
	client4 = netip.MustParseAddr("198.18.0.2")
	client6 = netip.MustParseAddr("2001:db8:18::2")
)

func backendMAC(i int) [6]byte { return [6]byte{2, 0, 0, 0, 1, byte(i)} }

// testTable serves vip4:80/tcp, vip4:*/udp and [vip6]:80/tcp from three
// backends each.
func testTable(t testing.TB) *balancer.Table {
	t.Helper()
	be := func(base string) []balancer.Backend {
		var out []balancer.Backend
		for i := 1; i <= 3; i++ {
			a := netip.MustParseAddr(base).As16()
			a[15] = byte(10 + i)
			out = append(out, balancer.Backend{Addr: netip.AddrFrom16(a).Unmap(), MAC: backendMAC(i), Weight: 1, Slot: uint16(i)})
		}
		return out
	}
	tab, err := balancer.NewTable(7, []balancer.ServiceSpec{
		{Name: "web", Key: balancer.ServiceKey{VIP: vip4, Proto: balancer.TCP, Port: 80}, Backends: be("198.18.0.0")},
		{Name: "dns", Key: balancer.ServiceKey{VIP: vip4, Proto: balancer.UDP}, Backends: be("198.18.0.0")},
		{Name: "web6", Key: balancer.ServiceKey{VIP: vip6, Proto: balancer.TCP, Port: 80}, Backends: be("2001:db8:18::")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestHandleForwards(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1024, 1e12)
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"tcp4", buildFrame(t, client4, vip4, layers.IPProtocolTCP, 40000, 80, []byte("GET / HTTP/1.1\r\n\r\n"))},
		{"udp4 any port", buildFrame(t, client4, vip4, layers.IPProtocolUDP, 40000, 5353, []byte("q"))},
		{"tcp6", buildFrame(t, client6, vip6, layers.IPProtocolTCP, 40000, 80, nil)},
	} {
		frame := c.frame
		before := append([]byte(nil), frame...)
		if r := w.Handle(frame, tab, 1); r != Forwarded {
			t.Fatalf("%s: %v", c.name, r)
		}
		if !bytes.Equal(frame[12:], before[12:]) {
			t.Errorf("%s: bytes after the MACs changed", c.name)
		}
		if [6]byte(frame[6:12]) != lbMAC {
			t.Errorf("%s: source MAC %x, want the balancer's %x", c.name, frame[6:12], lbMAC)
		}
		dst := [6]byte(frame[0:6])
		if dst != backendMAC(1) && dst != backendMAC(2) && dst != backendMAC(3) {
			t.Errorf("%s: destination MAC %x is no backend's", c.name, dst)
		}
	}
}

func TestHandleDropReasons(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1024, 1e12)
	ns := buildFrame(t, client6, vip6, layers.IPProtocolICMPv6, 0, 0, nil)
	ns[ethHeaderLen+40] = icmp6NS
	ns = append(ns, make([]byte, 4)...)
	binary.BigEndian.PutUint16(ns[ethHeaderLen+4:], uint16(len(ns)-ethHeaderLen-40))
	shortTCP := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 1, 80, nil)
	shortTCP = shortTCP[:ethHeaderLen+20+10]
	binary.BigEndian.PutUint16(shortTCP[ethHeaderLen+2:], 30)
	for _, c := range []struct {
		name  string
		frame []byte
		want  Reason
	}{
		{"runt", make([]byte, 10), DropRunt},
		{"arp", append(make([]byte, 12), 0x08, 0x06, 0, 0), DropNotIP},
		{"not vip", buildFrame(t, client4, client4, layers.IPProtocolTCP, 1, 80, nil), DropNotVIP},
		{"vip wrong port", buildFrame(t, client4, vip4, layers.IPProtocolTCP, 1, 81, nil), DropNoService},
		{"vip icmp", buildFrame(t, client4, vip4, layers.IPProtocolICMPv4, 0, 0, make([]byte, 8)), DropProtocol},
		{"ndp", ns, DropNDP},
		{"truncated tcp", shortTCP, DropBadL4Header},
		{"ipv4 total length beyond frame", func() []byte {
			f := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 1, 80, nil)
			binary.BigEndian.PutUint16(f[ethHeaderLen+2:], 1000)
			return f
		}(), DropBadIPHeader},
	} {
		before := append([]byte(nil), c.frame...)
		if got := w.Handle(c.frame, tab, 1); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		if !bytes.Equal(before, c.frame) {
			t.Errorf("%s: a dropped frame was modified", c.name)
		}
	}
	if w.c.received != 8 || w.c.reasons[Forwarded] != 0 {
		t.Errorf("counters: received %d forwarded %d", w.c.received, w.c.reasons[Forwarded])
	}
}

// changedTable is tab with backend 3 of every service gone and a backend 4
// added: Maglev moves some flows of backends 1 and 2 to backend 4.
func changedTable(t testing.TB, tab *balancer.Table) *balancer.Table {
	t.Helper()
	return editTable(t, tab, func(spec *balancer.ServiceSpec) {
		spec.Backends = slices.DeleteFunc(spec.Backends, func(b balancer.Backend) bool { return b.MAC == backendMAC(3) })
		a := spec.Backends[0].Addr.As16()
		a[15] = 99
		spec.Backends = append(spec.Backends, balancer.Backend{Addr: netip.AddrFrom16(a).Unmap(), MAC: backendMAC(4), Weight: 1, Slot: 4})
	})
}

// editTable is tab rebuilt with its seed, each service's spec (its backends
// a copy) passed through edit first.
func editTable(t testing.TB, tab *balancer.Table, edit func(*balancer.ServiceSpec)) *balancer.Table {
	t.Helper()
	var specs []balancer.ServiceSpec
	for _, s := range tab.Services() {
		spec := balancer.ServiceSpec{Name: s.Name(), Key: s.Key(), Backends: slices.Clone(s.Backends())}
		edit(&spec)
		specs = append(specs, spec)
	}
	tab2, err := balancer.NewTable(tab.Seed(), specs)
	if err != nil {
		t.Fatal(err)
	}
	return tab2
}

// A connection keeps its backend when the table changes under it, although
// the worker held no state for it before the change, and moves when its
// backend leaves.
func TestFlowTableKeepsFlows(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1<<16, 1e12)
	type flow struct {
		sport uint16
		mac   [6]byte
	}
	var flows []flow
	for sport := uint16(1000); sport < 1300; sport++ {
		f := buildFrame(t, client4, vip4, layers.IPProtocolTCP, sport, 80, nil) // SYN
		if w.Handle(f, tab, 1) != Forwarded {
			t.Fatal("not forwarded")
		}
		flows = append(flows, flow{sport, [6]byte(f[0:6])})
	}
	if w.Tracking() || w.flows.Live != 0 {
		t.Fatalf("tracking %v with %d flow-table entries before any table change", w.Tracking(), w.flows.Live)
	}
	tab2 := changedTable(t, tab)
	kept, moved := 0, 0
	for round := range 2 { // the second round finds the flows in the flow table
		for _, f := range flows {
			fr := buildAck(t, client4, vip4, f.sport, 80)
			if w.Handle(fr, tab2, int64(2+round)) != Forwarded {
				t.Fatal("not forwarded")
			}
			got := [6]byte(fr[0:6])
			switch {
			case f.mac == backendMAC(3):
				if got == backendMAC(3) {
					t.Fatalf("flow %d still sent to the removed backend", f.sport)
				}
				moved++
			case got != f.mac:
				t.Fatalf("round %d: flow %d moved from %x to %x although its backend stayed", round, f.sport, f.mac, got)
			default:
				kept++
			}
		}
	}
	if kept == 0 || moved == 0 {
		t.Fatalf("kept %d moved %d: the test did not exercise both cases", kept, moved)
	}
	if !w.Tracking() || w.flows.Live != uint64(len(flows)) {
		t.Fatalf("after the change: tracking %v, %d entries, want true and %d", w.Tracking(), w.flows.Live, len(flows))
	}
	// Without the grace rule the same change would have moved some of the
	// kept flows to the new backend: prove it did the work.
	fresh := NewWorker(lbMAC, 1<<16, 1e12)
	wouldMove := 0
	for _, f := range flows {
		fr := buildAck(t, client4, vip4, f.sport, 80)
		fresh.Handle(fr, tab2, 2)
		if f.mac != backendMAC(3) && [6]byte(fr[0:6]) != f.mac {
			wouldMove++
		}
	}
	if wouldMove == 0 {
		t.Fatal("Maglev moved no surviving flow to the new backend; the check proves nothing")
	}
	t.Logf("%d flows kept their backend, %d moved off the removed one; %d would have moved by Maglev alone", kept/2, moved/2, wouldMove)
}

func TestFlowTableBounded(t *testing.T) {
	ft := NewFlowTable(1000, 100)
	if ft.Cap() != 1024 {
		t.Fatalf("cap %d, want 1024", ft.Cap())
	}
	be := netip.MustParseAddr("198.18.0.11")
	for i := 0; i < 100000; i++ {
		k := flowKey{srcPort: uint16(i), dstPort: uint16(i >> 16), proto: 6}
		ft.Insert(uint64(i)*0x9e3779b97f4a7c15, &k, be, 0, 0, 1)
	}
	if ft.Live != uint64(ft.Cap()) {
		t.Errorf("live %d, want every one of %d entries used", ft.Live, ft.Cap())
	}
	if ft.Evictions != 100000-uint64(ft.Cap()) {
		t.Errorf("evictions %d, want %d", ft.Evictions, 100000-ft.Cap())
	}
	// The newest flow is there, expiry works.
	last := 99999
	k := flowKey{srcPort: uint16(last), dstPort: uint16(last >> 16), proto: 6}
	h := uint64(last) * 0x9e3779b97f4a7c15
	if e := ft.Lookup(h, &k, 50); e == nil || e.Backend() != be {
		t.Error("newest flow missing")
	}
	if e := ft.Lookup(h, &k, 50+101); e != nil {
		t.Error("flow idle longer than the timeout still found")
	}
}

// A worker taking a new table (its counter slots: adoptSlots, which runs in
// every batch) allocates nothing either.
func TestAdoptSlotsAllocs(t *testing.T) {
	tabs := []*balancer.Table{testTable(t), changedTable(t, testTable(t))}
	w := NewWorker(lbMAC, 64, 1e12)
	i := 0
	if n := testing.AllocsPerRun(100, func() { w.adoptSlots(tabs[i%2]); i++ }); n != 0 {
		t.Fatalf("adoptSlots allocates %v times per new table", n)
	}
}

// The packet path allocates nothing: parse, service lookup, Maglev pick,
// rewrite, and while tracking the flow table, the old table's choice and the
// sweep.
func TestHandleAllocs(t *testing.T) {
	tab := testTable(t)
	tab2 := changedTable(t, tab)
	w := NewWorker(lbMAC, 1<<12, 1e6)
	frames := [][]byte{
		buildFrame(t, client4, vip4, layers.IPProtocolTCP, 40000, 80, make([]byte, 100)),
		buildAck(t, client4, vip4, 40000, 80),
		buildFrame(t, client6, vip6, layers.IPProtocolTCP, 40000, 80, nil),
		buildFrame(t, client4, vip4, layers.IPProtocolUDP, 40000, 53, nil),
		buildFrame(t, client4, client4, layers.IPProtocolUDP, 40000, 53, nil),
	}
	sport, now := uint16(0), int64(1)
	run := func(tab *balancer.Table) float64 {
		return testing.AllocsPerRun(1000, func() {
			sport++
			now += 10_000 // through the grace period (1 ms, 100 runs) and into the sweep
			for _, f := range frames {
				binary.BigEndian.PutUint16(f[34:], sport) // IPv4 source port (in the v6 frame a source-address byte): new flows too
				w.Handle(f, tab, now)
			}
			w.maintain(now)
		})
	}
	if allocs := run(tab); allocs != 0 || w.Tracking() {
		t.Fatalf("not tracking: %v allocations per batch of %d frames, want 0 (tracking %v)", allocs, len(frames), w.Tracking())
	}
	w.Handle(frames[0], tab2, now)
	if !w.Tracking() {
		t.Fatal("no tracking after a table change")
	}
	if allocs := run(tab2); allocs != 0 {
		t.Fatalf("tracking: %v allocations per batch of %d frames, want 0", allocs, len(frames))
	}
	if tr := &w.track; tr.on && tr.sweepSet == 0 && tr.sweepAt == 0 {
		t.Fatal("the sweep never ran")
	}
}

func BenchmarkHandle(b *testing.B) {
	tab := testTable(b)
	frame := buildFrame(b, client4, vip4, layers.IPProtocolTCP, 40000, 80, make([]byte, 10))
	for _, tracking := range []bool{false, true} {
		name, t := "stateless", tab
		w := NewWorker(lbMAC, 1<<16, 1e12)
		if tracking {
			// A table change: the worker tracks flows from then on.
			name, t = "tracking", changedTable(b, tab)
			w.Handle(frame, tab, 1)
			w.Handle(frame, t, 1)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint16(frame[34:], uint16(i&1023)) // 1024 flows: flow-table hits when tracking
				if w.Handle(frame, t, 1) != Forwarded {
					b.Fatal("dropped")
				}
			}
			if w.Tracking() != tracking {
				b.Fatalf("tracking %v, want %v", w.Tracking(), tracking)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	frame := buildFrame(b, client4, vip4, layers.IPProtocolTCP, 40000, 80, make([]byte, 10))
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		Parse(frame, &p)
	}
}

func BenchmarkFlowTableLookup(b *testing.B) {
	ft := NewFlowTable(1<<16, 1e12)
	be := netip.MustParseAddr("198.18.0.11")
	keys := make([]flowKey, 1<<15)
	for i := range keys {
		keys[i] = flowKey{srcPort: uint16(i), proto: 6}
		ft.Insert(uint64(i)*0x9e3779b97f4a7c15, &keys[i], be, 0, 0, 1)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i & (len(keys) - 1)
		if e := ft.Lookup(uint64(j)*0x9e3779b97f4a7c15, &keys[j], 1); e == nil {
			b.Fatal("miss")
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	frame := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		Rewrite(frame, backendMAC(1), lbMAC)
	}
}

var _ = gopacket.Payload(nil)

// An entry is one cache line and a set's head another, so a lookup touches
// two lines.
func TestFlowEntryLayout(t *testing.T) {
	if s := unsafe.Sizeof(flowEntry{}); s != 64 {
		t.Errorf("flowEntry is %d bytes, want 64 (one cache line)", s)
	}
	if s := unsafe.Sizeof(flowSet{}); s != 64 {
		t.Errorf("flowSet is %d bytes, want 64 (one cache line)", s)
	}
	if FlowEntryBytes != 72 {
		t.Errorf("FlowEntryBytes %d, want 72", FlowEntryBytes)
	}
}

// Entries expire after the idle timeout, at the table's coarse time units,
// and the least recently seen way of a full set is the one replaced, also
// when the clock has run past 32 bits of units.
func TestFlowTableExpiryAndLRU(t *testing.T) {
	const idle = int64(5 * 60 * 1e9)           // the default, 5 minutes
	for _, base := range []int64{1, 1 << 52} { // 1<<52 ns: unit counts past 2^32
		ft := NewFlowTable(flowWays, idle) // one set
		be := netip.MustParseAddr("198.18.0.11")
		keys := make([]flowKey, flowWays+1)
		for i := range keys {
			keys[i] = flowKey{srcPort: uint16(i), proto: 6}
		}
		// Ways filled at base+i seconds; way 3 refreshed last.
		for i := range flowWays {
			ft.Insert(uint64(i)<<8, &keys[i], be, 0, 0, base+int64(i)*1e9)
		}
		if ft.Lookup(3<<8, &keys[3], base+10e9) == nil {
			t.Fatalf("base %d: flow 3 missing", base)
		}
		ft.Insert(99<<8, &keys[flowWays], be, 0, 0, base+11e9)
		if ft.Evictions != 1 {
			t.Fatalf("base %d: evictions %d, want 1", base, ft.Evictions)
		}
		if ft.Lookup(0, &keys[0], base+12e9) != nil {
			t.Errorf("base %d: the least recently seen flow 0 was not the one replaced", base)
		}
		for i := 1; i < flowWays; i++ {
			if ft.Lookup(uint64(i)<<8, &keys[i], base+12e9) == nil {
				t.Errorf("base %d: flow %d replaced instead of flow 0", base, i)
			}
		}
		// Flow 1 was last seen at base+12s: alive just before the timeout,
		// dead after it (within the units' precision).
		if ft.Lookup(1<<8, &keys[1], base+12e9+idle-idle/1000) == nil {
			t.Errorf("base %d: flow expired before its idle timeout", base)
		}
		if ft.Lookup(2<<8, &keys[2], base+12e9+idle+idle/1000) != nil {
			t.Errorf("base %d: flow alive after its idle timeout", base)
		}
	}
}

// BenchmarkFlowTableLookupCold looks flows up in random order in a full
// table of 2^20 entries (72 MiB): every lookup misses the caches, as on a
// busy balancer with many flows.
func BenchmarkFlowTableLookupCold(b *testing.B) {
	const n = 1 << 20
	ft := NewFlowTable(n, 1e12)
	be := netip.MustParseAddr("198.18.0.11")
	keys := make([]flowKey, n)
	hashes := make([]uint64, n)
	for i := range keys {
		keys[i] = flowKey{srcPort: uint16(i), dstPort: uint16(i >> 16), proto: 17}
		hashes[i] = uint64(i) * 0x9e3779b97f4a7c15
		ft.Insert(hashes[i], &keys[i], be, 0, 0, 1)
	}
	order := make([]uint32, n)
	for i := range order {
		order[i] = uint32(i)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	b.ReportAllocs()
	found := 0
	for i := 0; b.Loop(); i++ {
		j := order[i&(n-1)]
		if ft.Lookup(hashes[j], &keys[j], 2) != nil {
			found++
		}
	}
	if found == 0 {
		b.Fatal("no flow found")
	}
}

func TestVirtualMAC(t *testing.T) {
	for in, want := range map[string]string{
		"00:16:3e:12:34:56": "02:16:3e:12:34:56", // globally administered: set the local bit
		"02:00:00:00:00:02": "06:00:00:00:00:02", // already local: flip 0x04
		"06:00:00:00:00:02": "02:00:00:00:00:02",
	} {
		hw, _ := net.ParseMAC(in)
		got := VirtualMAC(hw)
		if got.String() != want {
			t.Errorf("VirtualMAC(%s) = %s, want %s", in, got, want)
		}
		if err := checkVIPMAC(got); err != nil {
			t.Errorf("VirtualMAC(%s) = %s: %v", in, got, err)
		}
		if hw.String() != in {
			t.Errorf("VirtualMAC changed its argument to %s", hw)
		}
	}
	for _, bad := range []string{"01:00:5e:00:00:01", "00:00:00:00:00:00"} {
		hw, _ := net.ParseMAC(bad)
		if checkVIPMAC(hw) == nil {
			t.Errorf("checkVIPMAC(%s) accepted it", bad)
		}
	}
}

func TestWorkerCPUs(t *testing.T) {
	cpus := workerCPUs(3, []int{1, 2})
	if !slices.Equal(cpus, []int{1, 2, 1}) {
		t.Fatalf("workerCPUs(3, [1 2]) = %v", cpus)
	}
	if !sharesCPU(cpus, 0) || sharesCPU(cpus, 1) || !sharesCPU(cpus, 2) {
		t.Errorf("sharesCPU over %v: workers 0 and 2 share CPU 1, worker 1 is alone", cpus)
	}
	if free := workerCPUs(2, nil); !slices.Equal(free, []int{-1, -1}) {
		t.Errorf("workerCPUs(2, nil) = %v, want no pinning", free)
	}
}

// A frame sent by the very backend Maglev picks for it (a server without the
// VIP, forwarding IP, routes the client's packet back to the VIP's MAC) is
// dropped as a loop, untouched; the same flow from elsewhere is forwarded.
func TestLoopDropped(t *testing.T) {
	tab := testTable(t)
	w := NewWorker(lbMAC, 1<<12, 1e12)
	f := buildFrame(t, client4, vip4, layers.IPProtocolTCP, 40000, 80, nil)
	to := handleTo(t, w, bytes.Clone(f), tab, 1)
	looped := bytes.Clone(f)
	copy(looped[6:12], to[:]) // sent by that backend
	before := bytes.Clone(looped)
	if r := w.Handle(looped, tab, 1); r != DropLoop {
		t.Fatalf("a frame from the backend it would go to: %v, want %v", r, DropLoop)
	}
	if !bytes.Equal(looped, before) {
		t.Error("a dropped frame was changed")
	}
	if DropLoop.String() != "loop" {
		t.Errorf("DropLoop names itself %q", DropLoop.String())
	}
}
