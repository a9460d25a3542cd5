//go:build linux

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A server without the VIP on lo but with IP forwarding on routes each
// client packet it gets back to the VIP, whose MAC the balancer announces,
// and Maglev picks that server again: without a guard the packet would
// circle between them until its TTL ran out. The balancer drops what the
// chosen backend itself sent (reason loop), so each datagram is forwarded
// once.
func TestForwardingLoopDropped(t *testing.T) {
	l := newDSRLab(t, 1)
	l.startBalancer(l.config(l.servers, ""))
	srv := l.servers[0]
	if out, err := l.dsrlb(srv, "server", "down"); err != nil {
		t.Fatalf("server down: %v\n%s", err, out)
	}
	if err := srv.NS.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	l.sendUDP(n, "around")

	var forwarded, loops float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		body, err := l.adminGet("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		forwarded, loops = 0, 0
		for _, m := range fams["dsrlb_backend_packets_total"].GetMetric() {
			if label(m, "service") == "udp4" {
				forwarded += m.GetCounter().GetValue()
			}
		}
		for _, m := range fams["dsrlb_worker_dropped_total"].GetMetric() {
			if label(m, "reason") == "loop" {
				loops += m.GetCounter().GetValue()
			}
		}
		if loops >= n || time.Now().After(deadline) {
			break
		}
	}
	if forwarded != n || loops != n {
		t.Fatalf("%d datagrams through a server that forwards them back: forwarded %v times, dropped as loops %v; want %d and %d", n, forwarded, loops, n, n)
	}
}
