package gen

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child started by StartTied does not die with the thread that asked for
// it: the parent-death signal follows the forking thread, and the bench's
// threads end (the transmit ring's senders lock theirs).
func TestStartTiedOutlivesCallerThread(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	var err error
	onThreadThatEnds(func() { err = StartTied(cmd) })
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("the child ended with the thread that started it: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
}

// onThreadThatEnds runs fn on a thread that ends when fn returns. A locked
// goroutine that returns ends its thread, unless that is the main thread:
// a goroutine that lands there holds it while another tries.
func onThreadThatEnds(fn func()) {
	var held []chan struct{}
	defer func() {
		for _, release := range held {
			close(release)
		}
	}()
	for {
		ran, release := make(chan bool), make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked on the thread that ends
			if syscall.Gettid() == os.Getpid() {
				ran <- false
				<-release
				runtime.UnlockOSThread()
				return
			}
			fn()
			ran <- true
		}()
		if <-ran {
			return
		}
		held = append(held, release)
	}
}

// A child started by StartTied dies with its parent, whichever way the
// parent ends: here a helper process starts a sleep and exits.
func TestStartTiedDiesWithParent(t *testing.T) {
	helper := exec.Command(os.Args[0], "-test.run=^TestTiedHelperProcess$")
	helper.Env = append(os.Environ(), "GEN_TIED_HELPER=1")
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if s, ok := strings.CutPrefix(sc.Text(), "child "); ok {
			pid, _ = strconv.Atoi(s)
		}
	}
	if err := helper.Wait(); err != nil || pid == 0 {
		t.Fatalf("helper: %v, child pid %d", err, pid)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p, ok := processes()[pid]; !ok || p.state == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d still runs 10 s after its parent exited", pid)
		}
	}
}

// TestTiedHelperProcess is TestStartTiedDiesWithParent's parent process.
func TestTiedHelperProcess(t *testing.T) {
	if os.Getenv("GEN_TIED_HELPER") != "1" {
		t.Skip("helper process of TestStartTiedDiesWithParent")
	}
	cmd := exec.Command("sleep", "60")
	if err := StartTied(cmd); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Printf("child %d\n", cmd.Process.Pid)
	os.Exit(0) // without stopping or waiting for the child
}
