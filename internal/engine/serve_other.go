//go:build !linux

package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/config"
)

// Serve is not supported on this system.
func Serve(ctx context.Context, cfg *config.Config, log *slog.Logger) (dataplane.Stats, error) {
	return dataplane.Stats{}, fmt.Errorf("dsrlb run: not supported on %s", runtime.GOOS)
}
