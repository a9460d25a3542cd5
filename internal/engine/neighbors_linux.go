package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// KernelResolver resolves MACs through the kernel's neighbour table on one
// interface.
type KernelResolver struct {
	link netlink.Link
}

var _ Resolver = (*KernelResolver)(nil)

// NewKernelResolver returns a resolver for the interface named iface.
func NewKernelResolver(iface string) (*KernelResolver, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("neighbour resolver on %s: %w", iface, err)
	}
	return &KernelResolver{link: l}, nil
}

// usable neighbour states: the entry has a link-layer address.
const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// Lookup implements Resolver.
func (r *KernelResolver) Lookup(addrs []netip.Addr) (map[netip.Addr][6]byte, error) {
	idx := r.link.Attrs().Index
	known := map[netip.Addr]netlink.Neigh{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := netlink.NeighList(idx, fam)
		if err != nil {
			return nil, fmt.Errorf("list neighbours: %w", err)
		}
		for _, n := range ns {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				known[a.Unmap()] = n
			}
		}
	}
	out := make(map[netip.Addr][6]byte, len(addrs))
	var errs []error
	for _, a := range addrs {
		n, ok := known[a]
		if ok && n.State&usable != 0 && len(n.HardwareAddr) == 6 {
			out[a] = [6]byte(n.HardwareAddr)
			if n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
				continue
			}
		}
		// Missing, failed or stale: ask the kernel to (re)resolve it, as if
		// it had a packet to send there.
		if err := r.trigger(idx, a); err != nil {
			errs = append(errs, fmt.Errorf("trigger resolution of %s: %w", a, err))
		}
	}
	return out, errors.Join(errs...)
}

func (r *KernelResolver) trigger(idx int, a netip.Addr) error {
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: fam, IP: net.IP(a.AsSlice()), Flags: unix.NTF_USE}
	return netlink.NeighSet(n)
}
