// Package labnet builds a one-segment Ethernet lab out of network namespaces:
// a switch namespace holding a Linux bridge, and one namespace per host
// plugged into it by a veth pair. The lab (`dsrlb lab`), the benchmark
// harness and the end-to-end tests put a client, a balancer and servers on it.
//
// # Topology
//
// For a [Spec] with prefix P, [Build] creates the namespace P+"sw" with a
// bridge "br0" (up, STP off, forward delay 0, multicast snooping off, IPv6
// off, bridge netfilter hooks off where br_netfilter is loaded), and for each
// host H the namespace P+H with one interface "eth0". The other end of H's
// veth sits in the switch namespace, attached to br0, named [Host.Port].
// Each eth0 gets a fixed locally administered MAC (02:00:00:00:hi:lo from the
// host's position in Spec.Hosts, counting from 1) and the host's addresses
// with the subnets' prefix lengths. Duplicate address detection is off in
// the host namespaces, so every IPv6 address, link-local included, works at
// once (the lab's addresses are unique by construction). There are no
// default routes: everything
// is on one subnet. The veths keep their default offloads (checksum offload,
// TSO, GSO), so code tested here sees the frames a real kernel hands it.
//
// All namespaces are named, so `ip netns exec NAME ...` works on them, and
// the prefix keeps two labs on one machine apart ([netns.UniquePrefix]).
//
// # Guarantees
//
//   - Build either returns a complete lab or deletes every namespace it
//     created and returns an error naming the step that failed. It never
//     touches a namespace it did not create, not even one whose name
//     collides with its own.
//   - [Net.Close] deletes every namespace of the lab and may be called any
//     number of times.
//   - Sockets made by [Host.Listen], [Host.ListenPacket], [Host.Dial] and
//     [Host.Sniff] live in the host's namespace and can be used from any
//     goroutine; only the creation runs on a thread switched into it.
//   - Nothing here sends a packet anywhere but into namespaces the lab made.
//     Nothing logs.
//
// # Costs
//
// Building a lab takes a few milliseconds per host (netlink calls and
// namespace creation). Every Dial and Listen hops onto a fresh locked OS
// thread; that is cheap enough for tests and the lab, not for benchmarks
// that want millions of connections per second.
//
// Linux only; it needs CAP_SYS_ADMIN and CAP_NET_ADMIN. On other systems
// Build returns an error.
package labnet
