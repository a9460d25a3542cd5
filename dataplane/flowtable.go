package dataplane

import (
	"math/bits"
	"net/netip"
	"unsafe"

	"github.com/dsrlb/dsrlb/balancer"
)

// flowKey is a packet's 5-tuple in a fixed, pointer-free form.
type flowKey struct {
	src, dst         [16]byte
	srcPort, dstPort uint16
	proto            uint8
}

func keyOf(f *balancer.Flow) flowKey {
	return flowKey{src: f.Src.As16(), dst: f.Dst.As16(), srcPort: f.SrcPort, dstPort: f.DstPort, proto: uint8(f.Proto)}
}

// flow is the inverse of keyOf.
func (k *flowKey) flow() balancer.Flow {
	return balancer.Flow{Src: netip.AddrFrom16(k.src).Unmap(), Dst: netip.AddrFrom16(k.dst).Unmap(),
		SrcPort: k.srcPort, DstPort: k.dstPort, Proto: balancer.Protocol(k.proto)}
}

// flowEntry remembers which backend a flow went to. It is one cache line.
type flowEntry struct {
	key     flowKey
	backend [16]byte // the backend's address, As16 form
	// gen and idx cache where the backend was in the table the worker last
	// used for this flow: while the table is the same (its Gen's low 32
	// bits), idx is the backend's index and no lookup by address is needed.
	gen uint32
	idx uint16
}

// flowWays is the set size: a flow lives in one set of flowWays entries, and
// a new flow evicts the least recently seen entry of its set when the set is
// full. This bounds memory and approximates "evict oldest" at O(1) cost.
const flowWays = 8

// flowSet is the head of a set, one cache line: a tag (32 bits of the flow
// hash, never 0; 0 marks an empty way) and the coarse time of the last packet
// of each way. A lookup reads the head and then only the entry whose tag
// matches: two cache lines, where scanning eight entries would touch eight.
type flowSet struct {
	tags [flowWays]uint32
	seen [flowWays]uint32 // in the table's time units (FlowTable.shift)
}

// FlowEntryBytes is the memory one flow-table entry costs: the entry and its
// share of the set head. A worker's flow table costs FlowEntryBytes × its
// size (rounded up to a power of two).
const FlowEntryBytes = int(unsafe.Sizeof(flowEntry{}) + unsafe.Sizeof(flowSet{})/flowWays)

// FlowTable is a worker's bounded, set-associative flow table. It is owned by
// one worker goroutine and is not safe for concurrent use. Lookups and inserts
// never allocate.
type FlowTable struct {
	sets    []flowSet
	entries []flowEntry
	mask    uint64 // number of sets - 1
	// Times are kept in units of 2^shift ns, chosen so that the idle
	// timeout is 2^19 to 2^20 units (0.0002 % precision) and 32 bits span
	// thousands of timeouts.
	shift uint
	idle  uint32 // the idle timeout in units: an entry idle longer is dead

	Evictions uint64 // live entries pushed out by newer flows
	Expired   uint64 // idle entries replaced
	Live      uint64 // occupied entries (live or not yet replaced)
}

// NewFlowTable returns a table holding at least size entries (rounded up to a
// power of two, at least one set), whose entries expire after idleNs.
func NewFlowTable(size int, idleNs int64) *FlowTable {
	sets := 1
	for sets*flowWays < size {
		sets <<= 1
	}
	idleNs = max(idleNs, 1)
	shift := uint(max(bits.Len64(uint64(idleNs))-20, 0))
	return &FlowTable{
		sets:    make([]flowSet, sets),
		entries: make([]flowEntry, sets*flowWays),
		mask:    uint64(sets - 1),
		shift:   shift,
		idle:    uint32(idleNs >> shift),
	}
}

// wrapNs is the span of the table's 32-bit times: an entry untouched for
// that long looks fresh again.
func (t *FlowTable) wrapNs() int64 { return int64(1) << (32 + t.shift) }

// Forget empties the table. It writes the set heads only (a ninth of its
// memory), and is for an entry whose time may have wrapped (wrapNs): the
// worker's, when tracking starts long after it last ended.
func (t *FlowTable) Forget() {
	clear(t.sets)
	t.Live = 0
}

// Cap returns the number of entries.
func (t *FlowTable) Cap() int { return len(t.entries) }

// set returns the head and the entries of hash's set.
func (t *FlowTable) set(hash uint64) (*flowSet, []flowEntry) {
	// Use the high bits for the set: the low bits pick the Maglev slot and
	// make the tag.
	i := (hash >> 32) & t.mask
	e := i * flowWays
	return &t.sets[i], t.entries[e : e+flowWays : e+flowWays]
}

func flowTag(hash uint64) uint32 { return uint32(hash) | 1 }

// Lookup returns the entry of a live flow, its time refreshed, or nil. The
// entry stays valid until the next Insert.
func (t *FlowTable) Lookup(hash uint64, k *flowKey, now int64) *flowEntry {
	s, es := t.set(hash)
	tag, at := flowTag(hash), uint32(now>>t.shift)
	for i := range flowWays {
		if s.tags[i] == tag && es[i].key == *k {
			if at-s.seen[i] > t.idle {
				return nil
			}
			s.seen[i] = at
			return &es[i]
		}
	}
	return nil
}

// Backend returns the address of the entry's backend.
func (e *flowEntry) Backend() netip.Addr { return netip.AddrFrom16(e.backend).Unmap() }

// Insert records that the flow goes to backend (index idx of the table with
// generation gen), replacing the flow's old entry, an empty or expired one,
// or else the least recently seen one.
func (t *FlowTable) Insert(hash uint64, k *flowKey, backend netip.Addr, gen uint32, idx uint16, now int64) {
	s, es := t.set(hash)
	tag, at := flowTag(hash), uint32(now>>t.shift)
	victim, oldest := -1, uint32(0)
	for i := range flowWays {
		if s.tags[i] == 0 || (s.tags[i] == tag && es[i].key == *k) {
			victim = i
			break
		}
		// Times compare as distances from now, so that they may wrap.
		if age := at - s.seen[i]; victim < 0 || age > oldest {
			victim, oldest = i, age
		}
	}
	switch {
	case s.tags[victim] == 0:
		t.Live++
	case s.tags[victim] == tag && es[victim].key == *k:
	case at-s.seen[victim] > t.idle:
		t.Expired++
	default:
		t.Evictions++
	}
	s.tags[victim], s.seen[victim] = tag, at
	es[victim] = flowEntry{key: *k, backend: backend.As16(), gen: gen, idx: idx}
}
