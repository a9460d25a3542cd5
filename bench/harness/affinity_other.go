//go:build !linux

package harness

import (
	"fmt"
	"runtime"
)

// pinThreads is Linux only.
func pinThreads(cpu int) (restore func(), err error) {
	return nil, fmt.Errorf("pinning threads to a CPU is not supported on %s", runtime.GOOS)
}
