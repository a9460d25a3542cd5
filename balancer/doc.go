// Package balancer holds the immutable lookup structures of dsrlb: which service a packet
// is addressed to, and which backend a flow goes to.
//
// # What it does
//
// A [Table] maps a service key (VIP, protocol, port) to a [Service]. Each Service holds its
// backends, sorted by address, and a [Maglev] lookup table (Eisenbud et al., "Maglev: A Fast
// and Reliable Software Network Load Balancer", NSDI 2016, section 3.4) that spreads flows
// over the backends in proportion to their weights. [Flow.Hash] turns a packet's 5-tuple into
// the 64-bit value that [Service.Pick] maps to a backend; [Flow.Hash3] hashes only the
// addresses and protocol, for IP fragments that carry no ports.
//
// The control loop builds a new Table with [NewTable] whenever configuration or health changes
// and publishes it through an atomic.Pointer[Table]; the dataplane loads it once per batch.
//
// # Guarantees
//
//   - Immutability. NewTable copies everything it is given. Nothing in a Table, Service or
//     Maglev changes after construction, so any number of goroutines may read them without
//     locks. Slices returned by [Service.Backends] and pointers returned by [Service.Backend]
//     point into the table and must not be modified; [Table.VIPs], [Table.Services] and
//     [Maglev.Counts] return fresh slices.
//   - Determinism. Backends are sorted by address inside each service, Maglev permutations come
//     from FNV-1a over (seed, address string), and Flow hashes use fixed multiply and
//     xorshift mixing: no hash/maphash, no random seeds, no map iteration. Two processes with the same
//     specs and seed build byte-identical tables and hash every flow to the same value, so a
//     fleet of load balancers agrees on every flow's backend. Changing the hash functions
//     changes every flow's backend; golden tests pin them.
//   - No allocation on the packet path. [Table.Lookup], [Table.HasVIP],
//     [Table.LookupFragment], [Table.EchoService], [Table.NumServices], [Table.ServiceAt],
//     [Service.Pick], [Service.Index], [Service.Backend], [Service.Backends],
//     [Maglev.Lookup], [Flow.Hash] and [Flow.Hash3] never allocate and never fail with an error; tests assert testing.AllocsPerRun == 0.
//     Lookup and HasVIP accept a nil *Table (nothing published yet) and report no match.
//   - Minimal disruption. Removing or adding one backend among N moves few flows that did not
//     belong to it (see the disruption tests for measured fractions).
//
// # Costs
//
// Table.Lookup is a scan of up to 16 services, or one or two Go map lookups for more.
// Service.Pick is a modulo and one load from the
// Maglev slots, packed at the fewest bits (1, 2, 4, 8, 16 or 32) that name every backend: at
// the default size of 65537 slots, 16 KiB for up to 4 backends, 32 KiB for 16, 64 KiB for
// 256, 128 KiB for 65536 ([Maglev.Bytes]). Service.Index is a binary search over
// the sorted backends. Flow.Hash is three 128-bit multiplies and a finalizer, the two
// addresses mixed in parallel.
//
// NewMaglev takes O(size) memory and, with equal weights, the paper's expected O(size·log size)
// time. With unequal weights each fill round visits every weighted backend, so the time grows
// with the ratio of the largest weight to the average: keep weights within a sensible range
// (say 1..1000) rather than using extreme ratios. A backend whose weighted share is below one
// slot may get none.
//
// # Validation
//
// NewTable and NewMaglev are control-path functions: they return errors that say which service
// (name and key), which backend and what was wrong. Services must have unique non-empty names
// and unique keys; VIPs and backend addresses must be valid, without zone, not IPv4-mapped IPv6,
// and backends must be of the VIP's address family. Table sizes must be prime and at most
// 1<<24. A backend with weight 0 is draining: it owns no Maglev slot, so it gets no new flows,
// but Service.Index still finds it so established flows can be kept.
//
// # Fragments
//
// IP fragments after the first carry no ports, so [Table.LookupFragment] matches every fragment
// of a datagram by VIP and protocol alone (the port-0 service, else the only service for that
// protocol), and [Flow.Hash3] picks the backend from addresses and protocol alone: all fragments
// of one datagram reach the same backend. With several port services on one VIP and protocol
// and no port-0 service, fragments are ambiguous and are dropped (counted by the dataplane).
package balancer
