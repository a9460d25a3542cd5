package main

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// A hang-up cancels the run like Ctrl-C, so that it tears down; unhandled,
// it would kill the bench (and this test) on the spot.
func TestHangupCancels(t *testing.T) {
	ctx, stop := cancelOnSignals(io.Discard)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not cancel the run")
	}
}
