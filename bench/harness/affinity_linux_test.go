package harness

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadAffinity is the affinity of thread tid.
func threadAffinity(t *testing.T, tid int) unix.CPUSet {
	t.Helper()
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &s); err != nil {
		t.Fatalf("sched_getaffinity(%d): %v", tid, err)
	}
	return s
}

// pinThreads confines every thread, one started after it too, and restore
// gives each its own affinity back, except a thread that set its own
// meanwhile.
func TestPinThreads(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if all.Count() < 2 || !all.IsSet(0) || !all.IsSet(1) {
		t.Skipf("needs CPUs 0 and 1 (allowed: %d CPUs)", all.Count())
	}
	var zero, one unix.CPUSet
	zero.Set(0)
	one.Set(1)

	// A thread that pins itself to CPU 1 while the process is pinned (as
	// a generator's thread starting late does), locked for the whole test.
	ownerReady, ownerGo, ownerDone := make(chan struct{}), make(chan struct{}), make(chan unix.CPUSet)
	go func() {
		runtime.LockOSThread()
		ownerReady <- struct{}{}
		<-ownerGo
		unix.SchedSetaffinity(0, &one)
		ownerGo <- struct{}{}
		<-ownerGo
		var s unix.CPUSet
		unix.SchedGetaffinity(0, &s)
		ownerDone <- s
	}()
	<-ownerReady

	restore, err := pinThreads(0)
	if err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			restore() // a failed check must not leave the process pinned
		}
	}()
	tids, err := threadIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if got := threadAffinity(t, tid); got != zero {
			t.Errorf("thread %d: affinity %v while pinned, want CPU 0 only", tid, got)
		}
	}
	// A thread started while pinned inherits it. Goroutines lock threads
	// until one is on a thread that did not exist at pinning time: the
	// runtime starts threads when every one it has is taken.
	existed := map[int]bool{}
	for _, tid := range tids {
		existed[tid] = true
	}
	release := make(chan struct{})
	defer close(release)
	freshTid := 0
	for range len(existed) + 8 {
		got := make(chan int)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			got <- unix.Gettid()
			<-release
		}()
		if tid := <-got; !existed[tid] {
			freshTid = tid
			break
		}
	}
	if freshTid == 0 {
		t.Fatalf("the runtime started no thread for %d locked goroutines", len(existed)+8)
	}
	if got := threadAffinity(t, freshTid); got != zero {
		t.Errorf("thread started while pinned: affinity %v, want CPU 0 only", got)
	}
	ownerGo <- struct{}{} // the owner pins itself to CPU 1
	<-ownerGo

	restore()
	restored = true
	if got := threadAffinity(t, unix.Gettid()); got != all {
		t.Errorf("after restore: this thread's affinity %v, want %v", got, all)
	}
	if got := threadAffinity(t, freshTid); got != all {
		t.Errorf("after restore: the thread started while pinned has %v, want the process's %v", got, all)
	}
	ownerGo <- struct{}{}
	if got := <-ownerDone; got != one {
		t.Errorf("after restore: the thread that pinned itself to CPU 1 meanwhile has %v, want CPU 1", got)
	}
}
