//go:build unix

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const signalChildEnv = "DSRLB_TEST_SIGNAL_CHILD"

// A shutdown that hangs can be cut short: the first SIGINT ends the
// context and says a second one forces exit; the second one ends the
// process. It runs in a child process, which the second signal kills.
func TestSecondSignalForcesExit(t *testing.T) {
	if os.Getenv(signalChildEnv) == "1" {
		os.Exit(signalChild())
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondSignalForcesExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), signalChildEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child gives up by itself well before this; it only guards
	// against a child that cannot even do that.
	timer := time.AfterFunc(2*watchdogChild, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v, want it killed by SIGINT\n%s", err, out.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("child ended with %v, want killed by the second SIGINT\n%s", err, out.String())
	}
	if want := "interrupt signal received: stopping; a second signal forces exit"; !strings.Contains(out.String(), want) {
		t.Errorf("the first signal did not log %q:\n%s", want, out.String())
	}
}

// watchdogChild bounds the child's waits; it is not a timing threshold.
const watchdogChild = 10 * time.Second

// signalChild signals itself twice around a shutdown that never ends and
// returns an exit code only if it survives that.
func signalChild() int {
	logged := &firstWrite{c: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logged), nil))
	ctx, stop := shutdownOnSignal(log, "stopping", os.Interrupt, syscall.SIGTERM)
	defer stop()
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case <-ctx.Done():
	case <-time.After(watchdogChild):
		fmt.Fprintln(os.Stderr, "child: the first SIGINT did not end the context")
		return 3
	}
	select {
	case <-logged.c: // logged after the signals were released
	case <-time.After(watchdogChild):
		fmt.Fprintln(os.Stderr, "child: the first SIGINT was not logged")
		return 4
	}
	// The shutdown hangs; the operator presses Ctrl-C again.
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	time.Sleep(watchdogChild)
	fmt.Fprintln(os.Stderr, "child: survived the second SIGINT")
	return 5
}

// firstWrite closes c at its first write.
type firstWrite struct {
	once sync.Once
	c    chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.c) })
	return len(p), nil
}
