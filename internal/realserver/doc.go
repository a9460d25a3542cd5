// Package realserver prepares a Linux host to be a real server behind dsrlb, undoes that,
// and checks it. It is what `dsrlb server up|down|check` calls.
//
// # Why a real server needs this
//
// In Direct Server Return the balancer rewrites only the Ethernet destination of a client's
// packet: it reaches the real server still addressed from the client to the VIP, and the
// server answers the client directly with the VIP as its source. So every real server must
// hold the VIP as a local address, and none of them may claim it on the wire, or the
// router would send VIP traffic straight to that server instead of to the balancer.
//
// [Up] does four things:
//
//   - It adds each VIP to lo as a host route: a /32 with scope host for IPv4 (scope host also
//     keeps the kernel from picking the VIP as the source of the server's own outgoing
//     connections and ARP requests), a /128 with nodad for IPv6 (lo never runs duplicate
//     address detection anyway; nodad states the intent and makes the address usable at once).
//   - net.ipv4.conf.{all,NIC}.arp_ignore=1: answer an ARP request only if the target address
//     is configured on the interface the request came in on. Linux's default (0) answers for
//     any local address on any interface, which would make every NIC answer for the VIP on lo.
//   - net.ipv4.conf.{all,NIC}.arp_announce=2: when the server sends an ARP request itself,
//     use the best address of the outgoing interface as the sender, never the VIP; otherwise
//     neighbours that cache the sender (the router) learn "VIP is at this server's MAC".
//   - rp_filter: where the value the kernel applies to a NIC is 1 (strict), set that NIC's
//     rp_filter to 2 (loose). See below.
//
// The kernel applies max(all, NIC) for arp_ignore, arp_announce and rp_filter. Setting "all"
// covers NICs that are not listed or appear later; setting the NIC as well keeps it right if
// someone lowers "all" again.
//
// # rp_filter
//
// Strict reverse-path filtering (1) accepts a packet only if the route back to its source
// leaves through the interface it arrived on. DSR requests carry the client's address as
// source and arrive on the NIC facing the balancer. That passes on a single-homed server whose
// default route is that NIC, but a real server often returns traffic to clients through
// another NIC, gateway or routing table than the one the balancer delivers on, and then strict
// mode silently drops every request (the kernel counts them as IPReversePathFilter). Loose mode
// (2) accepts a packet whose source is reachable through any interface, which keeps the
// protection against unroutable sources.
//
// Because the kernel uses max(all, NIC), writing 0 to the NIC would not help when all is 1,
// while writing 2 to the NIC gives loose mode whatever all is, and only on that NIC. So Up
// writes 2 to a NIC whose effective value is 1, leaves NICs whose effective value is 0 or 2
// alone, and never changes net.ipv4.conf.all.rp_filter, which also governs every other
// interface of the host.
//
// # IPv6
//
// ARP and rp_filter are IPv4 only. Neighbour discovery answers a solicitation only for
// addresses on the interface it arrived on, so a VIP on lo is never advertised on a NIC, and
// IPv6 has no rp_filter sysctl. With only IPv6 VIPs, Up changes and Check checks no sysctl.
//
// # Check
//
// [Check] reports every setting that would stop DSR from working, one [Problem] each:
//
//   - lo is down; a VIP missing from lo; a VIP on lo with a prefix shorter than /32 (/128),
//     which would make a whole subnet local; an IPv6 VIP still tentative or failed DAD.
//   - A VIP on any other interface (listed or not): that interface answers ARP or neighbour
//     solicitations for it and steals the VIP from the balancer.
//   - net.ipv4.conf.all.arp_ignore != 1 and net.ipv4.conf.all.arp_announce != 2. "all" is
//     reported on its own because it decides for every interface, including later ones.
//   - net.ipv4.conf.NIC.arp_ignore and .arp_announce only when the effective value
//     max(all, NIC) is wrong: that is what the kernel acts on, and a NIC left at 0 under a
//     correct "all" behaves correctly. Got is then the effective value, and says so when it
//     comes from "all". Want is exactly what Up sets (1 and 2): stricter values such as
//     arp_ignore 2 or 8 change more than DSR needs, and Up would rewrite them.
//   - net.ipv4.conf.NIC.rp_filter when the effective value is 1 (strict).
//
// The sysctls are checked only when at least one VIP is IPv4. Check changes nothing and needs
// no state file.
//
// # State
//
// Up records in a JSON state file every sysctl it changed, with the value it found and the
// value it wrote, and every address it added to lo. It writes the file only when its content
// changes (and once when none exists), atomically (temporary file, fsync, rename), before it
// touches the system, so an interrupted Up still leaves a record [Down] can undo. A second Up
// changes nothing, writes nothing and logs nothing, and a sysctl that is already recorded keeps
// its first recorded previous value. A VIP already on lo before Up is not recorded.
//
// [Down] removes the recorded addresses first (so the VIP stops being local before ARP
// behaviour changes back), then restores the sysctls in reverse order. A sysctl is restored
// only if it still holds the value Up wrote: one that someone changed since is left as it is
// and logged as a warning, and one whose interface is gone is skipped. What could not be
// restored stays in the state file and the error says why; when everything is done the state
// file is deleted.
//
// The file also records the network namespace it belongs to (inode and SO_NETNS_COOKIE).
// Namespace inodes are reused once a namespace is gone, so a file at the default path whose
// cookie does not match was left by a namespace that no longer exists: Up replaces it and
// Down deletes it, both with a warning. A file at a path given in [Options.StatePath] that
// belongs to another namespace is an error. Up and Down hold an flock on the state file's
// directory for their whole run, so two of them never interleave.
//
// # Namespaces and cost
//
// Sysctls (/proc/sys/net) and netlink act on the network namespace of the calling thread.
// A caller that has switched namespaces must have its goroutine locked to the OS thread;
// nothing here starts goroutines. Each call costs a few netlink requests and sysctl file
// reads; Up and Down add a few file writes.
//
// # What it never does
//
// It never sends a packet, never removes an address it did not add, never changes
// net.ipv4.conf.all.rp_filter, never changes an interface that was not listed (or, with no
// list, is not up), and logs nothing unless given a logger.
package realserver
