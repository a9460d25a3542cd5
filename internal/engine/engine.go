package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/dsrlb/dsrlb/internal/config"
)

// Dataplane is what the engine needs of the dataplane.
type Dataplane interface {
	SetTable(*balancer.Table) error
}

// Resolver finds backends' MAC addresses.
type Resolver interface {
	// Lookup returns the MACs the kernel knows for addrs now, and asks the
	// kernel to resolve (or refresh) the others and the stale ones.
	Lookup(addrs []netip.Addr) (map[netip.Addr][6]byte, error)
}

// Engine owns the control state. Create it with New; run it with Run.
type Engine struct {
	cfg      *config.Config
	resolver Resolver
	log      *slog.Logger
	macs     map[netip.Addr][6]byte
	missing  map[netip.Addr]bool // backends left out for want of a MAC (logged once)
	table    *balancer.Table
}

// New returns an engine for cfg. log may be nil.
func New(cfg *config.Config, r Resolver, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: cfg, resolver: r, log: log, macs: map[netip.Addr][6]byte{}, missing: map[netip.Addr]bool{}}
}

// Table returns the last table built.
func (e *Engine) Table() *balancer.Table { return e.table }

// Initial resolves the backends' MACs, waiting up to wait for the kernel to
// resolve them, and builds the first table.
func (e *Engine) Initial(ctx context.Context, wait time.Duration) (*balancer.Table, error) {
	deadline := time.Now().Add(wait)
	for {
		if err := e.refreshMACs(); err != nil {
			return nil, err
		}
		if len(e.unresolved()) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	t, err := e.build()
	if err != nil {
		return nil, err
	}
	e.table = t
	return t, nil
}

// Run refreshes MACs every cfg.NeighborRefresh and publishes a new table to
// dp whenever the result changes, until ctx is done.
func (e *Engine) Run(ctx context.Context, dp Dataplane) error {
	every := e.cfg.NeighborRefresh
	if every <= 0 {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	// Unresolved backends are retried quickly at first.
	fast := time.NewTicker(time.Second)
	defer fast.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-fast.C:
			if len(e.unresolved()) == 0 {
				continue
			}
		}
		if err := e.refreshMACs(); err != nil {
			e.log.Warn("neighbour refresh failed", "err", err)
			continue
		}
		t, err := e.build()
		if err != nil {
			e.log.Error("table rebuild failed; keeping the running table", "err", err)
			continue
		}
		if sameTable(e.table, t) {
			continue
		}
		start := time.Now()
		if err := dp.SetTable(t); err != nil {
			e.log.Error("publish table failed; keeping the running table", "err", err)
			continue
		}
		e.table = t
		e.log.Info("published new table", "services", len(t.Services()), "took", time.Since(start))
	}
}

// backendAddrs returns every backend address without a static MAC.
func (e *Engine) backendAddrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range e.cfg.Services {
		for _, b := range s.Backends {
			if b.MAC == nil {
				out = append(out, b.Address)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func (e *Engine) unresolved() []netip.Addr {
	var out []netip.Addr
	for _, a := range e.backendAddrs() {
		if _, ok := e.macs[a]; !ok {
			out = append(out, a)
		}
	}
	return out
}

func (e *Engine) refreshMACs() error {
	addrs := e.backendAddrs()
	if len(addrs) == 0 {
		return nil
	}
	got, err := e.resolver.Lookup(addrs)
	if err != nil {
		return fmt.Errorf("resolve backend MACs on %s: %w", e.cfg.Interface, err)
	}
	for _, a := range addrs {
		mac, ok := got[a]
		old, had := e.macs[a]
		switch {
		case ok && !had:
			e.log.Info("backend MAC resolved", "backend", a, "mac", net.HardwareAddr(mac[:]).String())
			delete(e.missing, a)
		case ok && had && mac != old:
			e.log.Warn("backend MAC changed; following it", "backend", a, "old", net.HardwareAddr(old[:]).String(), "new", net.HardwareAddr(mac[:]).String())
		}
		if ok {
			e.macs[a] = mac
		}
		// A backend whose entry disappears or fails keeps its last known
		// MAC: health checks, not ARP, decide whether it is alive.
	}
	return nil
}

// build makes a table from the config and the known MACs. Backends without
// a MAC are left out, once logged.
func (e *Engine) build() (*balancer.Table, error) {
	specs := make([]balancer.ServiceSpec, 0, len(e.cfg.Services))
	for _, s := range e.cfg.Services {
		spec := balancer.ServiceSpec{
			Name:      s.Name,
			Key:       balancer.ServiceKey{VIP: s.VIP, Proto: balancer.Protocol(s.Protocol), Port: s.Port},
			TableSize: s.TableSize,
		}
		for _, b := range s.Backends {
			var mac [6]byte
			if b.MAC != nil {
				mac = [6]byte(b.MAC)
			} else if m, ok := e.macs[b.Address]; ok {
				mac = m
			} else {
				if !e.missing[b.Address] {
					e.log.Warn("backend left out: its MAC address is not resolved yet (is it up, on the same segment as "+e.cfg.Interface+"?)",
						"service", s.Name, "backend", b.Address)
					e.missing[b.Address] = true
				}
				continue
			}
			spec.Backends = append(spec.Backends, balancer.Backend{Addr: b.Address, MAC: mac, Weight: b.Weight})
		}
		specs = append(specs, spec)
	}
	return balancer.NewTable(e.cfg.Seed, specs)
}

// sameTable reports whether two tables have the same services and backends
// (and so identical Maglev tables: they are deterministic).
func sameTable(a, b *balancer.Table) bool {
	if a == nil || b == nil {
		return a == b
	}
	as, bs := a.Services(), b.Services()
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if as[i].Name() != bs[i].Name() || as[i].Key() != bs[i].Key() || as[i].Maglev().Size() != bs[i].Maglev().Size() ||
			!slices.Equal(as[i].Backends(), bs[i].Backends()) {
			return false
		}
	}
	return true
}
