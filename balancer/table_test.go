package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	vip4  = netip.MustParseAddr("10.0.0.100")
	vip4b = netip.MustParseAddr("10.0.0.101")
	vip6  = netip.MustParseAddr("2001:db8::1")
)

func backends(weights ...uint32) []Backend {
	out := make([]Backend, len(weights))
	for i, w := range weights {
		out[i] = Backend{Addr: netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + i)}), MAC: [6]byte{2, 0, 0, 0, 0, byte(i)}, Weight: w}
	}
	return out
}

func testSpecs() []ServiceSpec {
	return []ServiceSpec{
		{Name: "web", Key: ServiceKey{vip4, TCP, 80}, Backends: backends(1, 1, 1)},
		{Name: "all-tcp", Key: ServiceKey{vip4, TCP, 0}, TableSize: 251, Backends: backends(1, 2)},
		{Name: "dns", Key: ServiceKey{vip4b, UDP, 53}, TableSize: 13, Backends: backends(0, 0)},
		{Name: "web6", Key: ServiceKey{vip6, TCP, 443}, Backends: []Backend{
			{Addr: netip.MustParseAddr("2001:db8::11"), Weight: 1},
			{Addr: netip.MustParseAddr("2001:db8::10"), Weight: 1},
		}},
	}
}

func mustTable(t testing.TB, seed uint64, specs []ServiceSpec) *Table {
	t.Helper()
	tab, err := NewTable(seed, specs)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		p    Protocol
		want string
	}{{TCP, "tcp"}, {UDP, "udp"}, {1, "proto(1)"}, {0, "proto(0)"}} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("Protocol(%d).String() = %q, want %q", tc.p, got, tc.want)
		}
	}
	for s, want := range map[string]Protocol{"tcp": TCP, "TCP": TCP, "Udp": UDP, "udp": UDP} {
		if got, err := ParseProtocol(s); got != want || err != nil {
			t.Errorf("ParseProtocol(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "icmp", "tcp ", "6"} {
		if _, err := ParseProtocol(s); err == nil || !strings.Contains(err.Error(), `unknown protocol "`+s+`" (want tcp or udp)`) {
			t.Errorf("ParseProtocol(%q) error = %v", s, err)
		}
	}
}

func TestServiceKeyString(t *testing.T) {
	for _, tc := range []struct {
		k    ServiceKey
		want string
	}{
		{ServiceKey{vip4, TCP, 80}, "10.0.0.100:80/tcp"},
		{ServiceKey{vip6, TCP, 80}, "[2001:db8::1]:80/tcp"},
		{ServiceKey{vip4, UDP, 0}, "10.0.0.100:*/udp"},
		{ServiceKey{vip6, 132, 0}, "[2001:db8::1]:*/proto(132)"},
	} {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestNewTableErrors(t *testing.T) {
	b := backends(1)
	for _, tc := range []struct {
		name  string
		specs []ServiceSpec
		want  string
	}{
		{"size not prime", []ServiceSpec{{Name: "web", Key: ServiceKey{vip4, TCP, 80}, TableSize: 1000, Backends: b}},
			`balancer: service "web" (10.0.0.100:80/tcp): maglev: table size 1000 is not prime`},
		{"size too small", []ServiceSpec{{Name: "web", Key: ServiceKey{vip4, TCP, 80}, TableSize: 2, Backends: backends(1, 1, 1)}},
			`service "web" (10.0.0.100:80/tcp): maglev: table size 2 is smaller than the 3 backends with weight > 0`},
		{"duplicate key", []ServiceSpec{
			{Name: "a", Key: ServiceKey{vip4, TCP, 80}, Backends: b},
			{Name: "b", Key: ServiceKey{vip4, TCP, 80}, Backends: b}},
			`balancer: service "b" (10.0.0.100:80/tcp): duplicate service key, also used by service "a"`},
		{"duplicate name", []ServiceSpec{
			{Name: "a", Key: ServiceKey{vip4, TCP, 80}, Backends: b},
			{Name: "a", Key: ServiceKey{vip4, TCP, 81}, Backends: b}},
			`balancer: service "a" (10.0.0.100:81/tcp): duplicate service name, also used by 10.0.0.100:80/tcp`},
		{"empty name", []ServiceSpec{{Key: ServiceKey{vip4, TCP, 80}, Backends: b}},
			`service "" (10.0.0.100:80/tcp): empty service name`},
		{"invalid VIP", []ServiceSpec{{Name: "web", Key: ServiceKey{netip.Addr{}, TCP, 80}, Backends: b}},
			`service "web" (invalid IP:80/tcp): VIP is not a valid IP address`},
		{"unspecified VIP", []ServiceSpec{{Name: "web", Key: ServiceKey{netip.IPv4Unspecified(), TCP, 80}, Backends: b}},
			`service "web" (0.0.0.0:80/tcp): VIP is unspecified`},
		{"mapped VIP", []ServiceSpec{{Name: "web", Key: ServiceKey{netip.MustParseAddr("::ffff:10.0.0.100"), TCP, 80}, Backends: b}},
			`service "web" ([::ffff:10.0.0.100]:80/tcp): VIP ::ffff:10.0.0.100 is IPv4-mapped IPv6 (use 10.0.0.100)`},
		{"zoned VIP", []ServiceSpec{{Name: "web", Key: ServiceKey{netip.MustParseAddr("fe80::1%eth0"), TCP, 80}}},
			`service "web" ([fe80::1%eth0]:80/tcp): VIP fe80::1%eth0 has a zone`},
		{"protocol", []ServiceSpec{{Name: "ping", Key: ServiceKey{vip4, 1, 0}, Backends: b}},
			`service "ping" (10.0.0.100:*/proto(1)): unsupported protocol proto(1) (want tcp or udp)`},
		{"family mismatch", []ServiceSpec{{Name: "web6", Key: ServiceKey{vip6, TCP, 443}, Backends: b}},
			`service "web6" ([2001:db8::1]:443/tcp): backend 10.0.1.10: address family differs from VIP`},
		{"mapped backend", []ServiceSpec{{Name: "web", Key: ServiceKey{vip4, TCP, 80}, Backends: []Backend{{Addr: netip.MustParseAddr("::ffff:10.0.1.1")}}}},
			`service "web" (10.0.0.100:80/tcp): backend ::ffff:10.0.1.1: address ::ffff:10.0.1.1 is IPv4-mapped IPv6 (use 10.0.1.1)`},
		{"invalid backend", []ServiceSpec{{Name: "web", Key: ServiceKey{vip4, TCP, 80}, Backends: append(backends(1, 1), Backend{})}},
			`service "web" (10.0.0.100:80/tcp): backends[2]: address is not a valid IP address`},
		{"duplicate backend", []ServiceSpec{{Name: "web", Key: ServiceKey{vip4, TCP, 80}, Backends: append(backends(1, 1), backends(0)...)}},
			`service "web" (10.0.0.100:80/tcp): backend 10.0.1.10: duplicate backend address`},
	} {
		tab, err := NewTable(1, tc.specs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewTable = %v, %v; want error containing %q", tc.name, tab, err, tc.want)
		}
	}
}

// Lookup scans a few services and hashes many: both ways find the same.
func TestTableLookup(t *testing.T) {
	for _, pad := range []int{0, smallTable} {
		specs := testSpecs()
		for i := range pad { // services on other VIPs
			specs = append(specs, ServiceSpec{Name: fmt.Sprintf("pad%d", i), Key: ServiceKey{netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), TCP, 80}, TableSize: 13, Backends: backends(1)})
		}
		tab := mustTable(t, 1, specs)
		if (tab.small != nil) != (pad == 0) {
			t.Fatalf("%d services: scanned %v", len(specs), tab.small != nil)
		}
		testLookup(t, tab)
	}
}

func testLookup(t *testing.T, tab *Table) {
	t.Helper()
	for _, tc := range []struct {
		vip   netip.Addr
		proto Protocol
		port  uint16
		want  string // service name, "" for nil
	}{
		{vip4, TCP, 80, "web"},
		{vip4, TCP, 81, "all-tcp"}, // port-0 fallback
		{vip4, TCP, 0, "all-tcp"},
		{vip4, UDP, 80, ""}, // no UDP service on vip4
		{vip4b, UDP, 53, "dns"},
		{vip4b, UDP, 54, ""},
		{vip4b, TCP, 53, ""},
		{vip6, TCP, 443, "web6"},
		{netip.MustParseAddr("::ffff:10.0.0.100"), TCP, 80, ""},
		{netip.MustParseAddr("10.9.9.9"), TCP, 80, ""},
	} {
		got := ""
		if s := tab.Lookup(tc.vip, tc.proto, tc.port); s != nil {
			got = s.Name()
		}
		if got != tc.want {
			t.Errorf("Lookup(%v, %v, %d) = %q, want %q", tc.vip, tc.proto, tc.port, got, tc.want)
		}
	}
	for vip, want := range map[netip.Addr]bool{vip4: true, vip4b: true, vip6: true, netip.MustParseAddr("10.0.0.102"): false} {
		if got := tab.HasVIP(vip); got != want {
			t.Errorf("HasVIP(%v) = %v, want %v", vip, got, want)
		}
	}
	var none *Table
	if none.Lookup(vip4, TCP, 80) != nil || none.HasVIP(vip4) {
		t.Error("nil table matched")
	}
}

func TestTableAccessors(t *testing.T) {
	specs := testSpecs()
	tab := mustTable(t, 77, specs)
	if tab.Seed() != 77 {
		t.Errorf("Seed() = %d", tab.Seed())
	}
	if got, want := tab.VIPs(), []netip.Addr{vip4, vip4b, vip6}; !slices.Equal(got, want) {
		t.Errorf("VIPs() = %v, want %v", got, want)
	}
	var names []string
	for _, s := range tab.Services() {
		names = append(names, s.Name())
	}
	if want := []string{"all-tcp", "dns", "web", "web6"}; !slices.Equal(names, want) {
		t.Errorf("Services() names = %v, want %v", names, want)
	}
	s := tab.Lookup(vip6, TCP, 443)
	if s.Key() != (ServiceKey{vip6, TCP, 443}) || s.Maglev().Size() != DefaultTableSize {
		t.Errorf("web6: Key() = %v, Maglev().Size() = %d", s.Key(), s.Maglev().Size())
	}
	if got := s.Backends(); got[0].Addr != netip.MustParseAddr("2001:db8::10") || got[1].Addr != netip.MustParseAddr("2001:db8::11") {
		t.Errorf("web6 backends not sorted by address: %v", got)
	}
	if tab.Lookup(vip4, TCP, 0).Maglev().Size() != 251 {
		t.Error("all-tcp: TableSize 251 not used")
	}

	// The table keeps nothing of the specs, and returned slices are copies.
	specs[0].Backends[0].Weight = 0
	specs[0].Backends[0].Addr = netip.MustParseAddr("10.9.9.9")
	tab.VIPs()[0] = vip6
	tab.Services()[0] = nil
	if w := tab.Lookup(vip4, TCP, 80).Backend(0); w.Weight != 1 || w.Addr != netip.MustParseAddr("10.0.1.10") {
		t.Errorf("table changed with its spec: backend 0 = %+v", *w)
	}
	if tab.VIPs()[0] != vip4 || tab.Services()[0] == nil {
		t.Error("VIPs or Services exposes internal state")
	}
}

func TestServicePickIndex(t *testing.T) {
	tab := mustTable(t, 1, []ServiceSpec{{Name: "web", Key: ServiceKey{vip4, TCP, 80}, TableSize: 101, Backends: backends(1, 0, 1)}})
	s := tab.Lookup(vip4, TCP, 80)
	for i, b := range s.Backends() {
		if got, ok := s.Index(b.Addr); !ok || got != i {
			t.Errorf("Index(%v) = %d, %v; want %d, true", b.Addr, got, ok, i)
		}
		if s.Backend(i) != &s.Backends()[i] {
			t.Errorf("Backend(%d) does not point into Backends()", i)
		}
	}
	if _, ok := s.Index(netip.MustParseAddr("10.0.1.99")); ok {
		t.Error("Index found an unknown backend")
	}
	seen := map[int]int{}
	for h := range uint64(101) {
		i, ok := s.Pick(h)
		if !ok {
			t.Fatalf("Pick(%d) = false with weighted backends", h)
		}
		seen[i]++
	}
	if seen[1] != 0 || seen[0] == 0 || seen[2] == 0 {
		t.Errorf("Pick over all slots hit backends %v; want 0 and 2, never draining 1", seen)
	}

	drain := mustTable(t, 1, testSpecs()).Lookup(vip4b, UDP, 53)
	if i, ok := drain.Pick(12345); ok || i != -1 {
		t.Errorf("all-draining Pick = %d, %v; want -1, false", i, ok)
	}
	if i, ok := drain.Index(netip.MustParseAddr("10.0.1.11")); !ok || i != 1 {
		t.Errorf("all-draining Index = %d, %v; want 1, true", i, ok)
	}
}

// entriesOf returns every service's Maglev entries by name.
func entriesOf(tab *Table) map[string][]uint32 {
	out := map[string][]uint32{}
	for _, s := range tab.Services() {
		out[s.Name()] = s.Maglev().entries()
	}
	return out
}

func TestTableDeterminism(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	weights := make([]uint32, 40)
	for i := range weights {
		weights[i] = r.Uint32N(5)
	}
	specs := append(testSpecs(), ServiceSpec{Name: "big", Key: ServiceKey{vip4, UDP, 0}, Backends: backends(weights...)})
	want := entriesOf(mustTable(t, 9, specs))

	if got := entriesOf(mustTable(t, 9, specs)); !mapsEqual(got, want) {
		t.Error("two builds with the same specs differ")
	}
	shuffled := make([]ServiceSpec, len(specs))
	for i, j := range r.Perm(len(specs)) {
		shuffled[i] = specs[j]
		shuffled[i].Backends = slices.Clone(specs[j].Backends)
		r.Shuffle(len(shuffled[i].Backends), func(a, b int) {
			shuffled[i].Backends[a], shuffled[i].Backends[b] = shuffled[i].Backends[b], shuffled[i].Backends[a]
		})
	}
	if got := entriesOf(mustTable(t, 9, shuffled)); !mapsEqual(got, want) {
		t.Error("shuffling services and backends changed the tables")
	}
	other := entriesOf(mustTable(t, 10, specs))
	for _, name := range []string{"web", "big", "web6"} {
		if slices.Equal(other[name], want[name]) {
			t.Errorf("service %s: seed 10 built the same table as seed 9", name)
		}
	}
}

func mapsEqual(a, b map[string][]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

func TestPacketPathAllocs(t *testing.T) {
	tab := mustTable(t, 1, testSpecs())
	s := tab.Lookup(vip4, TCP, 80)
	m := s.Maglev()
	f := Flow{Src: netip.MustParseAddr("192.0.2.1"), Dst: vip4, SrcPort: 40000, DstPort: 80, Proto: TCP}
	addr := s.Backends()[1].Addr
	var sink uint64
	for name, fn := range map[string]func(){
		"Flow.Hash":            func() { sink += f.Hash(1) },
		"Flow.Hash3":           func() { sink += f.Hash3(1) },
		"Table.Lookup":         func() { sink += uint64(tab.Lookup(vip4, TCP, 81).Key().Port) },
		"Table.HasVIP":         func() { _ = tab.HasVIP(vip6) },
		"Service.Pick":         func() { i, _ := s.Pick(sink); sink += uint64(i) },
		"Service.Index":        func() { i, _ := s.Index(addr); sink += uint64(i) },
		"Service.Backend":      func() { sink += uint64(s.Backend(2).Weight) },
		"Maglev.Lookup":        func() { sink += uint64(m.Lookup(sink)) },
		"Table.LookupFragment": func() { sink += uint64(tab.LookupFragment(vip4b, UDP).Key().Port) },
		"Table.EchoService":    func() { sink += uint64(tab.EchoService(vip4).Key().Port) },
		"Table.ServiceAt":      func() { sink += uint64(tab.ServiceAt(tab.NumServices() - 1).Key().Port) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func BenchmarkTableLookupPick(b *testing.B) {
	specs := testSpecs()
	for i := range 50 {
		specs = append(specs, ServiceSpec{Name: "svc" + string(rune('A'+i)), Key: ServiceKey{vip4, UDP, uint16(1000 + i)}, Backends: backends(1, 1, 1, 1)})
	}
	tab := mustTable(b, 1, specs)
	f := Flow{Src: netip.MustParseAddr("192.0.2.1"), Dst: vip4, SrcPort: 40000, DstPort: 80, Proto: TCP}
	b.ReportAllocs()
	sink := 0
	for b.Loop() {
		f.SrcPort++
		s := tab.Lookup(f.Dst, f.Proto, f.DstPort)
		i, _ := s.Pick(f.Hash(1))
		sink += i
	}
	_ = sink
}

func TestLookupFragment(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.100")
	be := []Backend{{Addr: netip.MustParseAddr("198.18.0.11"), Weight: 1}}
	spec := func(name string, proto Protocol, port uint16) ServiceSpec {
		return ServiceSpec{Name: name, Key: ServiceKey{vip, proto, port}, Backends: be}
	}
	tab, err := NewTable(0, []ServiceSpec{spec("web", TCP, 80), spec("alt", TCP, 8080), spec("dns", UDP, 53), spec("any", TCP, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if s := tab.LookupFragment(vip, TCP); s == nil || s.Name() != "any" {
		t.Errorf("tcp: want the port-0 service, got %v", s)
	}
	if s := tab.LookupFragment(vip, UDP); s == nil || s.Name() != "dns" {
		t.Errorf("udp: want the only udp service, got %v", s)
	}
	tab2, err := NewTable(0, []ServiceSpec{spec("web", TCP, 80), spec("alt", TCP, 8080)})
	if err != nil {
		t.Fatal(err)
	}
	if s := tab2.LookupFragment(vip, TCP); s != nil {
		t.Errorf("ambiguous: want nil, got %s", s.Name())
	}
	if s := tab2.LookupFragment(netip.MustParseAddr("198.18.0.1"), TCP); s != nil {
		t.Errorf("unknown VIP: got %s", s.Name())
	}
}

// SameFlows holds for changes that move no packet and fails for each kind
// of change that moves some.
func TestSameFlows(t *testing.T) {
	base := mustTable(t, 1, testSpecs())
	edit := func(f func(specs []ServiceSpec) []ServiceSpec) *Table {
		return mustTable(t, 1, f(testSpecs()))
	}
	same := map[string]*Table{
		"rebuilt": edit(func(s []ServiceSpec) []ServiceSpec { return s }),
		"MAC changed": edit(func(s []ServiceSpec) []ServiceSpec {
			s[0].Backends[1].MAC = [6]byte{2, 9, 9, 9, 9, 9}
			return s
		}),
		"renamed": edit(func(s []ServiceSpec) []ServiceSpec { s[2].Name = "dns2"; return s }),
		"service for a new VIP": edit(func(s []ServiceSpec) []ServiceSpec {
			return append(s, ServiceSpec{Name: "new", Key: ServiceKey{netip.MustParseAddr("10.0.0.102"), UDP, 0}, Backends: backends(1)})
		}),
	}
	for name, tab := range same {
		if !tab.SameFlows(base) {
			t.Errorf("%s: SameFlows = false, want true", name)
		}
	}
	moved := map[string]*Table{
		"other seed": mustTable(t, 2, testSpecs()),
		"backend removed": edit(func(s []ServiceSpec) []ServiceSpec {
			s[0].Backends = s[0].Backends[:2]
			return s
		}),
		"backend added": edit(func(s []ServiceSpec) []ServiceSpec {
			s[0].Backends = append(s[0].Backends, Backend{Addr: netip.MustParseAddr("10.0.1.99"), Weight: 1})
			return s
		}),
		"weight changed": edit(func(s []ServiceSpec) []ServiceSpec { s[1].Backends[0].Weight = 3; return s }),
		"drained":        edit(func(s []ServiceSpec) []ServiceSpec { s[0].Backends[2].Weight = 0; return s }),
		"address changed": edit(func(s []ServiceSpec) []ServiceSpec {
			s[0].Backends[0].Addr = netip.MustParseAddr("10.0.1.98")
			return s
		}),
		"table size changed": edit(func(s []ServiceSpec) []ServiceSpec { s[1].TableSize = 257; return s }),
		"exact port under an all-ports service": edit(func(s []ServiceSpec) []ServiceSpec {
			return append(s, ServiceSpec{Name: "ssh", Key: ServiceKey{vip4, TCP, 22}, Backends: backends(1)})
		}),
		"exact port removed, the all-ports service takes it": edit(func(s []ServiceSpec) []ServiceSpec { return slices.Delete(s, 0, 1) }),
		"service removed": edit(func(s []ServiceSpec) []ServiceSpec { return slices.Delete(s, 2, 3) }),
	}
	for name, tab := range moved {
		if tab.SameFlows(base) {
			t.Errorf("%s: SameFlows = true, want false", name)
		}
	}
	var none *Table
	if !base.SameFlows(nil) || none.SameFlows(base) || !none.SameFlows(nil) {
		t.Error("SameFlows with nil tables")
	}
}
