package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// Traffic is the kind of frame a load consists of.
type Traffic int

const (
	UDP Traffic = iota // 60-byte IPv4/UDP frames
	SYN                // 54-byte IPv4/TCP SYN frames
)

// ParseTraffic parses "udp" or "syn".
func ParseTraffic(s string) (Traffic, error) {
	switch s {
	case "udp":
		return UDP, nil
	case "syn", "tcp":
		return SYN, nil
	}
	return 0, fmt.Errorf("traffic %q: want udp or syn", s)
}

func (t Traffic) String() string {
	if t == SYN {
		return "syn"
	}
	return "udp"
}

// Proto is the transport protocol's name as nft and dsrlb spell it.
func (t Traffic) Proto() string {
	if t == SYN {
		return "tcp"
	}
	return "udp"
}

// FirstPort is the lowest source port of a flow space.
const FirstPort = 1024

// MaxPorts is the most source ports a flow space uses; larger spaces add
// source addresses.
const MaxPorts = 1024

// MaxFlows is the largest flow space: MaxPorts ports on each of the 65536
// addresses of 198.19.0.0/16.
const MaxFlows = MaxPorts << 16

// SourceBase is the first source address of a flow space.
var SourceBase = netip.MustParseAddr("198.19.0.0")

// FlowSpace splits n flows into addrs source addresses (from SourceBase) ×
// ports source ports (from FirstPort). ports = min(n, MaxPorts), so the
// space holds addrs*ports flows: n rounded up to a multiple of ports.
func FlowSpace(n int) (addrs, ports int) {
	if n < 1 {
		n = 1
	}
	ports = min(n, MaxPorts)
	addrs = (n + ports - 1) / ports
	return addrs, ports
}

// Load is what a generator sends.
type Load struct {
	// Interface is the interface to send from, inside NS.
	Interface string
	NS        *netns.NS
	// SrcMAC and DstMAC are the frames' Ethernet addresses: the
	// generator's own, and the balancer's (or a sink's, for the direct
	// path).
	SrcMAC, DstMAC net.HardwareAddr
	// VIP is the destination address and port of every frame.
	VIP netip.AddrPort
	// Flows is the number of (source address, source port) pairs to draw
	// from, see FlowSpace.
	Flows   int
	Traffic Traffic
	// Threads is the number of sending threads (processes for trafgen,
	// kernel threads for pktgen), pinned to CPUs 0..Threads-1.
	Threads int
	// Rate is the total frames per second; 0 sends flat out.
	Rate float64
	// StampEvery makes every StampEvery-th UDP frame of a thread carry a
	// timestamp; 0 stamps none. Only TxRing stamps.
	StampEvery int
}

func (l *Load) validate() error {
	var errs []error
	if l.Interface == "" || l.NS == nil {
		errs = append(errs, errors.New("no interface or namespace"))
	}
	if len(l.SrcMAC) != 6 || len(l.DstMAC) != 6 {
		errs = append(errs, fmt.Errorf("MAC addresses %q and %q: want 6 bytes each", l.SrcMAC, l.DstMAC))
	}
	if !l.VIP.Addr().Is4() {
		errs = append(errs, fmt.Errorf("VIP %s: want IPv4", l.VIP))
	}
	if l.Flows < 1 || l.Flows > MaxFlows {
		errs = append(errs, fmt.Errorf("flows %d: want 1..%d", l.Flows, MaxFlows))
	}
	if l.Threads < 1 {
		errs = append(errs, fmt.Errorf("threads %d: want at least 1", l.Threads))
	}
	if l.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %v: want >= 0", l.Rate))
	}
	return errors.Join(errs...)
}

// Generator starts loads.
type Generator interface {
	// Name is "pktgen", "trafgen" or "txring".
	Name() string
	// Start begins sending l and returns once frames are flowing (or the
	// generator has failed).
	Start(ctx context.Context, l Load) (Run, error)
}

// Threads returns how many threads (or processes) g really sends l with:
// l.Threads, except for trafgen with a rate, which runs one
// (Trafgen.Threads).
func Threads(g Generator, l *Load) int {
	if t, ok := g.(Trafgen); ok {
		return t.Threads(l)
	}
	return l.Threads
}

// Run is a load being sent.
type Run interface {
	// Stop stops sending and returns once every thread or process of the
	// run has ended.
	Stop() (Result, error)
}

// Result is what a run reports about itself. The benchmark's own numbers
// come from the switch's port counters; these are for cross-checking.
type Result struct {
	// Sent is the frames the generator says it handed to the kernel.
	Sent uint64 `json:"sent"`
	// Retries counts send() kicks the kernel refused for want of socket
	// buffer (txring only).
	Retries uint64 `json:"retries"`
	// Kicks counts the send() calls that handed frames to the kernel
	// (txring only): Sent/Kicks is the mean burst.
	Kicks uint64 `json:"kicks,omitempty"`
	// Stalled is set when a transmit ring made no progress for
	// StallTimeout although frames were waiting.
	Stalled bool `json:"stalled"`
	// Output is what an external generator printed, trimmed.
	Output string `json:"output,omitempty"`
}

// StallTimeout is how long a transmit ring may make no progress before the
// run is reported stalled.
const StallTimeout = 2 * time.Second
