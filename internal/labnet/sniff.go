package labnet

import (
	"context"
	"errors"
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
func (h *Host) Sniff(ctx context.Context, fn func(frame []byte, outgoing bool)) (stop func() error, err error) {
	return h.sniff(ctx, fn)
}
