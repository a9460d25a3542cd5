// Package netns creates, enters and removes named Linux network namespaces.
//
// It exists for the lab, the benchmark harness and the privileged tests: each
// of them builds hosts out of network namespaces that are visible to
// `ip netns exec NAME`, runs Go code inside them, and deletes them again.
//
// Entering a namespace follows one rule: code runs on a fresh goroutine whose
// OS thread is locked and switched into the namespace; the thread is switched
// back afterwards, and if that fails it is never unlocked, so the Go runtime
// throws the poisoned thread away instead of reusing it. Sockets and netlink
// handles created inside Do stay bound to the namespace after Do returns.
//
// Names come from UniquePrefix(base), "BASE-PID-XXXXXX-", which first sweeps
// the namespaces of base left by processes that no longer run
// (SweepStale), killing (SIGKILL) any process still inside one.
//
// Everything here is Linux only and needs CAP_SYS_ADMIN; on other systems
// New, Open and Do return an error and the rest do nothing.
package netns
