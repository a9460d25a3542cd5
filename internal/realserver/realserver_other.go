//go:build !linux

package realserver

import (
	"fmt"
	"log/slog"
	"runtime"
)

func errUnsupported() error {
	return fmt.Errorf("real server setup is not supported on %s", runtime.GOOS)
}

// DefaultStatePath is not supported on this system.
func DefaultStatePath() (string, error) { return "", errUnsupported() }

// Up is not supported on this system.
func Up(o Options, log *slog.Logger) error { return errUnsupported() }

// Down is not supported on this system.
func Down(o Options, log *slog.Logger) error { return errUnsupported() }

// Check is not supported on this system.
func Check(o Options) ([]Problem, error) { return nil, errUnsupported() }
