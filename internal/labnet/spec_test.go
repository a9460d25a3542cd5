package labnet

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	sub4 := netip.MustParsePrefix("198.18.0.0/24")
	sub6 := netip.MustParsePrefix("2001:db8:18::/64")
	a4 := netip.MustParseAddr
	good := Spec{Prefix: "x-", Subnet4: sub4, Subnet6: sub6, Hosts: []HostSpec{
		{Name: "a", Addr4: a4("198.18.0.1"), Addr6: a4("2001:db8:18::1")},
		{Name: "b", Addr4: a4("198.18.0.2")},
		{Name: "c"},
	}}
	if err := good.validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"no prefix", func(s *Spec) { s.Prefix = "" }, "Prefix: empty"},
		{"no hosts", func(s *Spec) { s.Hosts = nil }, "Hosts: none"},
		{"v6 subnet as v4", func(s *Spec) { s.Subnet4 = sub6 }, "Subnet4: 2001:db8:18::/64 is not an IPv4"},
		{"v4 subnet as v6", func(s *Spec) { s.Subnet6 = sub4 }, "Subnet6: 198.18.0.0/24 is not an IPv6"},
		{"empty name", func(s *Spec) { s.Hosts[1].Name = "" }, "Hosts[1].Name: empty"},
		{"switch name", func(s *Spec) { s.Hosts[2].Name = "sw" }, `Hosts[2].Name: "sw" is the switch`},
		{"dup name", func(s *Spec) { s.Hosts[1].Name = "a" }, `Hosts[1].Name: "a" used twice`},
		{"outside", func(s *Spec) { s.Hosts[1].Addr4 = a4("198.18.1.2") }, "Hosts[1].Addr4: 198.18.1.2 is outside 198.18.0.0/24"},
		{"family", func(s *Spec) { s.Hosts[1].Addr4 = a4("2001:db8:18::9") }, "Hosts[1].Addr4: 2001:db8:18::9 is the wrong address family"},
		{"dup addr", func(s *Spec) { s.Hosts[1].Addr4 = a4("198.18.0.1") }, `Hosts[1].Addr4: 198.18.0.1 already belongs to host "a"`},
		{"no subnet6", func(s *Spec) { s.Subnet6 = netip.Prefix{} }, "Hosts[0].Addr6: 2001:db8:18::1 given but the spec has no subnet"},
		// Host 1's name is too long for a port name, so its port is p-2.
		{"port by index, then by name", func(s *Spec) { s.Hosts[1].Name = "a-very-long-host"; s.Hosts[2].Name = "2" },
			`Hosts[2].Name: "2" would get switch port p-2, as host "a-very-long-host" does`},
		{"port by name, then by index", func(s *Spec) { s.Hosts[0].Name = "2"; s.Hosts[1].Name = "a-very-long-host" },
			`Hosts[1].Name: "a-very-long-host" would get switch port p-2, as host "2" does`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			s.Hosts = append([]HostSpec(nil), good.Hosts...)
			tc.edit(&s)
			err := s.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, err := Build(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	if got := hostMAC(0).String(); got != "02:00:00:00:00:01" {
		t.Errorf("hostMAC(0) = %s", got)
	}
	if got := hostMAC(299).String(); got != "02:00:00:00:01:2c" {
		t.Errorf("hostMAC(299) = %s", got)
	}
	if got := portName(0, "srv1"); got != "p-srv1" {
		t.Errorf("portName(0, srv1) = %s", got)
	}
	if got := portName(6, "a-very-long-host"); got != "p-7" {
		t.Errorf("portName(6, a-very-long-host) = %s", got)
	}
	if got := portName(0, "thirteen-char"); got != "p-thirteen-char" {
		t.Errorf("portName(0, thirteen-char) = %s", got)
	}
}

func TestLinkStatsSub(t *testing.T) {
	a := LinkStats{RxPackets: 10, TxPackets: 20, RxBytes: 1000, TxBytes: 2000, RxDropped: 1, TxDropped: 2}
	b := LinkStats{RxPackets: 4, TxPackets: 5, RxBytes: 400, TxBytes: 500, RxDropped: 1}
	want := LinkStats{RxPackets: 6, TxPackets: 15, RxBytes: 600, TxBytes: 1500, TxDropped: 2}
	if got := a.Sub(b); got != want {
		t.Fatalf("Sub = %+v, want %+v", got, want)
	}
}
