//go:build !linux

package gen

import (
	"context"
	"fmt"
	"runtime"
)

// Start implements Generator; AF_PACKET transmit rings are Linux only.
func (TxRing) Start(ctx context.Context, l Load) (Run, error) {
	return nil, fmt.Errorf("txring: AF_PACKET transmit rings are not supported on %s", runtime.GOOS)
}
