package realserver

import (
	"fmt"
	"log/slog"
	"net/netip"
)

// Options says which VIPs a real server carries and which NICs face the balancer.
type Options struct {
	// VIPs are the service addresses to hold on lo. Up and Check need at least one; Down
	// ignores them and undoes what the state file records.
	VIPs []netip.Addr
	// Interfaces are the NICs facing the balancer, whose ARP and rp_filter sysctls Up sets
	// and Check checks. Empty means every non-loopback link that is administratively up at
	// the time of the call. Down ignores them.
	Interfaces []string
	// StatePath is where Up records what it changed and Down reads it back. Empty means
	// DefaultStatePath().
	StatePath string
}

// Problem is one setting Check found missing or wrong.
type Problem struct {
	Setting string // what is wrong, e.g. "net.ipv4.conf.all.arp_ignore" or "lo address 10.0.0.100/32"
	Want    string // the value DSR needs
	Got     string // the value found
}

// String returns the problem as one line: "SETTING: want WANT, got GOT".
func (p Problem) String() string {
	return fmt.Sprintf("%s: want %s, got %s", p.Setting, p.Want, p.Got)
}

// ValidateVIPs returns the VIPs without duplicates, in the order given, or an error naming
// the first unusable one: a VIP is a unicast address without a zone, not unspecified,
// loopback, multicast, link-local or IPv4-mapped IPv6. Up and Check call it; a command
// line calls it too, to tell a usage error from a failure of the host.
func ValidateVIPs(vips []netip.Addr) ([]netip.Addr, error) {
	if len(vips) == 0 {
		return nil, fmt.Errorf("no VIPs given: a real server needs at least one")
	}
	out := make([]netip.Addr, 0, len(vips))
	seen := make(map[netip.Addr]bool, len(vips))
	for _, v := range vips {
		switch {
		case !v.IsValid():
			return nil, fmt.Errorf("VIP %d is the zero netip.Addr", len(out)+1)
		case v.Is4In6():
			return nil, fmt.Errorf("VIP %s is an IPv4-mapped IPv6 address: give %s", v, v.Unmap())
		case v.Zone() != "":
			return nil, fmt.Errorf("VIP %s has a zone: a VIP is not link-local", v)
		case v.IsUnspecified(), v.IsLoopback(), v.IsMulticast(), v.IsLinkLocalUnicast():
			return nil, fmt.Errorf("VIP %s is not a unicast service address", v)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out, nil
}

// hasIPv4 reports whether any VIP is IPv4: only then do the ARP and rp_filter sysctls matter.
func hasIPv4(vips []netip.Addr) bool {
	for _, v := range vips {
		if v.Is4() {
			return true
		}
	}
	return false
}

// hostPrefix is the VIP as a /32 or /128.
func hostPrefix(v netip.Addr) netip.Prefix { return netip.PrefixFrom(v, v.BitLen()) }

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
