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

// Acceptance (hostile 2): a SYN flood with random sources at the highest
// rate the built-in generator makes, while a real client talks to the VIP:
// the balancer's memory stays under the flow table's bound plus a fixed
// margin, the flow table evicts instead of growing, and the real client's
// requests succeed.
func TestSYNFlood(t *testing.T) {
	l := newDSRLab(t, 3)
	const flowEntries = 8192 // per worker: small, so the flood overflows it many times
	l.startBalancer(l.config(l.servers, "flow_table:\n  size: 8192\n"))
	pid := l.lbCmd.Process.Pid

	base, baseFailed := l.latencies(200)
	rssBefore := rssKiB(t, pid)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, err := gen.TxRing{}.Start(ctx, gen.Load{
		Interface: "eth0", NS: l.client.NS, SrcMAC: l.client.MAC, DstMAC: l.lb.MAC,
		VIP: netip.AddrPortFrom(vip4, 80), Flows: gen.MaxFlows, Traffic: gen.SYN, Threads: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let the flood fill the flow tables
	during, duringFailed := l.latencies(200)
	rssDuring := rssKiB(t, pid)
	st := l.status(t)
	res, err := run.Stop()
	if err != nil {
		t.Fatal(err)
	}

	var recv, fwd, evictions, live, capacity uint64
	for _, w := range st.Workers {
		recv += w.Received
		fwd += w.Forwarded()
		evictions += w.FlowEvictions
		live += w.FlowsLive
		capacity += w.FlowCapacity
	}
	// The bound: the rings (2 workers × 16 MiB, locked and populated) and the
	// flow tables, plus a fixed margin for the Go runtime, heap and binary.
	const ringKiB = 2 * 16 * 1024
	flowKiB := int(capacity) * 80 / 1024
	const marginKiB = 64 * 1024
	bound := ringKiB + flowKiB + marginKiB
	t.Logf("flood: generator sent %d SYNs; balancer received %d, forwarded %d; flow tables %d/%d entries, %d evictions",
		res.Sent, recv, fwd, live, capacity, evictions)
	t.Logf("RSS %d KiB before, %d KiB during the flood (bound %d KiB = rings %d + flow tables %d + margin %d)",
		rssBefore, rssDuring, bound, ringKiB, flowKiB, marginKiB)
	slow := 0
	for _, d := range during {
		if d > 900*time.Millisecond {
			slow++ // needed a SYN retransmission
		}
	}
	t.Logf("real client without flood: %d/200 ok, p50 %v p99 %v; during the flood: %d/200 ok, p50 %v p99 %v, %d needed a retransmission",
		200-baseFailed, pct(base, .5), pct(base, .99), 200-duringFailed, pct(during, .5), pct(during, .99), slow)

	if rssDuring > bound {
		t.Errorf("RSS %d KiB during the flood exceeds the bound %d KiB", rssDuring, bound)
	}
	if rssDuring-rssBefore > 16*1024 { // Go heap from status requests, not packets: the packet path does not allocate
		t.Errorf("RSS grew by %d KiB during the flood: memory is not bounded by the flow table", rssDuring-rssBefore)
	}
	if capacity != 2*flowEntries || live > capacity {
		t.Errorf("flow tables: %d live of %d, want capacity %d", live, capacity, 2*flowEntries)
	}
	if evictions == 0 || fwd < 100000 {
		t.Errorf("the flood did not overflow the flow tables (%d forwarded, %d evictions)", fwd, evictions)
	}
	if baseFailed > 0 || duringFailed > 0 {
		t.Errorf("real client failures: %d without the flood, %d during it", baseFailed, duringFailed)
	}
}
