package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/config"
)

// Serve runs the balancer for cfg until ctx is done: it resolves the
// backends, opens the dataplane, forwards, and on the way out closes
// everything and returns the final counters.
func Serve(ctx context.Context, cfg *config.Config, log *slog.Logger) (dataplane.Stats, error) {
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
	e := New(cfg, res, log)
	t, err := e.Initial(ctx, 3*time.Second)
	if err != nil {
		return dataplane.Stats{}, err
	}
	dp, err := dataplane.Open(dataplane.Config{
		Interface:       cfg.Interface,
		Workers:         cfg.Workers,
		FlowTableSize:   cfg.FlowTable.Size,
		FlowIdleTimeout: cfg.FlowTable.IdleTimeout,
		Log:             log,
	}, t)
	if err != nil {
		return dataplane.Stats{}, err
	}
	backends := 0
	for _, s := range t.Services() {
		backends += len(s.Backends())
	}
	log.Info("dsrlb running", "interface", cfg.Interface, "mac", dp.MAC().String(), "workers", dp.Workers(),
		"services", len(t.Services()), "backends", backends,
		"flow_table_bytes_per_worker", dataplane.NewFlowTable(cfg.FlowTable.Size, 1).Cap()*dataplane.FlowEntryBytes)
	for _, s := range t.Services() {
		var addrs []string
		for _, b := range s.Backends() {
			addrs = append(addrs, fmt.Sprintf("%s(w%d)", b.Addr, b.Weight))
		}
		log.Info("service", "name", s.Name(), "key", s.Key().String(), "table_size", s.Maglev().Size(), "backends", addrs)
	}
	var wg sync.WaitGroup
	ectx, cancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); e.Run(ectx, dp) }()
	err = dp.Run(ctx)
	cancel()
	wg.Wait()
	return dp.Stats(), err
}
