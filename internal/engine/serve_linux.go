package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/healthcheck"
	"github.com/dsrlb/dsrlb/internal/config"
)

// Serve runs the balancer until ctx is done: it resolves the backends,
// opens the dataplane, forwards, handles reloads, and on the way out closes
// everything and returns the final counters.
func Serve(ctx context.Context, o ServeOptions) (dataplane.Stats, error) {
	cfg, log := o.Config, o.Log
	if err := checkCapabilities(); err != nil {
		return dataplane.Stats{}, err
	}
	var vips []netip.Addr
	for _, s := range cfg.Services {
		vips = append(vips, s.VIP)
	}
	if err := dataplane.CheckVIPsNotLocal(vips); err != nil {
		return dataplane.Stats{}, err
	}
	res, err := NewKernelResolver(cfg.Interface)
	if err != nil {
		return dataplane.Stats{}, err
	}
	var dsr healthcheck.DSRProber
	if needsDSRProber(cfg) {
		p, err := healthcheck.NewDSRProber(cfg.Interface)
		if err != nil {
			return dataplane.Stats{}, fmt.Errorf("DSR-path health checks (vip: true): %w", err)
		}
		defer p.Close()
		dsr = p
	}
	// The admin endpoint listens before anything forwards, so that it
	// answers as soon as the balancer does, and a taken port stops the start.
	var adminLn net.Listener
	if o.Admin != nil && cfg.Admin != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			return dataplane.Stats{}, fmt.Errorf("admin endpoint: listen on %s: %w (admin: \"\" turns it off)", cfg.Admin, err)
		}
		defer adminLn.Close()
	}
	e := New(cfg, res, dsr, log)
	t, err := e.Initial(ctx, 3*time.Second)
	if err != nil {
		return dataplane.Stats{}, err
	}
	vipMAC, err := resolveVIPMAC(cfg.VIPMAC, cfg.Interface)
	if err != nil {
		return dataplane.Stats{}, err
	}
	fanout, err := dataplane.ParseFanout(cfg.Fanout)
	if err != nil {
		return dataplane.Stats{}, err
	}
	dp, err := dataplane.Open(dataplane.Config{
		Interface:       cfg.Interface,
		Workers:         cfg.Workers,
		CPUs:            cfg.CPUs,
		Fanout:          fanout,
		FlowTableSize:   cfg.FlowTable.Size,
		FlowIdleTimeout: cfg.FlowTable.IdleTimeout,
		Ring:            dataplane.RingConfig{BusyPoll: busyPoll(cfg.BusyPoll), Blocks: cfg.Ring == config.RingBlocks, Auto: cfg.Ring == config.RingAuto},
		VIPMAC:          vipMAC,
		Log:             log,
	}, t)
	if err != nil {
		return dataplane.Stats{}, err
	}
	backends := 0
	for _, s := range t.Services() {
		backends += len(s.Backends())
	}
	log.Info("dsrlb running", "interface", cfg.Interface, "vip_mac", dp.MAC().String(), "workers", dp.Workers(), "cpus", fmt.Sprint(cfg.CPUs), "fanout", cfg.Fanout, "ring", cfg.Ring,
		"services", len(t.Services()), "backends", backends,
		"flow_table_bytes_per_worker", dataplane.NewFlowTable(cfg.FlowTable.Size, 1).Cap()*dataplane.FlowEntryBytes, "admin", cfg.Admin)
	for _, s := range t.Services() {
		var addrs []string
		for _, b := range s.Backends() {
			addrs = append(addrs, fmt.Sprintf("%s(w%d)", b.Addr, b.Weight))
		}
		log.Info("service", "name", s.Name(), "key", s.Key().String(), "table_size", s.Maglev().Size(), "backends", addrs)
	}

	reload := func(ctx context.Context) (string, error) {
		if o.ConfigPath == "" {
			return "", errors.New("started from flags, not a config file: nothing to reload")
		}
		ncfg, err := config.Load(o.ConfigPath)
		if err != nil {
			return "", fmt.Errorf("reload %s refused, the running configuration stays:\n%w", o.ConfigPath, err)
		}
		if o.Adjust != nil {
			if err := o.Adjust(ncfg); err != nil {
				return "", fmt.Errorf("reload %s refused, the running configuration stays: %w", o.ConfigPath, err)
			}
		}
		return e.Reload(ctx, ncfg)
	}

	var wg sync.WaitGroup
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); e.Run(ectx, dp) }()
	if o.Reload != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ectx.Done():
					return
				case <-o.Reload:
					if summary, err := reload(ectx); err != nil {
						log.Error("reload failed", "err", err)
					} else {
						log.Info("reload done", "changes", summary)
					}
				}
			}
		}()
	}
	if adminLn != nil {
		adminReload := reload
		if o.ConfigPath == "" {
			adminReload = nil // the admin endpoint says there is nothing to reload
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Admin(ectx, adminLn, e, dp, adminReload); err != nil {
				log.Error("admin endpoint stopped", "err", err)
			}
		}()
	}
	err = dp.Run(ctx)
	cancel()
	wg.Wait()
	return dp.Stats(), err
}

// resolveVIPMAC turns the config's vip_mac into dataplane.Config.VIPMAC:
// nil for the interface's own MAC, the derived virtual MAC for "auto".
func resolveVIPMAC(v, iface string) (net.HardwareAddr, error) {
	switch v {
	case "", config.VIPMACInterface:
		return nil, nil
	case config.VIPMACAuto:
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return nil, fmt.Errorf("vip_mac auto: interface %s: %w", iface, err)
		}
		return dataplane.VirtualMAC(ifi.HardwareAddr), nil
	}
	return net.ParseMAC(v)
}

// busyPoll turns the config's busy_poll (0: off) into RingConfig.BusyPoll
// (0: the default, negative: off).
func busyPoll(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
