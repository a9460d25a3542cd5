package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dsrlb/dsrlb/internal/config"
)

// Reload applies a new, already validated configuration as a difference:
// services and backends added, removed or re-weighted, health checks
// changed. The dataplane keeps its flow tables, so established connections
// survive. A change of interface needs a restart and is refused (the running
// configuration stays); changes of workers, flow-table settings and the
// like are kept for the next restart and reported. A reload whose table the
// dataplane refuses (a VIP that is an address of this host, say) is undone:
// the running configuration, table, backend states and checks stay as they
// were. It returns a one-line summary of what changed.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) (string, error) {
	var summary string
	var err error
	if derr := e.do(ctx, func() { summary, err = e.reload(cfg) }); derr != nil {
		return "", derr
	}
	return summary, err
}

func (e *Engine) reload(cfg *config.Config) (string, error) {
	old := e.cfg
	if cfg.Interface != old.Interface {
		return "", fmt.Errorf("interface change (%s → %s) needs a restart: reload refused, the running configuration stays", old.Interface, cfg.Interface)
	}
	if e.dsr == nil && needsDSRProber(cfg) {
		return "", errors.New("a DSR-path health check (vip: true) needs the packet prober that dsrlb opens at start, and only when the configuration has such a check: restart to add the first one; reload refused, the running configuration stays")
	}
	notes := keepRestartFields(old, cfg)
	diff := diffConfigs(old, cfg)
	undo := e.save()
	e.cfg = cfg
	removed, err := e.syncBackends()
	if err == nil {
		if rerr := e.refreshMACs(); rerr != nil {
			e.log.Warn("neighbour refresh failed", "err", rerr)
		}
		e.syncChecks()
		err = e.publish("reload")
	}
	if err != nil {
		e.restore(undo)
		// The MACs refreshed on the way may differ from the running
		// table's: publish the restored configuration with them.
		e.publish("reload undone")
		return "", fmt.Errorf("reload refused, the running configuration stays: %w", err)
	}
	for _, st := range removed {
		if st.check != nil {
			st.check.stop()
		}
	}
	e.forgetRemoved()
	if e.refresh != nil && refreshEvery(cfg) != refreshEvery(old) {
		e.refresh.Reset(refreshEvery(cfg))
	}
	summary := strings.Join(append(diff, notes...), "; ")
	if summary == "" {
		summary = "no changes"
	}
	e.log.Info("configuration reloaded", "changes", summary)
	return summary, nil
}

// forgetRemoved drops what the engine remembers of backend addresses and
// services the configuration no longer has: one added again later starts
// unresolved (the kernel may know another MAC for its address by then, or
// none) and is logged again as missing or idle.
func (e *Engine) forgetRemoved() {
	addrs := e.backendAddrs()
	gone := func(a netip.Addr) bool {
		_, ok := slices.BinarySearchFunc(addrs, a, netip.Addr.Compare)
		return !ok
	}
	maps.DeleteFunc(e.macs, func(a netip.Addr, _ [6]byte) bool { return gone(a) })
	maps.DeleteFunc(e.missing, func(a netip.Addr, _ bool) bool { return gone(a) })
	maps.DeleteFunc(e.idle, func(name string, _ bool) bool {
		return !slices.ContainsFunc(e.cfg.Services, func(s config.Service) bool { return s.Name == name })
	})
}

// keepRestartFields gives cfg old's values of the fields that only a restart
// applies, and returns a note if any differed.
func keepRestartFields(old, cfg *config.Config) []string {
	if cfg.Workers == old.Workers && cfg.FlowTable == old.FlowTable && cfg.BusyPoll == old.BusyPoll && slices.Equal(cfg.CPUs, old.CPUs) &&
		cfg.Fanout == old.Fanout && cfg.Ring == old.Ring && cfg.VIPMAC == old.VIPMAC && cfg.Admin == old.Admin {
		return nil
	}
	cfg.Workers, cfg.FlowTable, cfg.BusyPoll, cfg.CPUs, cfg.Fanout, cfg.Ring, cfg.VIPMAC, cfg.Admin =
		old.Workers, old.FlowTable, old.BusyPoll, old.CPUs, old.Fanout, old.Ring, old.VIPMAC, old.Admin
	return []string{"workers, cpus, fanout, ring, flow_table, busy_poll, vip_mac and admin changes take effect at the next restart"}
}

// saved is the control state a reload changes, to undo it.
type saved struct {
	cfg      *config.Config
	backends map[backendKey]*backendState
	states   map[*backendState]backendState
	freed    []uint16
	next     uint16
}

func (e *Engine) save() saved {
	s := saved{cfg: e.cfg, backends: maps.Clone(e.backends), states: map[*backendState]backendState{}, freed: slices.Clone(e.freed), next: e.next}
	for _, st := range e.backends {
		s.states[st] = *st
	}
	return s
}

// restore undoes a change made since s was saved: the checks it started
// stop, those it stopped start again (with the health state they had).
func (e *Engine) restore(s saved) {
	for k, st := range e.backends {
		if s.backends[k] != st && st.check != nil {
			st.check.stop() // a backend the change added
		}
	}
	for st, v := range s.states {
		cur := st.check
		*st = v
		if cur != v.check {
			// The change stopped v.check and may have started cur.
			if cur != nil {
				cur.stop()
			}
			st.check = nil
		}
	}
	e.cfg, e.backends, e.freed, e.next = s.cfg, s.backends, s.freed, s.next
	e.syncChecks()
}

// diffConfigs describes what changed between two configurations.
func diffConfigs(a, b *config.Config) []string {
	var out []string
	as, bs := map[string]*config.Service{}, map[string]*config.Service{}
	for i := range a.Services {
		as[a.Services[i].Name] = &a.Services[i]
	}
	for i := range b.Services {
		bs[b.Services[i].Name] = &b.Services[i]
	}
	for _, s := range b.Services {
		o, ok := as[s.Name]
		if !ok {
			out = append(out, "service "+s.Name+" added")
			continue
		}
		ob := map[netip.Addr]*config.Backend{}
		for i := range o.Backends {
			ob[o.Backends[i].Address] = &o.Backends[i]
		}
		var checks []string // backends whose health check changed
		kept := 0
		for _, nb := range s.Backends {
			switch p, ok := ob[nb.Address]; {
			case !ok:
				out = append(out, fmt.Sprintf("%s: backend %s added", s.Name, nb.Address))
			default:
				kept++
				if p.Weight != nb.Weight {
					out = append(out, fmt.Sprintf("%s: backend %s weight %d → %d", s.Name, nb.Address, p.Weight, nb.Weight))
				}
				if !bytes.Equal(p.MAC, nb.MAC) {
					out = append(out, fmt.Sprintf("%s: backend %s mac %s → %s", s.Name, nb.Address, macOrResolved(p.MAC), macOrResolved(nb.MAC)))
				}
				if !specEqual(p.Health.Spec(), nb.Health.Spec()) {
					checks = append(checks, nb.Address.String())
				}
			}
			delete(ob, nb.Address)
		}
		switch {
		case len(checks) > 0 && len(checks) == kept:
			out = append(out, s.Name+": health check changed")
		case len(checks) > 0:
			out = append(out, fmt.Sprintf("%s: health check of %s changed", s.Name, strings.Join(checks, ", ")))
		}
		for addr := range ob {
			out = append(out, fmt.Sprintf("%s: backend %s removed", s.Name, addr))
		}
		if o.VIP != s.VIP || o.Port != s.Port || o.Protocol != s.Protocol || o.TableSize != s.TableSize {
			out = append(out, "service "+s.Name+" changed")
		}
	}
	for _, s := range a.Services {
		if _, ok := bs[s.Name]; !ok {
			out = append(out, "service "+s.Name+" removed")
		}
	}
	if a.Seed != b.Seed {
		out = append(out, "seed changed (every service's Maglev table is rebuilt)")
	}
	if a.DrainTimeout != b.DrainTimeout {
		out = append(out, fmt.Sprintf("drain_timeout %s → %s", a.DrainTimeout, b.DrainTimeout))
	}
	if a.NeighborRefresh != b.NeighborRefresh {
		out = append(out, fmt.Sprintf("neighbor_refresh %s → %s", a.NeighborRefresh, b.NeighborRefresh))
	}
	slices.Sort(out)
	return out
}

// SetDrained drains (no new flows, existing flows stay) or re-enables a
// backend of a service, by an operator's action. It survives reloads but not
// restarts: make it permanent with weight 0 in the config.
func (e *Engine) SetDrained(ctx context.Context, service string, addr netip.Addr, drained bool) error {
	var err error
	if derr := e.do(ctx, func() {
		st, ok := e.backends[backendKey{service, addr}]
		if !ok {
			err = fmt.Errorf("service %q has no backend %s: %w", service, addr, ErrNotFound)
			return
		}
		if st.drained == drained {
			return
		}
		was := *st
		st.drained = drained
		action := "enabled"
		switch {
		case drained:
			action = "drained"
			if st.drainAt.IsZero() { // already draining (weight 0): its timeout runs on
				st.drainAt = time.Now()
			}
		case e.configuredWeight(service, addr) == 0:
			// Still draining by its configured weight 0: its drain
			// timeout keeps running.
		default:
			st.drainAt = time.Time{}
		}
		if perr := e.publish("backend " + addr.String() + " " + action); perr != nil {
			*st = was
			err = fmt.Errorf("backend %s of service %s not %s: %w", addr, service, action, perr)
			return
		}
		e.log.Info("backend "+addr.String()+" "+action+" by an admin action", "service", service, "backend", addr)
	}); derr != nil {
		return derr
	}
	return err
}

// macOrResolved names a configured backend MAC, nil meaning resolved.
func macOrResolved(m net.HardwareAddr) string {
	if m == nil {
		return "resolved"
	}
	return m.String()
}

// configuredWeight is a backend's weight in the running configuration.
func (e *Engine) configuredWeight(service string, addr netip.Addr) uint32 {
	for _, s := range e.cfg.Services {
		if s.Name != service {
			continue
		}
		for _, b := range s.Backends {
			if b.Address == addr {
				return b.Weight
			}
		}
	}
	return 0
}

// Status is a snapshot of the services and their backends.
type Status struct {
	Started   time.Time       `json:"started"`
	Interface string          `json:"interface"`
	Builds    uint64          `json:"table_builds"`
	LastBuild time.Duration   `json:"last_build_ns"`
	Services  []ServiceStatus `json:"services"`
}

// ServiceStatus is one service in a Status.
type ServiceStatus struct {
	Name      string          `json:"name"`
	Key       string          `json:"key"`
	TableSize int             `json:"table_size"`
	Check     string          `json:"check"`
	Backends  []BackendStatus `json:"backends"`
}

// BackendStatus is one backend in a Status.
type BackendStatus struct {
	Address string `json:"address"`
	MAC     string `json:"mac"`
	Weight  uint32 `json:"weight"` // configured
	// State is up, down, draining, unresolved or out (left out for
	// another reason, e.g. a passed drain timeout).
	State  string `json:"state"`
	Reason string `json:"reason"`
	// Healthy is the health check's verdict (true without a check),
	// whatever the state: an unresolved backend can be failing its check.
	Healthy      bool          `json:"healthy"`
	Since        time.Time     `json:"since"`
	Slots        int           `json:"slots"` // Maglev slots held
	Share        float64       `json:"share"` // of the table's slots
	Slot         uint16        `json:"counter_slot"`
	SlotEpoch    uint32        `json:"-"` // which of the slot's backends this is (dataplane.BackendStats)
	CheckLatency time.Duration `json:"check_latency_ns"`
	LastError    string        `json:"last_check_error,omitempty"`
}

// Status returns a snapshot of the running state.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	var s Status
	err := e.do(ctx, func() { s = e.status() })
	return s, err
}

func (e *Engine) status() Status {
	st := Status{Started: e.started, Interface: e.cfg.Interface, Builds: e.builds, LastBuild: e.lastCost}
	t := e.table.Load()
	for _, s := range e.cfg.Services {
		ss := ServiceStatus{Name: s.Name, Key: formatKey(&s), TableSize: int(s.TableSize), Check: s.Health.Kind}
		slots := map[netip.Addr]int{}
		if t != nil {
			for _, svc := range t.Services() {
				if svc.Name() != s.Name {
					continue
				}
				counts := svc.Maglev().Counts()
				for i, b := range svc.Backends() {
					slots[b.Addr] = counts[i]
				}
			}
		}
		for i := range s.Backends {
			b := &s.Backends[i]
			bst := e.backends[backendKey{s.Name, b.Address}]
			bs := BackendStatus{Address: b.Address.String(), Weight: b.Weight, Reason: bst.reason, Since: bst.since,
				Slots: slots[b.Address], Slot: bst.slot, SlotEpoch: bst.epoch, Healthy: bst.healthy}
			if m, ok := e.mac(b); ok {
				bs.MAC = net.HardwareAddr(m[:]).String()
			}
			if s.TableSize > 0 {
				bs.Share = float64(bs.Slots) / float64(s.TableSize)
			}
			switch {
			case bs.MAC == "":
				bs.State, bs.Reason = "unresolved", "MAC address not resolved"
				if !bst.healthy {
					bs.Reason += "; health check: " + bst.reason
				}
			case !bst.healthy:
				bs.State = "down"
			case bst.excluded != "":
				bs.State, bs.Reason = "out", bst.excluded
			case bst.drained || b.Weight == 0:
				bs.State = "draining"
				if bst.drained {
					bs.Reason = "drained by an admin action"
				} else {
					bs.Reason = "weight 0 in the configuration"
				}
			default:
				bs.State = "up"
			}
			if c := bst.check; c != nil {
				bs.CheckLatency = c.checker.LastLatency()
				bs.LastError = c.checker.LastError()
			}
			ss.Backends = append(ss.Backends, bs)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

func formatKey(s *config.Service) string {
	port := "*"
	if s.Port != 0 {
		port = fmt.Sprint(s.Port)
	}
	return net.JoinHostPort(s.VIP.String(), port) + "/" + s.Protocol.String()
}
