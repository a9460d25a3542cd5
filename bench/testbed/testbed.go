// Package testbed builds the benchmark's DSR topology and reads its
// counters.
//
// # Topology
//
// One labnet segment (namespaces named with a fresh netns.UniquePrefix):
// the generator "gen" (198.18.0.2), the balancer host "lb" (198.18.0.1) and
// sinks "s1".."sN" (198.18.0.11 and up). The VIP, 198.18.0.100, is nobody's
// address: frames for it are addressed by MAC, to the balancer (or, on the
// direct path, to a sink). On top of what labnet sets up:
//
//   - every host's MAC is a static FDB entry on its bridge port, so frames
//     to silent sinks never flood when learned entries would expire;
//   - IPv6 is off on every host: no router solicitations or MLD reports
//     in the counters;
//   - br_netfilter's bridge-nf-call-* hooks are off in the switch namespace
//     (Spec.BridgeNetfilter leaves them on, if br_netfilter is loaded:
//     Bed.BridgeNetfilterLoaded);
//   - each sink drops every frame at its netdev ingress hook (nftables), so
//     a delivered frame costs its sink as little as possible and the same
//     on every path; AF_PACKET taps, such as the latency probe, still see it.
//
// # Counters
//
// Snapshot reads, in one pass and as close together as possible: every
// switch port's counters (one netlink dump in the switch namespace),
// /proc/stat and /proc/net/softnet_stat. A port's rx is what its host sent
// into the switch, its tx what the switch delivered to the host.
//
// Everything is deleted by Close; nothing is sent outside the namespaces
// built here. Linux only, root only.
package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/dsrlb/dsrlb/internal/netns"
)

// VIP is the benchmark's virtual IP.
var VIP = netip.MustParseAddr("198.18.0.100")

// Spec describes a testbed.
type Spec struct {
	// Prefix starts every namespace name; "" takes netns.UniquePrefix("dsrlbb"),
	// which deletes the namespaces of runs that no longer run, after Build
	// killed the processes left inside them.
	Prefix string
	// Sinks is the number of sinks (backends), at least 1.
	Sinks int
	// BridgeNetfilter leaves br_netfilter's bridge-nf-call-* hooks on in
	// the switch namespace (labnet turns them off).
	BridgeNetfilter bool
	// SinkPass lets frames into the sinks' IP stacks instead of dropping
	// them at ingress.
	SinkPass bool
}

// Bed is a built testbed. Its fields are valid until Close.
type Bed struct {
	Net   *labnet.Net
	Gen   *labnet.Host
	LB    *labnet.Host
	Sinks []*labnet.Host
	Spec  Spec
	// BridgeNetfilterLoaded reports whether br_netfilter's
	// bridge-nf-call-* sysctls exist in the switch namespace (the module is
	// loaded): only then does Spec.BridgeNetfilter leave any hook on.
	BridgeNetfilterLoaded bool
}

// Build creates the testbed. On error it deletes everything it created.
func Build(spec Spec) (*Bed, error) {
	if spec.Sinks < 1 || spec.Sinks > 80 {
		return nil, fmt.Errorf("testbed: %d sinks, want 1..80", spec.Sinks)
	}
	if spec.Prefix == "" {
		// UniquePrefix sweeps the namespaces of killed runs, killing
		// what still runs inside them (trafgen's workers) first.
		spec.Prefix = netns.UniquePrefix("dsrlbb")
	}
	ls := labnet.Spec{
		Prefix:  spec.Prefix,
		Subnet4: netip.MustParsePrefix("198.18.0.0/24"),
		Hosts: []labnet.HostSpec{
			{Name: "gen", Addr4: netip.MustParseAddr("198.18.0.2")},
			{Name: "lb", Addr4: netip.MustParseAddr("198.18.0.1")},
		},
	}
	for i := 1; i <= spec.Sinks; i++ {
		ls.Hosts = append(ls.Hosts, labnet.HostSpec{Name: fmt.Sprintf("s%d", i), Addr4: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})})
	}
	n, err := labnet.Build(ls)
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	b := &Bed{Net: n, Gen: n.Host("gen"), LB: n.Host("lb"), Spec: spec}
	for i := 1; i <= spec.Sinks; i++ {
		b.Sinks = append(b.Sinks, n.Host(fmt.Sprintf("s%d", i)))
	}
	if err := b.setup(); err != nil {
		return nil, errors.Join(fmt.Errorf("testbed %s*: %w", spec.Prefix, err), b.Close())
	}
	return b, nil
}

// Hosts returns every host: gen, lb, then the sinks.
func (b *Bed) Hosts() []*labnet.Host {
	return append([]*labnet.Host{b.Gen, b.LB}, b.Sinks...)
}

// Close deletes every namespace of the testbed.
func (b *Bed) Close() error { return b.Net.Close() }

func (b *Bed) setup() error {
	for _, h := range b.Hosts() {
		err := h.NS.Do(func() error {
			for _, p := range []string{"all", "default", "eth0"} {
				if err := labnet.WriteSysctl("/proc/sys/net/ipv6/conf/"+p+"/disable_ipv6", "1"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	brnf := "0"
	if b.Spec.BridgeNetfilter {
		brnf = "1"
	}
	err := b.Net.Switch.Do(func() error {
		_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
		b.BridgeNetfilterLoaded = err == nil
		for _, k := range []string{"iptables", "ip6tables", "arptables"} {
			if err := labnet.WriteSysctl("/proc/sys/net/bridge/bridge-nf-call-"+k, brnf); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if err := b.staticFDB(); err != nil {
		return err
	}
	if !b.Spec.SinkPass {
		for _, s := range b.Sinks {
			if err := b.Nft(s, SinkDropRuleset); err != nil {
				return err
			}
		}
	}
	return nil
}

// SinkDropRuleset drops every frame at a sink's netdev ingress hook.
const SinkDropRuleset = `table netdev dsrlb_bench_sink {
	chain ingress {
		type filter hook ingress device "eth0" priority 0; policy drop;
	}
}
`

// Nft loads ruleset into h's namespace with `nft -f -`.
func (b *Bed) Nft(h *labnet.Host, ruleset string) error {
	cmd := h.NS.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in %s: %w\n%s", h.NS.Name(), err, out)
	}
	return nil
}

// RPS sets rps_cpus of every receive queue of h's eth0 to mask (hex, as
// the file takes it; "0" turns RPS off). sysfs shows a namespace's devices
// only when mounted inside it, so this runs `ip netns exec ... sh`.
func (b *Bed) RPS(h *labnet.Host, mask string) error {
	for _, c := range mask {
		if !strings.ContainsRune("0123456789abcdefABCDEF,", c) {
			return fmt.Errorf("rps mask %q: not hex", mask)
		}
	}
	script := fmt.Sprintf(`for q in /sys/class/net/%s/queues/rx-*; do echo %s > "$q/rps_cpus" || exit 1; done`, h.Link, mask)
	if out, err := h.NS.Command("sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("set rps_cpus=%s on %s in %s: %w\n%s", mask, h.Link, h.NS.Name(), err, out)
	}
	return nil
}

// CPUMask returns the rps_cpus mask covering CPUs 0..n-1: hex, in
// comma-separated 32-bit groups, most significant first.
func CPUMask(n int) string {
	if n <= 0 {
		return "0"
	}
	var groups []string
	for lo := 0; lo < n; lo += 32 {
		bits := min(n-lo, 32)
		var g uint64 = 1<<bits - 1
		groups = append([]string{fmt.Sprintf("%x", g)}, groups...)
	}
	for i := 1; i < len(groups); i++ {
		groups[i] = fmt.Sprintf("%08s", groups[i])
	}
	return strings.Join(groups, ",")
}

// Snapshot is every counter the benchmark reads, taken in one pass.
type Snapshot struct {
	At      time.Time
	Ports   map[string]labnet.LinkStats // switch port counters, by host name
	CPU     CPUTimes                    // all CPUs, from /proc/stat
	PerCPU  []CPUTimes
	Softnet Softnet
}

// Snapshot reads the counters.
func (b *Bed) Snapshot() (Snapshot, error) {
	s := Snapshot{At: time.Now()}
	ports, err := b.portCounters()
	stat, serr := os.ReadFile("/proc/stat")
	softnet, nerr := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return Snapshot{}, fmt.Errorf("read switch port counters: %w", err)
	}
	if serr != nil {
		return Snapshot{}, serr
	}
	s.Ports = ports
	s.CPU, s.PerCPU, err = ParseProcStat(string(stat))
	if err != nil {
		return Snapshot{}, err
	}
	if nerr == nil {
		s.Softnet, _ = ParseSoftnet(string(softnet))
	}
	return s, nil
}

// Window is what happened between two snapshots.
type Window struct {
	Seconds   float64  `json:"seconds"`
	Offered   uint64   `json:"offered"`    // frames the generator put into the switch
	LBIn      uint64   `json:"lb_in"`      // frames the switch delivered to the balancer host
	LBOut     uint64   `json:"lb_out"`     // frames the balancer host sent into the switch
	Delivered uint64   `json:"delivered"`  // frames the switch delivered to the sinks
	PerSink   []uint64 `json:"per_sink"`   // Delivered by sink
	PortDrops uint64   `json:"port_drops"` // drop counters of every switch port, summed
	// CPU is in USER_HZ ticks, all CPUs.
	CPU CPUTimes `json:"cpu_ticks"`
	// PerCPUBusy is each CPU's busy share of its ticks.
	PerCPUBusy []float64 `json:"per_cpu_busy"`
	Softnet    Softnet   `json:"softnet"`
}

// Window returns the counters' change from a to z.
func (b *Bed) Window(a, z Snapshot) Window {
	w := Window{Seconds: z.At.Sub(a.At).Seconds(), CPU: z.CPU.Sub(a.CPU), Softnet: z.Softnet.Sub(a.Softnet)}
	for i := range min(len(a.PerCPU), len(z.PerCPU)) {
		if c := z.PerCPU[i].Sub(a.PerCPU[i]); c.Total() > 0 {
			w.PerCPUBusy = append(w.PerCPUBusy, float64(c.Busy())/float64(c.Total()))
		}
	}
	d := func(h *labnet.Host) labnet.LinkStats { return z.Ports[h.Name].Sub(a.Ports[h.Name]) }
	w.Offered = d(b.Gen).RxPackets
	w.LBIn, w.LBOut = d(b.LB).TxPackets, d(b.LB).RxPackets
	for _, s := range b.Sinks {
		n := d(s).TxPackets
		w.PerSink = append(w.PerSink, n)
		w.Delivered += n
	}
	for _, h := range b.Hosts() {
		w.PortDrops += d(h).RxDropped + d(h).TxDropped
	}
	return w
}

// Tools checks that the programs the testbed runs are installed.
func Tools() error {
	var missing []string
	for _, t := range []string{"ip", "nft", "sh"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing programs: %s (iproute2, nftables)", strings.Join(missing, ", "))
	}
	return nil
}

// VIPPort is the VIP with a port.
func VIPPort(port uint16) netip.AddrPort { return netip.AddrPortFrom(VIP, port) }
