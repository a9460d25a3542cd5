// Package engine is dsrlb's control loop. One goroutine (Run) owns the mutable
// state: the configuration, the backends' MAC addresses, their health (one
// checker per backend), drains and counter slots; the Engine's methods may
// be called from any goroutine, and hand their work to it (ErrStopped once
// Run has returned). A service whose backends that take new flows are all
// down keeps the down ones in its table (fail open). Every change — a MAC resolved or changed, a reload, a health event —
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
