// Package dataplane receives VIP traffic on one interface, picks a backend for
// each frame and re-emits the frame to it with only its Ethernet header
// rewritten: Direct Server Return.
//
// # Shape
//
// Each worker owns one AF_PACKET socket with a TPACKET_V2 receive ring
// (memory-mapped slots, 8192 × 2 KiB by default). With more than one worker
// the sockets are joined by PACKET_FANOUT in hash mode, so the kernel sends
// every packet of a flow to the same worker; the workers share nothing but
// the read-only table. With FanoutCPU the group runs a classic BPF fanout
// program instead, which gives each worker the frames received on the CPU
// it is pinned to: a frame is then received, decided and sent on one CPU,
// without its slot's cache lines crossing to another, provided the NIC's
// RSS (or RPS) spreads the flows over the workers' CPUs. A classic BPF
// socket filter lets only IPv4/IPv6 frames addressed to a VIP reach the
// rings (up to 48 VIPs; beyond that every IPv4/IPv6 frame, the others then
// dropped as not_vip), and every frame that still carries a VLAN tag; and
// PACKET_IGNORE_OUTGOING keeps the balancer from seeing its own frames.
//
// The kernel hands over every slot on its own, so no frame waits for others
// to fill a batch. A worker takes the ready slots (up to a transmit batch),
// decides every frame, rewrites the forwarded ones in place, copies them to
// the slots of its transmit ring (a second socket with a TPACKET_V2 TX ring,
// 1024 × 2 KiB by default) and hands the whole batch to the kernel with one
// send call, then returns the receive slots. A frame that finds every
// transmit slot still in flight is dropped (tx_error); frames the device
// refuses (down, busy) stay on the ring and go with the next send.
// PACKET_QDISC_BYPASS skips the qdisc layer on transmit. A frame too large
// for a slot (jumbo frames, GSO super-frames) is queued whole on the socket
// with PACKET_COPY_THRESH and its slot says so; the worker reads it with
// recvfrom and sends it with sendto from the receiving socket, after the
// frames before it, so order is kept.
//
// With RingConfig.Blocks the receive ring is a TPACKET_V3 one instead: 64
// blocks of 256 KiB (the same 16 MiB), the kernel packing frames into a block
// and handing the block over when it is full or 1 ms after its first frame.
// The worker then decides every frame of a block, copies the forwarded ones
// to the transmit ring (kicking it every transmit batch), sends a frame too
// large for a transmit slot on its own after the ones before it, and returns
// the block: one slot handshake per block instead of per frame, and frames
// written back to back, for up to the timeout of added latency. A block holds
// any frame up to 128 KiB; the kernel truncates larger ones, which are
// dropped as truncated.
//
// With RingConfig.Auto (one worker, or several with FanoutCPU) each worker
// has both rings, all the sockets one PACKET_FANOUT_CBPF group: every
// worker's ring of slots (member i for worker i), then every worker's ring
// of blocks (member n+i), and a program that picks the worker (by the
// receiving CPU, as for FanoutCPU) and one of its rings. A worker's move
// replaces the whole program under a lock, keeping the others' choices.
// A worker looks after every batch: on the slots, a slot an eighth of the
// ring ahead already filled for 5 ms moves it to the blocks; on the
// blocks, a rate below 0.6× the one it moved at for three 100 ms windows,
// or 10 s there, moves it back. A move replaces the program on a goroutine
// of its own: the setsockopt returns after an RCU grace period, when no CPU
// can still be writing into the old ring (milliseconds; half a second was
// seen on a loaded machine). Meanwhile the worker reads both rings. A CPU
// changes programs between two frames, so whatever the new ring holds came
// after its flows' frames in the old one: the worker counts it, empties the
// old ring, and forwards it once nothing is still being written there (no
// ready slot past the one it waits on, no frames in a block the kernel is
// filling). A flow's frames keep their order, and the new ring does not
// fill up while the kernel takes its time. When the setsockopt returns, the
// worker forwards what is left in the old ring (waiting up to 50 ms for a
// block to be handed over by its timeout) and goes on with the new one.
// Moves are counted (Stats.RingMoves, RingBlocks) and logged.
//
// When its ring runs empty a worker spins on it for
// RingConfig.BusyPoll (200 µs by default, yielding the CPU to anything else
// runnable) before it sleeps in poll: a worker that never sleeps needs no
// wake-up, which on a VM costs more than forwarding a frame. Worker threads
// are locked to their goroutine and run at nice -10 when allowed
// (CAP_SYS_NICE): under load they compete with the kernel's receive work.
//
// # Offloads
//
// Virtual NICs hand frames over with the checksum left to offload
// (CHECKSUM_PARTIAL) and, with TSO/GSO on, as super-frames larger than the MTU.
// With PACKET_VNET_HDR the kernel puts a virtio_net_hdr describing that
// metadata in front of every received frame; the worker sends that header back
// with the frame, so the kernel segments and checksums on the way out exactly
// as it would have. Nobody has to turn offloads off. An 802.1Q tag that the
// kernel moved into the ring's metadata is put back into the frame.
//
// # The decision
//
// Parse reads Ethernet (with up to two VLAN tags), IPv4 or IPv6 (with
// extension headers), the TCP/UDP ports and TCP flags into a Packet the
// worker owns. The service is found by (VIP, protocol, port) in the current
// balancer.Table, loaded once per batch from an atomic pointer, and the
// backend by the service's Maglev table (see "Flow state"). Fragments are
// balanced statelessly by (source, destination, protocol), so all fragments
// of a datagram reach one backend (see balancer.Table.LookupFragment); a
// first fragment to a port no service serves is dropped (no_service). A
// frame whose Ethernet source is the backend picked for it is dropped
// (loop): a server without the VIP that forwards IP sends it back, and it
// would circle until its TTL ran out. ICMP to a VIP: an echo request (and
// the later fragments of a large one) goes to a backend of the VIP's first
// service by name, chosen by (source, destination); an error quoting a
// server's reply (unreachable, fragmentation needed, packet too big, time
// exceeded, parameter problem) goes to the backend of the quoted flow;
// neighbour discovery is dropped as ndp, the rest as unsupported_protocol.
//
// # Flow state
//
// While the table does not change, Maglev alone is every flow's memory: the
// same 5-tuple always hashes to the same backend, and a worker keeps no state
// per flow (its flow table is not touched, so a flood of new flows costs it
// nothing). State is needed only when a table change moves flows that are
// under way, so a worker keeps it only then. A new table that sends every
// flow where the one before did (balancer.Table.SameFlows: a changed MAC, a
// new VIP, a renamed service) is no such change: SetTable gives it the same
// name of flows, and the workers keep forwarding without state. From the
// first table change that may move flows it sees, the worker tracks flows in its flow table (5-tuple → backend,
// set-associative, bounded, least recently seen evicted first):
//
//   - a flow the table remembers stays on its backend while that backend is
//     in the service (weight 0, draining, included); one whose backend left is
//     re-picked by Maglev;
//   - an unknown flow, during the grace period (the flow table's idle timeout
//     after the last change), may have begun before the change: unless its
//     packet opens a TCP connection (SYN without ACK), it gets the backend
//     that the table in force when tracking began chose for it, if that
//     backend is still in the service;
//   - any other unknown flow gets the current table's Maglev choice;
//   - every choice is remembered.
//
// After the grace period a sweep (a few sets per batch) clears idle entries
// and looks for a live flow held on a backend other than its Maglev choice in
// the current table; a pass that finds none ends tracking (a pass that finds
// one stops there, and the next begins a second later). Untracked again, the
// worker forwards by Maglev alone: every live flow goes where it would have.
// A flow that went unseen through a whole grace period has timed out, as an
// idle flow-table entry would. A UDP flow that starts during a grace period
// on a moved Maglev slot cannot be told from one under way and stays on the
// old backend. Two workers see a change independently, each at its next
// frame. Stats.FlowTracking and the dsrlb_worker_flow_tracking metric say
// which workers track. New flows are counted as flow-table inserts while
// tracking and as TCP SYNs while not (a stateless worker cannot tell a new
// UDP flow).
//
// # What it never does
//
// The packet path (Parse, Worker.Handle, Rewrite, the ring loop) never
// allocates, locks, logs or returns an error per packet: a frame that cannot
// be forwarded is dropped and counted under a Reason. Only the Ethernet
// destination and source addresses of a forwarded frame change; the IP packet
// leaves bit-identical and no checksum is touched; taking a new table
// (adoptSlots, once per batch) allocates nothing either. Tests prove both
// (TestHandleAllocs, TestAdoptSlotsAllocs, FuzzHandle); the ring loop around
// them is not measured by a test.
//
// # Memory
//
// Per worker: the rings (RingConfig.FrameSize × (Frames + TxFrames), with
// Blocks the same, in blocks), a
// 128 KiB buffer for frames too large for a slot, up to 8 MiB of such frames
// queued on the socket (SO_RCVBUF), and the flow table (FlowEntryBytes ×
// entries, entries rounded up to a power of two), and about 250 KiB of
// per-backend counters (MaxBackendSlots of them, counted and published).
// With the defaults, 16 + 2 + 4.5 MiB plus those 0.4 MiB per worker, plus
// the socket queue when large frames arrive faster than read.
//
// # Attracting the traffic
//
// The balancer's kernel must not own the VIPs (it would answer and reset
// connections): Open refuses to start if a VIP is a local address, and
// SetTable refuses a table with one. Nor may it route the VIP traffic: an nft
// netdev ingress rule drops the VIPs' frames after the workers' taps (see
// kerneldrop_linux.go), and with VIPs on a virtual MAC, which the kernel
// ignores unless it forwards IP, that rule is installed only when IP
// forwarding is on for a VIP's family; without nft, forwarding on refuses
// the table (Open, SetTable). Instead a responder on control-plane packet sockets
// answers ARP requests and IPv6 neighbour solicitations for the VIPs with the
// interface's MAC, and announces each VIP when it appears (gratuitous ARP,
// unsolicited neighbour advertisement).
package dataplane
