package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const bindDir = "/run/netns"

// New creates the named namespace (failing if it exists), brings its
// loopback up and returns it. The caller deletes it with Close.
func New(name string) (*NS, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var n *NS
	err := onLockedThread(func() error {
		h, err := vns.NewNamed(name) // switches this thread into it
		if err != nil {
			return fmt.Errorf("create network namespace %s: %w", name, err)
		}
		n = &NS{name: name, fd: int(h), own: true}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("bring up lo in network namespace %s: %w", name, err)
		}
		return nil
	})
	if err != nil && n != nil {
		n.Close()
		return nil, err
	}
	return n, err
}

// SweepStale deletes the namespaces named from UniquePrefix(base) by a
// process that no longer runs, and returns their names. A process still
// inside one is killed first (SIGKILL): something the dead process left
// running there (trafgen's forked workers, which no parent-death signal
// reaches; a lab's servers) would go on running, and sending, once the name
// is gone. Errors are left to the next sweep: a namespace that cannot be
// deleted now is still there.
func SweepStale(base string) []string {
	entries, err := os.ReadDir(bindDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if stale(e.Name(), base) {
			names = append(names, e.Name())
		}
	}
	killInside(names)
	var gone []string
	for _, name := range names {
		if err := vns.DeleteNamed(name); err == nil {
			gone = append(gone, name)
		}
	}
	return gone
}

// Inode returns the nsfs inode of the named namespace: what the
// /proc/PID/ns/net link of a process inside it names ("net:[INODE]"), which
// stays so after the name is deleted (ProcessNamespaces).
func Inode(name string) (uint64, error) {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(bindDir + "/" + name)
	if err != nil {
		return 0, err
	}
	// Only a mounted namespace: an empty file left in bindDir has an inode
	// of another file system.
	if fi.Sys().(*syscall.Stat_t).Dev != self.Sys().(*syscall.Stat_t).Dev {
		return 0, fmt.Errorf("network namespace %s: %s is not a mounted namespace", name, bindDir+"/"+name)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// ProcessNamespaces maps every process to the inode of its network
// namespace (see Inode).
func ProcessNamespaces() map[int]uint64 { return netNamespaces("/proc") }

// killInside kills every process but this one whose network namespace is
// one of the named ones, and returns their IDs.
func killInside(names []string) []int {
	inodes := map[uint64]bool{}
	for _, name := range names {
		if ino, err := Inode(name); err == nil {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	var killed []int
	for pid, ino := range ProcessNamespaces() {
		if inodes[ino] && pid != os.Getpid() && unix.Kill(pid, unix.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// netNamespaces maps the processes under proc (a /proc) to the inode of
// their network namespace, read from the ns/net link ("net:[INODE]").
func netNamespaces(proc string) map[int]uint64 {
	ents, _ := os.ReadDir(proc)
	m := make(map[int]uint64, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink(proc + "/" + e.Name() + "/ns/net")
		if err != nil {
			continue // gone meanwhile, or a kernel thread we may not look at
		}
		s, ok := strings.CutPrefix(link, "net:[")
		s, ok2 := strings.CutSuffix(s, "]")
		if ino, err := strconv.ParseUint(s, 10, 64); ok && ok2 && err == nil {
			m[pid] = ino
		}
	}
	return m
}

// processRuns reports whether process pid exists (signal 0 probes it).
func processRuns(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || err == unix.EPERM
}

// Open returns a handle to an existing named namespace. Close releases the
// handle without deleting the namespace.
func Open(name string) (*NS, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	h, err := vns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	return &NS{name: name, fd: int(h)}, nil
}

// Close releases the handle and, for a namespace made by New, deletes it.
// Processes still running inside keep it alive until they exit.
func (n *NS) Close() error {
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
	if !n.own {
		return nil
	}
	n.own = false
	if err := vns.DeleteNamed(n.name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete network namespace %s: %w", n.name, err)
	}
	return nil
}

// Do runs fn on a locked OS thread inside the namespace and waits for it.
func (n *NS) Do(fn func() error) error {
	return onLockedThread(func() error {
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", n.name, os.NewSyscallError("setns", err))
		}
		return fn()
	})
}

// Netlink returns a netlink handle whose sockets live in the namespace.
func (n *NS) Netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(vns.NsHandle(n.fd))
	if err != nil {
		return nil, fmt.Errorf("netlink handle in network namespace %s: %w", n.name, err)
	}
	return h, nil
}

// Command returns a command that runs inside the namespace
// (`ip netns exec NAME name args...`).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// onLockedThread runs fn on a fresh goroutine with its thread locked, then
// restores the thread's original namespace. If that restore fails the thread
// stays locked and dies with the goroutine.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := vns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore network namespace: %w", err))
			return // thread stays locked: the runtime discards it
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
