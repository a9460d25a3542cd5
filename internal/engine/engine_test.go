package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/dsrlb/dsrlb/internal/config"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

type fakeResolver struct {
	mu   sync.Mutex
	macs map[netip.Addr][6]byte
	asks int
	err  error // returned beside the answer
}

func (f *fakeResolver) Lookup(addrs []netip.Addr) (map[netip.Addr][6]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asks++
	out := map[netip.Addr][6]byte{}
	for _, a := range addrs {
		if m, ok := f.macs[a]; ok {
			out[a] = m
		}
	}
	return out, f.err
}

func (f *fakeResolver) set(a netip.Addr, m [6]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.macs[a] = m
}

type fakeDataplane struct {
	tables chan *balancer.Table
	// refuse, if set, returns the error SetTable fails with for a table.
	refuse func(*balancer.Table) error
}

func (f *fakeDataplane) SetTable(t *balancer.Table) error {
	if f.refuse != nil {
		if err := f.refuse(t); err != nil {
			return err
		}
	}
	f.tables <- t
	return nil
}

var _ Resolver = (*fakeResolver)(nil)
var _ Dataplane = (*fakeDataplane)(nil)

func testConfig() *config.Config {
	return &config.Config{
		Interface:       "eth0",
		NeighborRefresh: 20 * time.Millisecond,
		Services: []config.Service{{
			Name: "web", VIP: netip.MustParseAddr("198.18.0.100"), Port: 80, Protocol: config.TCP, TableSize: 251,
			Backends: []config.Backend{
				{Address: netip.MustParseAddr("198.18.0.11"), Weight: 1},
				{Address: netip.MustParseAddr("198.18.0.12"), Weight: 1},
				{Address: netip.MustParseAddr("198.18.0.13"), Weight: 1, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x13}},
			},
		}},
	}
}

func backends(t *balancer.Table) map[netip.Addr][6]byte {
	out := map[netip.Addr][6]byte{}
	for _, b := range t.Services()[0].Backends() {
		out[b.Addr] = b.MAC
	}
	return out
}

// A backend without a MAC is left out; once it resolves it joins; when its
// MAC changes the table follows without a restart.
func TestEngineFollowsMACs(t *testing.T) {
	a11, a12, a13 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("198.18.0.13")
	r := &fakeResolver{macs: map[netip.Addr][6]byte{a11: {2, 0, 0, 0, 0, 0x11}}}
	e := New(testConfig(), r, nil, nil)
	tab, err := e.Initial(context.Background(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	got := backends(tab)
	if len(got) != 2 || got[a11] != [6]byte{2, 0, 0, 0, 0, 0x11} || got[a13] != [6]byte{2, 0, 0, 0, 0, 0x13} {
		t.Fatalf("initial backends %v: want .11 (resolved) and .13 (static), not .12", got)
	}
	dp := &fakeDataplane{tables: make(chan *balancer.Table, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx, dp)

	if st, err := e.Status(ctx); err != nil || st.Builds != 1 || st.LastBuild <= 0 {
		t.Fatalf("status after the initial table: %d builds (last %v), %v; want the initial one counted", st.Builds, st.LastBuild, err)
	}
	r.set(a12, [6]byte{2, 0, 0, 0, 0, 0x12})
	next := waitTable(t, dp)
	if got := backends(next); len(got) != 3 || got[a12] != [6]byte{2, 0, 0, 0, 0, 0x12} {
		t.Fatalf("after .12 resolved: %v", got)
	}
	if st, err := e.Status(ctx); err != nil || st.Builds != 2 {
		t.Fatalf("status after .12 resolved: %d builds, %v; want 2", st.Builds, err)
	}
	r.set(a11, [6]byte{2, 0, 0, 0, 0, 0x99})
	next = waitTable(t, dp)
	if got := backends(next); got[a11] != [6]byte{2, 0, 0, 0, 0, 0x99} {
		t.Fatalf("after .11's MAC changed: %v", got)
	}
	// Nothing changes: nothing is published.
	select {
	case tab := <-dp.tables:
		t.Fatalf("unchanged state published a table: %v", backends(tab))
	case <-time.After(100 * time.Millisecond):
	}
}

func waitTable(t *testing.T, dp *fakeDataplane) *balancer.Table {
	t.Helper()
	select {
	case tab := <-dp.tables:
		return tab
	case <-time.After(5 * time.Second):
		t.Fatal("no table published")
		return nil
	}
}

// An error the resolver returns beside its answer (asking the kernel to
// resolve one backend failed) is logged, once while it stays the same.
func TestResolverErrorLoggedOnce(t *testing.T) {
	var logs syncbuf.Buffer
	r := &fakeResolver{macs: map[netip.Addr][6]byte{}, err: errors.New("resolve 198.18.0.12: no such device")}
	e := New(testConfig(), r, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if _, err := e.Initial(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, &fakeDataplane{tables: make(chan *balancer.Table, 100)}); close(done) }()
	// Refreshes run every 20 ms: wait for several after the first.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		asks := r.asks
		r.mu.Unlock()
		if asks >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d lookups in 30 s of 20 ms refreshes", asks)
		}
	}
	cancel()
	<-done
	if n := strings.Count(logs.String(), "no such device"); n != 1 {
		t.Fatalf("the resolver's error was logged %d times over 6 lookups; want once:\n%s", n, logs.String())
	}
}

// A request to an engine whose Run has returned fails at once instead of
// waiting for a loop that is gone.
func TestRequestAfterRun(t *testing.T) {
	e := New(testConfig(), &fakeResolver{macs: map[netip.Addr][6]byte{}}, nil, nil)
	if _, err := e.Initial(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, &fakeDataplane{tables: make(chan *balancer.Table, 10)}); close(done) }()
	if _, err := e.Status(context.Background()); err != nil {
		t.Fatalf("while running: %v", err)
	}
	cancel()
	<-done
	wait, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	if _, err := e.Status(wait); !errors.Is(err, ErrStopped) {
		t.Fatalf("Status after Run returned: %v, want ErrStopped", err)
	}
}
