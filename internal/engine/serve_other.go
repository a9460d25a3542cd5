//go:build !linux

package engine

import (
	"context"
	"fmt"
	"runtime"

	"github.com/dsrlb/dsrlb/dataplane"
)

// Serve is not supported on this system.
func Serve(ctx context.Context, o ServeOptions) (dataplane.Stats, error) {
	return dataplane.Stats{}, fmt.Errorf("dsrlb run: not supported on %s", runtime.GOOS)
}
