package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netNamespaces reads "net:[INODE]" links and skips what is not a process.
func TestNetNamespaces(t *testing.T) {
	dir := t.TempDir()
	for pid, link := range map[string]string{"100": "net:[4026531840]", "200": "net:[4026532999]", "300": "mnt:[1]", "self": "net:[4026531840]"} {
		if err := os.MkdirAll(filepath.Join(dir, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link, filepath.Join(dir, pid, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "400"), 0o755) // no ns: a process gone meanwhile
	got := netNamespaces(dir)
	if len(got) != 2 || got[100] != 4026531840 || got[200] != 4026532999 {
		t.Errorf("netNamespaces = %v", got)
	}
}

// A process left running in a stale namespace (its creator was killed, and
// it outlived it: trafgen's workers in a bench's) is killed when the
// namespace is swept; one in a live process's namespace is not.
func TestSweepKillsStale(t *testing.T) {
	requireRoot(t)
	dead := deadPID(t)
	if processRuns(dead) {
		t.Skipf("process ID %d was taken again", dead)
	}
	start := func(name string) (*exec.Cmd, <-chan error) {
		ns, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		cmd := ns.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		// ip netns exec enters the namespace, then becomes sleep.
		fi, err := os.Stat("/run/netns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		for deadline := time.Now().Add(10 * time.Second); netNamespaces("/proc")[cmd.Process.Pid] != ino; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d never entered %s", cmd.Process.Pid, name)
			}
		}
		return cmd, done
	}
	_, liveDone := start(UniquePrefix("dsrlbt") + "gen") // first: UniquePrefix sweeps
	orphanName := fmt.Sprintf("dsrlbt-%d-0badc0-gen", dead)
	_, orphanDone := start(orphanName)
	UniquePrefix("dsrlbt") // sweeps
	if Exists(orphanName) {
		t.Errorf("%s was not swept", orphanName)
	}
	select {
	case err := <-orphanDone:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("the orphan ended with %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the orphan still runs")
	}
	select {
	case err := <-liveDone:
		t.Errorf("the live run's process ended: %v", err)
	default:
	}
}
