package gen

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// Privileged: a trafgen that exits at start leaves no worker behind. The
// stand-in forks a "worker" that ignores SIGINT (as a background job of a
// shell does, like trafgen's workers) and exits at once. The worker lets
// go of the output pipe: one that holds it keeps Wait from returning, and
// Start then stops everything after its 10 s deadline.
func TestTrafgenExitAtStartStopsWorkers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root for a network namespace")
	}
	ns, err := netns.New(netns.UniquePrefix("dsrlbt") + "tg")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "worker.pid")
	fake := filepath.Join(dir, "trafgen")
	script := "#!/bin/sh\nsleep 60 >/dev/null 2>&1 &\necho $! > " + pidFile + "\necho 'cannot open device' >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l := testLoad(UDP, 10)
	l.NS = ns
	_, err = Trafgen{Path: fake, Dir: dir}.Start(context.Background(), *l)
	if err == nil || !strings.Contains(err.Error(), "trafgen exited at start") || !strings.Contains(err.Error(), "cannot open device") {
		t.Errorf("Start: %v, want trafgen exited at start, with its output", err)
	}
	b, rerr := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if rerr != nil || perr != nil {
		t.Fatalf("the stand-in wrote no worker pid: %v %v", rerr, perr)
	}
	if p, ok := processes()[pid]; ok && p.state != 'Z' {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("worker %d still ran after Start returned", pid)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "dsrlb-bench-*.trafgen")); len(m) > 0 {
		t.Errorf("configuration left behind: %v", m)
	}
}
