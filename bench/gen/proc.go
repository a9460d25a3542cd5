package gen

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// procStat is what stopTree needs from /proc/PID/stat.
type procStat struct {
	pid, ppid, pgrp int
	state           byte
}

// parseProcStat parses the start of /proc/PID/stat: "pid (comm) state ppid
// pgrp ...". comm may hold spaces and parentheses, so it ends at the last
// ')'.
func parseProcStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("malformed stat %q", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat pid %q", b[:open])
	}
	f := bytes.Fields(b[end+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed stat %q", b)
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("malformed stat %q", b)
	}
	return procStat{pid: pid, ppid: ppid, pgrp: pgrp, state: f[0][0]}, nil
}

// processes reads every process's stat line.
func processes() map[int]procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	m := make(map[int]procStat, len(ents))
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if st, err := parseProcStat(b); err == nil {
			m[st.pid] = st
		}
	}
	return m
}

// family returns the live (not zombie) processes below root, by parent
// links, plus any process in root's process group (a worker whose parent
// died is re-parented to init but keeps its group), deepest first.
func family(procs map[int]procStat, root int) []int {
	depth := map[int]int{}
	var walk func(pid, d int)
	walk = func(pid, d int) {
		for _, p := range procs {
			if p.ppid == pid && p.pid != pid {
				if _, seen := depth[p.pid]; !seen {
					depth[p.pid] = d
					walk(p.pid, d+1)
				}
			}
		}
	}
	walk(root, 1)
	for _, p := range procs {
		if p.pgrp == root && p.pid != root {
			if _, seen := depth[p.pid]; !seen {
				depth[p.pid] = 1
			}
		}
	}
	var out []int
	for pid := range depth {
		if procs[pid].state != 'Z' {
			out = append(out, pid)
		}
	}
	slices.SortFunc(out, func(a, b int) int { return depth[b] - depth[a] })
	return out
}

// stopTree stops root (a child of ours, whose Wait closes done) and every
// process below it or in its process group: SIGINT to the descendants,
// deepest first, then to root; after grace, SIGKILL to whatever lives. It
// returns a note naming the processes it had to kill, and an error naming
// any process that survived even that.
func stopTree(root int, done <-chan struct{}, grace time.Duration) (note string, err error) {
	kids := family(processes(), root)
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGINT)
	}
	syscall.Kill(root, syscall.SIGINT)
	alive := func() []int {
		var live []int
		procs := processes()
		for _, pid := range kids {
			if p, ok := procs[pid]; ok && p.state != 'Z' {
				live = append(live, pid)
			}
		}
		// Workers forked after the first scan, if any.
		for _, pid := range family(procs, root) {
			if !slices.Contains(live, pid) {
				live = append(live, pid)
			}
		}
		select {
		case <-done:
		default:
			live = append(live, root)
		}
		return live
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if len(alive()) == 0 {
			return "", nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed := alive()
	for _, pid := range killed {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline = time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if len(alive()) == 0 {
			return fmt.Sprintf("processes %v ignored SIGINT for %v and were killed", killed, grace), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("processes %v survive SIGKILL", alive())
}
