package testbed

import (
	"fmt"
	"net"

	"github.com/dsrlb/dsrlb/internal/labnet"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// staticFDB pins every host's MAC to its bridge port.
func (b *Bed) staticFDB() error {
	for _, h := range b.Hosts() {
		if err := b.PinMAC(h, h.MAC); err != nil {
			return err
		}
	}
	return nil
}

// PinMAC adds a static FDB entry on the bridge: frames to mac go to h's
// port. A balancer answering on a virtual MAC needs it like every host's own
// MAC: the bench's sinks are silent, and the bridge would otherwise flood.
func (b *Bed) PinMAC(h *labnet.Host, mac net.HardwareAddr) error {
	nh, err := b.Net.Switch.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	port, err := nh.LinkByName(h.Port)
	if err != nil {
		return fmt.Errorf("find switch port %s: %w", h.Port, err)
	}
	n := &netlink.Neigh{
		LinkIndex:    port.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_NOARP, // "static" in bridge(8)
		Flags:        netlink.NTF_MASTER,
		HardwareAddr: mac,
	}
	if err := nh.NeighSet(n); err != nil {
		return fmt.Errorf("static FDB entry %s on %s: %w", mac, h.Port, err)
	}
	return nil
}

// portCounters reads every switch port's counters with one netlink dump,
// by host name.
func (b *Bed) portCounters() (map[string]labnet.LinkStats, error) {
	nh, err := b.Net.Switch.Netlink()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		return nil, err
	}
	byPort := map[string]string{}
	for _, h := range b.Hosts() {
		byPort[h.Port] = h.Name
	}
	m := make(map[string]labnet.LinkStats, len(byPort))
	for _, l := range links {
		name, ok := byPort[l.Attrs().Name]
		st := l.Attrs().Statistics
		if !ok || st == nil {
			continue
		}
		m[name] = labnet.LinkStats{
			RxPackets: st.RxPackets, TxPackets: st.TxPackets,
			RxBytes: st.RxBytes, TxBytes: st.TxBytes,
			RxDropped: st.RxDropped, TxDropped: st.TxDropped,
		}
	}
	if len(m) != len(byPort) {
		return nil, fmt.Errorf("found %d of %d ports", len(m), len(byPort))
	}
	return m, nil
}
