package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/dsrlb/dsrlb/internal/realserver"
)

// Tier 2: the DSR prober on a lab segment of network namespaces, lb and two
// real servers on one bridge. Every packet stays inside namespaces this test
// creates and deletes.

// dsrTimeout bounds each probe: replies on a veth come in microseconds, and
// a passing IPv4 probe listens this long for an ARP answer.
const dsrTimeout = time.Second

type dsrLab struct {
	t      *testing.T
	lb     *labnet.Host
	srv    []*labnet.Host
	prober *PacketDSRProber
}

func newLabForDSR(t *testing.T) *dsrLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW) to build network namespaces")
	}
	n, err := labnet.Build(labnet.Spec{
		Prefix:  netns.UniquePrefix("dsrlbt"),
		Subnet4: netip.MustParsePrefix("198.18.0.0/24"),
		Subnet6: netip.MustParsePrefix("2001:db8:18::/64"),
		Hosts: []labnet.HostSpec{
			{Name: "lb", Addr4: lbAddr4, Addr6: lbAddr6},
			{Name: "srv1", Addr4: netip.MustParseAddr("198.18.0.11"), Addr6: netip.MustParseAddr("2001:db8:18::11")},
			{Name: "srv2", Addr4: netip.MustParseAddr("198.18.0.12"), Addr6: netip.MustParseAddr("2001:db8:18::12")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("tear down lab: %v", err)
		}
	})
	l := &dsrLab{t: t, lb: n.Host("lb"), srv: []*labnet.Host{n.Host("srv1"), n.Host("srv2")}}
	for _, h := range l.srv {
		ln, err := h.Listen("tcp", ":80") // every address, the VIPs included
		if err != nil {
			t.Fatal(err)
		}
		holdConns(t, ln)
		l.do(h, func() error {
			return realserver.Up(realserver.Options{
				VIPs:       []netip.Addr{vip4, vip6},
				Interfaces: []string{"eth0"},
				StatePath:  filepath.Join(t.TempDir(), "state.json"),
			}, nil)
		})
	}
	l.do(l.lb, func() error {
		l.prober, err = NewDSRProber("eth0")
		return err
	})
	t.Cleanup(func() { l.prober.Close() })
	return l
}

// do runs fn inside h's namespace and fails the test if it fails.
func (l *dsrLab) do(h *labnet.Host, fn func() error) {
	l.t.Helper()
	if err := h.NS.Do(fn); err != nil {
		l.t.Fatalf("host %s: %v", h.Name, err)
	}
}

func (l *dsrLab) mac(i int) [6]byte { return [6]byte(l.srv[i].MAC) }

func (l *dsrLab) probe(i int, vip netip.Addr, port uint16) error {
	ctx, cancel := context.WithTimeout(context.Background(), dsrTimeout)
	defer cancel()
	return l.prober.ProbeDSR(ctx, vip, port, l.mac(i))
}

// probeAll probes every server's vip:80 times times each, all at once.
func (l *dsrLab) probeAll(vip netip.Addr, times int) [][]error {
	res := make([][]error, len(l.srv))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range l.srv {
		for range times {
			wg.Go(func() {
				err := l.probe(i, vip, 80)
				mu.Lock()
				res[i] = append(res[i], err)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return res
}

func vipOnLo(vip netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(vip, vip.BitLen()))}
	if vip.Is4() {
		a.Scope = unix.RT_SCOPE_HOST
	} else {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// setLoVIP adds vip to (or removes it from) server i's lo, as `dsrlb server
// up` has it.
func (l *dsrLab) setLoVIP(i int, vip netip.Addr, present bool) {
	l.t.Helper()
	l.setVIP(i, "lo", vip, present)
}

// setVIPOn adds an IPv6 vip to (or removes it from) server i's eth0, as a
// server set up without the companion mode would hold it.
func (l *dsrLab) setVIPOn(i int, vip netip.Addr, present bool) {
	l.t.Helper()
	l.setVIP(i, "eth0", vip, present)
}

func (l *dsrLab) setVIP(i int, dev string, vip netip.Addr, present bool) {
	l.t.Helper()
	l.do(l.srv[i], func() error {
		link, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if present {
			return netlink.AddrAdd(link, vipOnLo(vip))
		}
		return netlink.AddrDel(link, vipOnLo(vip))
	})
}

// setARP writes value to server i's net.ipv4.conf.{all,eth0}.key.
func (l *dsrLab) setARP(i int, key, value string) {
	l.t.Helper()
	l.do(l.srv[i], func() error {
		for _, dev := range []string{"all", "eth0"} {
			path := "/proc/sys/net/ipv4/conf/" + dev + "/" + key
			if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
		return nil
	})
}

// forgetNeighbour deletes server i's neighbour entry for ip on eth0, if it
// has one, so that the next packet it sends to ip makes it ARP.
func (l *dsrLab) forgetNeighbour(i int, ip netip.Addr) {
	l.t.Helper()
	l.do(l.srv[i], func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		list, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list neighbours of eth0: %w", err)
		}
		for _, n := range list {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
				if err := netlink.NeighDel(&n); err != nil {
					return fmt.Errorf("delete neighbour %s on eth0: %w", ip, err)
				}
			}
		}
		return nil
	})
}

func TestDSRProbeLab(t *testing.T) {
	l := newLabForDSR(t)
	reason := func(i int, vip netip.Addr, port uint16) string {
		return dsrName(vip, port, l.mac(i)) + ": "
	}

	t.Run("up", func(t *testing.T) {
		for i, errs := range l.probeAll(vip4, 4) {
			for _, err := range errs {
				if err != nil {
					t.Errorf("srv%d: %v", i+1, err)
				}
			}
		}
	})

	t.Run("closed port", func(t *testing.T) {
		err := l.probe(0, vip4, 81)
		if want := reason(0, vip4, 81) + "connection refused (RST)"; err == nil || err.Error() != want {
			t.Fatalf("got %v, want %q", err, want)
		}
	})

	t.Run("server sends ARP requests from the VIP", func(t *testing.T) {
		// arp_ignore stays 1, so srv1 ignores our ARP request (and learns
		// nothing from it); with arp_announce=0 it resolves our address for
		// its SYN-ACK, sent from the VIP, with an ARP request whose sender
		// is the VIP. It ARPs only without an entry for us: the earlier
		// probes left one, so it goes first.
		l.setARP(0, "arp_announce", "0")
		defer l.setARP(0, "arp_announce", "2") // as server up left it
		l.forgetNeighbour(0, lbAddr4)
		err := l.probe(0, vip4, 80)
		want := reason(0, vip4, 80) + "server sends ARP requests from VIP 198.18.0.100 (arp_announce is not 2: run dsrlb server up)"
		if err == nil || err.Error() != want {
			t.Errorf("srv1 with arp_announce=0: %v, want %q", err, want)
		}
		if err := l.probe(1, vip4, 80); err != nil {
			t.Errorf("srv2, after srv1's broadcast: %v", err)
		}
	})

	t.Run("VIP missing from lo", func(t *testing.T) {
		l.setLoVIP(0, vip4, false)
		res := l.probeAll(vip4, 2)
		for _, err := range res[0] {
			if want := reason(0, vip4, 80) + "no SYN-ACK (is the VIP on the server's lo?)"; err == nil || err.Error() != want {
				t.Errorf("srv1 without the VIP: %v, want %q", err, want)
			}
		}
		for _, err := range res[1] {
			if err != nil {
				t.Errorf("srv2, probed at the same time: %v", err)
			}
		}
	})

	t.Run("server answers ARP", func(t *testing.T) {
		l.setLoVIP(0, vip4, true)
		if err := l.probe(0, vip4, 80); err != nil {
			t.Fatalf("srv1 with the VIP back: %v", err)
		}
		l.do(l.srv[0], func() error {
			for _, f := range []string{"all/arp_ignore", "all/arp_announce", "eth0/arp_ignore", "eth0/arp_announce"} {
				if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+f, []byte("0\n"), 0o644); err != nil {
					return err
				}
			}
			return nil
		})
		res := l.probeAll(vip4, 2)
		for _, err := range res[0] {
			want := reason(0, vip4, 80) + "server answers ARP for VIP 198.18.0.100 (arp_ignore/arp_announce not set: run dsrlb server up)"
			if err == nil || err.Error() != want {
				t.Errorf("srv1 with arp_ignore=0: %v, want %q", err, want)
			}
		}
		for _, err := range res[1] {
			if err != nil {
				t.Errorf("srv2, probed at the same time: %v", err)
			}
		}
	})

	t.Run("IPv6", func(t *testing.T) {
		for i, errs := range l.probeAll(vip6, 2) {
			for _, err := range errs {
				if err != nil {
					t.Errorf("srv%d: %v", i+1, err)
				}
			}
		}
		// srv1 holds the VIP on its NIC instead: it takes the VIP's
		// connections, and answers neighbour solicitations for it.
		// An IPv6 address takes effect a moment after it is added (its
		// local route comes from the kernel's address work queue): each
		// verdict is awaited, up to a deadline, not taken from one probe.
		await := func(what string, ok func(error) bool) error {
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				if err = l.probe(0, vip6, 80); ok(err) {
					return nil
				}
			}
			return fmt.Errorf("%s: %v", what, err)
		}
		l.setLoVIP(0, vip6, false)
		l.setVIPOn(0, vip6, true)
		want := reason(0, vip6, 80) + "server answers neighbour solicitations for VIP 2001:db8:18::100 (is the VIP on its NIC instead of lo? run dsrlb server up)"
		if err := await("srv1 with the IPv6 VIP on eth0", func(err error) bool { return err != nil && err.Error() == want }); err != nil {
			t.Errorf("%v, want %q", err, want)
		}
		l.setVIPOn(0, vip6, false)
		l.setLoVIP(0, vip6, true)
		if err := await("srv1 with the IPv6 VIP back on lo", func(err error) bool { return err == nil }); err != nil {
			t.Error(err)
		}
		l.setLoVIP(1, vip6, false)
		err := l.probe(1, vip6, 80)
		if want := reason(1, vip6, 80) + "no SYN-ACK (is the VIP on the server's lo?)"; err == nil || err.Error() != want {
			t.Fatalf("srv2 without the IPv6 VIP: %v, want %q", err, want)
		}
	})

	t.Run("with a tcp check", func(t *testing.T) {
		// The real address answers on both servers; only srv2's DSR path
		// works (srv1 answers ARP). The TCP connect runs on the calling
		// goroutine, here inside lb's namespace.
		p, err := NewProber(Spec{Kind: KindTCP, VIP: true, Timeout: dsrTimeout}, l.prober)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range l.srv {
			tg := Target{Addr: h.Addr4, Port: 80, VIP: vip4, MAC: l.mac(i)}
			var perr error
			l.do(l.lb, func() error { perr = p.Probe(context.Background(), tg); return nil })
			switch {
			case i == 0 && (perr == nil || strings.Contains(perr.Error(), "tcp connect") || !strings.Contains(perr.Error(), "server answers ARP")):
				t.Errorf("srv1: %v, want only the ARP failure", perr)
			case i == 1 && perr != nil:
				t.Errorf("srv2: %v", perr)
			}
		}
	})

	t.Run("close", func(t *testing.T) {
		// Close waits for the readers; it must not hang (failing here
		// rather than timing out keeps the lab's cleanup running).
		done := make(chan error, 1)
		go func() { done <- l.prober.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(watchdog):
			t.Fatal("Close did not return: a reader is still running")
		}
		// With the address cache expired, as it is when Close comes more
		// than 5 s after the last probe: the closed netlink handle must
		// not be read.
		pl := l.prober.link.(*packetLink)
		pl.mu.Lock()
		pl.addrsAt = time.Time{}
		pl.mu.Unlock()
		if err := l.probe(1, vip4, 80); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("probe after Close: %v", err)
		}
	})
}
