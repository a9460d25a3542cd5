package realserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The IPv4 per-interface sysctls this package manages, and the values DSR needs.
const (
	arpIgnore   = "arp_ignore"
	arpAnnounce = "arp_announce"
	rpFilter    = "rp_filter"

	wantArpIgnore   = 1 // answer ARP only for addresses on the receiving interface
	wantArpAnnounce = 2 // never use a VIP as the sender of our own ARP requests
	strictRPFilter  = 1
	looseRPFilter   = 2
)

// confAll is the pseudo-interface whose value the kernel combines with each NIC's.
const confAll = "all"

// sysctlName is the dotted name of net.ipv4.conf.<iface>.<key>, as sysctl(8) prints it.
func sysctlName(iface, key string) string { return "net.ipv4.conf." + iface + "." + key }

// sysctls reads and writes net.ipv4.conf.<iface>.<key> as files under root ("/proc/sys";
// tests point it at a directory of their own). Under /proc/sys the values belong to the
// network namespace of the calling thread.
type sysctls struct{ root string }

var procSys = sysctls{root: "/proc/sys"}

// path builds the file path from parts, so interface names with dots (eth0.100) stay whole.
func (s sysctls) path(iface, key string) string {
	return filepath.Join(s.root, "net", "ipv4", "conf", iface, key)
}

func (s sysctls) get(iface, key string) (int, error) {
	b, err := os.ReadFile(s.path(iface, key))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sysctlName(iface, key), err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sysctlName(iface, key), err)
	}
	return v, nil
}

func (s sysctls) set(iface, key string, v int) error {
	f, err := os.OpenFile(s.path(iface, key), os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(strconv.Itoa(v))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("set %s=%d: %w", sysctlName(iface, key), v, err)
	}
	return nil
}

// sysctlChange is one sysctl Up changed: the value it found and the value it wrote.
// It is also the state file's record of it.
type sysctlChange struct {
	Interface string `json:"interface"` // "all" or a NIC name
	Key       string `json:"key"`       // arp_ignore, arp_announce or rp_filter
	Previous  int    `json:"previous"`
	Set       int    `json:"set"`
}

func (c sysctlChange) name() string { return sysctlName(c.Interface, c.Key) }

// planSysctls returns the sysctl writes that DSR needs on nics, in the order to apply them
// ("all" first), each with its current value as Previous. It reads and changes nothing else.
func planSysctls(s sysctls, nics []string) ([]sysctlChange, error) {
	var plan []sysctlChange
	want := func(iface, key string, v int) error {
		cur, err := s.get(iface, key)
		if err != nil {
			return err
		}
		if cur != v {
			plan = append(plan, sysctlChange{Interface: iface, Key: key, Previous: cur, Set: v})
		}
		return nil
	}
	if err := want(confAll, arpIgnore, wantArpIgnore); err != nil {
		return nil, err
	}
	if err := want(confAll, arpAnnounce, wantArpAnnounce); err != nil {
		return nil, err
	}
	allRP, err := s.get(confAll, rpFilter)
	if err != nil {
		return nil, err
	}
	for _, nic := range nics {
		if err := want(nic, arpIgnore, wantArpIgnore); err != nil {
			return nil, err
		}
		if err := want(nic, arpAnnounce, wantArpAnnounce); err != nil {
			return nil, err
		}
		rp, err := s.get(nic, rpFilter)
		if err != nil {
			return nil, err
		}
		if max(allRP, rp) == strictRPFilter {
			plan = append(plan, sysctlChange{Interface: nic, Key: rpFilter, Previous: rp, Set: looseRPFilter})
		}
	}
	return plan, nil
}

// nicChecks are the per-NIC sysctl checks, applied to the effective value max(all, NIC).
var nicChecks = []struct {
	key   string
	want  string
	wrong func(effective int) bool
}{
	{arpIgnore, strconv.Itoa(wantArpIgnore), func(e int) bool { return e != wantArpIgnore }},
	{arpAnnounce, strconv.Itoa(wantArpAnnounce), func(e int) bool { return e != wantArpAnnounce }},
	{rpFilter, "0 or 2 (not strict)", func(e int) bool { return e == strictRPFilter }},
}

// checkSysctls reports the sysctls that are wrong for DSR on nics; see the package doc for
// what counts as wrong.
func checkSysctls(s sysctls, nics []string) ([]Problem, error) {
	var probs []Problem
	all := map[string]int{}
	for _, key := range []string{arpIgnore, arpAnnounce, rpFilter} {
		v, err := s.get(confAll, key)
		if err != nil {
			return nil, err
		}
		all[key] = v
	}
	if v := all[arpIgnore]; v != wantArpIgnore {
		probs = append(probs, Problem{sysctlName(confAll, arpIgnore), strconv.Itoa(wantArpIgnore), strconv.Itoa(v)})
	}
	if v := all[arpAnnounce]; v != wantArpAnnounce {
		probs = append(probs, Problem{sysctlName(confAll, arpAnnounce), strconv.Itoa(wantArpAnnounce), strconv.Itoa(v)})
	}
	for _, nic := range nics {
		for _, c := range nicChecks {
			v, err := s.get(nic, c.key)
			if err != nil {
				return nil, err
			}
			if eff := max(all[c.key], v); c.wrong(eff) {
				probs = append(probs, Problem{sysctlName(nic, c.key), c.want, effective(c.key, eff, v)})
			}
		}
	}
	return probs, nil
}

// effective formats the value the kernel applies to a NIC, max(all, own), saying where it
// comes from when "all" overrides the NIC's own value.
func effective(key string, eff, own int) string {
	if eff == own {
		return strconv.Itoa(eff)
	}
	return fmt.Sprintf("%d (from %s; the interface's own value is %d)", eff, sysctlName(confAll, key), own)
}
