package latency

import "sync"

// Probe reads stamped frames on one interface. Create it with Open, start
// it with Run; Take returns and clears the samples gathered so far, and
// TakeArrivals the arrivals, when RecordArrivals asked for them.
type Probe struct {
	mu       sync.Mutex
	samples  []int64 // latency in ns, since the last Take
	bad      int     // stamped frames whose latency came out negative
	record   bool    // keep arrivals
	arrivals []Arrival
	sys      sysProbe
}

// maxSamples bounds the samples kept between two Takes, and the arrivals
// kept between two TakeArrivals.
const maxSamples = 4 << 20

// FrameID identifies a stamped frame: its stamp and sequence number (see
// gen.ReadStamp). The sequence number alone is unique only within one
// generator thread of one run; with the stamp it is unique.
type FrameID struct {
	StampNs int64
	Seq     uint32
}

// Arrival is a stamped frame's arrival at a probe.
type Arrival struct {
	Frame FrameID
	// RxNs is the kernel's receive timestamp, CLOCK_REALTIME in ns: the
	// same clock at every probe on the machine.
	RxNs int64
}

// RecordArrivals makes the probe keep every stamped frame's arrival (up
// to maxSamples between two TakeArrivals, about 100 MB), or stop keeping
// them. It may be called at any time.
func (p *Probe) RecordArrivals(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record = on
	if !on {
		p.arrivals = nil
	}
}

// add records one stamped frame: its latency ns (rx − stamp) and, when
// arrivals are kept, its arrival, whatever its latency.
func (p *Probe) add(ns int64, a Arrival) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.record && len(p.arrivals) < maxSamples {
		p.arrivals = append(p.arrivals, a)
	}
	if ns < 0 {
		p.bad++
		return
	}
	if len(p.samples) < maxSamples {
		p.samples = append(p.samples, ns)
	}
}

// Seen is how many stamped frames the probe has read since the previous
// Take (or Run), and how many arrivals it keeps (see RecordArrivals).
func (p *Probe) Seen() (stamped, arrivals int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.samples) + p.bad, len(p.arrivals)
}

// Take returns the samples since the previous Take (or Run) and how many
// stamped frames had a negative latency (clock trouble), and starts afresh.
func (p *Probe) Take() (samples []int64, negative int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, b := p.samples, p.bad
	p.samples, p.bad = nil, 0
	return s, b
}

// TakeArrivals returns the arrivals since the previous TakeArrivals (or
// RecordArrivals), in the order the probe read them, and starts afresh.
func (p *Probe) TakeArrivals() []Arrival {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.arrivals
	p.arrivals = nil
	return a
}
