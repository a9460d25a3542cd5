//go:build !linux

package gen

import (
	"os/exec"
	"syscall"
)

// StartTied starts cmd in a process group of its own. Only Linux has a
// parent-death signal: here a child outlives a bench that dies without
// tearing down.
func StartTied(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	return cmd.Start()
}
