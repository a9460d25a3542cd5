package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// The real `dsrlb run` and `dsrlb server` live in cmd/dsrlb. These tests run
// Run against a stand-in: the test binary itself, started by Run inside the
// namespaces, acts as dsrlb when fakeEnv is set. Its `run` is a plain TCP
// proxy that owns the VIP, so it is exactly the kind of balancer the lab
// must flag: replies leave the balancer with the VIP as source.

const fakeEnv = "DSRLB_LAB_FAKE"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeDSRLB(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// fakeDSRLB is the stand-in's main. Modes: "proxy" (works, not DSR),
// "silent" (run never answers), "crash" (run exits at once), "serverfail"
// (server up fails after writing its state file, as a real one that fails
// to set a sysctl does), "serverfailearly" (server up fails before writing
// it), "serverhang" (server up hangs after writing it). Like the real one,
// server up writes the --state file, and server down removes it, failing
// ("nothing to restore") without one.
func fakeDSRLB(mode string, args []string) int {
	if len(args) >= 2 && args[0] == "server" {
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		var vips listFlag
		fs.Var(&vips, "vip", "")
		iface := fs.String("interface", "", "")
		state := fs.String("state", "", "")
		if err := fs.Parse(args[2:]); err != nil || len(vips) == 0 || *iface != "eth0" || *state == "" {
			fmt.Fprintln(os.Stderr, "fake: bad server arguments", args)
			return 2
		}
		switch args[1] {
		case "up":
			if mode == "serverfailearly" {
				fmt.Println("fake: cannot configure", vips)
				return 1
			}
			if err := os.WriteFile(*state, []byte("fake state\n"), 0o644); err != nil {
				fmt.Println("fake: write state file:", err)
				return 1
			}
			switch mode {
			case "serverfail":
				fmt.Println("fake: cannot configure", vips)
				return 1
			case "serverhang":
				fmt.Println("fake: state written")
				time.Sleep(time.Hour) // until the lab kills it
			}
		case "down":
			if err := os.Remove(*state); err != nil {
				fmt.Println("fake: nothing to restore:", err)
				return 1
			}
			fmt.Println("fake: restored")
		}
		return 0
	}
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(os.Stderr, "fake: unknown command", args)
		return 2
	}
	switch mode {
	case "crash":
		fmt.Fprintln(os.Stderr, "fake: no dataplane")
		return 3
	case "silent":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		return 0
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var vips, backends listFlag
	fs.Var(&vips, "vip", "")
	fs.Var(&backends, "backend", "")
	iface := fs.String("interface", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var next atomic.Uint64
	for _, v := range vips {
		vip := netip.MustParseAddrPort(strings.TrimSuffix(v, "/tcp"))
		bits := "/32"
		extra := []string{}
		if vip.Addr().Is6() {
			bits, extra = "/128", []string{"nodad"}
		}
		out, err := exec.Command("ip", append([]string{"addr", "add", vip.Addr().String() + bits, "dev", *iface}, extra...)...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "fake: ip addr add: %v: %s", err, out)
			return 1
		}
		ln, err := net.Listen("tcp", vip.String())
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake:", err)
			return 1
		}
		var pool []string
		for _, b := range backends {
			if netip.MustParseAddr(b).Is4() == vip.Addr().Is4() {
				pool = append(pool, netip.AddrPortFrom(netip.MustParseAddr(b), vip.Port()).String())
			}
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go proxy(c, pool[next.Add(1)%uint64(len(pool))])
			}
		}()
		fmt.Println("fake: proxying", vip, "to", pool)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	fmt.Println("fake: stopping")
	return 0
}

func proxy(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(b, c)
		b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, b)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to build the lab's namespaces")
	}
}

// fakeOptions returns options that run the stand-in in the given mode.
func fakeOptions(t *testing.T, mode string, out io.Writer) Options {
	t.Helper()
	t.Setenv(fakeEnv, mode)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Options{Binary: bin, Out: out}
}

// assertCleanedUp checks that no namespace and no state directory of the
// lab whose progress output is out is left. The lab's prefix and state
// directory are read from its phase lines, so other labs running on this
// machine at the same time do not matter.
func assertCleanedUp(t *testing.T, out string) {
	t.Helper()
	if dir := stateDirOf(t, out); dirExists(t, dir) {
		t.Errorf("state directory %s left behind", dir)
	}
	m := regexp.MustCompile(`namespaces (dsrlb-(?:[0-9]+-|k)?[0-9a-f]+-)\{`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no namespace prefix in the lab's output:\n%s", out)
	}
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), m[1]) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

// stateDirOf reads the servers' state directory from the lab's output.
func stateDirOf(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`==> configuring the servers: dsrlb server up .* --state (\S+)/<server>\.json\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no state directory in the lab's output:\n%s", out)
	}
	return m[1]
}

func dirExists(t *testing.T, dir string) bool {
	t.Helper()
	_, err := os.Stat(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestRunProxyIsCaught(t *testing.T) {
	requireRoot(t)
	var out syncbuf.Buffer
	o := fakeOptions(t, "proxy", &out)
	o.Requests, o.Servers, o.IPv6 = 60, 3, true
	r, err := Run(context.Background(), o)
	t.Logf("output:\n%s", out.String())
	assertCleanedUp(t, out.String())
	if !errors.Is(err, ErrChecksFailed) || !strings.Contains(err.Error(), "replies went through it") {
		t.Fatalf("Run error %v, want ErrChecksFailed for VIP frames", err)
	}
	if r == nil || len(r.Families) != 2 {
		t.Fatalf("report %+v", r)
	}
	if r.Total != 120 || r.Failed != 0 {
		t.Errorf("total %d, failed %d", r.Total, r.Failed)
	}
	for _, f := range r.Families {
		// The stand-in goes round robin: 60 requests are 20 each.
		for _, s := range r.Servers {
			if f.PerServer[s] != 20 {
				t.Errorf("%s: %s answered %d, want 20", f.Name, s, f.PerServer[s])
			}
		}
		if f.VIPFramesFromLB == 0 {
			t.Errorf("%s: no VIP-sourced frames counted from a proxying balancer", f.Name)
		}
		if f.LBRxPackets == 0 || f.LBTxPackets == 0 || f.ClientRxBytes == 0 || f.ServersTxBytes == 0 {
			t.Errorf("%s: counters %+v", f.Name, f.Counts)
		}
	}
	if r.BalancerExit != "" || r.CaptureError != "" {
		t.Errorf("balancer exit %q, capture %q", r.BalancerExit, r.CaptureError)
	}
	for _, name := range r.Namespaces {
		if netns.Exists(name) {
			t.Errorf("%s still exists", name)
		}
	}
	text := out.String()
	for _, want := range []string{
		"==> building the lab network",
		"==> configuring the servers: dsrlb server up --vip 198.18.0.100 --vip 2001:db8:18::100 --interface eth0 --state ",
		"srv3| fake: restored",
		"==> starting the balancer: dsrlb run --interface eth0",
		"balancer| fake: proxying 198.18.0.100:80",
		"IPv4:  10% (6/60 requests, 0 failed)",
		"IPv6: 100% (60/60 requests, 0 failed)",
		"==> stopping the balancer (SIGTERM)",
		"balancer| fake: stopping",
		"frames sent by the balancer with source VIP: ",
		"PROBLEMS:",
		"==> unconfiguring the servers: dsrlb server down",
		"==> deleting the lab's namespaces",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRunKeep(t *testing.T) {
	requireRoot(t)
	var out syncbuf.Buffer
	o := fakeOptions(t, "proxy", &out)
	o.Requests, o.Servers, o.Keep = 10, 1, true
	r, err := Run(context.Background(), o)
	if r != nil {
		t.Cleanup(func() {
			for _, name := range r.Namespaces {
				exec.Command("ip", "netns", "del", name).Run()
			}
		})
	}
	if !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !r.Kept || len(r.Namespaces) != 4 {
		t.Fatalf("report: kept %v, namespaces %v", r.Kept, r.Namespaces)
	}
	for _, name := range r.Namespaces {
		if !netns.Exists(name) {
			t.Errorf("kept lab lacks %s", name)
		}
		if !strings.Contains(out.String(), "ip netns del "+name+";") {
			t.Errorf("output does not say how to delete %s", name)
		}
	}
	if strings.Contains(out.String(), "unconfiguring") {
		t.Error("servers were unconfigured in a kept lab")
	}
	dir := stateDirOf(t, out.String())
	t.Cleanup(func() { os.RemoveAll(dir) })
	if !strings.HasPrefix(filepath.Base(dir), keptStateDir) || !dirExists(t, dir) {
		t.Errorf("kept lab's state directory %s: want it kept, named %s...", dir, keptStateDir)
	}
	if _, err := os.Stat(filepath.Join(dir, "srv1.json")); err != nil {
		t.Errorf("kept lab's state file: %v", err)
	}
	if !strings.Contains(out.String(), "rm -r "+dir+"\n") {
		t.Errorf("output does not say how to delete %s", dir)
	}
}

func TestRunFailures(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		mode, want string
		down       bool // srv1 must be unconfigured
	}{
		{"crash", "the balancer exited before answering on http://198.18.0.100:80/: exit status 3: fake: no dataplane", true},
		// up failed having changed the server: down undoes it.
		{"serverfail", "dsrlb server up --vip 198.18.0.100 --interface eth0 --state ", true},
		// up failed with nothing changed: no down, and no "nothing to restore" error.
		{"serverfailearly", "dsrlb server up --vip 198.18.0.100 --interface eth0 --state ", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var out syncbuf.Buffer
			o := fakeOptions(t, tc.mode, &out)
			o.Requests = 10
			r, err := Run(context.Background(), o)
			assertCleanedUp(t, out.String())
			if err == nil || !strings.Contains(err.Error(), tc.want) || r != nil {
				t.Fatalf("Run: %v (report %v), want an error containing %q\n%s", err, r, tc.want, out.String())
			}
			if strings.Contains(err.Error(), "server down") || strings.Contains(out.String(), "nothing to restore") {
				t.Errorf("Run: %v, want no failed down\n%s", err, out.String())
			}
			if got := strings.Contains(out.String(), "srv1| fake: restored"); got != tc.down {
				t.Errorf("srv1 unconfigured: %v, want %v\n%s", got, tc.down, out.String())
			}
			if strings.HasPrefix(tc.mode, "server") && strings.Contains(out.String(), "srv2|") {
				t.Errorf("srv2 was touched after srv1 failed:\n%s", out.String())
			}
		})
	}
}

// runCancelledAt runs the lab on the fake binary in mode and cancels it once
// its output shows marker; Run must then fail as cancelled, with everything
// torn down. It returns the output.
func runCancelledAt(t *testing.T, mode, marker string) string {
	t.Helper()
	requireRoot(t)
	var out syncbuf.Buffer
	o := fakeOptions(t, mode, &out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for !strings.Contains(out.String(), marker) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	r, err := Run(ctx, o)
	assertCleanedUp(t, out.String())
	if !errors.Is(err, context.Canceled) || r != nil {
		t.Fatalf("Run: %v, report %v\n%s", err, r, out.String())
	}
	return out.String()
}

func TestRunCancel(t *testing.T) {
	// Cancel while Run waits for the silent balancer.
	out := runCancelledAt(t, "silent", "==> waiting for the balancer")
	if !strings.Contains(out, "==> stopping the balancer") || !strings.Contains(out, "==> deleting") {
		t.Errorf("cancelled run did not stop and tear down:\n%s", out)
	}
}

// A run cancelled while `server up` hangs, its state file written, kills
// it and still runs `server down` there.
func TestRunCancelDuringServerUp(t *testing.T) {
	out := runCancelledAt(t, "serverhang", "srv1| fake: state written")
	if !strings.Contains(out, "srv1| fake: restored") {
		t.Errorf("srv1 was not unconfigured after its up was killed:\n%s", out)
	}
}

// Two labs at once do not disturb each other.
func TestRunTwoAtOnce(t *testing.T) {
	requireRoot(t)
	var outs [2]syncbuf.Buffer
	var wg sync.WaitGroup
	var reports [2]*Report
	var errs [2]error
	opts := fakeOptions(t, "proxy", nil)
	for i := range 2 {
		o := opts
		o.Out, o.Requests, o.Servers = &outs[i], 100, 2+i
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = Run(context.Background(), o)
		}()
	}
	wg.Wait()
	for i := range outs {
		assertCleanedUp(t, outs[i].String())
	}
	for i, r := range reports {
		if !errors.Is(errs[i], ErrChecksFailed) || r == nil {
			t.Fatalf("lab %d: %v\n%s", i, errs[i], outs[i].String())
		}
		if r.Total != 100 || r.Failed != 0 || len(r.PerServer) != 2+i {
			t.Errorf("lab %d: total %d failed %d per server %v", i, r.Total, r.Failed, r.PerServer)
		}
	}
}
