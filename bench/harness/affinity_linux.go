package harness

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinThreads confines every thread of this process to cpu and returns a
// function that gives each the affinity it had before. A thread started in
// between inherited cpu, and one found confined to cpu alone may have
// inherited it from a thread pinned a moment before: both get the calling
// thread's affinity (so a thread that had pinned itself to cpu before is
// unpinned too: the generator's, for the moment before it stops).
//
// The latency phase runs the instrument's threads (the probes, the Go
// runtime's, the garbage collector's) on the generator's CPU during dsrlb's
// windows, so that they do not take turns with dsrlb's workers on theirs:
// a probe or a GC pass scheduled there holds the worker's CPU until it
// sleeps or the next scheduler tick (4 ms on a 250 Hz kernel), and every
// frame that arrives meanwhile waits.
// Processes started while pinned inherit cpu; the harness starts none
// inside a window.
func pinThreads(cpu int) (restore func(), err error) {
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, os.NewSyscallError("sched_getaffinity", err)
	}
	one.Set(cpu)
	saved := map[int]unix.CPUSet{}
	// A thread started during the scan by a thread not yet pinned is not
	// pinned either: scan until a pass finds no thread it has not seen.
	for pass := 0; pass < 10; pass++ {
		tids, err := threadIDs()
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, tid := range tids {
			if _, seen := saved[tid]; seen {
				continue
			}
			var old unix.CPUSet
			if unix.SchedGetaffinity(tid, &old) != nil {
				continue // it has exited
			}
			if err := unix.SchedSetaffinity(tid, &one); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue
				}
				restoreThreads(saved, one, all)
				return nil, fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, os.NewSyscallError("sched_setaffinity", err))
			}
			saved[tid] = old
			fresh++
		}
		if fresh == 0 {
			return func() { restoreThreads(saved, one, all) }, nil
		}
	}
	restoreThreads(saved, one, all)
	return nil, fmt.Errorf("pin threads to CPU %d: the process kept starting threads", cpu)
}

// restoreThreads gives each thread still confined to pinned its saved
// affinity, or the process's (all) when it has none saved or the saved one
// is pinned. A thread that set its own affinity meanwhile keeps it. A
// thread started during a pass by one not yet restored inherits pinned:
// passes go on until one finds nothing to restore.
func restoreThreads(saved map[int]unix.CPUSet, pinned, all unix.CPUSet) {
	for pass := 0; pass < 10; pass++ {
		tids, err := threadIDs()
		if err != nil {
			return
		}
		changed := 0
		for _, tid := range tids {
			var cur unix.CPUSet
			if unix.SchedGetaffinity(tid, &cur) != nil || cur != pinned {
				continue
			}
			set, ok := saved[tid]
			if !ok || set == pinned {
				set = all
			}
			if unix.SchedSetaffinity(tid, &set) == nil {
				changed++
			}
		}
		if changed == 0 {
			return
		}
	}
}

// threadIDs lists the IDs of this process's threads.
func threadIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
