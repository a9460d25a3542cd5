//go:build !linux

package healthcheck

import (
	"fmt"
	"runtime"
)

// NewDSRProber is not supported on this system.
func NewDSRProber(iface string) (*PacketDSRProber, error) {
	return nil, fmt.Errorf("open DSR prober on %s: packet sockets are not supported on %s", iface, runtime.GOOS)
}
