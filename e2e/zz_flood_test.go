//go:build linux

package e2e

// This file's name makes the flood run last (go test runs a package's tests
// in file order): tearing down namespaces that took millions of SYNs keeps
// the kernel busy (and its netlink lock held) for a while afterwards, which
// delays the netlink calls of tests that would run next.

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/bench/gen"
)

// latencies sends n requests on new connections and returns the successes'
// latencies and the failures. Each request may take 10 s: long enough for
// TCP to retransmit a SYN that a flood crowded out (after 1 s and 3 s).
func (l *dsrLab) latencies(n int) (ok []time.Duration, failed int) {
	c := l.client.HTTPClient(false)
	for i := 0; i < n; i++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := get(ctx, c, "http://"+vip4.String()+"/")
		cancel()
		if err != nil {
			failed++
			continue
		}
		ok = append(ok, time.Since(start))
	}
	slices.Sort(ok)
	return ok, failed
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func rssKiB(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// floodFrames is how many SYNs each flood has the balancer forward before it
// is measured: many more than the flow tables hold.
const floodFrames = 100000

// floodResult is what one flood phase of TestSYNFlood saw.
type floodResult struct {
	sent, recv, fwd, evictions, live, capacity, tracking uint64
	rssBefore, rssDuring                                 int
	during                                               []time.Duration
	failed                                               int
}

// flood runs the built-in generator's SYN flood with random sources at its
// highest rate for a second, then measures 200 real requests during it and
// reads the balancer's status and memory before stopping it.
func (l *dsrLab) flood(t *testing.T, until uint64) floodResult {
	pid := l.lbCmd.Process.Pid
	var r floodResult
	r.rssBefore = rssKiB(t, pid)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, err := gen.TxRing{}.Start(ctx, gen.Load{
		Interface: "eth0", NS: l.client.NS, SrcMAC: l.client.MAC, DstMAC: l.lb.MAC,
		VIP: netip.AddrPortFrom(vip4, 80), Flows: gen.MaxFlows, Traffic: gen.SYN, Threads: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Let the flood fill the flow tables, if it can: until the balancer has
	// forwarded until frames in all (a count, not a rate: a slow machine
	// takes longer), or 30 s.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var fwd uint64
		for _, w := range l.status(t).Workers {
			fwd += w.Forwarded()
		}
		if fwd >= until {
			break
		}
	}
	r.during, r.failed = l.latencies(200)
	r.rssDuring = rssKiB(t, pid)
	st := l.status(t)
	res, err := run.Stop()
	if err != nil {
		t.Fatal(err)
	}
	r.sent = res.Sent
	for _, w := range st.Workers {
		r.recv += w.Received
		r.fwd += w.Forwarded()
		r.evictions += w.FlowEvictions
		r.live += w.FlowsLive
		r.capacity += w.FlowCapacity
		r.tracking += w.FlowTracking
	}
	return r
}

// Acceptance (hostile 2): a SYN flood with random sources at the highest
// rate the built-in generator makes, while a real client talks to the VIP:
// the balancer's memory stays under the flow table's bound plus a fixed
// margin and the real client's requests succeed. In the steady state the
// flood leaves the flow tables untouched (the workers keep no flow state);
// after a table change, while the workers track flows, the flow tables evict
// instead of growing.
func TestSYNFlood(t *testing.T) {
	l := newDSRLab(t, 3)
	const flowEntries = 8192 // per worker: small, so the flood overflows it many times
	extra := "flow_table:\n  size: 8192\n"
	l.startBalancer(l.config(l.servers, extra))

	base, baseFailed := l.latencies(200)
	t.Logf("real client without flood: %d/200 ok, p50 %v p99 %v", 200-baseFailed, pct(base, .5), pct(base, .99))
	if baseFailed > 0 {
		t.Errorf("real client failures without the flood: %d", baseFailed)
	}

	steady := l.flood(t, floodFrames)
	// A backend leaves: the workers track flows from their next frame on.
	l.reload(l.config(l.servers[:2], extra))
	if _, ok := l.waitLog("configuration reloaded", 5*time.Second); !ok {
		t.Fatalf("no reload\n%s", l.lbOut.String())
	}
	tracking := l.flood(t, steady.fwd+floodFrames)

	// The bound: the rings (2 workers × 16 MiB, locked and populated) and the
	// flow tables, plus a fixed margin for the Go runtime, heap and binary.
	const ringKiB = 2 * 16 * 1024
	flowKiB := int(steady.capacity) * 80 / 1024
	const marginKiB = 64 * 1024
	bound := ringKiB + flowKiB + marginKiB
	for _, c := range []struct {
		name string
		r    floodResult
	}{{"steady state", steady}, {"after a table change", tracking}} {
		r := c.r
		slow := 0
		for _, d := range r.during {
			if d > 900*time.Millisecond {
				slow++ // needed a SYN retransmission
			}
		}
		t.Logf("%s: generator sent %d SYNs; balancer received %d, forwarded %d; %d workers tracking; flow tables %d/%d entries, %d evictions",
			c.name, r.sent, r.recv, r.fwd, r.tracking, r.live, r.capacity, r.evictions)
		t.Logf("%s: RSS %d KiB before, %d KiB during the flood (bound %d KiB = rings %d + flow tables %d + margin %d)",
			c.name, r.rssBefore, r.rssDuring, bound, ringKiB, flowKiB, marginKiB)
		t.Logf("%s: real client during the flood: %d/200 ok, p50 %v p99 %v, %d needed a retransmission",
			c.name, 200-r.failed, pct(r.during, .5), pct(r.during, .99), slow)
		if r.rssDuring > bound {
			t.Errorf("%s: RSS %d KiB during the flood exceeds the bound %d KiB", c.name, r.rssDuring, bound)
		}
		if r.rssDuring-r.rssBefore > 16*1024 { // Go heap from status requests, not packets: the packet path does not allocate
			t.Errorf("%s: RSS grew by %d KiB during the flood: memory is not bounded by the flow table", c.name, r.rssDuring-r.rssBefore)
		}
		if r.capacity != 2*flowEntries || r.live > r.capacity {
			t.Errorf("%s: flow tables: %d live of %d, want capacity %d", c.name, r.live, r.capacity, 2*flowEntries)
		}
		if r.failed > 0 {
			t.Errorf("%s: %d real client failures during the flood", c.name, r.failed)
		}
	}
	if steady.tracking != 0 || steady.live != 0 || steady.evictions != 0 || steady.fwd < floodFrames {
		t.Errorf("steady state: %d workers tracking, %d flow-table entries, %d evictions after %d forwarded; want none of either",
			steady.tracking, steady.live, steady.evictions, steady.fwd)
	}
	if tracking.tracking != 2 || tracking.evictions == 0 || tracking.fwd-steady.fwd < floodFrames {
		t.Errorf("after a table change: %d workers tracking, %d evictions, %d forwarded by the second flood: the flood did not overflow the flow tables",
			tracking.tracking, tracking.evictions, tracking.fwd-steady.fwd)
	}
}
