// Package harness runs the benchmark: it builds a testbed, offers the same
// load through each Mode in turn (dsrlb with each worker count and, with
// AltBin or AltFlags, an A/B twin of each, "dsrlb-wN-alt"; the nft
// reference with and without RPS; the direct path), repetition after
// repetition, then runs the latency phase, and returns a Report with every
// raw window and the summaries (medians, min..max, ratios, extra CPU over
// the direct path, added latency, transit through the balancer).
//
// # One window
//
// Set RPS on the balancer's interface if the mode gets it, start the mode
// (and wait until it forwards), start the generator, wait the warm-up, take
// a testbed snapshot, wait the window, take another, stop the generator,
// stop the mode, undo RPS, pause 300 ms for queues to drain. A window that
// fails, or in which the generator stalled, is recorded and left out of
// every summary, the pooled latency tables included; the run
// goes on.
//
// # Guarantees
//
//   - Run deletes the testbed before it returns, on success, on error and
//     when ctx is cancelled; children (dsrlb, trafgen and trafgen's
//     workers) are stopped and waited for first.
//   - Nothing is sent anywhere but into the testbed's namespaces.
//   - Summaries never mix phases, and ratios pair windows of the same
//     repetition.
//
// Linux only in practice: it needs root, network namespaces, nftables and
// AF_PACKET.
package harness
