//go:build !linux

package testbed

import (
	"fmt"
	"runtime"

	"github.com/dsrlb/dsrlb/internal/labnet"
)

func (b *Bed) staticFDB() error {
	return fmt.Errorf("static FDB entries are not supported on %s", runtime.GOOS)
}

func (b *Bed) portCounters() (map[string]labnet.LinkStats, error) {
	return nil, fmt.Errorf("port counters are not supported on %s", runtime.GOOS)
}
