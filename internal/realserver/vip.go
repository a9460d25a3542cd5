package realserver

import (
	"fmt"
	"net/netip"
)

// hostAddr is an address found on the host that equals a VIP.
type hostAddr struct {
	link      string       // interface name
	loopback  bool         // link is the loopback
	prefix    netip.Prefix // address and prefix length as configured
	tentative bool         // IPv6 duplicate address detection has not finished
	dadFailed bool         // IPv6 duplicate address detection failed
}

// inspectVIPs compares the addresses found on the host that equal a VIP with what DSR needs.
// lo is the loopback's name. It returns the VIPs missing from lo as /32 or /128 (toAdd),
// the problems Up refuses to fix because fixing them means removing an address it did not
// add (conflicts), and every problem, in VIP order, for Check (probs).
func inspectVIPs(vips []netip.Addr, found []hostAddr, lo string) (toAdd []netip.Prefix, conflicts, probs []Problem) {
	for _, vip := range vips {
		want := hostPrefix(vip)
		setting := fmt.Sprintf("%s address %s", lo, want)
		onLo := false
		var nicProbs []Problem
		for _, a := range found {
			if a.prefix.Addr() != vip {
				continue
			}
			if !a.loopback {
				p := Problem{fmt.Sprintf("%s address %s", a.link, a.prefix), "absent (the VIP belongs on " + lo + " only)", "present"}
				nicProbs = append(nicProbs, p)
				conflicts = append(conflicts, p)
				continue
			}
			onLo = true
			switch {
			case a.prefix.Bits() != want.Bits():
				p := Problem{fmt.Sprintf("prefix length of %s on %s", vip, lo), fmt.Sprintf("/%d", want.Bits()), fmt.Sprintf("/%d", a.prefix.Bits())}
				probs = append(probs, p)
				conflicts = append(conflicts, p)
			case a.dadFailed:
				probs = append(probs, Problem{setting, "usable", "failed duplicate address detection"})
			case a.tentative:
				probs = append(probs, Problem{setting, "usable", "tentative (duplicate address detection running)"})
			}
		}
		if !onLo {
			toAdd = append(toAdd, want)
			probs = append(probs, Problem{setting, "present", "missing"})
		}
		probs = append(probs, nicProbs...)
	}
	return toAdd, conflicts, probs
}
