package latency

// Transit is the time stamped frames took from one probe to another on
// their path, frame by frame: the downstream probe's kernel receive time
// minus the upstream probe's, of the same frame (the same FrameID). Both
// are kernel timestamps, so neither the generator's scheduling nor the
// probes' own matters.
type Transit struct {
	// Samples are the transits in ns of the frames both probes saw once,
	// in the downstream probe's order; none is negative.
	Samples []int64
	// UpstreamOnly counts frames seen upstream only: frames that went
	// elsewhere (to another sink: about (N−1)/N of them behind a balancer
	// with N sinks), were lost, or were still on their way when the
	// downstream probe's arrivals were taken. It is not a loss figure.
	UpstreamOnly int
	// DownstreamOnly counts frames seen downstream only: the upstream
	// probe missed them (its socket buffer overflowed) or saw them before
	// its arrivals were last taken.
	DownstreamOnly int
	// Negative counts frames seen by both that arrived downstream first:
	// clock trouble. They are counted, not sampled.
	Negative int
	// Duplicates counts frames that one of the probes saw more than once:
	// ambiguous, left out of every other figure.
	Duplicates int
}

// MatchTransit matches the arrivals of an upstream and a downstream probe
// frame by frame. It does not modify its arguments.
func MatchTransit(upstream, downstream []Arrival) Transit {
	var t Transit
	dup := map[FrameID]bool{}
	index := func(as []Arrival) map[FrameID]int64 {
		m := make(map[FrameID]int64, len(as))
		for _, a := range as {
			if _, seen := m[a.Frame]; seen {
				dup[a.Frame] = true
				continue
			}
			m[a.Frame] = a.RxNs
		}
		return m
	}
	up, down := index(upstream), index(downstream)
	t.Duplicates = len(dup)
	for _, a := range downstream {
		if dup[a.Frame] {
			continue
		}
		u, ok := up[a.Frame]
		switch {
		case !ok:
			t.DownstreamOnly++
		case a.RxNs < u:
			t.Negative++
		default:
			t.Samples = append(t.Samples, a.RxNs-u)
		}
	}
	for _, a := range upstream {
		if _, ok := down[a.Frame]; !ok && !dup[a.Frame] {
			t.UpstreamOnly++
		}
	}
	return t
}
