package dataplane

import (
	"net/netip"
	"testing"
)

func TestKernelDropRuleset(t *testing.T) {
	k := &kernelDrop{iface: "eth0.100", table: "dsrlb_eth0_100"}
	got := k.ruleset([]netip.Addr{netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:db8::100"), netip.MustParseAddr("198.18.0.101")})
	want := `add table netdev dsrlb_eth0_100
delete table netdev dsrlb_eth0_100
table netdev dsrlb_eth0_100 {
	chain ingress {
		type filter hook ingress device "eth0.100" priority -500; policy accept;
		ip daddr { 198.18.0.100, 198.18.0.101 } counter drop
		ip6 daddr { 2001:db8::100 } icmpv6 type nd-neighbor-solicit accept
		ip6 daddr { 2001:db8::100 } counter drop
	}
}
`
	if got != want {
		t.Errorf("ruleset:\n%s\nwant:\n%s", got, want)
	}
}
