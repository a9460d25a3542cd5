package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/engine"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type fakeSource struct{ drained map[string]bool }

func (f *fakeSource) Status(ctx context.Context) (engine.Status, error) {
	return engine.Status{Interface: "eth0", Builds: 2, Services: []engine.ServiceStatus{{
		Name: "web", Key: "198.18.0.100:80/tcp", TableSize: 7,
		Backends: []engine.BackendStatus{
			{Address: "198.18.0.11", State: "up", Healthy: true, Weight: 1, Slots: 4, Share: 4. / 7, Slot: 0},
			{Address: "198.18.0.12", State: "down", Reason: "tcp connect: refused", Weight: 1, Slots: 3, Share: 3. / 7, Slot: 1},
		},
	}}}, nil
}

func (f *fakeSource) SetDrained(ctx context.Context, service string, addr netip.Addr, drained bool) error {
	if service != "web" {
		return fmt.Errorf("service %q: %w", service, engine.ErrNotFound)
	}
	f.drained[addr.String()] = drained
	return nil
}

type fakeCounters struct{}

func (fakeCounters) WorkerStats() []dataplane.Stats {
	var s dataplane.Stats
	s.Received, s.Reasons[0], s.Reasons[5] = 12, 10, 2
	s.RingWait[0], s.RingWait[3], s.RingWait[dataplane.NumRingWaitBuckets-1] = 9, 2, 1 // ≤10µs, ≤100µs, beyond 100ms
	s.RingWaitNs = uint64(500 * time.Millisecond)
	s.FlowsLive = 7
	tracking := s
	tracking.FlowTracking = 1
	tracking.RingMoves, tracking.RingBlocks = 3, 1 // ring: auto, on its blocks
	return []dataplane.Stats{s, tracking}
}

func (fakeCounters) BackendStats(slot uint16, epoch uint32) (uint64, uint64, uint64) {
	return 10 + uint64(slot), 1000, 3
}

func TestEndpoints(t *testing.T) {
	src := &fakeSource{drained: map[string]bool{}}
	srv := httptest.NewServer(New(src, fakeCounters{}, nil, "v-test", nil).Handler())
	defer srv.Close()
	c := &Client{Addr: strings.TrimPrefix(srv.URL, "http://")}

	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v-test" || len(st.Workers) != 2 || st.Services[0].Backends[1].Packets != 11 || st.Services[0].Backends[1].State != "down" {
		t.Fatalf("status: %+v", st)
	}
	var b strings.Builder
	Format(&b, st)
	for _, want := range []string{"on eth0", "198.18.0.12  down ", "tcp connect: refused", "not_vip  4",
		// two workers' 9 ≤10µs, 2 ≤100µs, 1 beyond 100ms, 500ms in all
		"ring wait (kernel's slot stamp → worker): mean 41.6667ms, p99 beyond 100ms, 8.33% over 100µs",
		"flow tables: 1 of 2 workers tracking flows (since a table change), 14 entries",
		"ring auto: 3 moves, 1 of 2 workers on their ring of blocks"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("formatted status lacks %q:\n%s", want, b.String())
		}
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := fams["dsrlb_worker_forwarded_total"].GetMetric(); len(got) != 2 || got[0].GetCounter().GetValue() != 10 {
		t.Errorf("worker_forwarded_total: %v", got)
	}
	for _, m := range fams["dsrlb_worker_ring_wait_seconds"].GetMetric() {
		h := m.GetHistogram()
		cum := map[float64]uint64{}
		for _, b := range h.GetBucket() {
			cum[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		if h.GetSampleCount() != 12 || h.GetSampleSum() != 0.5 || cum[10e-6] != 9 || cum[50e-6] != 9 || cum[100e-6] != 11 || cum[0.1] != 11 {
			t.Errorf("worker_ring_wait_seconds: count %d sum %v buckets %v", h.GetSampleCount(), h.GetSampleSum(), cum)
		}
	}
	if got := fams["dsrlb_worker_flow_tracking"].GetMetric(); len(got) != 2 || got[0].GetGauge().GetValue()+got[1].GetGauge().GetValue() != 1 {
		t.Errorf("worker_flow_tracking: %v, want one worker of two tracking", got)
	}
	if got := fams["dsrlb_worker_ring_moves_total"].GetMetric(); len(got) != 2 || got[0].GetCounter().GetValue()+got[1].GetCounter().GetValue() != 3 {
		t.Errorf("worker_ring_moves_total: %v, want 3 moves in all", got)
	}
	if got := fams["dsrlb_worker_ring_blocks"].GetMetric(); len(got) != 2 || got[0].GetGauge().GetValue()+got[1].GetGauge().GetValue() != 1 {
		t.Errorf("worker_ring_blocks: %v, want one worker of two on its blocks", got)
	}
	if got := len(fams["dsrlb_worker_ring_wait_seconds"].GetMetric()); got != 2 {
		t.Errorf("worker_ring_wait_seconds: %d series, want one per worker (2)", got)
	}
	if got := len(fams["dsrlb_backend_up"].GetMetric()); got != 2 {
		t.Errorf("backend_up: %d series, want one per backend (2)", got)
	}
	for _, m := range fams["dsrlb_backend_up"].GetMetric() {
		want := 1.0
		if m.GetLabel()[0].GetValue() == "198.18.0.12" {
			want = 0
		}
		if m.GetGauge().GetValue() != want {
			t.Errorf("backend_up %v", m)
		}
	}

	if msg, err := c.Backend(context.Background(), "drain", "web", "198.18.0.12"); err != nil || !src.drained["198.18.0.12"] || !strings.Contains(msg, "198.18.0.12 of service web: drained") {
		t.Errorf("drain: %q %v", msg, err)
	}
	if _, err := c.Backend(context.Background(), "drain", "nope", "198.18.0.12"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown service: %v", err)
	}
	if _, err := c.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "nothing to reload") {
		t.Errorf("reload without a file: %v", err)
	}
	raw, _ := c.StatusJSON(context.Background())
	if !json.Valid(raw) {
		t.Error("status JSON invalid")
	}
}

func TestNoBalancer(t *testing.T) {
	_, err := (&Client{Addr: "127.0.0.1:1"}).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no balancer answers on 127.0.0.1:1") {
		t.Fatalf("got %v", err)
	}
}

// A browser's cross-site POST (a web page on the balancer host) is refused;
// dsrlb's client, which sends no such headers, is not. On a loopback listener
// a Host that is a name other than localhost (DNS rebinding) is refused.
func TestAdminRefusesBrowserAttacks(t *testing.T) {
	src := &fakeSource{drained: map[string]bool{}}
	s := New(src, fakeCounters{}, nil, "v-test", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + ln.Addr().String()

	req, _ := http.NewRequest("POST", base+"/backends/web/198.18.0.12/drain", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || src.drained["198.18.0.12"] {
		t.Errorf("cross-site POST: %s, drained %v; want 403 and no drain", resp.Status, src.drained["198.18.0.12"])
	}
	c := &Client{Addr: ln.Addr().String()}
	if _, err := c.Backend(context.Background(), "drain", "web", "198.18.0.12"); err != nil || !src.drained["198.18.0.12"] {
		t.Errorf("dsrlb's own client: %v, drained %v", err, src.drained["198.18.0.12"])
	}

	req, _ = http.NewRequest("GET", base+"/status", nil)
	req.Host = "rebind.evil.example:9180"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /status with Host %s: %s, want 403", req.Host, resp.Status)
	}
	for _, host := range []string{"localhost:9180", "127.0.0.1", "[::1]:9180"} {
		req, _ = http.NewRequest("GET", base+"/status", nil)
		req.Host = host
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /status with Host %s: %s, want 200", host, resp.Status)
		}
	}
}

// A request with a body is refused before it acts, and at once, even when
// the body it announces never comes (the server would wait to discard it).
func TestRequestBodyRefused(t *testing.T) {
	src := &fakeSource{drained: map[string]bool{}}
	srv := httptest.NewServer(New(src, fakeCounters{}, nil, "v-test", nil).Handler())
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /backends/web/198.18.0.12/drain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // the body would be read for ReadTimeout (10 s) first
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a request whose body never came: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want %d", resp.StatusCode, http.StatusRequestEntityTooLarge)
	}
	if len(src.drained) != 0 {
		t.Errorf("a request with a body acted: %v", src.drained)
	}
}
