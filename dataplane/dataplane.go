package dataplane

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"golang.org/x/net/bpf"
)

// Config says how to run the dataplane.
type Config struct {
	// Interface receives VIP traffic and reaches the servers (one-armed).
	Interface string
	// Workers is the number of workers, each with its own socket and ring;
	// 0 means one per CPU (one per entry of CPUs when that is set).
	Workers int
	// CPUs, if set, pins worker i's thread to CPUs[i % len(CPUs)]. Workers
	// pinned to a CPU together do not busy-poll (see RingConfig.BusyPoll).
	CPUs []int
	// Fanout is how the kernel spreads received frames over the workers'
	// sockets when there is more than one: FanoutHash (the default) or
	// FanoutCPU.
	Fanout Fanout
	// FlowTableSize is the number of flow entries per worker (default 65536).
	FlowTableSize int
	// FlowIdleTimeout is how long a flow is remembered after its last packet
	// (default 5 minutes).
	FlowIdleTimeout time.Duration
	// Ring sizes the receive rings; zero fields take DefaultRingConfig's.
	Ring RingConfig
	// VIPMAC is the MAC address the VIPs are answered on (ARP, neighbour
	// advertisements, announcements) and forwarded frames leave from; nil
	// is the interface's own. A MAC the interface does not own (see
	// VirtualMAC) is a virtual MAC, as hardware L4 switches use: the
	// interface is told to accept it (PACKET_MR_UNICAST), and the kernel
	// ignores the VIP frames by itself, since they are not addressed to it,
	// so no netdev drop rule is needed (with IP forwarding off).
	VIPMAC net.HardwareAddr
	// Log receives control-path messages; nil discards them.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
		if len(c.CPUs) > 0 {
			c.Workers = len(c.CPUs)
		}
	}
	if c.FlowTableSize <= 0 {
		c.FlowTableSize = 1 << 16
	}
	if c.FlowIdleTimeout <= 0 {
		c.FlowIdleTimeout = 5 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Ring = c.Ring.withDefaults()
	return c
}

// Fanout is how frames are spread over several workers.
type Fanout int

const (
	// FanoutHash gives each worker the flows whose hash falls to it
	// (PACKET_FANOUT_HASH): every frame of a flow goes to one worker,
	// wherever it was received.
	FanoutHash Fanout = iota
	// FanoutCPU gives each worker the frames received on the CPU it is
	// pinned to (a classic BPF fanout program maps CPUs to workers; frames
	// received on a CPU without a worker go to worker cpu % workers). The
	// frame then stays in that CPU's cache from receive to transmit. It
	// needs every worker pinned to a CPU of its own (CPUs), and the NIC (by
	// RSS, or RPS) to spread the flows over those CPUs: a flow received on
	// one CPU always reaches the same worker, and a single receive queue
	// without RPS would give every frame to one worker. On a veth, frames
	// are received on their sender's CPU.
	FanoutCPU
)

// ParseFanout parses "hash" or "cpu".
func ParseFanout(s string) (Fanout, error) {
	switch s {
	case "hash":
		return FanoutHash, nil
	case "cpu":
		return FanoutCPU, nil
	}
	return 0, fmt.Errorf("fanout %q: want hash or cpu", s)
}

func (f Fanout) String() string {
	switch f {
	case FanoutHash:
		return "hash"
	case FanoutCPU:
		return "cpu"
	}
	return fmt.Sprintf("Fanout(%d)", int(f))
}

// checkFanout returns an error if f cannot spread n workers pinned to cpus
// (as Config.CPUs).
func checkFanout(f Fanout, n int, cpus []int) error {
	switch f {
	case FanoutHash:
		return nil
	case FanoutCPU:
		if n <= 1 {
			return nil
		}
		if len(cpus) != n {
			return fmt.Errorf("fanout cpu: each of the %d workers needs a CPU of its own (CPUs lists %d)", n, len(cpus))
		}
		seen := make(map[int]bool, n)
		for _, c := range cpus {
			if seen[c] {
				return fmt.Errorf("fanout cpu: CPU %d is listed twice; each worker needs a CPU of its own", c)
			}
			seen[c] = true
		}
		return nil
	}
	return fmt.Errorf("fanout %d: unknown", int(f))
}

// cpuFanoutProgram is the classic BPF fanout program for FanoutCPU: it
// returns the index of the worker pinned to the CPU that received the
// frame (worker i runs on cpus[i], and joined the group i-th), or that
// CPU's number modulo the number of workers.
func cpuFanoutProgram(cpus []int) []bpf.Instruction { return cpuMemberProgram(cpus, nil) }

// cpuMemberProgram is a classic BPF fanout program that gives a frame
// received on cpus[i], or on another CPU whose number modulo len(cpus) is
// i, to member(i) of the group (nil: member i).
func cpuMemberProgram(cpus []int, member func(i int) uint32) []bpf.Instruction {
	n := max(len(cpus), 1)
	ret := func(i int) bpf.Instruction {
		if member == nil {
			return bpf.RetConstant{Val: uint32(i)}
		}
		return bpf.RetConstant{Val: member(i)}
	}
	prog := []bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtCPUID}}
	for i, c := range cpus {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c), SkipFalse: 1}, ret(i))
	}
	prog = append(prog, bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(n)})
	if member == nil {
		return append(prog, bpf.RetA{})
	}
	for i := range n - 1 {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(i), SkipFalse: 1}, ret(i))
	}
	return append(prog, ret(n-1))
}

// Dataplane forwards VIP traffic arriving on one interface to the backends
// chosen by the current table. Create it with Open, start it with Run, give it
// new tables with SetTable.
type Dataplane struct {
	cfg     Config
	ifi     *net.Interface
	mac     [6]byte
	table   atomic.Pointer[tableRef]
	workers []*Worker
	start   time.Time
	sys     sysDataplane // OS-specific sockets and rings
}

// MAC returns the MAC address the VIPs are answered on, the source of every
// forwarded frame: Config.VIPMAC, or the interface's own.
func (d *Dataplane) MAC() net.HardwareAddr { return net.HardwareAddr(d.mac[:]) }

// workerCPUs returns the CPU each of n workers is pinned to (-1: none):
// worker i gets cpus[i % len(cpus)].
func workerCPUs(n int, cpus []int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = -1
		if len(cpus) > 0 {
			out[i] = cpus[i%len(cpus)]
		}
	}
	return out
}

// sharesCPU reports whether worker i's CPU (cpus from workerCPUs) is also
// another worker's.
func sharesCPU(cpus []int, i int) bool {
	for j, c := range cpus {
		if j != i && c == cpus[i] {
			return true
		}
	}
	return false
}

// VirtualMAC returns the virtual MAC address derived from an interface's
// MAC hw: hw with the locally administered bit set (and the group bit
// clear), or, if hw already has it, with bit 0x04 of the first byte flipped.
// It is stable across restarts and differs from hw.
func VirtualMAC(hw net.HardwareAddr) net.HardwareAddr {
	v := slices.Clone(hw)
	if len(v) == 0 {
		return v
	}
	v[0] = (v[0] | 0x02) &^ 0x01
	if bytes.Equal(v, hw) {
		v[0] ^= 0x04
	}
	return v
}

// checkVIPMAC returns an error unless m can be the VIPs' MAC: six bytes,
// unicast, not all zero.
func checkVIPMAC(m net.HardwareAddr) error {
	switch {
	case len(m) != 6:
		return fmt.Errorf("VIP MAC %q: want a 6-byte Ethernet address", m)
	case m[0]&0x01 != 0:
		return fmt.Errorf("VIP MAC %s is a multicast address", m)
	case bytes.Equal(m, make(net.HardwareAddr, 6)):
		return fmt.Errorf("VIP MAC %s is all zero", m)
	}
	return nil
}

// Interface returns the interface the dataplane runs on.
func (d *Dataplane) Interface() *net.Interface { return d.ifi }

// Workers returns the number of workers.
func (d *Dataplane) Workers() int { return len(d.workers) }

// Table returns the table the workers currently use.
func (d *Dataplane) Table() *balancer.Table {
	if p := d.table.Load(); p != nil {
		return p.t
	}
	return nil
}

// tableRef is the table the workers use, and the name of its flows.
type tableRef struct {
	t *balancer.Table
	// flows names the run of published tables, one after another, that
	// send every flow to the same backend (balancer.Table.SameFlows): it
	// is the Gen of the first. A worker tracks flows across a change of
	// flows, not across a new table with the same flows (a changed MAC, a
	// new VIP), so those cost it no flow state.
	flows uint64
}

// publish makes t the workers' table (they pick it up at their next
// batch). It runs on the control path: comparing t with the table in force
// reads every Maglev slot of both.
func (d *Dataplane) publish(t *balancer.Table) {
	p := &tableRef{t: t, flows: t.Gen()}
	if old := d.table.Load(); old != nil && t.SameFlows(old.t) {
		p.flows = old.flows
	}
	d.table.Store(p)
}

// Stats sums the workers' counters. A worker publishes its counters after
// every batch and whenever its ring runs empty, so they lag by at most a
// batch (frames dropped for want of ring space: until the worker next
// sleeps, or 64 batches).
func (d *Dataplane) Stats() Stats {
	var s Stats
	for _, w := range d.workers {
		w.addTo(&s)
	}
	return s
}

// WorkerStats returns each worker's counters.
func (d *Dataplane) WorkerStats() []Stats {
	out := make([]Stats, len(d.workers))
	for i, w := range d.workers {
		w.addTo(&out[i])
	}
	return out
}

// checkSlots refuses a table with a backend counter slot that the workers'
// counters have no room for.
func checkSlots(t *balancer.Table) error {
	for _, s := range t.Services() {
		for _, b := range s.Backends() {
			if b.Slot >= MaxBackendSlots {
				return fmt.Errorf("service %s backend %s: counter slot %d, want below %d", s.Name(), b.Addr, b.Slot, MaxBackendSlots)
			}
		}
	}
	return nil
}

// BackendStats returns the traffic counted for the backend with counter
// slot s and epoch (balancer.Backend.Slot, SlotEpoch), summed over the
// workers that count the slot for it: a worker that has not yet had a table
// with that backend (a new one not yet resolved, or an idle worker between
// two wake-ups) still holds the slot's last owner's counts, which are not
// this backend's. Nothing for a slot beyond MaxBackendSlots, which no table
// can hold.
func (d *Dataplane) BackendStats(s uint16, epoch uint32) (packets, bytes, newFlows uint64) {
	if s >= MaxBackendSlots {
		return 0, 0, 0
	}
	for _, w := range d.workers {
		b := &w.pub.backends[s]
		if b.Epoch.Load() != epoch {
			continue // loaded first: the counts stored before it are at least as new
		}
		packets += b.Packets.Load()
		bytes += b.Bytes.Load()
		newFlows += b.NewFlows.Load()
	}
	return packets, bytes, newFlows
}

// clock reads the time once for a batch: the workers' monotonic clock
// (nanoseconds since Open, never 0) and the wall clock (CLOCK_REALTIME, Unix
// nanoseconds), which the kernel stamps ring slots with.
func (d *Dataplane) clock() (mono, wall int64) {
	t := time.Now()
	return int64(t.Sub(d.start)) + 1, t.UnixNano()
}

// CheckVIPsNotLocal returns an error if any VIP is an address of this host's
// kernel: its TCP stack would answer (and reset) connections meant for the
// servers.
func CheckVIPsNotLocal(vips []netip.Addr) error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("list local addresses: %w", err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		for _, v := range vips {
			if p.Addr().Unmap() == v {
				return fmt.Errorf("VIP %s is an address of this host (%s): the balancer's own kernel would answer and reset connections to it; remove it (ip addr del %s dev ...) — on the balancer the VIP must not be configured, dsrlb answers ARP/NDP for it", v, a, a)
			}
		}
	}
	return nil
}
