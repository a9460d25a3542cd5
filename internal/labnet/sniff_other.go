//go:build !linux

package labnet

import (
	"context"
	"fmt"
	"runtime"

	"github.com/dsrlb/dsrlb/internal/netns"
)

func sniffOn(ctx context.Context, ns *netns.NS, link, what string, fn func([]byte, bool)) (func() error, error) {
	return nil, fmt.Errorf("packet capture is not supported on %s", runtime.GOOS)
}
