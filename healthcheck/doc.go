// Package healthcheck decides whether each backend of dsrlb is up, by
// probing it, and tells the engine when that changes.
//
// # Probes
//
// [NewProber] turns a [Spec] into a [Prober]; one Probe is one attempt,
// bounded by Spec.Timeout, whose error says exactly what failed:
//
//   - tcp: a TCP handshake with the backend's real address, then a close.
//     A listener that never accepts still passes: the kernel completes
//     handshakes into the accept queue until it is full.
//   - http, https: one request on a new connection (no keep-alive, no proxy,
//     redirects not followed, body not read); the status must be in Expect.
//     Host sets the Host header and the TLS server name. https skips
//     certificate verification unless TLSVerify is set, since backends
//     often use self-signed certificates.
//   - dns: one question (Query, type A, recursion desired) over UDP. An
//     answer counts when its ID, QR bit, opcode (QUERY) and question match
//     (one without a question section matches on its ID, and only as an
//     error: its RCODE must be neither NOERROR nor NXDOMAIN); NOERROR and
//     NXDOMAIN pass, since both come from the server's data; SERVFAIL,
//     REFUSED and the other codes fail with the code in the reason. The
//     default Query "." suits recursive resolvers; give an authoritative
//     server a name in its zones.
//
// Reasons read "tcp connect 10.0.0.12:80: connection refused", "http GET
// /healthz: status 503", "dns query example.org A: timeout after 1s".
//
// # The DSR-path probe
//
// The classic DSR failure: a server answers health checks on its real
// address, but the VIP is missing from its lo (or its ARP settings are
// wrong), so every client connection to the VIP blackholes. With Spec.VIP
// the check also probes the server the way clients reach it, through the
// balancer, and the backend is up only if both probes pass.
// [PacketDSRProber] does this from the balancer's interface with AF_PACKET
// sockets:
//
//   - SYN probe. It sends an Ethernet frame to the backend's MAC carrying a
//     TCP SYN from the interface's own address and a random source port
//     (61000-65535) to VIP:port, exactly what the dataplane forwards for a
//     client. A server holding the VIP answers with a SYN-ACK from the VIP,
//     which comes back to the balancer's address: up; the probe answers it
//     with a RST. A RST means nothing listens on that port ("connection
//     refused (RST)"); silence until the timeout means the server does not
//     take the VIP as its own ("no SYN-ACK (is the VIP on the server's
//     lo?)"). The balancer's kernel also sees the SYN-ACK, has no socket
//     for it and may send its own RST towards the VIP: harmless, the answer
//     is already in, and at worst it reaches a backend with no such
//     connection, which ignores it. Only an answer from the probed MAC
//     counts: a server without the VIP but with IP forwarding on (Docker and
//     Kubernetes hosts) sends the SYN on to the balancer, which balances it
//     to another backend, whose answer must not pass the probe. (A server
//     that answers from another of its MACs, bonding in balance-tlb/alb
//     mode say, fails the probe.)
//   - ARP probe (IPv4 only). Alongside the SYN it sends an ARP request for
//     the VIP unicast to the backend's MAC. A correctly prepared server
//     (arp_ignore=1) stays silent; an answer means it would claim the VIP
//     on the segment and steal it from the balancer: down, "server answers
//     ARP for VIP 10.0.0.100 (arp_ignore/arp_announce not set: run dsrlb
//     server up)". Only silence proves the setting, so a passing IPv4 DSR
//     probe listens for the whole Timeout; LastLatency then says Timeout.
//     While it listens, an ARP request from the backend's MAC with the VIP
//     as its sender address fails the probe too: the server resolves a
//     neighbour for a reply sent from the VIP and, arp_announce not being
//     2, tells the whole segment the VIP is at its MAC: down, "server sends
//     ARP requests from VIP 10.0.0.100 (arp_announce is not 2: run dsrlb
//     server up)". This is caught only if the server ARPs during a probe,
//     as it does when the SYN-ACK leaves and it has no neighbour entry for
//     the balancer's address; a server that already knows the balancer's
//     MAC stays silent whatever its arp_announce, so a passing probe proves
//     arp_ignore, not arp_announce.
//   - Neighbour probe (IPv6). The same for IPv6: a neighbour solicitation
//     for the VIP (to its solicited-node group, with our link-layer
//     address), unicast to the backend's MAC. Linux answers one on a NIC
//     only for an address on that NIC, never for a VIP on lo, so an
//     answer means the VIP sits on the NIC and the server claims it on the
//     segment: down, "server answers neighbour solicitations for VIP
//     2001:db8::100 (is the VIP on its NIC instead of lo? run dsrlb server
//     up)". A passing IPv6 probe too listens for the whole Timeout. There
//     is no IPv6 counterpart of arp_announce to catch: Linux sends a
//     neighbour solicitation from the packet's source address only when
//     that address is on the soliciting interface, so with the VIP on lo
//     it solicits from the NIC's own address.
//
// Replies are told apart by (VIP, port, our source port) and must
// acknowledge our random initial sequence number, ARP frames and neighbour
// advertisements by (VIP, MAC), so the probes of any number of backends
// share one set of sockets and run concurrently. The sockets' BPF filters
// pass only TCP segments with ACK and SYN or RST to a probe port, IPv4 ARP
// requests and replies, and neighbour advertisements, so the copies of
// client traffic the kernel would otherwise queue to them stay few.
//
// What the balancer box needs, and why:
//
//   - CAP_NET_RAW, for the packet sockets.
//   - An IPv4 address (and for IPv6 VIPs a global IPv6 address) on the
//     interface, in the servers' subnet: the probe's source, to which the
//     server's reply is routed and for which it resolves our MAC. An address
//     whose subnet holds the VIP is preferred. Addresses are re-read at most
//     every 5 s.
//   - The prober must be opened in the balancer's network namespace
//     (sockets and the netlink handle stay in the one they were opened in),
//     and, like the dataplane, it assumes plain Ethernet on the interface.
//
// The DSR probe is TCP: for a UDP service (DNS) the server must also listen
// on TCP at the check port, as DNS servers do.
//
// # Checkers
//
// A [Checker] runs one backend's probes: the first after a random delay in
// [0, Interval), then every Interval ±10% (start to start), so the checks
// of many backends spread out. At most one probe is in flight, and its
// context ends after Timeout.
//
// A probe that never returns cannot freeze a backend's state. Probers bound
// themselves by Timeout, but a call can still hang (a netlink request in the
// DSR prober waiting behind the kernel's rtnl lock while a namespace is torn
// down). A probe still running 2 × Timeout after it started (Timeout plus a
// grace of one more Timeout) is abandoned and counted as failed: "probe did
// not return within 2s (timeout 1s)". The schedule goes on, but no probe
// starts beside the abandoned one: while it has not returned, each probe
// that falls due is counted as failed without being started ("not started:
// the previous probe is still running after 3s"). A hung prober thus takes
// the backend down after Fall probes, like a failing one, with at most one
// goroutine per Checker left waiting on it; when it returns at last, its
// result is discarded and probing resumes. A stopped Checker leaves only
// that goroutine, which ends when Probe returns.
//
// The state changes only after Rise consecutive passes (down to up) or Fall
// consecutive failures (up to down); each change is an [Event] on the
// channel given to [NewChecker], with a reason such as "http GET /healthz:
// status 503 (3 of 3 failed)" or "tcp connect 10.0.0.12:80 ok (2 of 2
// passed)". The initial state is the caller's: the engine starts backends as
// up, so that restarting the balancer does not drop the traffic of healthy
// backends while the first probes run.
//
// # What it never does
//
// Nothing here logs, retries inside a probe, or sends anywhere but to the
// backend and port under test (and, for the DSR probe, only onto the given
// interface). A [Clock] lets tests drive checkers without sleeping.
package healthcheck
