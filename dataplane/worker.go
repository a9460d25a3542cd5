package dataplane

import (
	"sync/atomic"

	"github.com/dsrlb/dsrlb/balancer"
)

// Stats are counters summed over workers. Reasons is indexed by Reason;
// Reasons[Forwarded] counts forwarded frames.
type Stats struct {
	Received       uint64
	Reasons        [numReasons]uint64
	ForwardedBytes uint64
	FlowsNew       uint64 // flows inserted into a flow table
	FlowEvictions  uint64 // live flows pushed out by newer ones
	FlowsLive      uint64 // occupied flow-table entries
	FlowCapacity   uint64 // flow-table entries, all workers
	RingDrops      uint64 // frames the kernel dropped because a ring was full
	// RingWait counts the frames taken from the receive ring by how long
	// they waited there (buckets bounded by RingWaitBounds, the last one
	// beyond them); RingWaitNs is the sum of those waits.
	RingWait   [NumRingWaitBuckets]uint64
	RingWaitNs uint64
}

// Forwarded returns the number of frames forwarded.
func (s *Stats) Forwarded() uint64 { return s.Reasons[Forwarded] }

// Dropped returns the number of frames not forwarded, for any reason.
func (s *Stats) Dropped() uint64 {
	var n uint64
	for r := DropRunt; r < numReasons; r++ {
		n += s.Reasons[r]
	}
	return n
}

// ReasonName returns the metric-friendly name of drop reason i.
func ReasonName(i int) string { return Reason(i).String() }

// NumReasons is the length of Stats.Reasons.
const NumReasons = int(numReasons)

// MaxBackendSlots bounds balancer.Backend.Slot: the number of backends (over
// all services) whose traffic is counted separately.
const MaxBackendSlots = 4096

// counts is a worker's plain counters: only the worker touches them.
type counts struct {
	received  uint64
	reasons   [numReasons]uint64
	fwdBytes  uint64
	flowsNew  uint64
	ringDrops uint64
	ringWait  [NumRingWaitBuckets]uint64
	// ringWaitNs sums the waits counted in ringWait.
	ringWaitNs uint64

	backendPkts, backendBytes, backendFlows [MaxBackendSlots]uint64
	dirty                                   [MaxBackendSlots]bool // slot is in dirtySlots
	dirtySlots                              []uint16              // slots counted since the last publish
}

// published is the copy of a worker's counters that other goroutines read.
// The worker stores into it once per batch.
type published struct {
	received  atomic.Uint64
	reasons   [numReasons]atomic.Uint64
	fwdBytes  atomic.Uint64
	flowsNew  atomic.Uint64
	evictions atomic.Uint64
	live      atomic.Uint64
	ringDrops atomic.Uint64
	ringWait  [NumRingWaitBuckets]atomic.Uint64
	// ringWaitNs sums the waits counted in ringWait.
	ringWaitNs atomic.Uint64
	backends   [MaxBackendSlots]BackendCounters
	_          [64]byte // keep workers' counters on separate cache lines
}

// BackendCounters are the traffic counters of one backend counter slot.
type BackendCounters struct {
	Packets, Bytes, NewFlows atomic.Uint64
}

// Worker makes the forwarding decision for frames. It owns a flow table and
// counters and shares nothing with other workers; it is not safe for
// concurrent use. The packet path (Handle) never allocates, locks or logs.
type Worker struct {
	mac   [6]byte // the balancer interface's MAC: the rewritten source
	flows *FlowTable
	pkt   Packet
	c     counts
	pub   published
}

// NewWorker returns a worker that rewrites the source MAC to mac and keeps a
// flow table of flowTableSize entries that expire after idleNs nanoseconds.
func NewWorker(mac [6]byte, flowTableSize int, idleNs int64) *Worker {
	w := &Worker{mac: mac, flows: NewFlowTable(flowTableSize, idleNs)}
	w.c.dirtySlots = make([]uint16, 0, MaxBackendSlots)
	return w
}

// Handle decides what to do with one frame using table t at time now
// (monotonic nanoseconds, never 0). When it returns Forwarded the frame has
// been rewritten in place and should be transmitted as it is; otherwise the
// frame is untouched and the return value says why it is dropped. Handle
// counts the decision.
func (w *Worker) Handle(frame []byte, t *balancer.Table, now int64) Reason {
	r := w.decide(frame, t, now)
	w.c.received++
	w.c.reasons[r]++
	if r == Forwarded {
		w.c.fwdBytes += uint64(len(frame))
	}
	return r
}

func (w *Worker) decide(frame []byte, t *balancer.Table, now int64) Reason {
	p := &w.pkt
	if r := Parse(frame, p); r != Forwarded {
		return r
	}
	var b *balancer.Backend
	switch p.Proto {
	case protoTCP, protoUDP:
		proto := balancer.Protocol(p.Proto)
		flow := balancer.Flow{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: proto}
		if p.Fragment {
			// Stateless and port-free, so that every fragment of a
			// datagram, first or not, makes the same choice.
			svc := t.LookupFragment(p.Dst, proto)
			if svc == nil {
				return w.noService(t, p)
			}
			i, ok := svc.Pick(flow.Hash3(t.Seed()))
			if !ok {
				return DropNoBackend
			}
			b = svc.Backend(i)
			break
		}
		svc := t.Lookup(p.Dst, proto, p.DstPort)
		if svc == nil {
			return w.noService(t, p)
		}
		if b = w.flowBackend(svc, &flow, t, now, true); b == nil {
			return DropNoBackend
		}
	case protoICMP, protoICMPv6:
		if !t.HasVIP(p.Dst) {
			return DropNotVIP
		}
		if b = w.icmpBackend(t, p, now); b == nil {
			if p.Proto == protoICMPv6 && (p.ICMPType == icmp6NS || p.ICMPType == icmp6NA) {
				return DropNDP
			}
			return DropProtocol
		}
	default:
		if !t.HasVIP(p.Dst) {
			return DropNotVIP
		}
		return DropProtocol
	}
	Rewrite(frame[:12], b.MAC, w.mac)
	w.countBackend(b.Slot, len(frame))
	return Forwarded
}

// flowBackend returns the backend of flow: the one the flow table remembers
// if it is still in svc, else Maglev's choice (remembered when insert is
// set). nil when svc has no backend for new flows.
func (w *Worker) flowBackend(svc *balancer.Service, flow *balancer.Flow, t *balancer.Table, now int64, insert bool) *balancer.Backend {
	hash := flow.Hash(t.Seed())
	gen := uint32(t.Gen())
	key := flowKey{src: flow.Src.As16(), dst: flow.Dst.As16(), srcPort: flow.SrcPort, dstPort: flow.DstPort, proto: uint8(flow.Proto)}
	if e := w.flows.Lookup(hash, &key, now); e != nil {
		if e.gen == gen {
			return svc.Backend(int(e.idx))
		}
		// The table changed since: find the backend by address.
		if i, ok := svc.Index(e.Backend()); ok {
			e.gen, e.idx = gen, uint16(i)
			return svc.Backend(i)
		}
	}
	// New flow, or its backend left the table: pick by Maglev.
	i, ok := svc.Pick(hash)
	if !ok {
		return nil
	}
	b := svc.Backend(i)
	if insert {
		w.flows.Insert(hash, &key, b.Addr, gen, uint16(i), now)
		w.c.flowsNew++
		w.c.backendFlows[b.Slot]++
	}
	return b
}

// icmpBackend decides where an ICMP message for a VIP goes, or nil to drop
// it:
//   - an error (fragmentation needed, packet too big, unreachable, time
//     exceeded) quoting a server's reply — source VIP, to a client — goes to
//     the backend that owns that flow, found by swapping the quoted header's
//     addresses and ports, so path-MTU discovery works through DSR;
//   - an echo request goes to a backend of the VIP's first service, chosen
//     by (source, destination): the server answers the ping directly.
func (w *Worker) icmpBackend(t *balancer.Table, p *Packet, now int64) *balancer.Backend {
	if p.HasInner {
		in := &p.Inner
		if in.Src != p.Dst {
			return nil // not about a reply from this VIP
		}
		proto := balancer.Protocol(in.Proto)
		svc := t.Lookup(in.Src, proto, in.SrcPort)
		if svc == nil {
			return nil
		}
		flow := balancer.Flow{Src: in.Dst, Dst: in.Src, SrcPort: in.DstPort, DstPort: in.SrcPort, Proto: proto}
		return w.flowBackend(svc, &flow, t, now, false)
	}
	if (p.Proto == protoICMP && p.ICMPType == 8) || (p.Proto == protoICMPv6 && p.ICMPType == 128) {
		svc := t.EchoService(p.Dst)
		if svc == nil {
			return nil
		}
		flow := balancer.Flow{Src: p.Src, Dst: p.Dst, Proto: balancer.Protocol(p.Proto)}
		if i, ok := svc.Pick(flow.Hash3(t.Seed())); ok {
			return svc.Backend(i)
		}
	}
	return nil
}

// countBackend counts a forwarded frame for the backend in counter slot s.
func (w *Worker) countBackend(s uint16, n int) {
	if !w.c.dirty[s] {
		w.c.dirty[s] = true
		w.c.dirtySlots = append(w.c.dirtySlots, s)
	}
	w.c.backendPkts[s]++
	w.c.backendBytes[s] += uint64(n)
}

func (w *Worker) noService(t *balancer.Table, p *Packet) Reason {
	if t.HasVIP(p.Dst) {
		return DropNoService
	}
	return DropNotVIP
}

// publish copies the worker's counters where Stats can read them.
func (w *Worker) publish() {
	p := &w.pub
	p.received.Store(w.c.received)
	for i := range w.c.reasons {
		p.reasons[i].Store(w.c.reasons[i])
	}
	p.fwdBytes.Store(w.c.fwdBytes)
	p.flowsNew.Store(w.c.flowsNew)
	p.evictions.Store(w.flows.Evictions)
	p.live.Store(w.flows.Live)
	p.ringDrops.Store(w.c.ringDrops)
	for i := range w.c.ringWait {
		p.ringWait[i].Store(w.c.ringWait[i])
	}
	p.ringWaitNs.Store(w.c.ringWaitNs)
	for _, s := range w.c.dirtySlots {
		b := &p.backends[s]
		b.Packets.Store(w.c.backendPkts[s])
		b.Bytes.Store(w.c.backendBytes[s])
		b.NewFlows.Store(w.c.backendFlows[s])
		w.c.dirty[s] = false
	}
	w.c.dirtySlots = w.c.dirtySlots[:0]
}

// addTo adds the worker's published counters to s.
func (w *Worker) addTo(s *Stats) {
	p := &w.pub
	s.Received += p.received.Load()
	for i := range s.Reasons {
		s.Reasons[i] += p.reasons[i].Load()
	}
	s.ForwardedBytes += p.fwdBytes.Load()
	s.FlowsNew += p.flowsNew.Load()
	s.FlowEvictions += p.evictions.Load()
	s.FlowsLive += p.live.Load()
	s.FlowCapacity += uint64(w.flows.Cap())
	s.RingDrops += p.ringDrops.Load()
	for i := range s.RingWait {
		s.RingWait[i] += p.ringWait[i].Load()
	}
	s.RingWaitNs += p.ringWaitNs.Load()
}
