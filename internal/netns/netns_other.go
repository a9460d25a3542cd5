//go:build !linux

package netns

import (
	"errors"
	"os/exec"
)

const bindDir = "/run/netns"

var errUnsupported = errors.New("network namespaces are only supported on Linux")

// Inode is not supported on this system.
func Inode(name string) (uint64, error) { return 0, errUnsupported }

// ProcessNamespaces has no namespaces to report on this system.
func ProcessNamespaces() map[int]uint64 { return nil }

// SweepStale has nothing to sweep on this system.
func SweepStale(base string) []string { return nil }

func processRuns(pid int) bool { return true }

// New is not supported on this system.
func New(name string) (*NS, error) { return nil, errUnsupported }

// Open is not supported on this system.
func Open(name string) (*NS, error) { return nil, errUnsupported }

// Close does nothing on this system.
func (n *NS) Close() error { return errUnsupported }

// Do is not supported on this system.
func (n *NS) Do(fn func() error) error { return errUnsupported }

// Command is not supported on this system.
func (n *NS) Command(name string, args ...string) *exec.Cmd { return exec.Command("false") }
