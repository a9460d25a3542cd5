//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/admin"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// adminGet fetches path from the balancer's admin endpoint, from inside the
// balancer's namespace (it listens on its loopback).
// sendUDP sends n datagrams of msg from the client to vip4:5353, one flow.
func (l *dsrLab) sendUDP(n int, msg string) {
	t := l.t
	t.Helper()
	c, err := l.client.Dial(context.Background(), "udp", fmt.Sprintf("%s:5353", vip4))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(5 * time.Millisecond) // stay clear of socket buffers
		}
	}
}

func (l *dsrLab) adminGet(path string) (string, error) {
	c := l.lb.HTTPClient(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return get(ctx, c, "http://127.0.0.1:9180"+path)
}

func (l *dsrLab) status(t *testing.T) *admin.Status {
	t.Helper()
	body, err := l.adminGet("/status")
	if err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// Acceptance (ops 1, 2): a reload under steady load that re-weights one
// backend and adds another breaks no connection, and the table's shares
// follow the weights; an invalid file is rejected with field errors and
// traffic goes on unchanged.
func TestReloadUnderLoad(t *testing.T) {
	l := newDSRLab(t, 4)
	three := l.servers[:3]
	l.startBalancer(webConfig(three, "", nil))
	g := l.startLoad("http://"+vip4.String()+"/", 6, 3, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	l.reload(webConfig(l.servers, "", map[string]int{"srv1": 3}))
	if _, ok := l.waitLog("configuration reloaded", 5*time.Second); !ok {
		t.Fatalf("no reload\n%s", l.lbOut.String())
	}
	// The new backend needs its MAC resolved before it enters the table.
	deadline := time.Now().Add(5 * time.Second)
	var st *admin.Status
	for {
		st = l.status(t)
		if len(st.Services[0].Backends) == 4 && st.Services[0].Backends[3].State == "up" && st.Services[0].Backends[3].Slots > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("srv4 not in the table after the reload: %+v", st.Services[0].Backends)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := map[string]float64{"198.18.0.11": 0.5, "198.18.0.12": 1. / 6, "198.18.0.13": 1. / 6, "198.18.0.14": 1. / 6}
	for _, b := range st.Services[0].Backends {
		if math.Abs(b.Share-want[b.Address]) > 0.01 {
			t.Errorf("%s: share %.3f, want %.3f", b.Address, b.Share, want[b.Address])
		}
	}

	// An invalid file: refused with its field errors, nothing changes.
	if err := os.WriteFile(l.cfgPath, []byte(strings.Replace(webConfig(l.servers, "", nil), "port: 80", "port: 80000", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := l.lb.NS.Command(dsrlbBin, "reload").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "services[0].port: must be between 0 and 65535, got 80000 (line 7)") {
		t.Errorf("invalid reload: %v\n%s", err, out)
	}
	if after := l.status(t); after.Builds != st.Builds {
		t.Errorf("an invalid reload published a table (%d builds, was %d)", after.Builds, st.Builds)
	}
	time.Sleep(500 * time.Millisecond)
	results := g.stop()
	failed, toNew := 0, 0
	for _, r := range results {
		if r.err != nil {
			failed++
			t.Logf("failed: worker %d keepalive=%v (last %s): %v", r.worker, r.keepAlive, r.server, r.err)
		}
		if r.server == "srv4" {
			toNew++
		}
	}
	t.Logf("%d requests through two reloads, %d failed, %d answered by the added backend", len(results), failed, toNew)
	if failed > 0 {
		t.Errorf("%d requests failed across the reloads", failed)
	}
	if toNew == 0 {
		t.Error("the added backend got no request")
	}
}

// Acceptance (ops 3, 4): /metrics parses as Prometheus text and its
// forwarded-packet counters are exact; `dsrlb status` shows the running
// balancer.
func TestMetricsAndStatus(t *testing.T) {
	l := newDSRLab(t, 3)
	l.startBalancer(l.config(l.servers, ""))
	const n = 400
	l.sendUDP(n, "count me")

	var udp float64
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		body, err := l.adminGet("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err = parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		udp = 0
		for _, m := range fams["dsrlb_backend_packets_total"].GetMetric() {
			if label(m, "service") == "udp4" {
				udp += m.GetCounter().GetValue()
			}
		}
		if udp >= n || time.Now().After(deadline) {
			break
		}
	}
	if udp != n {
		t.Errorf("dsrlb_backend_packets_total for udp4 sums to %v, want exactly %d", udp, n)
	}
	var perBackend, perWorker float64
	for _, m := range fams["dsrlb_backend_packets_total"].GetMetric() {
		perBackend += m.GetCounter().GetValue()
	}
	for _, m := range fams["dsrlb_worker_forwarded_total"].GetMetric() {
		perWorker += m.GetCounter().GetValue()
	}
	if perBackend != perWorker || perWorker < n {
		t.Errorf("forwarded: %v by backend, %v by worker", perBackend, perWorker)
	}
	// Every frame a worker takes from its ring is counted once in its
	// ring-wait histogram.
	received := map[string]float64{}
	for _, m := range fams["dsrlb_worker_received_total"].GetMetric() {
		received[label(m, "worker")] = m.GetCounter().GetValue()
	}
	waits := fams["dsrlb_worker_ring_wait_seconds"].GetMetric()
	if len(waits) != len(received) || len(waits) == 0 {
		t.Errorf("ring wait histograms for %d workers, received counters for %d", len(waits), len(received))
	}
	for _, m := range waits {
		h, w := m.GetHistogram(), label(m, "worker")
		if float64(h.GetSampleCount()) != received[w] || h.GetSampleSum() < 0 {
			t.Errorf("worker %s: ring wait counts %d frames (sum %vs), received_total %v", w, h.GetSampleCount(), h.GetSampleSum(), received[w])
		}
		t.Logf("worker %s: %d frames waited %.1f µs on average in the ring", w, h.GetSampleCount(), 1e6*h.GetSampleSum()/max(1, float64(h.GetSampleCount())))
	}
	for _, name := range []string{"dsrlb_build_info", "dsrlb_backend_up", "dsrlb_worker_ring_drops_total", "dsrlb_worker_flow_table_capacity", "dsrlb_table_builds_total", "dsrlb_worker_dropped_total"} {
		if fams[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}

	out, err := l.lb.NS.Command(dsrlbBin, "status").CombinedOutput()
	if err != nil {
		t.Fatalf("dsrlb status: %v\n%s", err, out)
	}
	text := string(out)
	t.Logf("dsrlb status:\n%s", text)
	for _, want := range []string{"on eth0", "2 workers", "SERVICE", "udp4", "web6", "198.18.0.13", "2001:db8:18::11"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "udp4 ") {
			f := strings.Fields(line)
			if len(f) < 9 || f[3] != "up" {
				t.Errorf("udp4 row: %q", line)
			}
		}
	}
	if out, err := l.client.NS.Command(dsrlbBin, "status").CombinedOutput(); err == nil || !strings.Contains(string(out), "no balancer answers on 127.0.0.1:9180") {
		t.Errorf("status with no balancer in the namespace: %v\n%s", err, out)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// cpus: pins every worker thread to the listed CPU, and the balancer still
// forwards (startBalancer waits for an HTTP answer through the VIP).
func TestWorkersPinned(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to pin workers off CPU 0")
	}
	l := newDSRLab(t, 3)
	l.startBalancer(l.config(l.servers, "cpus: \"1\"\n"))
	pid := l.lbCmd.Process.Pid
	// The workers start after the balancer says it runs, each setting its
	// own priority, then its CPUs: look until both have, or a deadline
	// passes.
	var workers []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		workers = workerThreads(t, pid)
		if len(workers) >= 2 && !slices.ContainsFunc(workers, func(w string) bool { return w != "1" }) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("worker threads' allowed CPUs: %v", workers)
	if len(workers) != 2 {
		t.Fatalf("found %d worker threads (nice -10), want 2 (workers: 2)", len(workers))
	}
	for _, w := range workers {
		if w != "1" {
			t.Errorf("a worker may run on CPUs %q, want 1", w)
		}
	}
}

// workerThreads returns the allowed-CPU lists of pid's worker threads: the
// threads at nice -10.
func workerThreads(t *testing.T, pid int) []string {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of pid %d: %v", pid, err)
	}
	var workers []string
	for _, task := range tasks {
		stat, err1 := os.ReadFile(task + "/stat")
		status, err2 := os.ReadFile(task + "/status")
		if err1 != nil || err2 != nil {
			continue // the thread ended
		}
		// Workers are the threads at nice -10 (field 19 of stat, after
		// the parenthesised name).
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 17 || f[16] != "-10" {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				workers = append(workers, strings.TrimSpace(v))
			}
		}
	}
	return workers
}

// With fanout: cpu (two workers on CPUs 0 and 1) the balancer starts, says
// so and serves the client, and each worker takes the frames received on
// its CPU: datagrams the client sends from a thread pinned to CPU c (on a
// veth, received on c) all reach worker c.
func TestFanoutCPU(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs, one per worker")
	}
	l := newDSRLab(t, 3)
	l.startBalancer(l.config(l.servers, "cpus: \"0,1\"\nfanout: cpu\n"))
	if !strings.Contains(l.lbOut.String(), "fanout=cpu") {
		t.Errorf("the start log does not say fanout=cpu:\n%s", l.lbOut.String())
	}
	if _, failed := l.latencies(20); failed > 0 {
		t.Errorf("%d of 20 requests failed with fanout cpu", failed)
	}
	received := func() (r [2]uint64) {
		st := l.status(t)
		if len(st.Workers) != 2 {
			t.Fatalf("%d workers, want 2", len(st.Workers))
		}
		return [2]uint64{st.Workers[0].Received, st.Workers[1].Received}
	}
	const n = 200
	for cpu := range 2 {
		// The last frames of the requests above must not land in the window.
		early := received()
		before := settled(received, func(a, b [2]uint64) bool { return a == b }, 300*time.Millisecond, 5*time.Second)
		if before != early {
			t.Logf("%v frames of earlier traffic came in late", [2]uint64{before[0] - early[0], before[1] - early[1]})
		}
		err := l.client.NS.Do(func() error { // on a locked thread of its own
			var old, set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				return err
			}
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			defer unix.SchedSetaffinity(0, &old)
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			to := &unix.SockaddrInet4{Port: 9, Addr: vip4.As4()}
			for i := range n {
				if err := unix.Sendto(fd, []byte{byte(i)}, 0, to); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("send from CPU %d: %v", cpu, err)
		}
		var got [2]uint64
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			after := received()
			got = [2]uint64{after[0] - before[0], after[1] - before[1]}
			if got[cpu] >= n {
				break
			}
		}
		t.Logf("%d datagrams from CPU %d: workers received %v more frames", n, cpu, got)
		if got[cpu] < n || got[1-cpu] != 0 {
			t.Errorf("%d datagrams sent from CPU %d: workers received %v more, want all on worker %d", n, cpu, got, cpu)
		}
	}
}
