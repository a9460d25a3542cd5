package dataplane

import (
	"net/netip"
	"unsafe"
)

// flowKey is a packet's 5-tuple in a fixed, pointer-free form.
type flowKey struct {
	src, dst         [16]byte
	srcPort, dstPort uint16
	proto            uint8
}

func makeFlowKey(p *Packet) flowKey {
	return flowKey{src: p.Src.As16(), dst: p.Dst.As16(), srcPort: p.SrcPort, dstPort: p.DstPort, proto: p.Proto}
}

// flowEntry remembers which backend a flow went to. An entry with seen == 0 is
// empty.
type flowEntry struct {
	hash    uint64
	key     flowKey
	backend [16]byte // the backend's address, As16 form
	seen    int64    // coarse monotonic time of the last packet, ns; 0 = empty
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

// FlowEntryBytes is the memory one flow-table entry costs. A worker's flow
// table costs FlowEntryBytes × its size (rounded up to a power of two).
const FlowEntryBytes = int(unsafe.Sizeof(flowEntry{}))

// FlowTable is a worker's bounded, set-associative flow table. It is owned by
// one worker goroutine and is not safe for concurrent use. Lookups and inserts
// never allocate.
type FlowTable struct {
	entries []flowEntry
	mask    uint64 // number of sets - 1
	idle    int64  // ns after which an entry is dead

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
	return &FlowTable{entries: make([]flowEntry, sets*flowWays), mask: uint64(sets - 1), idle: idleNs}
}

// Cap returns the number of entries.
func (t *FlowTable) Cap() int { return len(t.entries) }

func (t *FlowTable) set(hash uint64) []flowEntry {
	// Use the high bits for the set: the low bits pick the Maglev slot.
	i := ((hash >> 32) & t.mask) * flowWays
	return t.entries[i : i+flowWays : i+flowWays]
}

// Lookup returns the entry of a live flow, its time refreshed, or nil. The
// entry stays valid until the next Insert.
func (t *FlowTable) Lookup(hash uint64, k *flowKey, now int64) *flowEntry {
	set := t.set(hash)
	for i := range set {
		e := &set[i]
		if e.hash == hash && e.seen != 0 && e.key == *k {
			if now-e.seen > t.idle {
				return nil
			}
			e.seen = now
			return e
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
	set := t.set(hash)
	victim := -1
	for i := range set {
		e := &set[i]
		if e.seen == 0 || (e.hash == hash && e.key == *k) {
			victim = i
			break
		}
		if victim < 0 || e.seen < set[victim].seen {
			victim = i
		}
	}
	e := &set[victim]
	switch {
	case e.seen == 0:
		t.Live++
	case e.hash == hash && e.key == *k:
	case now-e.seen > t.idle:
		t.Expired++
	default:
		t.Evictions++
	}
	*e = flowEntry{hash: hash, key: *k, backend: backend.As16(), seen: now, gen: gen, idx: idx}
}
