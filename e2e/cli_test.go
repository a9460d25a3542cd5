//go:build linux

package e2e

import (
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// twoHosts builds a bare segment with a balancer and one server, nothing
// prepared.
func twoHosts(t *testing.T) *labnet.Net {
	requireRoot(t)
	n, err := labnet.Build(labnet.Spec{
		Prefix:  netns.UniquePrefix("dsrlbt"),
		Subnet4: netip.MustParsePrefix("198.18.0.0/24"),
		Hosts: []labnet.HostSpec{
			{Name: "lb", Addr4: netip.MustParseAddr("198.18.0.1")},
			{Name: "srv1", Addr4: netip.MustParseAddr("198.18.0.11")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func runIn(h *labnet.Host, args ...string) (string, int) {
	out, err := h.NS.Command(dsrlbBin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return string(out), code
}

// Acceptance: `server check` on a bare host lists the missing VIP and the
// ARP settings and fails; after `server up` it passes; `server down` leaves
// the host as it was (values checked in the realserver package's tests too).
func TestServerCommands(t *testing.T) {
	n := twoHosts(t)
	srv := n.Host("srv1")
	out, code := runIn(srv, "server", "check", "--vip", "198.18.0.100")
	if code != 1 {
		t.Fatalf("check on a bare host: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"lo address 198.18.0.100/32: want present, got missing", "net.ipv4.conf.all.arp_ignore: want 1, got 0", "net.ipv4.conf.all.arp_announce: want 2, got 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if out, code := runIn(srv, "server", "up", "--vip", "198.18.0.100", "--interface", "eth0"); code != 0 {
		t.Fatalf("up: %d\n%s", code, out)
	}
	if out, code := runIn(srv, "server", "check", "--vip", "198.18.0.100"); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("check after up: %d\n%s", code, out)
	}
	if out, code := runIn(srv, "server", "down"); code != 0 {
		t.Fatalf("down: %d\n%s", code, out)
	}
	if again, code := runIn(srv, "server", "check", "--vip", "198.18.0.100"); code != 1 || again != out {
		t.Fatalf("check after down: exit %d, want exactly the bare host's problems back\n%s\nwant:\n%s", code, again, out)
	}
}

// Acceptance: a VIP that is an address of the balancer's own kernel is
// refused with a clear message, and so is a balancer whose kernel forwards.
func TestRunRefusesUnsafeHost(t *testing.T) {
	n := twoHosts(t)
	lb := n.Host("lb")
	out, code := runIn(lb, "run", "--interface", "eth0", "--vip", "198.18.0.1:80/tcp", "--backend", "198.18.0.11")
	if code != 1 || !strings.Contains(out, "VIP 198.18.0.1 is an address of this host") {
		t.Errorf("VIP owned by the kernel: exit %d\n%s", code, out)
	}
	if o, err := lb.NS.Command("sysctl", "-qw", "net.ipv4.conf.all.forwarding=1").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	// Without nft, a kernel that forwards would route VIP traffic too.
	cmd := lb.NS.Command(dsrlbBin, "run", "--interface", "eth0", "--vip", "198.18.0.100:80/tcp", "--backend", "198.18.0.11")
	cmd.Env = []string{"PATH=/nonexistent"}
	o, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(o), "net.ipv4.conf.all.forwarding is on") {
		t.Errorf("forwarding on, no nft: %v\n%s", err, o)
	}
	// With nft, dsrlb drops VIP frames at netdev ingress (after its taps),
	// so the kernel never sees them: forwarding may stay on. The table goes
	// when dsrlb stops.
	run := lb.NS.Command(dsrlbBin, "run", "--interface", "eth0", "--vip", "198.18.0.100:80/tcp", "--backend", "198.18.0.11,mac=02:00:00:00:00:99", "--admin", "")
	var buf syncbuf.Buffer
	run.Stdout, run.Stderr = &buf, &buf
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "dsrlb running") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	table, err := lb.NS.Command("nft", "list", "table", "netdev", "dsrlb_eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(table), "ip daddr 198.18.0.100 counter") {
		t.Errorf("netdev ingress drop while running: %v\n%s\n%s", err, table, buf.String())
	}
	run.Process.Signal(syscall.SIGTERM)
	if err := run.Wait(); err != nil {
		t.Errorf("dsrlb exited with %v\n%s", err, buf.String())
	}
	if out, err := lb.NS.Command("nft", "list", "table", "netdev", "dsrlb_eth0").CombinedOutput(); err == nil {
		t.Errorf("netdev table left behind after shutdown:\n%s", out)
	}
	out, code = runIn(lb, "run", "--interface", "nosuch0", "--vip", "198.18.0.100:80/tcp", "--backend", "198.18.0.11")
	if code != 1 || !strings.Contains(out, "nosuch0") {
		t.Errorf("missing interface: exit %d\n%s", code, out)
	}
}
