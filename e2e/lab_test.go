//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// Acceptance: `dsrlb lab` (the README's first command) passes, and a second
// lab running at the same time does not break the first.
func TestLabCommand(t *testing.T) {
	requireRoot(t)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i, args := range [][]string{{"lab", "--ipv6"}, {"lab", "--requests", "300"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(dsrlbBin, args...).CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || !strings.Contains(outs[i], "OK: every request answered, no reply through the balancer") {
			t.Errorf("lab %d: %v\n%s", i, errs[i], outs[i])
		}
		if !strings.Contains(outs[i], "frames sent by the balancer with source VIP: 0") {
			t.Errorf("lab %d: no bypass evidence in the report", i)
		}
	}
	if !strings.Contains(outs[0], "IPv6 via VIP") {
		t.Errorf("lab --ipv6 did not test IPv6:\n%s", outs[0])
	}
}

// A lab whose terminal hangs up (SIGHUP) tears down as on Ctrl-C: its
// balancer and servers stop and its namespaces go.
func TestLabHangup(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(dsrlbBin, "lab", "--requests", "100000")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "sending") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the lab never started sending:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := regexp.MustCompile(`namespaces (dsrlb-[0-9]+-[0-9a-f]+-)\{`).FindStringSubmatch(out.String())
	if m == nil {
		cmd.Process.Kill()
		t.Fatalf("no namespace prefix in the lab's output:\n%s", out.String())
	}
	// The lab's namespaces by inode: a process still inside one after the
	// hang-up keeps it alive even once its name is gone.
	inodes := map[uint64]string{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if ino, err := netns.Inode(e.Name()); err == nil && strings.HasPrefix(e.Name(), m[1]) {
			inodes[ino] = e.Name()
		}
	}
	if len(inodes) == 0 {
		cmd.Process.Kill()
		t.Fatalf("no namespace %s* in /run/netns while the lab runs", m[1])
	}
	cmd.Process.Signal(syscall.SIGHUP)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the lab did not end 30 s after SIGHUP:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "deleting the lab's namespaces") {
		t.Errorf("the lab did not tear down after SIGHUP:\n%s", out.String())
	}
	ents, _ = os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), m[1]) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = processesIn(inodes); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("processes of the lab still run 10 s after it exited on SIGHUP: %s", strings.Join(left, ", "))
	}
}

// processesIn lists the processes whose network namespace is one of
// inodes (netns.Inode), as "PID (comm) in NAME".
func processesIn(inodes map[uint64]string) []string {
	var out []string
	for pid, ino := range netns.ProcessNamespaces() {
		if name, in := inodes[ino]; in {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			out = append(out, fmt.Sprintf("%d (%s) in %s", pid, strings.TrimSpace(string(comm)), name))
		}
	}
	return out
}
