package engine

import (
	"context"
	"log/slog"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/config"
)

// ServeOptions says how to run the balancer.
type ServeOptions struct {
	Config *config.Config
	// ConfigPath is the file Config came from, re-read on reload; "" when
	// the balancer was started from flags (reloads are refused).
	ConfigPath string
	// Reload receives a value for every reload request (SIGHUP).
	Reload <-chan struct{}
	// Admin, if set, is started once the dataplane runs (see internal/admin).
	Admin func(ctx context.Context, e *Engine, dp *dataplane.Dataplane, reload func(context.Context) (string, error)) error
	Log   *slog.Logger
}
