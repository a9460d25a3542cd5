package gen

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// StartTied starts cmd in a process group of its own (a Ctrl-C on the
// terminal then reaches only the bench, which stops its children in order),
// with SIGKILL as its parent-death signal: should the bench die without
// tearing down (SIGKILL, a crash, a signal it does not handle), the kernel
// kills the child. Other SysProcAttr settings of cmd are kept.
//
// The kernel sends that signal when the thread that forked the child ends,
// not the process, and the bench's threads do end (the transmit ring's
// senders lock theirs and end with them), so every child is forked from one
// thread, locked by a goroutine that never returns. Processes the child
// forks in turn (trafgen's workers) do not inherit the setting.
func StartTied(cmd *exec.Cmd) error {
	forkerOnce.Do(func() {
		forker = make(chan forkRequest)
		go forkLoop()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	forker <- forkRequest{cmd: cmd, err: errc}
	return <-errc
}

type forkRequest struct {
	cmd *exec.Cmd
	err chan<- error
}

var (
	forkerOnce sync.Once
	forker     chan forkRequest
)

// forkLoop starts the commands StartTied is given, on a thread that lives
// as long as the process.
func forkLoop() {
	runtime.LockOSThread() // never unlocked
	for r := range forker {
		r.err <- r.cmd.Start()
	}
}
