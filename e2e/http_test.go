//go:build linux

package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Acceptance: 1,000 HTTP requests through `dsrlb run` reach three real
// servers; all succeed; each server's share is within 25-42%; the balancer
// transmits no frame whose IP source is the VIP (replies bypass it).
func TestHTTPBalancedAndRepliesBypass(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(family(vip), func(t *testing.T) {
			l := newDSRLab(t, 3)
			l.checkOffloads()
			l.startBalancer(l.config(l.servers, ""))
			lbSeen, stopLB := l.sniff(l.lb)
			clientSeen, stopClient := l.sniff(l.client)

			const n = 1000
			c := l.client.HTTPClient(false) // a new connection (flow) per request
			url := "http://" + netip.AddrPortFrom(vip, 80).String() + "/"
			count := map[string]int{}
			failed := 0
			for i := 0; i < n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				body, err := get(ctx, c, url)
				cancel()
				if err != nil {
					failed++
					t.Logf("request %d: %v", i, err)
					continue
				}
				count[strings.TrimSpace(body)]++
			}
			time.Sleep(50 * time.Millisecond) // let the sniffers drain
			stopLB()
			stopClient()
			if failed > 0 {
				t.Errorf("%d of %d requests failed", failed, n)
			}
			for _, s := range l.servers {
				share := float64(count[s.Name]) / n
				t.Logf("%s answered %d (%.1f%%)", s.Name, count[s.Name], 100*share)
				if share < 0.25 || share > 0.42 {
					t.Errorf("%s share %.1f%%, want 25-42%%", s.Name, 100*share)
				}
			}
			if got := lbSeen.out.Load(); got != 0 {
				t.Errorf("the balancer transmitted %d frames with source %s: replies did not bypass it", got, vip)
			}
			// The positive control: the client did receive VIP-sourced frames.
			if got := clientSeen.in.Load(); got < n {
				t.Errorf("client received %d frames from %s, want at least %d", got, vip, n)
			}
			out := l.stopBalancer()
			t.Logf("balancer: %s", lastLine(out))
			if !strings.Contains(out, "forwarded") {
				t.Errorf("no shutdown summary in balancer output:\n%s", out)
			}
			t.Logf("frames with source %s: %d sent by the balancer, %d received by the client", vip, lbSeen.out.Load(), clientSeen.in.Load())
		})
	}
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
