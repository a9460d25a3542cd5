package engine

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/dsrlb/dsrlb/healthcheck"
	"github.com/dsrlb/dsrlb/internal/config"
)

// scriptedProber answers probes of each backend from a function the test
// changes while the engine runs.
type scriptedProber struct {
	mu     sync.Mutex
	answer map[netip.Addr]func() error
	probes atomic.Int64
}

func (s *scriptedProber) Probe(ctx context.Context, t healthcheck.Target) error {
	s.probes.Add(1)
	s.mu.Lock()
	f := s.answer[t.Addr]
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	return f()
}

func (s *scriptedProber) set(a netip.Addr, f func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer[a] = f
}

var (
	b11 = netip.MustParseAddr("198.18.0.11")
	b12 = netip.MustParseAddr("198.18.0.12")
	b13 = netip.MustParseAddr("198.18.0.13")
)

// checkedEngine runs an engine whose three backends are checked every 20 ms
// (rise 2, fall 3) by a scripted prober.
func checkedEngine(t *testing.T) (*Engine, *scriptedProber, *fakeDataplane) {
	cfg := testConfig()
	h := config.Health{Kind: "tcp", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 3}
	for i := range cfg.Services[0].Backends {
		cfg.Services[0].Backends[i].Health = h
	}
	cfg.Services[0].Health = h
	r := &fakeResolver{macs: map[netip.Addr][6]byte{b11: {2, 0, 0, 0, 0, 0x11}, b12: {2, 0, 0, 0, 0, 0x12}}}
	e := New(cfg, r, nil, nil)
	sp := &scriptedProber{answer: map[netip.Addr]func() error{}}
	e.newProber = func(healthcheck.Spec, healthcheck.DSRProber) (healthcheck.Prober, error) { return sp, nil }
	if _, err := e.Initial(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, dp); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, sp, dp
}

func has(t *balancer.Table, a netip.Addr) bool {
	_, ok := t.Services()[0].Index(a)
	return ok
}

func TestHealthDownAndUp(t *testing.T) {
	_, sp, dp := checkedEngine(t)
	sp.set(b12, func() error { return errors.New("connection refused") })
	tab := waitTable(t, dp)
	if has(tab, b12) || !has(tab, b11) || !has(tab, b13) {
		t.Fatalf("after .12 failed: %v", backends(tab))
	}
	sp.set(b12, nil)
	tab = waitTable(t, dp)
	if !has(tab, b12) {
		t.Fatalf("after .12 recovered: %v", backends(tab))
	}
	select {
	case tab := <-dp.tables:
		t.Fatalf("a third table was published: %v", backends(tab))
	case <-time.After(200 * time.Millisecond):
	}
}

// A backend flapping every probe never reaches rise or fall consecutive
// results: the table is never rebuilt.
func TestHealthFlapDoesNotThrash(t *testing.T) {
	_, sp, dp := checkedEngine(t)
	var n atomic.Int64
	sp.set(b12, func() error {
		if n.Add(1)%2 == 0 {
			return errors.New("flap")
		}
		return nil
	})
	deadline := time.Now().Add(30 * time.Second) // 20 probes take 0.4 s on an idle machine
	for time.Now().Before(deadline) && n.Load() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	if n.Load() < 20 {
		t.Fatalf("only %d probes of the flapping backend ran", n.Load())
	}
	if got := len(dp.tables); got != 0 {
		t.Fatalf("%d tables published during %d flapping probes (rise 2, fall 3 allow none)", got, n.Load())
	}
}

// downs counts the backends of e's first service that its status calls down.
func downs(t *testing.T, e *Engine) int {
	t.Helper()
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range st.Services[0].Backends {
		if b.State == "down" {
			n++
		}
	}
	return n
}

// When every backend is down the service keeps them all (fail open).
func TestHealthAllDownFailsOpen(t *testing.T) {
	e, sp, dp := checkedEngine(t)
	for _, a := range []netip.Addr{b11, b12, b13} {
		sp.set(a, func() error { return errors.New("down") })
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case tab := <-dp.tables:
			if len(tab.Services()[0].Backends()) == 3 {
				if downs(t, e) == 3 {
					return // all down, all kept
				}
			}
		case <-deadline:
			t.Fatal("the all-down table never kept every backend")
		}
	}
}

// The healthy backends left may all be draining: they take no new flows,
// so the service fails open with the down ones beside them.
func TestHealthDownBesideDrainedFailsOpen(t *testing.T) {
	e, sp, dp := checkedEngine(t)
	if err := e.SetDrained(context.Background(), "web", b11, true); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{b12, b13} {
		sp.set(a, func() error { return errors.New("down") })
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case tab := <-dp.tables:
			s := tab.Services()[0]
			if _, ok := s.Index(b12); !ok || len(s.Backends()) != 3 {
				continue // before the fall
			}
			if _, ok := s.Pick(1); !ok {
				t.Fatalf("fail-open table has no slots: %v", s.Backends())
			}
			i, _ := s.Index(b11)
			if w := s.Backend(i).Weight; w != 0 {
				t.Fatalf("drained .11 has weight %d in the fail-open table", w)
			}
			if downs(t, e) == 2 {
				return
			}
		case <-deadline:
			t.Fatal("with .11 drained and .12, .13 down the service never failed open")
		}
	}
}

func TestDrainAndReload(t *testing.T) {
	e, _, dp := checkedEngine(t)
	ctx := context.Background()
	if err := e.SetDrained(ctx, "web", b12, true); err != nil {
		t.Fatal(err)
	}
	tab := waitTable(t, dp)
	i, ok := tab.Services()[0].Index(b12)
	if !ok || tab.Services()[0].Backend(i).Weight != 0 {
		t.Fatalf("drained backend: present %v weight %v", ok, tab.Services()[0].Backend(i).Weight)
	}
	if err := e.SetDrained(ctx, "web", netip.MustParseAddr("198.18.0.99"), true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown backend: %v", err)
	}
	cfg := testConfig()
	cfg.Services[0].Backends[0].Weight = 3
	cfg.Services[0].Backends = cfg.Services[0].Backends[:2] // .13 removed
	summary, err := e.Reload(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if summary != "web: backend 198.18.0.11 weight 1 → 3; web: backend 198.18.0.13 removed; web: health check changed" {
		t.Errorf("summary %q", summary)
	}
	tab = waitTable(t, dp)
	s := tab.Services()[0]
	if i, _ := s.Index(b11); s.Backend(i).Weight != 3 || has(tab, b13) {
		t.Fatalf("after reload: %+v", s.Backends())
	}
	if i, _ := s.Index(b12); s.Backend(i).Weight != 0 {
		t.Fatal("an admin drain did not survive the reload")
	}
	bad := testConfig()
	bad.Interface = "eth9"
	if _, err := e.Reload(ctx, bad); err == nil {
		t.Fatal("interface change accepted")
	}
}
