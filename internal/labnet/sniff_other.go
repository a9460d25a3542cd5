//go:build !linux

package labnet

import (
	"context"
	"fmt"
	"runtime"
)

func (h *Host) sniff(ctx context.Context, fn func([]byte, bool)) (func() error, error) {
	return nil, fmt.Errorf("packet capture is not supported on %s", runtime.GOOS)
}
