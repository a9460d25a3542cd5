package e2e

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Acceptance: `dsrlb lab` (the README's first command) passes, and a second
// lab running at the same time does not break the first.
func TestLabCommand(t *testing.T) {
	requireRoot(t)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i, args := range [][]string{{"lab", "--ipv6"}, {"lab", "--requests", "300"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(dsrlbBin, args...).CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || !strings.Contains(outs[i], "OK: every request answered, no reply through the balancer") {
			t.Errorf("lab %d: %v\n%s", i, errs[i], outs[i])
		}
		if !strings.Contains(outs[i], "frames sent by the balancer with source VIP: 0") {
			t.Errorf("lab %d: no bypass evidence in the report", i)
		}
	}
	if !strings.Contains(outs[0], "IPv6 via VIP") {
		t.Errorf("lab --ipv6 did not test IPv6:\n%s", outs[0])
	}
}
