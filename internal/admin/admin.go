package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/engine"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source is what the admin endpoint reads and drives.
type Source interface {
	Status(ctx context.Context) (engine.Status, error)
	SetDrained(ctx context.Context, service string, addr netip.Addr, drained bool) error
}

// Counters reads the dataplane's counters.
type Counters interface {
	WorkerStats() []dataplane.Stats
	BackendStats(slot uint16, epoch uint32) (packets, bytes, newFlows uint64)
}

// Reloader re-reads the configuration and applies it.
type Reloader func(ctx context.Context) (string, error)

// Status is what GET /status returns.
type Status struct {
	engine.Status
	Version  string            `json:"version"`
	Services []ServiceStatus   `json:"services"`
	Workers  []dataplane.Stats `json:"workers"`
	// Reasons names the indices of each worker's Reasons counters.
	Reasons []string `json:"reasons"`
}

// ServiceStatus adds traffic to engine.ServiceStatus.
type ServiceStatus struct {
	engine.ServiceStatus
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus adds traffic to engine.BackendStatus.
type BackendStatus struct {
	engine.BackendStatus
	Packets  uint64  `json:"packets"`
	Bytes    uint64  `json:"bytes"`
	NewFlows uint64  `json:"new_flows"`
	PPS      float64 `json:"pps"` // over the last few seconds
}

// Server is the admin endpoint.
type Server struct {
	src      Source
	counters Counters
	reload   Reloader
	version  string
	log      *slog.Logger
	registry *prometheus.Registry

	mu   sync.Mutex // guards last
	last map[uint16]sample
}

type sample struct {
	at      time.Time
	packets uint64
	pps     float64
}

// New returns an admin server. reload may be nil (the balancer was started
// from flags: nothing to reload).
func New(src Source, counters Counters, reload Reloader, version string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{src: src, counters: counters, reload: reload, version: version, log: log,
		registry: prometheus.NewRegistry(), last: map[uint16]sample{}}
	s.registry.MustRegister(&collector{s: s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// Handler returns the endpoint's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("POST /reload", s.handleReload)
	mux.HandleFunc("POST /backends/{service}/{addr}/{action}", s.handleBackend)
	// A web page in a browser on the balancer can send a POST to it: the
	// cross-origin protection refuses requests a browser marks as coming
	// from another site (Sec-Fetch-Site, Origin). dsrlb's own client and
	// curl send neither header and pass.
	return http.NewCrossOriginProtection().Handler(noBody(mux))
}

// noBody refuses a request with a body: no endpoint reads one, and a body
// announced but not sent would hold the connection (the server waits to
// discard it before it answers).
func noBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			// Closing answers at once: on a connection kept open the
			// server would first read the body, to discard it.
			w.Header().Set("Connection", "close")
			http.Error(w, "request bodies are not accepted", http.StatusRequestEntityTooLarge)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeListener serves on ln until ctx is done. On a loopback address it
// answers only requests whose Host is an IP address or localhost: a name
// that resolves to 127.0.0.1 (DNS rebinding) would let a web page read it.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	h := s.Handler()
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		h = loopbackHostOnly(h)
	}
	// Every phase of a request is bounded: a client that stalls (a slow
	// header, an idle keep-alive connection, a reader that stops reading)
	// holds a connection and a goroutine only so long.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		<-ctx.Done()
		// Requests under way get 2 s to finish; then their connections
		// are closed.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	go s.sampleRates(ctx)
	err := srv.Serve(ln)
	if !errors.Is(err, http.ErrServerClosed) {
		srv.Close() // Serve failed: nothing more to wait for
		return fmt.Errorf("admin endpoint: %w", err)
	}
	<-shut
	return nil
}

// loopbackHostOnly refuses requests whose Host is a name other than
// localhost.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil && !strings.EqualFold(host, "localhost") {
			http.Error(w, fmt.Sprintf("admin endpoint: Host %q is not an address of this loopback endpoint", r.Host), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sampleRates keeps each backend's packet rate over the last 2 s.
func (s *Server) sampleRates(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		st, err := s.src.Status(ctx)
		if err == nil {
			now := time.Now()
			s.mu.Lock()
			for _, svc := range st.Services {
				for _, b := range svc.Backends {
					p, _, _ := s.counters.BackendStats(b.Slot, b.SlotEpoch)
					prev, ok := s.last[b.Slot]
					smp := sample{at: now, packets: p}
					if ok && p >= prev.packets {
						smp.pps = float64(p-prev.packets) / now.Sub(prev.at).Seconds()
					}
					s.last[b.Slot] = smp
				}
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Snapshot returns the full status.
func (s *Server) Snapshot(ctx context.Context) (*Status, error) {
	es, err := s.src.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := &Status{Status: es, Version: s.version, Workers: s.counters.WorkerStats()}
	for i := 0; i < dataplane.NumReasons; i++ {
		out.Reasons = append(out.Reasons, dataplane.ReasonName(i))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range es.Services {
		ss := ServiceStatus{ServiceStatus: svc}
		for _, b := range svc.Backends {
			bs := BackendStatus{BackendStatus: b}
			bs.Packets, bs.Bytes, bs.NewFlows = s.counters.BackendStats(b.Slot, b.SlotEpoch)
			bs.PPS = s.last[b.Slot].pps
			ss.Backends = append(ss.Backends, bs)
		}
		out.Services = append(out.Services, ss)
	}
	return out, nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.Snapshot(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if s.reload == nil {
		http.Error(w, "dsrlb was started from flags, not a config file: nothing to reload", http.StatusConflict)
		return
	}
	summary, err := s.reload(r.Context())
	switch {
	case errors.Is(err, engine.ErrStopped) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		http.Error(w, err.Error(), http.StatusServiceUnavailable) // the balancer is stopping
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusUnprocessableEntity) // refused: the running configuration stays
		return
	}
	fmt.Fprintln(w, summary)
}

func (s *Server) handleBackend(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "drain" && action != "enable" {
		http.Error(w, fmt.Sprintf("unknown action %q: use drain or enable", action), http.StatusNotFound)
		return
	}
	addr, err := netip.ParseAddr(r.PathValue("addr"))
	if err != nil {
		http.Error(w, fmt.Sprintf("%q is not an IP address", r.PathValue("addr")), http.StatusBadRequest)
		return
	}
	service := r.PathValue("service")
	err = s.src.SetDrained(r.Context(), service, addr, action == "drain")
	switch {
	case errors.Is(err, engine.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		fmt.Fprintf(w, "backend %s of service %s: %s\n", addr, service, map[string]string{"drain": "drained", "enable": "enabled"}[action])
	}
}
