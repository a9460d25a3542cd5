package engine

import (
	"context"
	"time"

	"github.com/dsrlb/dsrlb/healthcheck"
)

// syncChecks starts, restarts and stops checkers so that every backend with
// a check has one running with its current spec and target. It runs on
// Run's goroutine.
func (e *Engine) syncChecks() {
	if e.ctx == nil {
		return
	}
	for _, s := range e.cfg.Services {
		for i := range s.Backends {
			b := &s.Backends[i]
			k := backendKey{s.Name, b.Address}
			st := e.backends[k]
			spec := b.Health.Spec()
			mac, _ := e.mac(b)
			target := healthcheck.Target{Addr: b.Address, Port: s.Port, VIP: s.VIP, MAC: mac}
			if c := st.check; c != nil {
				if c.target == target && specEqual(c.spec, spec) {
					continue
				}
				c.stop()
				st.check = nil
			}
			if spec.Kind == healthcheck.KindNone || spec.Kind == "" {
				if st.reason == reasonUnchecked {
					st.reason = "no health check"
				}
				if !st.healthy {
					st.healthy, st.reason, st.since = true, "health check removed", time.Now()
				}
				continue
			}
			if spec.VIP && mac == ([6]byte{}) {
				continue // started once the MAC is known
			}
			p, err := e.newProber(spec, e.dsr)
			if err != nil {
				// Config validation and reload's checks make this
				// unreachable; should it happen, the backend counts as
				// unchecked (up), not frozen in its last state.
				e.log.Error("health check not started; the backend counts as up", "service", s.Name, "backend", b.Address, "err", err)
				if !st.healthy {
					st.since = time.Now()
				}
				st.healthy, st.reason = true, "health check not started: "+err.Error()
				continue
			}
			ctx, stop := context.WithCancel(e.ctx)
			events := make(chan healthcheck.Event)
			rc := &runningCheck{spec: spec, target: target, stop: stop}
			rc.checker = healthcheck.NewChecker(p, spec, target, st.healthy, events, nil)
			st.check = rc
			go rc.checker.Run(ctx)
			go func() {
				for {
					select {
					case ev := <-events:
						select {
						case e.events <- keyedEvent{k, rc, ev}:
						case <-ctx.Done():
							return
						}
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	}
}

func specEqual(a, b healthcheck.Spec) bool {
	ae, be := a.Expect, b.Expect
	a.Expect, b.Expect = nil, nil
	if len(ae) != len(be) {
		return false
	}
	for i := range ae {
		if ae[i] != be[i] {
			return false
		}
	}
	return a.Kind == b.Kind && a.Port == b.Port && a.Path == b.Path && a.Method == b.Method && a.Host == b.Host &&
		a.TLSVerify == b.TLSVerify && a.Query == b.Query && a.VIP == b.VIP && a.Interval == b.Interval &&
		a.Timeout == b.Timeout && a.Rise == b.Rise && a.Fall == b.Fall
}

// healthEvent applies a checker's state change.
func (e *Engine) healthEvent(ke keyedEvent) {
	st, ok := e.backends[ke.key]
	if !ok || st.check != ke.check {
		return // from a checker that has since been stopped
	}
	st.healthy, st.reason, st.since = ke.ev.Healthy, ke.ev.Reason, ke.ev.At
	state := "down"
	if st.healthy {
		state = "up"
	}
	e.log.Warn("backend "+ke.key.addr.String()+" "+state+": "+ke.ev.Reason, "service", ke.key.service, "backend", ke.key.addr, "state", state)
	e.publish("backend " + ke.key.addr.String() + " " + state)
}

func (e *Engine) stopChecks() {
	for _, st := range e.backends {
		if st.check != nil {
			st.check.stop()
			st.check = nil
		}
	}
}
