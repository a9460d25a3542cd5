package engine

import (
	"context"
	"log/slog"
	"net"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/config"
)

// ServeOptions says how to run the balancer.
type ServeOptions struct {
	Config *config.Config
	// ConfigPath is the file Config came from, re-read on reload; "" when
	// the balancer was started from flags (reloads are refused).
	ConfigPath string
	// Adjust, if set, is applied to every configuration a reload reads
	// from ConfigPath, as it was to Config (the command line's overrides).
	Adjust func(*config.Config) error
	// Reload receives a value for every reload request (SIGHUP).
	Reload <-chan struct{}
	// Admin, if set, serves the admin endpoint on ln (bound to
	// Config.Admin before the dataplane opens) until ctx is done; see
	// internal/admin.
	Admin func(ctx context.Context, ln net.Listener, e *Engine, dp *dataplane.Dataplane, reload func(context.Context) (string, error)) error
	Log   *slog.Logger
}
