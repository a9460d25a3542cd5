package admin

import (
	"context"
	"strconv"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/prometheus/client_golang/prometheus"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("dsrlb_"+name, help, labels, nil)
}

var (
	descBuild         = desc("build_info", "Always 1; the version is a label.", "version")
	descBackendPkts   = desc("backend_packets_total", "Frames forwarded to the backend.", "service", "backend")
	descBackendBytes  = desc("backend_bytes_total", "Bytes forwarded to the backend (Ethernet frames, GSO super-frames whole).", "service", "backend")
	descBackendFlows  = desc("backend_new_flows_total", "New flows assigned to the backend (see dsrlb_worker_new_flows_total for what counts as new).", "service", "backend")
	descBackendUp     = desc("backend_up", "1 if the backend's health check passes (or it has none), else 0.", "service", "backend")
	descBackendState  = desc("backend_state", "1 for the backend's current state.", "service", "backend", "state")
	descBackendChange = desc("backend_last_change_timestamp_seconds", "When the backend's health state last changed.", "service", "backend")
	descBackendWeight = desc("backend_weight", "Configured weight.", "service", "backend")
	descBackendShare  = desc("backend_table_share", "Share of the service's Maglev table the backend holds (0..1).", "service", "backend")
	descCheckLatency  = desc("backend_check_latency_seconds", "Duration of the backend's last health probe.", "service", "backend")
	descWorkerRecv    = desc("worker_received_total", "Frames the worker took from its ring.", "worker")
	descWorkerFwd     = desc("worker_forwarded_total", "Frames the worker forwarded.", "worker")
	descWorkerDrops   = desc("worker_dropped_total", "Frames the worker dropped, by reason.", "worker", "reason")
	descRingDrops     = desc("worker_ring_drops_total", "Frames the kernel dropped because the worker's ring was full (tpacket stats).", "worker")
	descRingWait      = desc("worker_ring_wait_seconds", "How long frames waited in the worker's receive ring: from the kernel's timestamp on the slot to the worker taking it.", "worker")
	descRingMoves     = desc("worker_ring_moves_total", "With ring: auto, the worker's moves between its ring of slots and its ring of blocks.", "worker")
	descRingBlocks    = desc("worker_ring_blocks", "With ring: auto, 1 while the kernel fills the worker's ring of blocks (it fell behind on its slots), else 0.", "worker")
	descFlowEntries   = desc("worker_flow_table_entries", "Occupied entries of the worker's flow table.", "worker")
	descFlowCapacity  = desc("worker_flow_table_capacity", "Entries of the worker's flow table.", "worker")
	descFlowEvictions = desc("worker_flow_table_evictions_total", "Live flows pushed out of the worker's flow table by newer ones.", "worker")
	descWorkerFlows   = desc("worker_new_flows_total", "New flows: flows the worker inserted into its flow table while tracking, TCP connections opened (SYN) while not.", "worker")
	descFlowTracking  = desc("worker_flow_tracking", "1 while the worker tracks flows in its flow table (from a table change until every flow it holds follows the current table), else 0.", "worker")
	descBuilds        = desc("table_builds_total", "Tables built and published since start.")
	descBuildSeconds  = desc("table_build_seconds", "Duration of the last table build and publication.")
	descStart         = desc("start_time_seconds", "When the balancer started.")
)

// collector turns a status snapshot into metrics at scrape time.
type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuild, descBackendPkts, descBackendBytes, descBackendFlows, descBackendUp, descBackendState,
		descBackendChange, descBackendWeight, descBackendShare, descCheckLatency, descWorkerRecv, descWorkerFwd, descWorkerDrops,
		descRingDrops, descRingWait, descRingMoves, descRingBlocks, descFlowEntries, descFlowCapacity, descFlowEvictions, descWorkerFlows, descFlowTracking, descBuilds, descBuildSeconds, descStart} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.s.Snapshot(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descBuild, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(descBuild, 1, st.Version)
	counter(descBuilds, st.Builds)
	gauge(descBuildSeconds, st.LastBuild.Seconds())
	gauge(descStart, float64(st.Started.UnixNano())/1e9)
	for _, svc := range st.Services {
		for _, b := range svc.Backends {
			l := []string{svc.Name, b.Address}
			counter(descBackendPkts, b.Packets, l...)
			counter(descBackendBytes, b.Bytes, l...)
			counter(descBackendFlows, b.NewFlows, l...)
			up := 0.0
			if b.Healthy {
				up = 1
			}
			gauge(descBackendUp, up, l...)
			gauge(descBackendState, 1, svc.Name, b.Address, b.State)
			gauge(descBackendChange, float64(b.Since.UnixNano())/1e9, l...)
			gauge(descBackendWeight, float64(b.Weight), l...)
			gauge(descBackendShare, b.Share, l...)
			gauge(descCheckLatency, b.CheckLatency.Seconds(), l...)
		}
	}
	for i, w := range st.Workers {
		id := strconv.Itoa(i)
		counter(descWorkerRecv, w.Received, id)
		counter(descWorkerFwd, w.Forwarded(), id)
		for r := 1; r < dataplane.NumReasons; r++ {
			counter(descWorkerDrops, w.Reasons[r], id, dataplane.ReasonName(r))
		}
		counter(descRingDrops, w.RingDrops, id)
		counter(descRingMoves, w.RingMoves, id)
		gauge(descRingBlocks, float64(w.RingBlocks), id)
		ch <- ringWaitHistogram(w, id)
		gauge(descFlowEntries, float64(w.FlowsLive), id)
		gauge(descFlowCapacity, float64(w.FlowCapacity), id)
		counter(descFlowEvictions, w.FlowEvictions, id)
		counter(descWorkerFlows, w.FlowsNew, id)
		gauge(descFlowTracking, float64(w.FlowTracking), id)
	}
}

// ringWaitHistogram is a worker's ring-wait counts as a Prometheus histogram
// (cumulative buckets, in seconds).
func ringWaitHistogram(w dataplane.Stats, id string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(dataplane.RingWaitBounds))
	var n uint64
	for i, b := range dataplane.RingWaitBounds {
		n += w.RingWait[i]
		buckets[b.Seconds()] = n
	}
	n += w.RingWait[len(dataplane.RingWaitBounds)]
	return prometheus.MustNewConstHistogram(descRingWait, n, float64(w.RingWaitNs)/1e9, buckets, id)
}
