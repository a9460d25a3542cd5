package testbed

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/dsrlb/dsrlb/internal/labnet"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// staticFDB pins every host's MAC to its bridge port.
func (b *Bed) staticFDB() error {
	for _, h := range b.Hosts() {
		if err := b.PinMAC(h, h.MAC); err != nil {
			return err
		}
	}
	return nil
}

// PinMAC adds a static FDB entry on the bridge: frames to mac go to h's
// port. A balancer answering on a virtual MAC needs it like every host's own
// MAC: the bench's sinks are silent, and the bridge would otherwise flood.
func (b *Bed) PinMAC(h *labnet.Host, mac net.HardwareAddr) error {
	nh, err := b.Net.Switch.Netlink()
	if err != nil {
		return err
	}
	defer nh.Close()
	port, err := nh.LinkByName(h.Port)
	if err != nil {
		return fmt.Errorf("find switch port %s: %w", h.Port, err)
	}
	n := &netlink.Neigh{
		LinkIndex:    port.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_NOARP, // "static" in bridge(8)
		Flags:        netlink.NTF_MASTER,
		HardwareAddr: mac,
	}
	if err := nh.NeighSet(n); err != nil {
		return fmt.Errorf("static FDB entry %s on %s: %w", mac, h.Port, err)
	}
	return nil
}

// portCounters reads every switch port's counters with one netlink dump,
// by host name.
func (b *Bed) portCounters() (map[string]labnet.LinkStats, error) {
	nh, err := b.Net.Switch.Netlink()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		return nil, err
	}
	byPort := map[string]string{}
	for _, h := range b.Hosts() {
		byPort[h.Port] = h.Name
	}
	m := make(map[string]labnet.LinkStats, len(byPort))
	for _, l := range links {
		name, ok := byPort[l.Attrs().Name]
		st := l.Attrs().Statistics
		if !ok || st == nil {
			continue
		}
		m[name] = labnet.LinkStats{
			RxPackets: st.RxPackets, TxPackets: st.TxPackets,
			RxBytes: st.RxBytes, TxBytes: st.TxBytes,
			RxDropped: st.RxDropped, TxDropped: st.TxDropped,
		}
	}
	if len(m) != len(byPort) {
		return nil, fmt.Errorf("found %d of %d ports", len(m), len(byPort))
	}
	return m, nil
}

// killStale kills the processes still running inside the namespaces that
// netns.UniquePrefix(base) is about to sweep: those named from
// UniquePrefix(base) by a process that no longer runs. A bench killed
// without its teardown leaves trafgen's forked workers there (they have no
// parent-death signal), sending for ever; deleting the names would not stop
// them. A process counts as inside when its /proc/PID/ns/net is the
// namespace /run/netns/NAME holds (same nsfs inode). It returns the
// processes it signalled.
func killStale(base string) []int {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return nil
	}
	nsfs := self.Sys().(*syscall.Stat_t).Dev
	stale := map[uint64]bool{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if !staleName(e.Name(), base, processRuns) {
			continue
		}
		// Only a mounted namespace: an empty file left in /run/netns has
		// an inode of another file system.
		if fi, err := os.Stat("/run/netns/" + e.Name()); err == nil && fi.Sys().(*syscall.Stat_t).Dev == nsfs {
			stale[fi.Sys().(*syscall.Stat_t).Ino] = true
		}
	}
	if len(stale) == 0 {
		return nil
	}
	var killed []int
	for pid, ino := range netNamespaces("/proc") {
		if stale[ino] && pid != os.Getpid() && unix.Kill(pid, unix.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// staleName reports whether name was made from netns.UniquePrefix(base)
// ("BASE-PID-XXXXXX-...", 6 lower-case hex digits) by a process that no
// longer runs (runs reports whether one does).
func staleName(name, base string, runs func(pid int) bool) bool {
	rest, ok := strings.CutPrefix(name, base+"-")
	if !ok {
		return false
	}
	digits, rest, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(digits)
	if !ok || err != nil || pid <= 0 || pid == os.Getpid() || len(rest) < 7 || rest[6] != '-' ||
		strings.Trim(rest[:6], "0123456789abcdef") != "" {
		return false
	}
	return !runs(pid)
}

// processRuns reports whether process pid exists (signal 0 probes it).
func processRuns(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || err == unix.EPERM
}

// netNamespaces maps the processes under proc (a /proc) to the inode of
// their network namespace, read from the ns/net link ("net:[INODE]").
func netNamespaces(proc string) map[int]uint64 {
	ents, _ := os.ReadDir(proc)
	m := make(map[int]uint64, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink(proc + "/" + e.Name() + "/ns/net")
		if err != nil {
			continue // gone meanwhile, or a kernel thread we may not look at
		}
		s, ok := strings.CutPrefix(link, "net:[")
		s, ok2 := strings.CutSuffix(s, "]")
		if ino, err := strconv.ParseUint(s, 10, 64); ok && ok2 && err == nil {
			m[pid] = ino
		}
	}
	return m
}
