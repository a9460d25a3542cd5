package gen

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// monoClock agrees with clock_gettime(CLOCK_MONOTONIC).
func TestMonoClock(t *testing.T) {
	c := newMonoClock()
	time.Sleep(20 * time.Millisecond)
	for range 5 {
		var a, b unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
		n := c.now()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		if n < a.Nano()-int64(50*time.Microsecond) || n > b.Nano()+int64(50*time.Microsecond) {
			t.Fatalf("monoClock %d outside [%d, %d]", n, a.Nano(), b.Nano())
		}
	}
}
