package lab

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/dsrlb/dsrlb/internal/labnet"
)

// The lab's address plan. Benchmark (RFC 2544) and documentation (RFC 3849)
// ranges only.
var (
	subnet4 = netip.MustParsePrefix("198.18.0.0/24")
	subnet6 = netip.MustParsePrefix("2001:db8:18::/64")
)

const (
	vipPort    = 80
	maxServers = 89 // srv89 is 198.18.0.99; .100 is the VIP
	link       = labnet.LinkName
)

// family is one address family's part of the plan.
type family struct {
	name    string // "IPv4" or "IPv6"
	vip     netip.Addr
	client  netip.Addr
	lb      netip.Addr
	servers []netip.Addr // srv1..srvN
}

// plan is the whole lab: host names and one or two families.
type plan struct {
	servers  []string // srv1..srvN
	families []family
}

func newPlan(servers int, ipv6 bool) plan {
	var p plan
	v4 := family{
		name:   "IPv4",
		vip:    netip.MustParseAddr("198.18.0.100"),
		client: netip.MustParseAddr("198.18.0.2"),
		lb:     netip.MustParseAddr("198.18.0.1"),
	}
	v6 := family{
		name:   "IPv6",
		vip:    netip.MustParseAddr("2001:db8:18::100"),
		client: netip.MustParseAddr("2001:db8:18::2"),
		lb:     netip.MustParseAddr("2001:db8:18::1"),
	}
	for i := 1; i <= servers; i++ {
		p.servers = append(p.servers, "srv"+strconv.Itoa(i))
		v4.servers = append(v4.servers, netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}))
		// The IPv6 address reads like the IPv4 one: srv1 is ::11, srv10 ::20.
		v6.servers = append(v6.servers, netip.MustParseAddr("2001:db8:18::"+strconv.Itoa(10+i)))
	}
	p.families = append(p.families, v4)
	if ipv6 {
		p.families = append(p.families, v6)
	}
	return p
}

// addr returns a host's address in family f, or the invalid Addr.
func (p plan) addr(f int, host string) netip.Addr {
	if f >= len(p.families) {
		return netip.Addr{}
	}
	fam := p.families[f]
	switch host {
	case "client":
		return fam.client
	case "lb":
		return fam.lb
	}
	for i, s := range p.servers {
		if s == host {
			return fam.servers[i]
		}
	}
	return netip.Addr{}
}

// spec is the labnet spec of the plan under a namespace prefix.
func (p plan) spec(prefix string) labnet.Spec {
	s := labnet.Spec{Prefix: prefix, Subnet4: subnet4}
	if len(p.families) > 1 {
		s.Subnet6 = subnet6
	}
	for _, name := range append([]string{"client", "lb"}, p.servers...) {
		s.Hosts = append(s.Hosts, labnet.HostSpec{Name: name, Addr4: p.addr(0, name), Addr6: p.addr(1, name)})
	}
	return s
}

// serverArgs are the arguments of `dsrlb server up|down` (verb "up" or
// "down") with state file state.
func (p plan) serverArgs(verb, state string) []string {
	args := []string{"server", verb}
	for _, f := range p.families {
		args = append(args, "--vip", f.vip.String())
	}
	return append(args, "--interface", link, "--state", state)
}

// runArgs are the arguments of `dsrlb run` for the balancer.
func (p plan) runArgs() []string {
	args := []string{"run", "--interface", link}
	for _, f := range p.families {
		args = append(args, "--vip", fmt.Sprintf("%s/tcp", netip.AddrPortFrom(f.vip, vipPort)))
	}
	for _, f := range p.families {
		for _, a := range f.servers {
			args = append(args, "--backend", a.String())
		}
	}
	return args
}

// url is the address the client requests in family f.
func (p plan) url(f int) string {
	return "http://" + netip.AddrPortFrom(p.families[f].vip, vipPort).String() + "/"
}
