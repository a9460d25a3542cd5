package labnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// BridgeName is the name of the bridge in the switch namespace.
const BridgeName = "br0"

// LinkName is the name of every host's interface.
const LinkName = "eth0"

// SwitchSuffix is appended to Spec.Prefix to name the switch namespace. A
// host may not have this name.
const SwitchSuffix = "sw"

// HostSpec describes one host of a lab.
type HostSpec struct {
	Name  string     // part of the namespace name; [A-Za-z0-9_.-]
	Addr4 netip.Addr // IPv4 address inside Spec.Subnet4; invalid means none
	Addr6 netip.Addr // IPv6 address inside Spec.Subnet6; invalid means none
}

// Spec describes a lab.
type Spec struct {
	// Prefix starts every namespace name: Prefix+"sw" for the switch and
	// Prefix+name for each host. Use netns.UniquePrefix so that two labs on
	// one machine do not collide. Required.
	Prefix  string
	Subnet4 netip.Prefix // IPv4 subnet of the segment; required if a host has an Addr4
	Subnet6 netip.Prefix // IPv6 subnet of the segment; required if a host has an Addr6
	Hosts   []HostSpec
}

// Net is a built lab. Its fields are valid until Close.
type Net struct {
	Switch *netns.NS        // namespace holding the bridge
	Hosts  map[string]*Host // by HostSpec.Name

	spec  Spec
	order []*Host // in Spec.Hosts order

	mu     sync.Mutex
	closed bool
}

// Host is one host of a lab.
type Host struct {
	Name  string
	NS    *netns.NS
	Link  string           // interface inside NS, always "eth0"
	Port  string           // the veth end attached to the bridge in the switch namespace
	MAC   net.HardwareAddr // Link's MAC address
	Addr4 netip.Addr       // invalid if the host has no IPv4 address
	Addr6 netip.Addr       // invalid if the host has no IPv6 address
}

// LinkStats are an interface's counters as the kernel reports them.
type LinkStats struct {
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	RxDropped, TxDropped uint64
}

// Sub returns s minus an earlier reading, field by field.
func (s LinkStats) Sub(earlier LinkStats) LinkStats {
	return LinkStats{
		RxPackets: s.RxPackets - earlier.RxPackets,
		TxPackets: s.TxPackets - earlier.TxPackets,
		RxBytes:   s.RxBytes - earlier.RxBytes,
		TxBytes:   s.TxBytes - earlier.TxBytes,
		RxDropped: s.RxDropped - earlier.RxDropped,
		TxDropped: s.TxDropped - earlier.TxDropped,
	}
}

// Build creates the lab described by spec. On error it deletes whatever it
// had created and returns an error naming the failed step.
func Build(spec Spec) (*Net, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("build lab network: %w", err)
	}
	n := &Net{Hosts: make(map[string]*Host, len(spec.Hosts)), spec: spec}
	if err := build(n); err != nil {
		return nil, errors.Join(fmt.Errorf("build lab network %s*: %w", spec.Prefix, err), n.Close())
	}
	return n, nil
}

// maxHosts bounds a lab so that the MAC scheme 02:00:00:00:hi:lo stays unique.
const maxHosts = 0xffff

func (s *Spec) validate() error {
	var errs []error
	if s.Prefix == "" {
		errs = append(errs, errors.New("Prefix: empty (use netns.UniquePrefix)"))
	}
	if s.Subnet4.IsValid() && !s.Subnet4.Addr().Is4() {
		errs = append(errs, fmt.Errorf("Subnet4: %s is not an IPv4 prefix", s.Subnet4))
	}
	if s.Subnet6.IsValid() && !(s.Subnet6.Addr().Is6() && !s.Subnet6.Addr().Is4In6()) {
		errs = append(errs, fmt.Errorf("Subnet6: %s is not an IPv6 prefix", s.Subnet6))
	}
	if len(s.Hosts) == 0 {
		errs = append(errs, errors.New("Hosts: none"))
	}
	if len(s.Hosts) > maxHosts {
		errs = append(errs, fmt.Errorf("Hosts: %d, at most %d", len(s.Hosts), maxHosts))
	}
	names := make(map[string]bool, len(s.Hosts))
	ports := make(map[string]string, len(s.Hosts)) // switch port name: host
	addrs := make(map[netip.Addr]string, 2*len(s.Hosts))
	checkAddr := func(field string, h HostSpec, a netip.Addr, subnet netip.Prefix, is4 bool) {
		if !a.IsValid() {
			return
		}
		switch {
		case is4 != a.Is4():
			errs = append(errs, fmt.Errorf("%s: %s is the wrong address family", field, a))
		case !subnet.IsValid():
			errs = append(errs, fmt.Errorf("%s: %s given but the spec has no subnet for it", field, a))
		case !subnet.Contains(a):
			errs = append(errs, fmt.Errorf("%s: %s is outside %s", field, a, subnet))
		case addrs[a] != "":
			errs = append(errs, fmt.Errorf("%s: %s already belongs to host %q", field, a, addrs[a]))
		default:
			addrs[a] = h.Name
		}
	}
	for i, h := range s.Hosts {
		field := fmt.Sprintf("Hosts[%d]", i)
		switch {
		case h.Name == "":
			errs = append(errs, fmt.Errorf("%s.Name: empty", field))
		case h.Name == SwitchSuffix:
			errs = append(errs, fmt.Errorf("%s.Name: %q is the switch's name", field, h.Name))
		case names[h.Name]:
			errs = append(errs, fmt.Errorf("%s.Name: %q used twice", field, h.Name))
		default:
			// A long name's port is named by index: "p-7" for the 7th
			// host, which a host named "7" would get too.
			p := portName(i, h.Name)
			if other, ok := ports[p]; ok {
				errs = append(errs, fmt.Errorf("%s.Name: %q would get switch port %s, as host %q does (rename one)", field, h.Name, p, other))
			}
			ports[p] = h.Name
		}
		names[h.Name] = true
		checkAddr(field+".Addr4", h, h.Addr4, s.Subnet4, true)
		checkAddr(field+".Addr6", h, h.Addr6, s.Subnet6, false)
	}
	return errors.Join(errs...)
}

// hostMAC is the MAC of the i-th host (counting from 0).
func hostMAC(i int) net.HardwareAddr {
	n := i + 1
	return net.HardwareAddr{0x02, 0, 0, 0, byte(n >> 8), byte(n)}
}

// portName is the switch-side veth name of the i-th host, at most 15 bytes.
func portName(i int, name string) string {
	if p := "p-" + name; len(p) <= 15 {
		return p
	}
	return fmt.Sprintf("p-%d", i+1)
}

// Host returns the named host, or nil.
func (n *Net) Host(name string) *Host { return n.Hosts[name] }

// Namespaces returns the names of the lab's namespaces: the switch first,
// then the hosts in Spec order.
func (n *Net) Namespaces() []string {
	var names []string
	if n.Switch != nil {
		names = append(names, n.Switch.Name())
	}
	for _, h := range n.order {
		names = append(names, h.NS.Name())
	}
	return names
}

// Close deletes every namespace of the lab, hosts first. Processes still
// running in a namespace keep it alive (unnamed) until they exit. Calling
// Close again does nothing.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	for i := len(n.order) - 1; i >= 0; i-- {
		if err := n.order[i].NS.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Switch != nil {
		if err := n.Switch.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stats reads the counters of the host's eth0.
func (h *Host) Stats() (LinkStats, error) {
	s, err := linkStats(h.NS, h.Link)
	if err != nil {
		return LinkStats{}, fmt.Errorf("read counters of %s on host %s: %w", h.Link, h.Name, err)
	}
	return s, nil
}

// PortStats reads the counters of the switch-side port of the named host.
// Rx on the port is what the host sent; Tx is what the switch delivered to it.
func (n *Net) PortStats(host string) (LinkStats, error) {
	h := n.Hosts[host]
	if h == nil {
		return LinkStats{}, fmt.Errorf("read port counters: no host %q", host)
	}
	s, err := linkStats(n.Switch, h.Port)
	if err != nil {
		return LinkStats{}, fmt.Errorf("read counters of switch port %s (host %s): %w", h.Port, host, err)
	}
	return s, nil
}

// WriteSysctl writes a sysctl (a /proc/sys path) of the calling thread's
// network namespace; a sysctl that does not exist is skipped.
func WriteSysctl(path, value string) error {
	err := os.WriteFile(path, []byte(value), 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", path, value, err)
	}
	return nil
}
