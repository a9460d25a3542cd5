package latency

import "sync"

// Probe reads stamped frames on one interface. Create it with Open, start
// it with Run; Take returns and clears the samples gathered so far.
type Probe struct {
	mu      sync.Mutex
	samples []int64 // latency in ns, since the last Take
	bad     int     // stamped frames whose latency came out negative
	sys     sysProbe
}

// maxSamples bounds the samples kept between two Takes.
const maxSamples = 4 << 20

func (p *Probe) add(ns int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ns < 0 {
		p.bad++
		return
	}
	if len(p.samples) < maxSamples {
		p.samples = append(p.samples, ns)
	}
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
