package gen

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	st, err := parseProcStat([]byte("4242 (tra fgen) (x)) R 4240 4240 1 0 -1 4194560 85 0 0 0"))
	if err != nil {
		t.Fatal(err)
	}
	if st != (procStat{pid: 4242, ppid: 4240, pgrp: 4240, state: 'R'}) {
		t.Errorf("parsed %+v", st)
	}
	for _, bad := range []string{"", "12 comm R 1 1", "x (c) R 1 1", "12 (c) R x 1", "12 (c) R"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestFamily(t *testing.T) {
	procs := map[int]procStat{
		1:   {pid: 1, ppid: 0, pgrp: 1, state: 'S'},
		100: {pid: 100, ppid: 1, pgrp: 100, state: 'S'}, // root
		101: {pid: 101, ppid: 100, pgrp: 100, state: 'R'},
		102: {pid: 102, ppid: 100, pgrp: 100, state: 'Z'}, // zombie: not counted
		103: {pid: 103, ppid: 101, pgrp: 100, state: 'R'}, // grandchild
		104: {pid: 104, ppid: 1, pgrp: 100, state: 'R'},   // orphaned worker, same group
		200: {pid: 200, ppid: 1, pgrp: 200, state: 'R'},   // unrelated
	}
	got := family(procs, 100)
	if len(got) != 3 || got[0] != 103 || !slices.Contains(got, 101) || !slices.Contains(got, 104) {
		t.Errorf("family = %v, want 103 first, then 101 and 104", got)
	}
}

// stopTree on a real process tree: a shell that ignores SIGINT and has a
// child that ignores it too, like trafgen's workers.
func TestStopTree(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd := exec.Command(sh, "-c", `trap "" INT; sh -c 'trap "" INT; while :; do sleep 0.05; done' & while :; do sleep 0.05; done`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	root := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); len(family(processes(), root)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the child shell is not found")
		}
	}
	note, err := stopTree(root, done, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if note == "" {
		t.Error("no note about killed processes")
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("root not reaped")
	}
	if left := family(processes(), root); len(left) != 0 {
		t.Fatalf("survivors: %v", left)
	}
}
