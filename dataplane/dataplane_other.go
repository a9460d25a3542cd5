//go:build !linux

package dataplane

import (
	"context"
	"fmt"
	"runtime"

	"github.com/dsrlb/dsrlb/balancer"
)

type sysDataplane struct{}

var errUnsupported = fmt.Errorf("dataplane: AF_PACKET is not supported on %s", runtime.GOOS)

// Open is not supported on this system.
func Open(cfg Config, t *balancer.Table) (*Dataplane, error) { return nil, errUnsupported }

// SetTable is not supported on this system.
func (d *Dataplane) SetTable(t *balancer.Table) error { return errUnsupported }

// Run is not supported on this system.
func (d *Dataplane) Run(ctx context.Context) error { return errUnsupported }
