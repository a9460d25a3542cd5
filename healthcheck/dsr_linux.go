package healthcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// sourceTTL is how long the interface's addresses are cached.
const sourceTTL = 5 * time.Second

// NewDSRProber opens the packet sockets of DSR-path probes on iface, in the
// network namespace of the calling thread (the sockets stay there), and
// starts one reader goroutine per socket. It needs CAP_NET_RAW and changes
// no setting of the interface. Close releases it.
func NewDSRProber(iface string) (*PacketDSRProber, error) {
	l, err := openPacketLink(iface)
	if err != nil {
		return nil, fmt.Errorf("open DSR prober on %s: %w", iface, err)
	}
	p := newPacketDSRProber(l)
	for _, c := range []*packet.Conn{l.arp, l.ip4, l.ip6} {
		l.wg.Add(1)
		go l.read(c, p.deliver)
	}
	return p, nil
}

// packetLink is a dsrLink of three AF_PACKET sockets: one per EtherType, so
// that each frame is sent with its protocol and each filter stays simple.
type packetLink struct {
	ifname string
	hw     [6]byte
	nl     *netlink.Handle // bound to the namespace NewDSRProber ran in; nil once closed
	index  int

	arp, ip4, ip6 *packet.Conn
	wg            sync.WaitGroup
	closing       atomic.Bool // set before the sockets are closed

	mu      sync.Mutex // guards the cache below and nl
	addrs   []ifaceAddr
	addrsAt time.Time
}

func openPacketLink(iface string) (l *packetLink, err error) {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	l = &packetLink{ifname: iface, nl: nl}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	link, err := nl.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("find interface: %w", err)
	}
	a := link.Attrs()
	if len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("not an Ethernet interface (hardware address %q)", a.HardwareAddr)
	}
	l.hw, l.index = [6]byte(a.HardwareAddr), a.Index
	ifi := &net.Interface{Index: a.Index, Name: iface, HardwareAddr: a.HardwareAddr, MTU: a.MTU}
	open := func(proto int, what string, filter []bpf.Instruction) (*packet.Conn, error) {
		raw, err := bpf.Assemble(filter)
		if err != nil {
			return nil, fmt.Errorf("assemble %s filter: %w", what, err)
		}
		c, err := packet.Listen(ifi, packet.Raw, proto, &packet.Config{Filter: raw})
		if err != nil {
			return nil, fmt.Errorf("open %s packet socket (needs CAP_NET_RAW): %w", what, err)
		}
		return c, nil
	}
	if l.arp, err = open(unix.ETH_P_ARP, "ARP", arpFilter); err != nil {
		return nil, err
	}
	if l.ip4, err = open(unix.ETH_P_IP, "IPv4", ipv4AnswerFilter); err != nil {
		return nil, err
	}
	if l.ip6, err = open(unix.ETH_P_IPV6, "IPv6", ipv6AnswerFilter); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *packetLink) name() string { return l.ifname }
func (l *packetLink) mac() [6]byte { return l.hw }

func (l *packetLink) send(frame []byte) error {
	var c *packet.Conn
	switch binary.BigEndian.Uint16(frame[12:]) {
	case etherTypeARP:
		c = l.arp
	case etherTypeIPv4:
		c = l.ip4
	case etherTypeIPv6:
		c = l.ip6
	}
	_, err := c.WriteTo(frame, &packet.Addr{HardwareAddr: frame[:6]})
	return err
}

// read hands every frame c receives to deliver until the link is closed.
// A closed packet.Conn reports "use of closed file" and then EBADF, neither
// of them net.ErrClosed: the closing flag is what ends the loop.
func (l *packetLink) read(c *packet.Conn, deliver func([]byte)) {
	defer l.wg.Done()
	buf := make([]byte, 2*snapLen)
	for {
		n, _, err := c.ReadFrom(buf)
		switch {
		case l.closing.Load():
			return
		case err != nil:
			continue // a one-off socket error (ENETDOWN and the like): reading goes on
		}
		deliver(buf[:n])
	}
}

// source picks the address to probe vip from among the interface's
// addresses, read through netlink at most every sourceTTL.
func (l *packetLink) source(vip netip.Addr) (netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nl == nil {
		return netip.Addr{}, errClosed // a closed handle must not be read: its socket number may be reused
	}
	if l.addrs == nil || time.Since(l.addrsAt) > sourceTTL {
		link, err := l.nl.LinkByIndex(l.index)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("read addresses of %s: %w", l.ifname, err)
		}
		list, err := l.nl.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("read addresses of %s: %w", l.ifname, err)
		}
		addrs := make([]ifaceAddr, 0, len(list))
		for _, a := range list {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			addrs = append(addrs, ifaceAddr{
				prefix:    netip.PrefixFrom(ip.Unmap(), ones),
				usable:    a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0,
				preferred: a.Flags&unix.IFA_F_DEPRECATED == 0,
			})
		}
		l.addrs, l.addrsAt = addrs, time.Now()
	}
	src, ok := pickSource(l.addrs, vip)
	if !ok {
		family := "IPv4"
		if vip.Is6() {
			family = "global IPv6"
		}
		return netip.Addr{}, fmt.Errorf("no %s address on %s to send from (the DSR probe needs one in the servers' subnet)", family, l.ifname)
	}
	return src, nil
}

func (l *packetLink) close() error {
	l.closing.Store(true)
	var errs []error
	for _, c := range []*packet.Conn{l.arp, l.ip4, l.ip6} {
		if c != nil {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	l.wg.Wait()
	l.mu.Lock()
	if l.nl != nil {
		l.nl.Close()
		l.nl = nil
	}
	l.mu.Unlock()
	return errors.Join(errs...)
}
