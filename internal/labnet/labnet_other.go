//go:build !linux

package labnet

import (
	"fmt"
	"runtime"

	"github.com/dsrlb/dsrlb/internal/netns"
)

func build(n *Net) error {
	return fmt.Errorf("lab networks are not supported on %s", runtime.GOOS)
}

func linkStats(ns *netns.NS, name string) (LinkStats, error) {
	return LinkStats{}, fmt.Errorf("link statistics are not supported on %s", runtime.GOOS)
}
