//go:build !linux

package lab

import "syscall"

// childAttr puts a child in a process group of its own; only Linux has a
// parent-death signal.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
