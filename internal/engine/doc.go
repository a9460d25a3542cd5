// Package engine is dsrlb's control loop. One goroutine (Run) owns the mutable
// state: the configuration, the backends' MAC addresses and, later, their
// health. Every change — a MAC resolved or changed, a reload, a health event —
// is handled by that goroutine, which builds a new immutable balancer.Table
// and publishes it to the dataplane. Nothing here runs per packet.
//
// Backend MACs come from the kernel's neighbour table (netlink). A backend
// without a usable entry is resolved by asking the kernel to resolve it
// (NTF_USE), and is left out of the table, with a log line naming it, until
// it resolves. Entries are refreshed every neighbor_refresh so that they stay
// fresh although the balancer's own traffic to the backends bypasses the
// kernel, and a changed MAC (a replaced NIC) is followed without a restart. A
// static mac: in the config is used as it is.
package engine
