package balancer

import (
	"errors"
	"fmt"
)

// DefaultTableSize is the Maglev table size used when a ServiceSpec leaves TableSize at 0.
// It is prime and gives each of up to a few hundred backends a share accurate to well
// under 1%.
const DefaultTableSize = 65537

// maxTableSize bounds a Maglev table (64 MiB of uint32 entries at most).
const maxTableSize = 1 << 24

// IsPrime reports whether n is prime.
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 || n%3 == 0 {
		return n == 2 || n == 3
	}
	for i := uint64(5); i*i <= uint64(n); i += 6 {
		if uint64(n)%i == 0 || uint64(n)%(i+2) == 0 {
			return false
		}
	}
	return true
}

// Maglev is an immutable Maglev lookup table: size slots, each naming the index of the
// backend that owns it. The slots are packed into 64-bit words at the fewest bits that
// name every key (1, 2, 4, 8, 16 or 32: a power of two, so no slot straddles a word):
// with 4 backends the default 65537 slots take 16 KiB, which stays in a CPU's cache
// beside the packet rings, where 16-bit slots (128 KiB) were evicted and every lookup of a
// random flow missed. words is nil if the table is empty (no backend has weight > 0),
// and Lookup then returns -1.
type Maglev struct {
	size    uint64
	words   []uint64
	logBits uint8 // log2 of the bits per slot
	counts  []int // slots held per key index
}

// slotBits returns log2 of the bits per slot that name n keys (indices 0..n-1).
func slotBits(n int) uint8 {
	var lb uint8
	for lb < 5 && n > 1<<(1<<lb) {
		lb++
	}
	return lb
}

// NewMaglev builds the table for the backends named by keys, in the given order, each with
// the matching weight. keys must be stable names (dsrlb uses address strings) and unique.
// A backend gets a share weight/sum(weights) of the size slots; with equal weights the fill
// is exactly the paper's algorithm. Backends with weight 0 get no slot. If no backend has
// weight > 0 the table is valid and empty. size must be prime and at most 1<<24.
func NewMaglev(keys []string, weights []uint32, size uint32, seed uint64) (*Maglev, error) {
	if len(keys) != len(weights) {
		return nil, fmt.Errorf("maglev: %d keys but %d weights", len(keys), len(weights))
	}
	if size > maxTableSize {
		return nil, fmt.Errorf("maglev: table size %d exceeds maximum %d", size, maxTableSize)
	}
	if !IsPrime(size) {
		return nil, fmt.Errorf("maglev: table size %d is not prime", size)
	}
	seen := make(map[string]int, len(keys))
	weighted := 0
	for i, k := range keys {
		if j, dup := seen[k]; dup {
			return nil, fmt.Errorf("maglev: duplicate key %q at index %d and %d", k, j, i)
		}
		seen[k] = i
		if weights[i] > 0 {
			weighted++
		}
	}
	if uint64(weighted) > uint64(size) {
		return nil, fmt.Errorf("maglev: table size %d is smaller than the %d backends with weight > 0", size, weighted)
	}

	offsets, skips := permutations(keys, size, seed)
	m := &Maglev{size: uint64(size), counts: make([]int, len(keys))}
	if weighted == 0 {
		return m, nil
	}
	entries := populate(offsets, skips, weights, size)
	m.logBits = slotBits(len(keys))
	per := uint64(64) >> m.logBits
	m.words = make([]uint64, (uint64(size)+per-1)/per)
	for slot, b := range entries {
		if b < 0 {
			// Cannot happen: populate fills every slot when a weight is > 0.
			return nil, errors.New("maglev: internal error: unfilled slot")
		}
		m.counts[b]++
		word, shift := m.place(uint64(slot))
		m.words[word] |= uint64(b) << shift
	}
	return m, nil
}

// permutations returns each key's preference list for a table of size slots (see
// populate): its first slot and the step between its slots.
func permutations(keys []string, size uint32, seed uint64) (offsets, skips []uint32) {
	offsets = make([]uint32, len(keys))
	skips = make([]uint32, len(keys))
	for i, k := range keys {
		offsets[i] = uint32(keyHash(seed, k, 'o') % uint64(size))
		skips[i] = 1
		if size > 2 {
			skips[i] = uint32(keyHash(seed, k, 's')%uint64(size-1)) + 1
		}
	}
	return offsets, skips
}

// populate is the Maglev fill (paper, Pseudocode 1) generalised to weights. Backend i's
// preference list is offsets[i], offsets[i]+skips[i], offsets[i]+2·skips[i], ... (mod size).
// In each round every backend, in index order, adds its weight to its credit; if the credit
// reaches the largest weight it pays that and takes its next preferred empty slot. With equal
// weights every backend takes one slot per round: the paper's algorithm exactly.
//
// It requires a prime size, offsets[i] < size and 1 <= skips[i] < size (so each preference
// list visits every slot). It returns the owner of each slot, or all -1 if no weight is > 0.
func populate(offsets, skips, weights []uint32, size uint32) []int32 {
	entry := make([]int32, size)
	for i := range entry {
		entry[i] = -1
	}
	var wmax uint64
	active := make([]int32, 0, len(weights))
	for i, w := range weights {
		if w > 0 {
			active = append(active, int32(i))
			wmax = max(wmax, uint64(w))
		}
	}
	if len(active) == 0 {
		return entry
	}
	next := append([]uint32(nil), offsets...) // next candidate slot per backend
	credit := make([]uint64, len(weights))
	filled := uint32(0)
	for {
		for _, i := range active {
			credit[i] += uint64(weights[i])
			if credit[i] < wmax {
				continue
			}
			credit[i] -= wmax
			p, skip := next[i], skips[i]
			for entry[p] >= 0 {
				if p += skip; p >= size {
					p -= size
				}
			}
			entry[p] = i
			if p += skip; p >= size {
				p -= size
			}
			next[i] = p
			if filled++; filled == size {
				return entry
			}
		}
	}
}

// Lookup returns the index (into NewMaglev's keys) of the backend owning slot h % Size(),
// or -1 if the table is empty. It never allocates.
func (m *Maglev) Lookup(h uint64) int {
	if m.words == nil {
		return -1
	}
	return m.slot(h % m.size)
}

// place returns the word that holds slot s and the slot's bit offset in it.
func (m *Maglev) place(s uint64) (word, shift uint64) {
	logPer := 6 - m.logBits // log2 of the slots per word
	return s >> logPer, (s & (1<<logPer - 1)) << m.logBits
}

// slot returns the owner of slot s < size of a non-empty table.
func (m *Maglev) slot(s uint64) int {
	word, shift := m.place(s)
	return int(m.words[word] >> shift & (1<<(1<<m.logBits) - 1))
}

// Bytes is the memory the table's slots take.
func (m *Maglev) Bytes() int { return 8 * len(m.words) }

// Size returns the number of slots.
func (m *Maglev) Size() int { return int(m.size) }

// Counts returns the number of slots each backend holds, by key index, in a new slice.
func (m *Maglev) Counts() []int { return append([]int(nil), m.counts...) }

// entries returns the slot owners as uint32 (nil for an empty table), for tests.
func (m *Maglev) entries() []uint32 {
	if m.words == nil {
		return nil
	}
	out := make([]uint32, m.size)
	for i := range out {
		out[i] = uint32(m.slot(uint64(i)))
	}
	return out
}

// keyHash is FNV-1a 64 over the seed (8 bytes, little-endian), the key and a salt byte,
// followed by a finalizer so every output bit depends on every input bit.
func keyHash(seed uint64, key string, salt byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < 8; i++ {
		h = (h ^ ((seed >> (8 * i)) & 0xff)) * prime
	}
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h = (h ^ uint64(salt)) * prime
	return finish(h)
}
