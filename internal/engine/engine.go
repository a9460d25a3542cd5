package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/healthcheck"
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

// maxSlots bounds the backend counter slots: Backend.Slot indexes the
// dataplane's per-backend counters. config.MaxBackends keeps a valid
// configuration within it (a test holds the two equal).
const maxSlots = dataplane.MaxBackendSlots

// ErrNotFound is returned by admin actions naming an unknown service or
// backend.
var ErrNotFound = errors.New("not found")

// ErrStopped is what a request to an engine whose Run has returned gets.
var ErrStopped = errors.New("the engine has stopped")

// Engine owns the control state. Create it with New, build the first table
// with Initial, then Run it. Every other method is a message to Run's
// goroutine and may be called from any goroutine while Run runs.
type Engine struct {
	log      *slog.Logger
	resolver Resolver
	dsr      healthcheck.DSRProber // nil: DSR-path probes are refused
	// newProber makes a backend's prober (healthcheck.NewProber; tests
	// replace it).
	newProber func(healthcheck.Spec, healthcheck.DSRProber) (healthcheck.Prober, error)
	started   time.Time

	reqs    chan func()
	stopped chan struct{} // closed when Run returns
	events  chan keyedEvent
	// table is the last table published (or built by Initial); read by
	// Table() from any goroutine.
	table atomic.Pointer[balancer.Table]

	// Owned by the Run goroutine (and by Initial before Run starts).
	cfg        *config.Config
	dp         Dataplane
	ctx        context.Context // Run's context; checkers run under it
	macs       map[netip.Addr][6]byte
	missing    map[netip.Addr]bool // backends left out for want of a MAC (logged once)
	idle       map[string]bool     // services taking no new flows (logged when it changes)
	backends   map[backendKey]*backendState
	freed      []uint16     // counter slots free for reuse
	next       uint16       // next never-used counter slot
	epoch      uint32       // the last slot epoch handed out
	initErr    error        // from New's syncBackends, returned by Initial
	resolveErr string       // the resolver's last error beside an answer, "" if none
	refresh    *time.Ticker // Run's neighbour refresh (re-armed by a reload)
	builds     uint64       // tables published
	lastCost   time.Duration
}

const reasonUnchecked = "not checked yet"

// backendKey names a backend of a service.
type backendKey struct {
	service string
	addr    netip.Addr
}

// backendState is what the engine knows of one configured backend.
type backendState struct {
	slot     uint16
	epoch    uint32 // of the slot (balancer.Backend.SlotEpoch)
	healthy  bool
	reason   string // why the health state is what it is
	since    time.Time
	drained  bool      // by an admin action
	drainAt  time.Time // when it started draining (admin or weight 0); zero if not
	check    *runningCheck
	excluded string // why it is not in the table, "" if it is
}

// runningCheck is one backend's running health checker.
type runningCheck struct {
	spec    healthcheck.Spec
	target  healthcheck.Target
	checker *healthcheck.Checker
	stop    context.CancelFunc
}

type keyedEvent struct {
	key   backendKey
	check *runningCheck
	ev    healthcheck.Event
}

// New returns an engine for cfg. dsr performs DSR-path health probes (nil if
// none is available); log may be nil.
func New(cfg *config.Config, r Resolver, dsr healthcheck.DSRProber, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		log: log, resolver: r, dsr: dsr, newProber: healthcheck.NewProber, started: time.Now(),
		reqs: make(chan func()), stopped: make(chan struct{}), events: make(chan keyedEvent, 64),
		cfg: cfg, macs: map[netip.Addr][6]byte{}, missing: map[netip.Addr]bool{},
		idle: map[string]bool{}, backends: map[backendKey]*backendState{},
	}
	_, e.initErr = e.syncBackends()
	return e
}

// Table returns the last table built.
func (e *Engine) Table() *balancer.Table { return e.table.Load() }

// Initial resolves the backends' MACs, waiting up to wait for the kernel to
// resolve them, and builds the first table. Call it before Run.
func (e *Engine) Initial(ctx context.Context, wait time.Duration) (*balancer.Table, error) {
	if e.initErr != nil {
		return nil, e.initErr
	}
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
	start := time.Now()
	t, err := e.build()
	if err != nil {
		return nil, err
	}
	e.table.Store(t)
	// The caller starts the dataplane with this table: it is the first one
	// published.
	e.builds, e.lastCost = 1, time.Since(start)
	return t, nil
}

// Run starts the health checks and then handles, until ctx is done, MAC
// refreshes every cfg.NeighborRefresh, health events, reloads and admin
// actions, publishing a new table to dp whenever the result changes.
func (e *Engine) Run(ctx context.Context, dp Dataplane) error {
	e.dp, e.ctx = dp, ctx
	defer close(e.stopped)
	defer e.stopChecks()
	e.syncChecks()
	e.refresh = time.NewTicker(refreshEvery(e.cfg))
	defer e.refresh.Stop()
	fast := time.NewTicker(time.Second) // unresolved backends and drain timeouts
	defer fast.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-e.reqs:
			f()
		case ke := <-e.events:
			e.healthEvent(ke)
		case <-e.refresh.C:
			e.refreshAndPublish()
		case <-fast.C:
			if len(e.unresolved()) > 0 {
				e.refreshAndPublish()
			} else if e.drainExpired() {
				e.publish("drain timeout")
			}
		}
	}
}

// needsDSRProber reports whether a check of cfg probes the DSR path.
func needsDSRProber(cfg *config.Config) bool {
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			if b.Health.VIP && b.Health.Kind != "none" {
				return true
			}
		}
	}
	return false
}

// refreshEvery is how often Run re-resolves backend MACs.
func refreshEvery(cfg *config.Config) time.Duration {
	if cfg.NeighborRefresh <= 0 {
		return 10 * time.Second
	}
	return cfg.NeighborRefresh
}

// do runs f on Run's goroutine and waits for it; ctx's error if Run does not
// take it before ctx is done, ErrStopped if Run has returned.
func (e *Engine) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case e.reqs <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.stopped:
		return ErrStopped
	}
	<-done
	return nil
}

func (e *Engine) refreshAndPublish() {
	if err := e.refreshMACs(); err != nil {
		e.log.Warn("neighbour refresh failed", "err", err)
		return
	}
	e.syncChecks() // a MAC change re-targets DSR-path probes
	e.publish("")
}

// publish builds a table from the current state and gives it to the
// dataplane if it differs from the running one. why is logged. An error
// (logged too) means the running table stays.
func (e *Engine) publish(why string) error {
	start := time.Now()
	t, err := e.build()
	if err != nil {
		e.log.Error("table rebuild failed; keeping the running table", "err", err)
		return fmt.Errorf("build the table: %w", err)
	}
	if sameTable(e.table.Load(), t) {
		return nil
	}
	if err := e.dp.SetTable(t); err != nil {
		e.log.Error("publish table failed; keeping the running table", "err", err)
		return fmt.Errorf("publish the table: %w", err)
	}
	e.table.Store(t)
	e.builds++
	e.lastCost = time.Since(start)
	attrs := []any{"services", len(t.Services()), "build_and_publish", e.lastCost}
	if why != "" {
		attrs = append(attrs, "why", why)
	}
	e.log.Info("published new table", attrs...)
	return nil
}

// syncBackends makes e.backends match the config: removed backends release
// their counter slots first (so that a renamed service can reuse them), then
// new backends get one and start healthy. The removed backends' states are
// returned with their checks still running: the caller stops them once the
// change is committed (a failed reload puts them back).
func (e *Engine) syncBackends() ([]*backendState, error) {
	seen := map[backendKey]bool{}
	for _, s := range e.cfg.Services {
		for _, b := range s.Backends {
			seen[backendKey{s.Name, b.Address}] = true
		}
	}
	var removed []*backendState
	for k, st := range e.backends {
		if !seen[k] {
			removed = append(removed, st)
			e.freed = append(e.freed, st.slot)
			delete(e.backends, k)
		}
	}
	for _, s := range e.cfg.Services {
		for _, b := range s.Backends {
			k := backendKey{s.Name, b.Address}
			st, ok := e.backends[k]
			if !ok {
				slot, err := e.allocSlot()
				if err != nil {
					return removed, fmt.Errorf("service %s, backend %s: %w", s.Name, b.Address, err)
				}
				e.epoch++
				st = &backendState{slot: slot, epoch: e.epoch, healthy: true, reason: reasonUnchecked, since: time.Now()}
				e.backends[k] = st
			}
			if b.Weight == 0 && st.drainAt.IsZero() {
				st.drainAt = time.Now()
			}
			if b.Weight > 0 && !st.drained {
				st.drainAt = time.Time{}
			}
		}
	}
	return removed, nil
}

// allocSlot hands out a free counter slot.
func (e *Engine) allocSlot() (uint16, error) {
	if n := len(e.freed); n > 0 {
		s := e.freed[n-1]
		e.freed = e.freed[:n-1]
		return s, nil
	}
	if int(e.next) >= maxSlots {
		return 0, fmt.Errorf("no backend counter slot left: all %d are in use", maxSlots)
	}
	s := e.next
	e.next++
	return s, nil
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
	if err != nil && got == nil {
		return fmt.Errorf("resolve backend MACs on %s: %w", e.cfg.Interface, err)
	}
	// Errors beside an answer (asking the kernel to resolve one backend
	// failed) are logged when they change, not at every refresh.
	if msg := errString(err); msg != e.resolveErr {
		if msg != "" {
			e.log.Warn("asking the kernel to resolve backend MACs", "interface", e.cfg.Interface, "err", msg)
		}
		e.resolveErr = msg
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// mac returns the MAC to send b's frames to.
func (e *Engine) mac(b *config.Backend) ([6]byte, bool) {
	if b.MAC != nil {
		return [6]byte(b.MAC), true
	}
	m, ok := e.macs[b.Address]
	return m, ok
}

// build makes a table from the config and the backends' state:
//   - a backend without a MAC is left out (logged once);
//   - a backend whose health check failed is left out, so its flows move;
//     but if every backend of a service that would take new flows is down
//     (the healthy ones left, if any, draining), the down ones stay (fail
//     open: a health-check outage must not black-hole the whole service)
//     and that is logged loudly;
//   - a drained backend (weight 0 or an admin drain) has weight 0: it keeps
//     its flows and gets no new ones, until drain_timeout, if set, passes.
func (e *Engine) build() (*balancer.Table, error) {
	specs := make([]balancer.ServiceSpec, 0, len(e.cfg.Services))
	now := time.Now()
	for _, s := range e.cfg.Services {
		spec := balancer.ServiceSpec{
			Name:      s.Name,
			Key:       balancer.ServiceKey{VIP: s.VIP, Proto: s.Protocol, Port: s.Port},
			TableSize: s.TableSize,
		}
		var down []balancer.Backend
		for i := range s.Backends {
			b := &s.Backends[i]
			st := e.backends[backendKey{s.Name, b.Address}]
			mac, ok := e.mac(b)
			if !ok {
				if !e.missing[b.Address] {
					e.log.Warn("backend left out: its MAC address is not resolved yet (is it up, on the same segment as "+e.cfg.Interface+"?)",
						"service", s.Name, "backend", b.Address)
					e.missing[b.Address] = true
				}
				st.excluded = "MAC not resolved"
				continue
			}
			be := balancer.Backend{Addr: b.Address, MAC: mac, Weight: b.Weight, Slot: st.slot, SlotEpoch: st.epoch}
			if st.drained {
				be.Weight = 0
			}
			if be.Weight == 0 && e.cfg.DrainTimeout > 0 && !st.drainAt.IsZero() && now.Sub(st.drainAt) >= e.cfg.DrainTimeout {
				st.excluded = "drained (drain timeout passed)"
				continue
			}
			if !st.healthy {
				st.excluded = "down: " + st.reason
				down = append(down, be)
				continue
			}
			st.excluded = ""
			spec.Backends = append(spec.Backends, be)
		}
		// Fail open when no healthy backend would take a new flow: the
		// healthy ones left may all be draining (weight 0), which is no
		// better than none for a new client.
		if !takesNewFlows(spec.Backends) && takesNewFlows(down) {
			e.log.Error("every backend of the service that takes new flows is down: keeping the down ones in the table (fail open) until one recovers",
				"service", s.Name, "down", len(down), "draining", len(spec.Backends))
			spec.Backends = append(spec.Backends, down...)
			for _, be := range down {
				e.backends[backendKey{s.Name, be.Addr}].excluded = ""
			}
		}
		e.noteIdle(s.Name, spec.Backends)
		specs = append(specs, spec)
	}
	return balancer.NewTable(e.cfg.Seed, specs)
}

// takesNewFlows reports whether any of bs has a weight, and so Maglev slots.
func takesNewFlows(bs []balancer.Backend) bool {
	for _, b := range bs {
		if b.Weight > 0 {
			return true
		}
	}
	return false
}

// noteIdle logs, when it starts and when it ends, that a service takes no new
// flows: every backend it has is drained, unresolved or gone (with none
// down, which fails open instead). Its new flows are dropped as no_backend
// meanwhile.
func (e *Engine) noteIdle(service string, bs []balancer.Backend) {
	idle := !takesNewFlows(bs)
	if idle == e.idle[service] {
		return
	}
	e.idle[service] = idle
	if idle {
		e.log.Warn("service takes no new flows: none of its backends has a weight, is resolved and is up (new flows are dropped as no_backend)",
			"service", service, "in_table", len(bs))
	} else {
		e.log.Info("service takes new flows again", "service", service)
	}
}

// drainExpired reports whether a draining backend passed drain_timeout and
// is still in the table.
func (e *Engine) drainExpired() bool {
	if e.cfg.DrainTimeout <= 0 {
		return false
	}
	for _, st := range e.backends {
		if !st.drainAt.IsZero() && st.excluded == "" && time.Since(st.drainAt) >= e.cfg.DrainTimeout {
			return true
		}
	}
	return false
}

// sameTable reports whether two tables have the same services and backends
// (and so identical Maglev tables: they are deterministic).
func sameTable(a, b *balancer.Table) bool {
	if a == nil || b == nil {
		return a == b
	}
	as, bs := a.Services(), b.Services()
	if a.Seed() != b.Seed() || len(as) != len(bs) {
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
