package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/healthcheck"
	"github.com/dsrlb/dsrlb/internal/config"
)

// runEngine runs an engine on cfg whose checks (if any) answer from sp,
// publishing to dp; the engine stops when the test ends.
func runEngine(t *testing.T, cfg *config.Config, r *fakeResolver, sp *scriptedProber, dp *fakeDataplane) *Engine {
	t.Helper()
	e := New(cfg, r, nil, nil)
	if sp != nil {
		e.newProber = func(healthcheck.Spec, healthcheck.DSRProber) (healthcheck.Prober, error) { return sp, nil }
	}
	if _, err := e.Initial(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, dp); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func stateOf(t *testing.T, e *Engine, service string, a netip.Addr) string {
	t.Helper()
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if s.Name == service && b.Address == a.String() {
				return b.State
			}
		}
	}
	return "absent"
}

// A reload whose table the dataplane refuses changes nothing: the reload
// fails, the running configuration stays (a removed backend included, its
// check still running), and later changes still reach the dataplane.
func TestReloadRefusedByDataplaneIsUndone(t *testing.T) {
	local := netip.MustParseAddr("198.18.0.200") // stands for an address of this host
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 100), refuse: func(tab *balancer.Table) error {
		if slices.Contains(tab.VIPs(), local) {
			return fmt.Errorf("VIP %s is an address of this host", local)
		}
		return nil
	}}
	cfg := testConfig()
	h := config.Health{Kind: "tcp", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	cfg.Services[0].Health = h
	for i := range cfg.Services[0].Backends {
		cfg.Services[0].Backends[i].Health = h
	}
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	sp := &scriptedProber{answer: map[netip.Addr]func() error{}}
	e := runEngine(t, cfg, r, sp, dp)
	ctx := context.Background()
	// .12 is down before the reload: the undo must keep it down.
	sp.set(b12, func() error { return errors.New("connection refused") })
	if tab := waitTable(t, dp); has(tab, b12) {
		t.Fatalf(".12 failed its check, but the table still has it: %v", backends(tab))
	}
	slots := func() map[string]uint16 {
		st, err := e.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]uint16{}
		for _, s := range st.Services {
			for _, b := range s.Backends {
				out[s.Name+"/"+b.Address] = b.Slot
			}
		}
		return out
	}
	before := slots()
	a21 := netip.MustParseAddr("198.18.0.21")
	var probes21 atomic.Int64
	sp.set(a21, func() error { probes21.Add(1); return nil })

	bad := testConfig()
	bad.Services[0].Health = h
	for i := range bad.Services[0].Backends {
		bad.Services[0].Backends[i].Health = h
	}
	bad.Services[0].Backends = bad.Services[0].Backends[:2]             // .13 removed
	bad.Services[0].Backends[0].Health.Kind = "none"                    // .11's check changed
	bad.Services[0].Backends[1].Health.Interval = 30 * time.Millisecond // .12's check restarted
	bad.Services = append(bad.Services, config.Service{Name: "api", VIP: local, Port: 443, Protocol: config.TCP, TableSize: 251,
		Backends: []config.Backend{{Address: a21, Weight: 1, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x21}, Health: h}}})
	summary, err := e.Reload(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "reload refused") || !strings.Contains(err.Error(), local.String()) {
		t.Fatalf("reload with a refused table: summary %q, err %v; want it refused, saying why", summary, err)
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || len(st.Services[0].Backends) != 3 || st.Services[0].Check != "tcp" {
		t.Fatalf("after the refused reload: %+v; want the running configuration (web, 3 backends, tcp checks)", st.Services)
	}
	if got := stateOf(t, e, "web", b12); got != "down" {
		t.Errorf(".12, down before the refused reload, is %q after it", got)
	}
	if got := slots(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("counter slots after the refused reload %v, before %v", got, before)
	}
	probes21.Store(0)
	time.Sleep(200 * time.Millisecond) // ten of the added backend's check intervals
	if n := probes21.Load(); n != 0 {
		t.Errorf("the refused reload's added backend was probed %d times after the undo: its checker leaked", n)
	}
	sp.set(b12, nil)
	if tab := waitTable(t, dp); !has(tab, b12) {
		t.Fatalf(".12 recovered after the refused reload, but the table does not have it: %v", backends(tab))
	}
	// .13's and .11's checks run as before: a failure of each is published.
	for _, a := range []netip.Addr{b13, b11} {
		sp.set(a, func() error { return errors.New("connection refused") })
		tab := waitTable(t, dp)
		if has(tab, a) {
			t.Fatalf("%s failed its check after the refused reload, but the table still has it: %v", a, backends(tab))
		}
		sp.set(a, nil)
		if tab := waitTable(t, dp); !has(tab, a) {
			t.Fatalf("%s recovered, but the table does not have it: %v", a, backends(tab))
		}
	}
	// A good reload after it applies.
	good := testConfig()
	good.Services[0].Backends = good.Services[0].Backends[:2]
	if summary, err := e.Reload(ctx, good); err != nil || summary != "web: backend 198.18.0.13 removed; web: health check changed" {
		t.Fatalf("good reload: %q, %v", summary, err)
	}
	if tab := waitTable(t, dp); has(tab, b13) {
		t.Fatalf("after removing .13: %v", backends(tab))
	}
}

func manyBackends(name string, n int, tableSize uint32) config.Service {
	s := config.Service{Name: name, VIP: netip.MustParseAddr("198.18.0.100"), Port: 80, Protocol: config.TCP, TableSize: tableSize}
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		s.Backends = append(s.Backends, config.Backend{Address: a, Weight: 1, MAC: net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}})
	}
	return s
}

// Counter slots are bounded by the dataplane's arrays; a renamed service
// reuses its old backends' slots instead of needing twice as many; an
// engine given more backends than slots fails cleanly.
func TestBackendSlots(t *testing.T) {
	if config.MaxBackends != dataplane.MaxBackendSlots || maxSlots != dataplane.MaxBackendSlots {
		t.Fatalf("config.MaxBackends %d, maxSlots %d, dataplane.MaxBackendSlots %d: must be equal", config.MaxBackends, maxSlots, dataplane.MaxBackendSlots)
	}
	cfg := testConfig()
	cfg.Services = []config.Service{manyBackends("a", 2049, 4099)}
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	e := runEngine(t, cfg, &fakeResolver{}, nil, dp)
	renamed := testConfig()
	renamed.Services = []config.Service{manyBackends("b", 2049, 4099)}
	if _, err := e.Reload(context.Background(), renamed); err != nil {
		t.Fatalf("renaming a service of 2049 backends: %v", err)
	}
	tab := waitTable(t, dp)
	for _, b := range tab.Services()[0].Backends() {
		if int(b.Slot) >= dataplane.MaxBackendSlots {
			t.Fatalf("backend %s got slot %d, beyond %d", b.Addr, b.Slot, dataplane.MaxBackendSlots)
		}
		if b.SlotEpoch <= 2049 { // the first 2049 went to service a's backends
			t.Fatalf("backend %s of the renamed service reuses slot %d under epoch %d, one of service a's: its counters would carry over", b.Addr, b.Slot, b.SlotEpoch)
		}
	}

	over := testConfig()
	over.Services = []config.Service{manyBackends("a", dataplane.MaxBackendSlots+1, 8191)}
	if _, err := New(over, &fakeResolver{}, nil, nil).Initial(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "slot") {
		t.Fatalf("%d backends: Initial returned %v; want an error about counter slots", dataplane.MaxBackendSlots+1, err)
	}
}

// A reload that changes a backend's static MAC says so.
func TestReloadReportsMACChange(t *testing.T) {
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	e := runEngine(t, testConfig(), r, nil, dp)
	cfg := testConfig()
	cfg.Services[0].Backends[2].MAC = net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	cfg.Services[0].Backends[1].MAC = net.HardwareAddr{2, 0, 0, 0, 0, 0x12}
	summary, err := e.Reload(context.Background(), cfg)
	if want := "web: backend 198.18.0.12 mac resolved → 02:00:00:00:00:12; web: backend 198.18.0.13 mac 02:00:00:00:00:13 → 02:00:00:00:00:99"; err != nil || summary != want {
		t.Fatalf("reload: %q, %v; want %q", summary, err, want)
	}
	if tab := waitTable(t, dp); backends(tab)[b13] != [6]byte{2, 0, 0, 0, 0, 0x99} {
		t.Fatalf("after the MAC change: %v", backends(tab))
	}
}

// A reload that changes only the seed rebuilds every table with it.
func TestReloadSeed(t *testing.T) {
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	e := runEngine(t, testConfig(), r, nil, dp)
	cfg := testConfig()
	cfg.Seed = 42
	summary, err := e.Reload(context.Background(), cfg)
	if err != nil || !strings.Contains(summary, "seed changed") {
		t.Fatalf("seed-only reload: %q, %v", summary, err)
	}
	if tab := waitTable(t, dp); tab.Seed() != 42 {
		t.Fatalf("published table has seed %d, want 42", tab.Seed())
	}
}

// A reload's neighbor_refresh takes effect: the refresh that notices a
// changed MAC runs at the new interval.
func TestReloadNeighborRefresh(t *testing.T) {
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	cfg := testConfig()
	cfg.NeighborRefresh = time.Hour
	e := runEngine(t, cfg, r, nil, dp)
	cfg = testConfig() // 20 ms
	if summary, err := e.Reload(context.Background(), cfg); err != nil || summary != "neighbor_refresh 1h0m0s → 20ms" {
		t.Fatalf("reload: %q, %v", summary, err)
	}
	r.set(b11, [6]byte{2, 0, 0, 0, 0, 0x99})
	if tab := waitTable(t, dp); backends(tab)[b11] != [6]byte{2, 0, 0, 0, 0, 0x99} {
		t.Fatalf("after .11's MAC changed: %v", backends(tab))
	}
}

// An admin enable of a backend whose configured weight is 0 leaves it
// draining under drain_timeout: it is cut off when the timeout passes.
func TestEnableKeepsConfiguredDrain(t *testing.T) {
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	cfg := testConfig()
	cfg.DrainTimeout = 300 * time.Millisecond
	cfg.Services[0].Backends[1].Weight = 0 // .12 draining by config
	e := runEngine(t, cfg, r, nil, dp)
	ctx := context.Background()
	if err := e.SetDrained(ctx, "web", b12, true); err != nil {
		t.Fatal(err)
	}
	if err := e.SetDrained(ctx, "web", b12, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for stateOf(t, e, "web", b12) != "out" {
		if time.Now().After(deadline) {
			t.Fatalf(".12 (weight 0, drain_timeout 300ms) is %q 5 s after an admin enable; want it out", stateOf(t, e, "web", b12))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An admin drain of it now does not restart its drain timeout.
	if err := e.SetDrained(ctx, "web", b12, true); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, e, "web", b12); got != "out" {
		t.Errorf(".12, out after its drain timeout, is %q after an admin drain; want it still out", got)
	}
}

// A reload that adds the first DSR-path check is refused when the engine has
// no DSR prober, instead of leaving the check silently unstarted.
func TestReloadRefusesDSRCheckWithoutProber(t *testing.T) {
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	e := runEngine(t, testConfig(), &fakeResolver{}, nil, dp)
	cfg := testConfig()
	cfg.Services[0].Backends[2].Health = config.Health{Kind: "tcp", VIP: true, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
	if _, err := e.Reload(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload adding a vip: true check without a DSR prober: %v; want it refused", err)
	}
}

// A backend whose MAC is not resolved and whose check fails is reported as
// unresolved and not healthy, with both reasons (dsrlb_backend_up reads
// Healthy).
func TestStatusUnresolvedAndDown(t *testing.T) {
	cfg := testConfig()
	h := config.Health{Kind: "tcp", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	for i := range cfg.Services[0].Backends {
		cfg.Services[0].Backends[i].Health = h
	}
	sp := &scriptedProber{answer: map[netip.Addr]func() error{}}
	sp.set(b12, func() error { return errors.New("connection refused") })
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}}} // .12 never resolves
	e := runEngine(t, cfg, r, sp, &fakeDataplane{tables: make(chan *balancer.Table, 100)})
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b := st.Services[0].Backends[1]
		if b.State == "unresolved" && !b.Healthy && strings.Contains(b.Reason, "connection refused") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf(".12 (unresolved, check failing): %+v", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A backend removed by a reload and added again by another starts
// unresolved: the MAC it had before is forgotten with it (the kernel may
// know another for its address by then, or none).
func TestReaddedBackendStartsUnresolved(t *testing.T) {
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	e := runEngine(t, testConfig(), r, nil, dp)
	without := testConfig()
	without.Services[0].Backends = slices.Delete(without.Services[0].Backends, 1, 2) // .12
	if _, err := e.Reload(context.Background(), without); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	delete(r.macs, b12) // the kernel forgets it
	r.mu.Unlock()
	if _, err := e.Reload(context.Background(), testConfig()); err != nil {
		t.Fatal(err)
	}
	if s := stateOf(t, e, "web", b12); s != "unresolved" {
		t.Fatalf("re-added .12, which the kernel no longer knows: %s, want unresolved", s)
	}
}
