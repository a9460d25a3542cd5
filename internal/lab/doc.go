// Package lab is what `dsrlb lab` does: it builds a small DSR network out of
// namespaces on this machine, runs the real dsrlb binary in it, sends traffic
// through it and reports what happened.
//
// # What it builds
//
// One Ethernet segment (package labnet) with a client (198.18.0.2), the
// balancer host "lb" (198.18.0.1) and servers srv1..srvN (198.18.0.11 and
// up), all in namespaces named with a fresh prefix ("dsrlb-4711-3fa2c1-client",
// ..., the lab's process ID and a random tag; "dsrlb-k3fa2c1-..." for a
// kept lab), so a second lab running at the same time is unaffected. The VIP is
// 198.18.0.100:80/tcp; with IPv6 the same plan is repeated in
// 2001:db8:18::/64 (client ::2, lb ::1, srvN ::(10+N) written in decimal
// digits, VIP [2001:db8:18::100]:80). Only benchmark and documentation
// ranges are used, and nothing leaves the lab's namespaces.
//
// # What it runs
//
// Each server is configured with `dsrlb server up --vip VIP --interface eth0
// --state DIR/srvN.json` and answers HTTP on :80 with its name
// (labnet.NameServer, inside this process). DIR is the lab's own directory
// in os.TempDir() ("dsrlb-lab-state-PID-..."), so that no state file of a
// lab lands in /run/dsrlb. The balancer runs as a child process:
// `dsrlb run --interface eth0 --vip VIP:80/tcp --backend SERVER ...`, its
// output copied to Options.Out with a "balancer| " prefix. Once a request to
// the VIP succeeds (within 10 s), the client sends Options.Requests requests,
// each on a new connection, and counts which server answered. Meanwhile a
// packet capture on the balancer's eth0 counts frames the balancer sent with
// the VIP as IP source: in DSR that number is 0, because the servers answer
// the client directly.
//
// # Guarantees
//
//   - Run removes every namespace it made, and its state directory, before
//     returning, on success, on error and on cancellation, unless
//     Options.Keep asks to keep a lab that ran to the end; then it prints how
//     to explore and delete it (the state directory is then
//     "dsrlb-lab-kept-state-...", which no later lab removes).
//   - `server down` runs on every server whose `server up` was started and
//     left a state file, even if that `up` failed or was killed: up writes
//     the file before it changes anything. A lab killed before its teardown
//     leaves its state directory; the next lab removes it once that
//     process is gone.
//   - The balancer gets SIGTERM and is waited for (killed after 10 s).
//   - A lab whose checks fail (requests failed, VIP-sourced frames from the
//     balancer, a server that got nothing, an incomplete capture, a balancer
//     that did not exit cleanly) returns its Report and an error wrapping
//     ErrChecksFailed.
//
// Linux only in practice: it needs root, network namespaces and `ip` (it
// builds elsewhere, and fails there at its first namespace).
package lab
