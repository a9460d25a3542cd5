package testbed

import (
	"os"
	"strings"
	"testing"
)

// Privileged: a testbed builds, has static FDB entries and drop rules, its
// counters read, and it leaves nothing behind.
func TestBuild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to build network namespaces")
	}
	bed, err := Build(Spec{Sinks: 2})
	if err != nil {
		t.Fatal(err)
	}
	names := bed.Net.Namespaces()
	defer func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
		for _, n := range names {
			if _, err := os.Stat("/run/netns/" + n); err == nil {
				t.Errorf("namespace %s left behind", n)
			}
		}
	}()
	if len(names) != 5 || !strings.HasPrefix(names[0], "dsrlbb-") {
		t.Fatalf("namespaces %v", names)
	}
	// br_netfilter's hooks are off where the module is loaded, and the bed
	// says whether it is.
	var hook []byte
	err = bed.Net.Switch.Do(func() (err error) {
		hook, err = os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		return err
	})
	if bed.BridgeNetfilterLoaded != (err == nil) || err == nil && strings.TrimSpace(string(hook)) != "0" {
		t.Errorf("bridge-nf-call-iptables in the switch namespace: %q, %v; the bed says br_netfilter loaded: %v", hook, err, bed.BridgeNetfilterLoaded)
	}
	out, err := bed.Net.Switch.Command("bridge", "fdb", "show", "br", "br0").CombinedOutput()
	if err != nil {
		t.Fatalf("bridge fdb show: %v\n%s", err, out)
	}
	for _, h := range bed.Hosts() {
		if !strings.Contains(string(out), h.MAC.String()+" dev "+h.Port+" master br0 static") {
			t.Errorf("no static FDB entry for %s on %s:\n%s", h.MAC, h.Port, out)
		}
	}
	out, err = bed.Sinks[1].NS.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "policy drop") {
		t.Errorf("sink ruleset: %v\n%s", err, out)
	}
	a, err := bed.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Ports) != 4 || len(a.PerCPU) == 0 {
		t.Errorf("snapshot: %d ports, %d CPUs", len(a.Ports), len(a.PerCPU))
	}
	if err := bed.RPS(bed.LB, CPUMask(2)); err != nil {
		t.Error(err)
	}
	if err := bed.RPS(bed.LB, "3 x"); err == nil {
		t.Error("RPS took a mask that is not hex")
	}
}
