//go:build !linux

package testbed

import (
	"fmt"
	"net"
	"runtime"

	"github.com/dsrlb/dsrlb/internal/labnet"
)

func (b *Bed) staticFDB() error {
	return fmt.Errorf("static FDB entries are not supported on %s", runtime.GOOS)
}

// PinMAC adds a static FDB entry on the bridge; Linux only.
func (b *Bed) PinMAC(h *labnet.Host, mac net.HardwareAddr) error {
	return fmt.Errorf("static FDB entries are not supported on %s", runtime.GOOS)
}

func (b *Bed) portCounters() (map[string]labnet.LinkStats, error) {
	return nil, fmt.Errorf("port counters are not supported on %s", runtime.GOOS)
}
