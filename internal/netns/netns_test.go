package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to create network namespaces")
	}
}

func TestNewDoClose(t *testing.T) {
	requireRoot(t)
	name := UniquePrefix("dsrlbt") + "ns"
	n, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !Exists(name) {
		t.Fatalf("%s not in /run/netns", name)
	}
	// A link created inside must be visible inside only.
	err = n.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dsrlbtdummy0"}, PeerName: "dsrlbtdummy1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("dsrlbtdummy0"); err == nil {
		t.Fatal("dummy link created inside the namespace is visible outside")
	}
	out, err := n.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "dsrlbtdummy0") || !strings.Contains(string(out), "lo:") {
		t.Fatalf("ip link inside namespace: %s", out)
	}
	if !strings.Contains(string(out), "UP") {
		t.Fatalf("lo not up: %s", out)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatalf("%s still exists after Close", name)
	}
	if err := exec.Command("ip", "netns", "exec", name, "true").Run(); err == nil {
		t.Fatal("namespace still enterable after Close")
	}
}

func TestBadName(t *testing.T) {
	if _, err := New("bad/name"); err == nil || !strings.Contains(err.Error(), "bad/name") {
		t.Fatalf("got %v", err)
	}
}

// Namespaces named from UniquePrefix by a process that has died (its cleanup
// never ran) are deleted by the next UniquePrefix of the same base; those of
// running processes, other bases and names without a process ID stay.
func TestSweepStale(t *testing.T) {
	requireRoot(t)
	pid := deadPID(t)
	stale := fmt.Sprintf("dsrlbt-%d-abcdef-sw", pid)
	live := UniquePrefix("dsrlbt") + "sw"                      // ours
	other := fmt.Sprintf("dsrlbx-%d-abcdef-sw", pid)           // another base
	old := KeptPrefix("dsrlbt") + "sw"                         // no process ID: kept
	digits := "dsrlbt-k123456-sw"                              // a kept prefix of digits only
	short := fmt.Sprintf("dsrlbt-%d-client", pid)              // not the whole shape
	parent := fmt.Sprintf("dsrlbt-%d-abcdef-sw", os.Getppid()) // a running process
	for _, name := range []string{stale, live, other, old, digits, short, parent} {
		n, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
	}
	UniquePrefix("dsrlbt")
	if Exists(stale) {
		t.Errorf("%s (process %d is gone) survived the sweep", stale, pid)
	}
	for _, name := range []string{live, other, old, digits, short, parent} {
		if !Exists(name) {
			t.Errorf("%s was swept", name)
		}
	}
}

// deadPID returns the process ID of a process that has exited and been
// reaped: no such process now (unless the ID is taken again).
func deadPID(t *testing.T) int {
	t.Helper()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	return gone.Process.Pid
}
