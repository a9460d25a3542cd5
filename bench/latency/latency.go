// Package latency measures one-way latency through the lab: the generator
// stamps a sample of its frames with CLOCK_MONOTONIC (see package gen), and
// a Probe on a sink reads them with an AF_PACKET socket. Two probes on one
// path measure, frame by frame, the transit between them (MatchTransit).
//
// # Method
//
// The probe's socket is bound to the sink's eth0 and carries a classic BPF
// filter that passes only stamped frames (IPv4, the stamp magic at the UDP
// payload), so the unstamped bulk never leaves the kernel. The socket asks
// for SO_TIMESTAMPNS: the kernel stamps each frame when the sink's veth
// receives it (netif_rx), before any queueing towards the socket, so the
// probe's own scheduling delay is not measured. That stamp is
// CLOCK_REALTIME; the probe converts it with an offset between
// CLOCK_REALTIME and CLOCK_MONOTONIC that it measures (the narrowest of
// several back-to-back readings) at start and every 100 ms. The probe does
// not wake for each frame: every millisecond it drains its socket with
// recvmmsg, 64 frames at a time, so the instrument costs the machine under
// test about a thousand wake-ups a second rather than one per stamp.
//
// Latency = sink arrival − stamp. Generator and sink are on the same
// machine, so there is no clock skew.
//
// Transit = downstream arrival − upstream arrival of the same frame, both
// kernel receive timestamps (CLOCK_REALTIME as the kernel gives them, no
// conversion), e.g. from the balancer's eth0 to a sink's. It leaves out
// everything before the frame reached the upstream interface: the
// generator's own scheduling between stamping and sending, its queueing
// and the first hop. A Probe keeps each stamped frame's arrival (its
// FrameID, stamp and sequence number, and receive time) when asked with
// RecordArrivals; MatchTransit pairs two probes' arrivals by FrameID. The
// sequence number restarts with every generator run and is per thread,
// so the stamp is part of the key. A probe reads only frames its interface
// receives (PACKET_IGNORE_OUTGOING), so a probe on a balancer's interface
// does not also see what the balancer sends back out of it.
//
// # Limits
//
//   - The stamp is taken when the frame is written into the transmit ring,
//     before the send() kick: up to one batch's writing time (a few µs at
//     32 frames) is included in every path alike.
//   - The offset conversion is exact to within the width of the clock
//     reading bracket (typically < 1 µs); a clock step (settimeofday) during
//     a window corrupts that window's samples; NTP slewing is negligible.
//   - Only frames that reach the probed sink are sampled; with N sinks that
//     is about 1/N of the stamped frames.
//   - Lost stamped frames are not latency samples; loss is reported
//     separately from the port counters.
//   - Transit is sampled only for frames both probes saw: with N sinks,
//     about (N−1)/N of the frames seen upstream go elsewhere and are
//     counted as upstream only, not as lost. An upstream probe whose
//     socket overflows misses frames: they count as downstream only. Each
//     probe costs every frame arriving on its interface a filter run.
//   - Arrivals are kept up to maxSamples between two TakeArrivals (24
//     bytes each); beyond that they are dropped.
package latency

import (
	"math"
	"slices"
	"time"
)

// Summary is a distribution of latencies.
type Summary struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"min_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
	Mean  time.Duration `json:"mean_ns"`
}

// Summarize returns the distribution of samples (nanoseconds). It sorts a
// copy; samples is left as it is.
func Summarize(samples []int64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var total float64
	for _, v := range s {
		total += float64(v)
	}
	d := func(v int64) time.Duration { return time.Duration(v) }
	return Summary{
		Count: len(s),
		Min:   d(s[0]),
		P50:   d(Percentile(s, 50)),
		P90:   d(Percentile(s, 90)),
		P99:   d(Percentile(s, 99)),
		P999:  d(Percentile(s, 99.9)),
		Max:   d(s[len(s)-1]),
		Mean:  d(int64(total / float64(len(s)))),
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it.
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps 99.9% of 1000 at rank 999 despite float rounding.
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
