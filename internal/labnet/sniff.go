package labnet

import (
	"context"
	"errors"
	"fmt"
)

// ErrDropped is returned (wrapped) by a Sniff's stop function when the kernel
// dropped frames because the capture fell behind: whatever the caller counted
// is then a lower bound.
var ErrDropped = errors.New("capture dropped frames")

// Sniff captures every frame received or sent on the host's eth0 (an
// AF_PACKET socket for all protocols, bound to eth0 inside the namespace)
// and calls fn for each, from a single goroutine, until ctx is done or stop
// is called. outgoing is true for frames the host transmitted. frame is
// valid only during the call. With the veths' offloads on, outgoing TCP
// frames may be GSO super-frames of up to 64 KiB, longer than the MTU, and
// their checksums may not be filled in yet.
//
// Capture starts before Sniff returns. stop ends it, waits until fn has
// returned for the last time and reports any receive error, or ErrDropped if
// the kernel dropped frames.
//
// A capture on the host's own interface misses what the host sends past its
// taps: frames sent with PACKET_QDISC_BYPASS, as dsrlb's dataplane sends
// them, never reach its packet sockets. Net.SniffPort sees those.
func (h *Host) Sniff(ctx context.Context, fn func(frame []byte, outgoing bool)) (stop func() error, err error) {
	return sniffOn(ctx, h.NS, h.Link, h.Link+" of host "+h.Name, fn)
}

// stopDeadlineSet, if set (by a test, before a capture starts), is called
// once a stop has set the capture's read deadline.
var stopDeadlineSet func()

// SniffPort is Sniff on the bridge's side of host's link: it sees every
// frame the host put on the wire (outgoing true) or was sent (false),
// whatever the host's own taps would have missed.
func (n *Net) SniffPort(ctx context.Context, host string, fn func(frame []byte, outgoing bool)) (stop func() error, err error) {
	h := n.Host(host)
	if h == nil {
		return nil, fmt.Errorf("capture: no host %q in the lab", host)
	}
	// On the switch's port, what the host sent arrives.
	return sniffOn(ctx, n.Switch, h.Port, "switch port "+h.Port+" of host "+h.Name, func(frame []byte, portSent bool) { fn(frame, !portSent) })
}
