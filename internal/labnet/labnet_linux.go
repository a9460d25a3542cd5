package labnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// build fills n according to n.spec. Every namespace it creates is recorded
// in n before the next step, so that n.Close removes it on failure.
func build(n *Net) error {
	sw, err := netns.New(n.spec.Prefix + SwitchSuffix)
	if err != nil {
		return fmt.Errorf("create switch namespace: %w", err)
	}
	n.Switch = sw
	if err := sw.Do(setupSwitch); err != nil {
		return fmt.Errorf("set up bridge %s in %s: %w", BridgeName, sw.Name(), err)
	}
	for i, hs := range n.spec.Hosts {
		if err := addHost(n, i, hs); err != nil {
			return fmt.Errorf("host %q: %w", hs.Name, err)
		}
	}
	return nil
}

// switchSysctls are set inside the switch namespace when they exist. The
// bridge-nf ones exist only when br_netfilter is loaded; with them on, the
// host's iptables would see (and may drop) frames crossing the bridge.
var switchSysctls = []struct{ path, value string }{
	{"/proc/sys/net/bridge/bridge-nf-call-iptables", "0"},
	{"/proc/sys/net/bridge/bridge-nf-call-ip6tables", "0"},
	{"/proc/sys/net/bridge/bridge-nf-call-arptables", "0"},
	// The switch has no business on IPv6: no link-local addresses, no router
	// solicitations or MLD reports from the ports into the lab's segment.
	{"/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"},
	{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"},
}

// setupSwitch runs inside the switch namespace.
func setupSwitch() error {
	for _, s := range switchSysctls {
		if err := WriteSysctl(s.path, s.value); err != nil {
			return err
		}
	}
	if err := addBridge(BridgeName); err != nil {
		return err
	}
	br, err := netlink.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("find %s: %w", BridgeName, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring %s up: %w", BridgeName, err)
	}
	return nil
}

// addBridge creates a bridge in the calling thread's namespace with STP off,
// forward delay 0 and multicast snooping off. The netlink package's Bridge
// type has no forward delay, so the request is built here.
func addBridge(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_MCAST_SNOOPING, []byte{0})
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	return nil
}

// hostSysctls are set inside each host namespace before eth0 arrives; the
// "default" values apply to interfaces that appear later.
var hostSysctls = []struct{ path, value string }{
	// Every IPv6 address, link-local included, is usable at once: the lab's
	// addresses are unique by construction, DAD would only add a delay.
	{"/proc/sys/net/ipv6/conf/default/accept_dad", "0"},
}

// setupHost runs inside a host namespace.
func setupHost() error {
	for _, s := range hostSysctls {
		if err := WriteSysctl(s.path, s.value); err != nil {
			return err
		}
	}
	return nil
}

// addHost creates host i's namespace and wires it to the bridge.
func addHost(n *Net, i int, hs HostSpec) error {
	ns, err := netns.New(n.spec.Prefix + hs.Name)
	if err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	h := &Host{
		Name:  hs.Name,
		NS:    ns,
		Link:  LinkName,
		Port:  portName(i, hs.Name),
		MAC:   hostMAC(i),
		Addr4: hs.Addr4,
		Addr6: hs.Addr6,
	}
	n.order = append(n.order, h)
	n.Hosts[h.Name] = h
	if err := ns.Do(setupHost); err != nil {
		return fmt.Errorf("set sysctls in %s: %w", ns.Name(), err)
	}

	// The peer starts in the switch namespace under a temporary name that
	// is unique there, moves to the host and becomes eth0.
	tmp := fmt.Sprintf("t-%d", i+1)
	if err := n.Switch.Do(func() error { return addPort(h, tmp) }); err != nil {
		return fmt.Errorf("create veth %s/%s in %s: %w", h.Port, tmp, n.Switch.Name(), err)
	}
	if err := configureLink(h, tmp, n.spec); err != nil {
		return fmt.Errorf("configure %s in %s: %w", h.Link, ns.Name(), err)
	}
	return nil
}

// addPort runs inside the switch namespace: it creates the veth pair,
// attaches h.Port to the bridge and moves the peer into the host namespace.
func addPort(h *Host, peer string) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: h.Port}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	port, err := netlink.LinkByName(h.Port)
	if err != nil {
		return fmt.Errorf("find %s: %w", h.Port, err)
	}
	br, err := netlink.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("find %s: %w", BridgeName, err)
	}
	if err := netlink.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", h.Port, BridgeName, err)
	}
	if err := netlink.LinkSetUp(port); err != nil {
		return fmt.Errorf("bring %s up: %w", h.Port, err)
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("find %s: %w", peer, err)
	}
	target, err := vns.GetFromName(h.NS.Name())
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", h.NS.Name(), err)
	}
	defer target.Close()
	if err := netlink.LinkSetNsFd(p, int(target)); err != nil {
		return fmt.Errorf("move %s to %s: %w", peer, h.NS.Name(), err)
	}
	return nil
}

// configureLink renames the moved veth end to eth0 inside the host
// namespace, sets its MAC and addresses and brings it up.
func configureLink(h *Host, tmp string, spec Spec) error {
	nh, err := h.NS.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	link, err := nh.LinkByName(tmp)
	if err != nil {
		return fmt.Errorf("find %s: %w", tmp, err)
	}
	if err := nh.LinkSetName(link, h.Link); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, h.Link, err)
	}
	if err := nh.LinkSetHardwareAddr(link, h.MAC); err != nil {
		return fmt.Errorf("set MAC %s: %w", h.MAC, err)
	}
	if h.Addr4.IsValid() {
		a := &netlink.Addr{IPNet: ipNet(h.Addr4, spec.Subnet4.Bits())}
		if err := nh.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add address %s: %w", a.IPNet, err)
		}
	}
	if h.Addr6.IsValid() {
		a := &netlink.Addr{IPNet: ipNet(h.Addr6, spec.Subnet6.Bits()), Flags: unix.IFA_F_NODAD}
		if err := nh.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add address %s: %w", a.IPNet, err)
		}
	}
	if err := nh.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", h.Link, err)
	}
	return nil
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// linkStats reads an interface's counters in a namespace over netlink.
func linkStats(ns *netns.NS, name string) (LinkStats, error) {
	nh, err := ns.Netlink()
	if err != nil {
		return LinkStats{}, err
	}
	defer nh.Close()
	link, err := nh.LinkByName(name)
	if err != nil {
		return LinkStats{}, err
	}
	s := link.Attrs().Statistics
	if s == nil {
		return LinkStats{}, errors.New("kernel reported no statistics")
	}
	return LinkStats{
		RxPackets: s.RxPackets, TxPackets: s.TxPackets,
		RxBytes: s.RxBytes, TxBytes: s.TxBytes,
		RxDropped: s.RxDropped, TxDropped: s.TxDropped,
	}, nil
}
