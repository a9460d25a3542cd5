//go:build linux

package e2e

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/vishvananda/netlink"
)

// With vip_mac: auto the VIPs answer on a virtual MAC, as on a hardware L4
// switch: clients resolve the VIPs (ARP and NDP) to it, forwarded frames
// leave from it, and dsrlb installs no nft rule: the balancer's kernel drops
// VIP frames by itself, since they are not addressed to its MAC.
func TestVirtualVIPMAC(t *testing.T) {
	l := newDSRLab(t, 2)
	vmac := dataplane.VirtualMAC(l.lb.MAC)
	if bytes.Equal(vmac, l.lb.MAC) {
		t.Fatalf("virtual MAC %s is the interface's", vmac)
	}
	// Frames arriving at the servers for a VIP, by source MAC.
	var mu sync.Mutex
	bySrc := map[string]int{}
	for _, s := range l.servers {
		ctx, cancel := context.WithCancel(context.Background())
		stop, err := s.Sniff(ctx, func(f []byte, out bool) {
			if out || len(f) < 54 {
				return
			}
			var dst netip.Addr
			switch {
			case f[12] == 0x08 && f[13] == 0x00:
				dst = netip.AddrFrom4([4]byte(f[30:34]))
			case f[12] == 0x86 && f[13] == 0xdd:
				dst = netip.AddrFrom16([16]byte(f[38:54]))
			}
			if dst == vip4 || dst == vip6 {
				mu.Lock()
				bySrc[net.HardwareAddr(f[6:12]).String()]++
				mu.Unlock()
			}
		})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); stop() })
	}
	l.startBalancer(l.config(l.servers, "vip_mac: auto\n"))
	if out := l.lbOut.String(); !strings.Contains(out, "virtual MAC") || !strings.Contains(out, vmac.String()) {
		t.Errorf("the balancer did not say it answers on %s:\n%s", vmac, out)
	}

	c := l.client.HTTPClient(false)
	for _, vip := range []netip.Addr{vip4, vip6} {
		for range 10 {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := get(ctx, c, "http://"+netip.AddrPortFrom(vip, 80).String()+"/")
			cancel()
			if err != nil {
				t.Fatalf("GET via %s: %v", vip, err)
			}
		}
	}

	// The client resolved both VIPs to the virtual MAC.
	h, err := l.client.NS.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		neighs, err := h.NeighList(0, fam)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && (a.Unmap() == vip4 || a == vip6) {
				found = true
				if !bytes.Equal(n.HardwareAddr, vmac) {
					t.Errorf("client resolved %s to %s, want the virtual MAC %s", a, n.HardwareAddr, vmac)
				}
			}
		}
		if !found {
			t.Errorf("client has no neighbour entry for the VIP (family %d)", fam)
		}
	}

	// Every forwarded frame left from the virtual MAC.
	mu.Lock()
	if bySrc[vmac.String()] == 0 || len(bySrc) != 1 {
		t.Errorf("VIP frames at the servers by source MAC: %v; want all from %s", bySrc, vmac)
	}
	mu.Unlock()

	// No drop rule: the kernel ignores the frames on its own.
	out, err := l.lb.NS.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "dsrlb") {
		t.Errorf("dsrlb installed an nft table although the VIPs are on a virtual MAC:\n%s", out)
	}
}
