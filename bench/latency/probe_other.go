//go:build !linux

package latency

import (
	"context"
	"fmt"
	"runtime"

	"github.com/dsrlb/dsrlb/internal/netns"
)

type sysProbe struct{}

// Open is not supported on this system.
func Open(ns *netns.NS, ifname string) (*Probe, error) {
	return nil, fmt.Errorf("latency probe: AF_PACKET is not supported on %s", runtime.GOOS)
}

// Run is not supported on this system.
func (p *Probe) Run(ctx context.Context) error {
	return fmt.Errorf("not supported on %s", runtime.GOOS)
}

// Close does nothing here.
func (p *Probe) Close() error { return nil }
