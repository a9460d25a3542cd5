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
	// FlowsNew counts new flows: flows inserted into a flow table while
	// tracking, TCP connections opened (SYN) while not.
	FlowsNew      uint64
	FlowTracking  uint64 // workers tracking flows in their flow table
	FlowEvictions uint64 // live flows pushed out by newer ones
	FlowsLive     uint64 // occupied flow-table entries
	FlowCapacity  uint64 // flow-table entries, all workers
	RingDrops     uint64 // frames the kernel dropped because a ring was full
	RingMoves     uint64 // RingConfig.Auto: moves between the ring of slots and the ring of blocks
	RingBlocks    uint64 // RingConfig.Auto: workers whose ring of blocks the kernel fills now
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
	ringMoves uint64
	onBlocks  bool
	ringWait  [NumRingWaitBuckets]uint64
	// ringWaitNs sums the waits counted in ringWait.
	ringWaitNs uint64

	backendPkts, backendBytes, backendFlows [MaxBackendSlots]uint64
	dirty                                   [MaxBackendSlots]bool   // slot is in dirtySlots
	dirtySlots                              []uint16                // slots counted since the last publish
	lastSlot                                uint16                  // the backend of the last frame forwarded
	slotEpoch                               [MaxBackendSlots]uint32 // the backend each slot counts (Backend.SlotEpoch)
	slotsOf                                 *balancer.Table         // the table slotEpoch was last checked against
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
	tracking  atomic.Bool
	ringDrops atomic.Uint64
	ringMoves atomic.Uint64
	onBlocks  atomic.Bool
	ringWait  [NumRingWaitBuckets]atomic.Uint64
	// ringWaitNs sums the waits counted in ringWait.
	ringWaitNs atomic.Uint64
	backends   [MaxBackendSlots]BackendCounters
	_          [64]byte // keep workers' counters on separate cache lines
}

// BackendCounters are the traffic counters of one backend counter slot, and
// the epoch (balancer.Backend.SlotEpoch) of the backend they count: a slot
// handed to a new backend counts for it only once the worker has a table
// with it, and until then its old counts are the old backend's.
type BackendCounters struct {
	Packets, Bytes, NewFlows atomic.Uint64
	Epoch                    atomic.Uint32 // stored after the counts
}

// Worker makes the forwarding decision for frames. It owns a flow table and
// counters and shares nothing with other workers; it is not safe for
// concurrent use. The packet path (Handle) never allocates, locks or logs.
type Worker struct {
	mac    [6]byte // the balancer interface's MAC: the rewritten source
	flows  *FlowTable
	idleNs int64 // the flow table's idle timeout
	pkt    Packet
	c      counts
	pub    published
	track  tracking
}

// tracking is the worker's flow-tracking state (see doc.go, "Flow state").
// While a worker is not tracking, every flow is where Maglev puts it in cur
// and the flow table is neither read nor written.
type tracking struct {
	cur *balancer.Table // the table of the last frame handled
	// flows names cur's flows: tables with equal flows send every flow to
	// the same backend (balancer.Table.SameFlows), so going from one to
	// another is no change to track flows across.
	flows uint64
	on    bool
	// base is the table in force when tracking began (valid while on): a
	// flow that the flow table does not hold, and that may be older than
	// the change, is given the backend base chose for it.
	base *balancer.Table
	// graceEnd is the end of the flow table's idle timeout after the last
	// table change: until then an untracked flow may be one that began
	// before the change (monotonic ns, valid while on).
	graceEnd int64
	// After graceEnd, a sweep of the flow table looks for a live flow held
	// on a backend other than the one cur's Maglev gives it. A pass that
	// finds none ends tracking; one that finds one stops there, and the next
	// starts at sweepAt.
	sweepSet int
	sweepAt  int64
	// offAt is when tracking last ended (monotonic ns, 0 before). The
	// entries still live then stay in the flow table, untouched; a
	// tracking that starts long enough after for their times to wrap
	// forgets them first (FlowTable.Forget).
	offAt int64
}

// sweepSets is how many flow-table sets (8 entries each) the sweep looks at
// per batch, and sweepPause how long it waits after a pass that found a flow
// still held off its Maglev backend.
const (
	sweepSets  = 8
	sweepPause = int64(1e9)
)

// NewWorker returns a worker that rewrites the source MAC to mac and keeps a
// flow table of flowTableSize entries that expire after idleNs nanoseconds.
func NewWorker(mac [6]byte, flowTableSize int, idleNs int64) *Worker {
	w := &Worker{mac: mac, flows: NewFlowTable(flowTableSize, idleNs), idleNs: max(idleNs, 1)}
	w.c.dirtySlots = make([]uint16, 0, MaxBackendSlots)
	return w
}

// Tracking reports whether the worker is tracking flows in its flow table:
// from the first table change it sees until the flows it holds all follow the
// current table.
func (w *Worker) Tracking() bool { return w.track.on }

// observe notes the table a frame is handled with, and the name of its
// flows. A change of table that may move flows starts (or prolongs)
// tracking: flows that were under way keep their backends. A new table
// with the same flows only replaces cur.
func (w *Worker) observe(t *balancer.Table, flows uint64, now int64) {
	tr := &w.track
	if t == tr.cur {
		return
	}
	if tr.cur != nil && t != nil && flows != tr.flows {
		if !tr.on {
			tr.on, tr.base = true, tr.cur
			if tr.offAt != 0 && now-tr.offAt >= w.flows.wrapNs()/2 {
				w.flows.Forget()
			}
		}
		tr.graceEnd = now + w.idleNs
		tr.sweepSet, tr.sweepAt = 0, 0
	}
	tr.cur, tr.flows = t, flows
}

// maintain does the worker's per-batch housekeeping at time now: while
// tracking, after the grace period, a step of the sweep that ends it.
func (w *Worker) maintain(now int64) {
	tr := &w.track
	if !tr.on || now < tr.graceEnd || now < tr.sweepAt {
		return
	}
	ft := w.flows
	at := uint32(now >> ft.shift)
	end := min(tr.sweepSet+sweepSets, len(ft.sets))
	for si := tr.sweepSet; si < end; si++ {
		s := &ft.sets[si]
		for i := range flowWays {
			if s.tags[i] == 0 {
				continue
			}
			if at-s.seen[i] > ft.idle {
				s.tags[i] = 0
				ft.Live--
				ft.Expired++
				continue
			}
			if w.heldOff(&ft.entries[si*flowWays+i]) {
				tr.sweepSet, tr.sweepAt = 0, now+sweepPause
				return
			}
		}
	}
	tr.sweepSet = end
	if end == len(ft.sets) {
		// Every live flow goes where the table would send it anyway.
		tr.on, tr.base, tr.sweepSet, tr.offAt = false, nil, 0, now
	}
}

// heldOff reports whether flow-table entry e keeps its flow on a backend of
// the current table other than the one Maglev would pick for it.
func (w *Worker) heldOff(e *flowEntry) bool {
	t, flow := w.track.cur, e.key.flow()
	svc := t.Lookup(flow.Dst, flow.Proto, flow.DstPort)
	if svc == nil {
		return false // dropped either way
	}
	i, ok := svc.Index(e.Backend())
	if !ok {
		return false // its next packet is re-picked either way
	}
	j, ok := svc.Pick(flow.Hash(t.Seed()))
	return !ok || j != i
}

// Handle decides what to do with one frame using table t at time now
// (monotonic nanoseconds, never 0). When it returns Forwarded the frame has
// been rewritten in place and should be transmitted as it is; otherwise the
// frame is untouched and the return value says why it is dropped. Handle
// counts the decision.
//
// Every table t other than the last one is a change that may move flows
// (the dataplane, which knows more, uses handle).
func (w *Worker) Handle(frame []byte, t *balancer.Table, now int64) Reason {
	var flows uint64
	if t != nil {
		flows = t.Gen()
	}
	w.adoptSlots(t)
	return w.handle(frame, t, flows, now)
}

// handle is Handle with the name of t's flows: a table whose flows are the
// last table's is no change of flows (see tracking.flows).
//
// The caller has given t to adoptSlots (once per batch).
func (w *Worker) handle(frame []byte, t *balancer.Table, flows uint64, now int64) Reason {
	r := w.decide(frame, t, flows, now)
	w.c.received++
	w.c.reasons[r]++
	if r == Forwarded {
		w.c.fwdBytes += uint64(len(frame))
	}
	return r
}

func (w *Worker) decide(frame []byte, t *balancer.Table, flows uint64, now int64) Reason {
	p := &w.pkt
	if r := Parse(frame, p); r != Forwarded {
		return r
	}
	w.observe(t, flows, now)
	var b *balancer.Backend
	switch p.Proto {
	case protoTCP, protoUDP:
		proto := balancer.Protocol(p.Proto)
		flow := balancer.Flow{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: proto}
		if p.Fragment {
			// Stateless and port-free, so that every fragment of a
			// datagram, first or not, makes the same choice. The first
			// names its port: one that no service serves is dropped as it
			// would be whole, and its later fragments, forwarded, die
			// unassembled at the server. (A port service beside a port-0
			// service loses its fragmented datagrams to the port-0 one,
			// which claims every port: later fragments cannot tell.)
			svc := t.LookupFragment(p.Dst, proto)
			if svc == nil || p.HasPorts && t.Lookup(p.Dst, proto, p.DstPort) == nil {
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
		if b = w.flowBackend(svc, &flow, t, now, true, p.Opens()); b == nil {
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
	if [6]byte(frame[6:12]) == b.MAC {
		// The backend sent it: a server that does not hold the VIP and
		// forwards IP routes its own copy back to the VIP's MAC. Sent
		// back, it would circle until its TTL ran out.
		return DropLoop
	}
	Rewrite(frame[:12], b.MAC, w.mac)
	w.countBackend(b.Slot, len(frame))
	return Forwarded
}

// flowBackend returns the backend of flow, nil when svc has no backend for
// it. Not tracking, that is Maglev's choice. Tracking, it is the backend the
// flow table remembers if it is still in svc; else, for a flow that may have
// begun before the table changed (within the grace period, anything but a
// packet that opens a connection), the backend the table in force before the
// change chose, if still in svc; else Maglev's choice. The choice is
// remembered when insert is set.
func (w *Worker) flowBackend(svc *balancer.Service, flow *balancer.Flow, t *balancer.Table, now int64, insert, opens bool) *balancer.Backend {
	hash := flow.Hash(t.Seed())
	if !w.track.on {
		i, ok := svc.Pick(hash)
		if !ok {
			return nil
		}
		b := svc.Backend(i)
		if insert && opens {
			w.countNewFlow(b)
		}
		return b
	}
	gen := uint32(t.Gen())
	key := keyOf(flow)
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
	i, ok := -1, false
	if !opens && now < w.track.graceEnd {
		i, ok = w.basePick(svc, flow, t, hash)
	}
	if !ok {
		// New flow, or its backend left the table: pick by Maglev.
		if i, ok = svc.Pick(hash); !ok {
			return nil
		}
	}
	b := svc.Backend(i)
	if insert {
		w.flows.Insert(hash, &key, b.Addr, gen, uint16(i), now)
		w.countNewFlow(b)
	}
	return b
}

// basePick returns the index in svc of the backend that the table in force
// when tracking began chose for flow (hash is its hash under t's seed), if
// that backend is still in svc.
func (w *Worker) basePick(svc *balancer.Service, flow *balancer.Flow, t *balancer.Table, hash uint64) (int, bool) {
	base := w.track.base
	old := base.Lookup(flow.Dst, flow.Proto, flow.DstPort)
	if old == nil {
		return 0, false
	}
	if base.Seed() != t.Seed() {
		hash = flow.Hash(base.Seed())
	}
	j, ok := old.Pick(hash)
	if !ok {
		return 0, false
	}
	return svc.Index(old.Backend(j).Addr)
}

// countNewFlow counts a new flow for backend b.
func (w *Worker) countNewFlow(b *balancer.Backend) {
	w.c.flowsNew++
	w.c.backendFlows[b.Slot]++
}

// icmpBackend decides where an ICMP message for a VIP goes, or nil to drop
// it:
//   - an error (fragmentation needed, packet too big, unreachable, time
//     exceeded) quoting a server's reply — source VIP, to a client — goes to
//     the backend that owns that flow, found by swapping the quoted header's
//     addresses and ports, so path-MTU discovery works through DSR;
//   - an echo request goes to a backend of the VIP's first service, chosen
//     by (source, destination): the server answers the ping directly; so
//     do the later fragments of a large one.
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
		return w.flowBackend(svc, &flow, t, now, false, false)
	}
	// A later fragment of a large ping has no ICMP header; it goes where
	// its first fragment, the echo request, went (by the same hash).
	if p.LaterFragment || (p.Proto == protoICMP && p.ICMPType == 8) || (p.Proto == protoICMPv6 && p.ICMPType == 128) {
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

// adoptSlots restarts the counters of every slot that t gives to another
// backend than the one the worker counted there (Backend.SlotEpoch). It
// does the work once per table (a pointer compare otherwise): called for
// each batch, and when an idle worker wakes.
func (w *Worker) adoptSlots(t *balancer.Table) {
	if t == w.c.slotsOf {
		return
	}
	w.c.slotsOf = t
	if t == nil {
		return
	}
	for i := range t.NumServices() {
		for _, b := range t.ServiceAt(i).Backends() {
			s := b.Slot
			if w.c.slotEpoch[s] == b.SlotEpoch {
				continue
			}
			w.c.slotEpoch[s] = b.SlotEpoch
			w.c.backendPkts[s], w.c.backendBytes[s], w.c.backendFlows[s] = 0, 0, 0
			w.markDirty(s)
		}
	}
}

// markDirty notes that slot s changed since the last publish.
func (w *Worker) markDirty(s uint16) {
	if !w.c.dirty[s] {
		w.c.dirty[s] = true
		w.c.dirtySlots = append(w.c.dirtySlots, s)
	}
}

// countBackend counts a forwarded frame for the backend in counter slot s.
func (w *Worker) countBackend(s uint16, n int) {
	w.markDirty(s)
	w.c.backendPkts[s]++
	w.c.backendBytes[s] += uint64(n)
	w.c.lastSlot = s
}

// refused takes back the counts of the frame just forwarded (n bytes, as
// handled), which could not be sent: it becomes a tx_error, in the totals
// and in its backend's counters.
func (w *Worker) refused(n int) {
	w.c.reasons[Forwarded]--
	w.c.reasons[DropTxError]++
	w.c.fwdBytes -= uint64(n)
	w.c.backendPkts[w.c.lastSlot]--
	w.c.backendBytes[w.c.lastSlot] -= uint64(n)
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
	p.tracking.Store(w.track.on)
	p.ringDrops.Store(w.c.ringDrops)
	p.ringMoves.Store(w.c.ringMoves)
	p.onBlocks.Store(w.c.onBlocks)
	for i := range w.c.ringWait {
		p.ringWait[i].Store(w.c.ringWait[i])
	}
	p.ringWaitNs.Store(w.c.ringWaitNs)
	for _, s := range w.c.dirtySlots {
		b := &p.backends[s]
		b.Packets.Store(w.c.backendPkts[s])
		b.Bytes.Store(w.c.backendBytes[s])
		b.NewFlows.Store(w.c.backendFlows[s])
		b.Epoch.Store(w.c.slotEpoch[s])
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
	if p.tracking.Load() {
		s.FlowTracking++
	}
	s.RingDrops += p.ringDrops.Load()
	s.RingMoves += p.ringMoves.Load()
	if p.onBlocks.Load() {
		s.RingBlocks++
	}
	for i := range s.RingWait {
		s.RingWait[i] += p.ringWait[i].Load()
	}
	s.RingWaitNs += p.ringWaitNs.Load()
}
