package netns

import (
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
