// Package gen offers load to a DSR topology: 64-byte IPv4 frames to one VIP
// from many flows, sent out of one interface inside the generator's network
// namespace, by one of three generators:
//
//   - [Pktgen], the kernel's packet generator, driven through
//     /proc/net/pktgen with the knobs of the kernel's samples/pktgen scripts
//     (UDP only; needs the pktgen module);
//   - [Trafgen], netsniff-ng's trafgen, run as a child process with a
//     generated configuration;
//   - [TxRing], built in: AF_PACKET sockets with a TPACKET_V2 transmit ring,
//     one per thread, many frames per send() kick, qdisc bypassed. It is the
//     only one that stamps frames for latency measurements.
//
// # Frames
//
// Every generator sends frames of the same size, addresses and ports
// ([Template]): Ethernet + IPv4 to the VIP with the source address and port
// drawn at random, per frame, from a flow space of Load.Flows (address,
// port) pairs ([FlowSpace]): source addresses from [SourceBase]
// (198.19.0.0, benchmark space outside the lab's subnet), source ports from
// [FirstPort]. UDP frames are 60 bytes (64 on a wire, with the FCS) with an
// 18-byte payload; TCP SYN frames are 54 bytes, no payload and no Ethernet
// padding (veth does not need it, and trafgen would count padding in the
// TCP checksum). Checksums are valid.
//
// Trafgen's and TxRing's frames are identical: TTL 64, DF, a zero payload
// (or a stamp). Pktgen's differ: TTL 32, no DF, an IP ID that counts up, and
// pktgen's own header (magic 0xbe9be955, sequence number, send time) in the
// first 16 bytes of the payload. Its UDP checksum needs "flag UDPCSUM"
// (pktgen writes 0, no checksum, without it); on veth, which offers checksum
// offload, pktgen then leaves it pending (CHECKSUM_PARTIAL): the kernel
// takes it as valid, and a tap reads only the pseudo-header sum in the
// field.
//
// A stamped UDP frame carries, at [PayloadOffset], the magic [StampMagic],
// the CLOCK_MONOTONIC time in nanoseconds at which the frame was written
// into the ring (big-endian), and a sequence number.
//
// # Guarantees
//
//   - A generator sends only out of the interface it was given, in the
//     namespace it was given, to the MAC address in the Load.
//   - Stop returns only when every thread or process of the run has ended;
//     trafgen's forked workers, which ignore their parent's SIGINT, are
//     signalled one by one, found through /proc, and killed if they linger.
//   - An external generator is started with [StartTied]: it dies with the
//     bench, however the bench ends. Its forked workers do not; the next
//     run's testbed kills what it finds in a stale namespace.
//
// The transmit ring and pktgen are Linux only; elsewhere Start returns an
// error.
package gen
