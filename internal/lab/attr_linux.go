package lab

import "syscall"

// childAttr puts a child in a process group of its own, with SIGTERM as
// its parent-death signal.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
