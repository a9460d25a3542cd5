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

// ServeOptions says how to run the balancer.
type ServeOptions struct {
	Config     *config.Config
	ConfigPath string
	Reload     <-chan struct{}
	Admin      func(ctx context.Context, e *Engine, dp *dataplane.Dataplane, reload func(context.Context) (string, error)) error
	Log        *slog.Logger
}

// Serve is not supported on this system.
func Serve(ctx context.Context, o ServeOptions) (dataplane.Stats, error) {
	return dataplane.Stats{}, fmt.Errorf("dsrlb run: not supported on %s", runtime.GOOS)
}
