package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// Privileged: a testbed builds, has static FDB entries and drop rules, its
// counters read, and it leaves nothing behind.
func TestBuild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to build network namespaces")
	}
	bed, err := Build(Spec{Sinks: 2})
	if err != nil {
		t.Fatal(err)
	}
	names := bed.Net.Namespaces()
	defer func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
		for _, n := range names {
			if _, err := os.Stat("/run/netns/" + n); err == nil {
				t.Errorf("namespace %s left behind", n)
			}
		}
	}()
	if len(names) != 5 || !strings.HasPrefix(names[0], "dsrlbb-") {
		t.Fatalf("namespaces %v", names)
	}
	// br_netfilter's hooks are off where the module is loaded, and the bed
	// says whether it is.
	var hook []byte
	err = bed.Net.Switch.Do(func() (err error) {
		hook, err = os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		return err
	})
	if bed.BridgeNetfilterLoaded != (err == nil) || err == nil && strings.TrimSpace(string(hook)) != "0" {
		t.Errorf("bridge-nf-call-iptables in the switch namespace: %q, %v; the bed says br_netfilter loaded: %v", hook, err, bed.BridgeNetfilterLoaded)
	}
	out, err := bed.Net.Switch.Command("bridge", "fdb", "show", "br", "br0").CombinedOutput()
	if err != nil {
		t.Fatalf("bridge fdb show: %v\n%s", err, out)
	}
	for _, h := range bed.Hosts() {
		if !strings.Contains(string(out), h.MAC.String()+" dev "+h.Port+" master br0 static") {
			t.Errorf("no static FDB entry for %s on %s:\n%s", h.MAC, h.Port, out)
		}
	}
	out, err = bed.Sinks[1].NS.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "policy drop") {
		t.Errorf("sink ruleset: %v\n%s", err, out)
	}
	a, err := bed.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Ports) != 4 || len(a.PerCPU) == 0 {
		t.Errorf("snapshot: %d ports, %d CPUs", len(a.Ports), len(a.PerCPU))
	}
	if err := bed.RPS(bed.LB, CPUMask(2)); err != nil {
		t.Error(err)
	}
	if err := bed.RPS(bed.LB, "3 x"); err == nil {
		t.Error("RPS took a mask that is not hex")
	}
}

func TestStaleName(t *testing.T) {
	runs := func(pid int) bool { return pid == 42 }
	for name, want := range map[string]bool{
		"dsrlbb-4711-3fa2c1-gen": true,
		"dsrlbb-4711-3fa2c1-s12": true,
		"dsrlbb-42-3fa2c1-gen":   false, // its process runs
		"dsrlbt-4711-3fa2c1-gen": false, // the tests' namespaces, not the bench's
		"dsrlb-4711-3fa2c1-lb":   false, // a lab's
		"dsrlbb-k3fa2c1-gen":     false, // kept: no process ID
		"dsrlbb-4711-3FA2C1-gen": false,
		"dsrlbb-4711-3fa2c-gen":  false,
		"dsrlbb-x-3fa2c1-gen":    false,
		"dsrlbb-0-3fa2c1-gen":    false,
		"other":                  false,
	} {
		if got := staleName(name, "dsrlbb", runs); got != want {
			t.Errorf("staleName(%q) = %v, want %v", name, got, want)
		}
	}
	if ours := fmt.Sprintf("dsrlbb-%d-3fa2c1-gen", os.Getpid()); staleName(ours, "dsrlbb", runs) {
		t.Errorf("staleName(%q), this process's own: true", ours)
	}
}

// netNamespaces reads "net:[INODE]" links and skips what is not a process.
func TestNetNamespaces(t *testing.T) {
	dir := t.TempDir()
	for pid, link := range map[string]string{"100": "net:[4026531840]", "200": "net:[4026532999]", "300": "mnt:[1]", "self": "net:[4026531840]"} {
		if err := os.MkdirAll(filepath.Join(dir, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(link, filepath.Join(dir, pid, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "400"), 0o755) // no ns: a process gone meanwhile
	got := netNamespaces(dir)
	if len(got) != 2 || got[100] != 4026531840 || got[200] != 4026532999 {
		t.Errorf("netNamespaces = %v", got)
	}
}

// Privileged: a process left running in a stale bench namespace (its run
// was killed, and with it the parent-death signal's reach: trafgen's
// workers) is killed before the namespace is swept; one in a live run's
// namespace is not.
func TestKillStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to build network namespaces")
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := gone.Process.Pid
	if processRuns(dead) {
		t.Skipf("process ID %d was taken again", dead)
	}
	start := func(name string) (*exec.Cmd, <-chan error) {
		ns, err := netns.New(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		cmd := ns.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill() })
		// ip netns exec enters the namespace, then becomes sleep.
		fi, err := os.Stat("/run/netns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		for deadline := time.Now().Add(10 * time.Second); netNamespaces("/proc")[cmd.Process.Pid] != ino; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d never entered %s", cmd.Process.Pid, name)
			}
		}
		return cmd, done
	}
	live, liveDone := start(netns.UniquePrefix("dsrlbb") + "gen") // first: UniquePrefix sweeps
	orphan, orphanDone := start(fmt.Sprintf("dsrlbb-%d-0badc0-gen", dead))
	killed := killStale("dsrlbb")
	if !slices.Contains(killed, orphan.Process.Pid) || slices.Contains(killed, live.Process.Pid) {
		t.Errorf("killed %v; want %d (in the stale namespace), not %d (in a live one)", killed, orphan.Process.Pid, live.Process.Pid)
	}
	select {
	case err := <-orphanDone:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("the orphan ended with %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the orphan still runs")
	}
	select {
	case err := <-liveDone:
		t.Errorf("the live run's process ended: %v", err)
	default:
	}
}
