package gen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// Trafgen runs netsniff-ng's trafgen in the load's namespace:
// `trafgen -o IF -i CONFIG -P THREADS -Q [-b RATEpps] [-S RING]`. -Q keeps
// it from touching IRQ affinities; its socket-memory tuning stays inside
// the namespace (those sysctls are per namespace). With a rate, trafgen
// leaves its TX_RING for sendto(2) ("slow mode"). It cannot stamp frames.
type Trafgen struct {
	// Path is the trafgen executable; "" looks it up in PATH.
	Path string
	// RingSize is passed to -S as it is: use TrafgenRingSize to write it;
	// "" keeps trafgen's choice.
	RingSize string
	// Dir receives the configuration file; "" uses the system's temp dir.
	Dir string
}

// Name implements Generator.
func (Trafgen) Name() string { return "trafgen" }

// Threads returns how many worker processes trafgen sends l with:
// l.Threads flat out, but 1 with a rate: trafgen's main() falls back to a
// single CPU whenever it shapes the rate (-b), whatever -P says.
func (Trafgen) Threads(l *Load) int {
	if l.Rate > 0 {
		return 1
	}
	return l.Threads
}

// TrafgenConfig returns trafgen's packet configuration for l: one packet
// whose source address and port are drawn at run time from l's flow space
// with trafgen's drnd(), checksums filled in by trafgen.
func TrafgenConfig(l *Load) string {
	addrs, ports := FlowSpace(l.Flows)
	var b strings.Builder
	size := UDPFrameLen
	if l.Traffic == SYN {
		size = SYNFrameLen
	}
	fmt.Fprintf(&b, "# dsrlb bench: %d-byte %s frames to %s from %d flows (%d source addresses x %d source ports)\n",
		size, l.Traffic, l.VIP, addrs*ports, addrs, ports)
	fmt.Fprintf(&b, "{\n  eth(da=%s, sa=%s),\n", l.DstMAC, l.SrcMAC)
	sa := ""
	if addrs > 1 {
		sa = fmt.Sprintf(", sa[2:2]=drnd(0, %d)", addrs-1)
	}
	fmt.Fprintf(&b, "  ipv4(sa=%s%s, da=%s, ttl=64, df),\n", SourceBase, sa, l.VIP.Addr())
	sp := strconv.Itoa(FirstPort)
	if ports > 1 {
		sp = fmt.Sprintf("drnd(%d, %d)", FirstPort, FirstPort+ports-1)
	}
	switch l.Traffic {
	case SYN:
		fmt.Fprintf(&b, "  tcp(sp=%s, dp=%d, syn, seq=drnd(), win=64240)\n", sp, l.VIP.Port())
	default:
		fmt.Fprintf(&b, "  udp(sp=%s, dp=%d),\n", sp, l.VIP.Port())
		fmt.Fprintf(&b, "  fill(0x00, %d)\n", UDPFrameLen-PayloadOffset)
	}
	b.WriteString("}\n")
	return b.String()
}

// TrafgenRingSize turns a ring size such as "8MiB", "512KiB" or "1GiB" into
// the KiB form trafgen's -S reads right: trafgen 0.6.8 takes the number
// before "KiB" and "GiB" but not before "MiB" (every "NMiB" is 1 MiB: "-S
// 8MiB" sets up a 1 MiB ring, 512 frames of 2 KiB).
func TrafgenRingSize(s string) (string, error) {
	units := []struct {
		suffix string
		kib    uint64
	}{{"KiB", 1}, {"MiB", 1 << 10}, {"GiB", 1 << 20}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseUint(num, 10, 32)
			if err != nil || n == 0 {
				break
			}
			return strconv.FormatUint(n*u.kib, 10) + "KiB", nil
		}
	}
	return "", fmt.Errorf("trafgen ring size %q: want a positive whole number of KiB, MiB or GiB, e.g. 8MiB", s)
}

// TrafgenArgs returns trafgen's command line (without the program name).
func TrafgenArgs(l *Load, config, ringSize string) []string {
	args := []string{"-o", l.Interface, "-i", config, "-P", strconv.Itoa(l.Threads), "-Q"}
	if l.Rate > 0 {
		args = append(args, "-b", fmt.Sprintf("%dpps", int64(l.Rate+0.5)))
	}
	if ringSize != "" {
		args = append(args, "-S", ringSize)
	}
	return args
}

// Start implements Generator.
func (g Trafgen) Start(ctx context.Context, l Load) (Run, error) {
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("trafgen: %w", err)
	}
	if l.StampEvery > 0 {
		return nil, errors.New("trafgen: cannot stamp frames (use the txring generator for latency)")
	}
	path := g.Path
	if path == "" {
		p, err := exec.LookPath("trafgen")
		if err != nil {
			return nil, fmt.Errorf("trafgen: %w", err)
		}
		path = p
	}
	f, err := os.CreateTemp(g.Dir, "dsrlb-bench-*.trafgen")
	if err != nil {
		return nil, fmt.Errorf("trafgen: write configuration: %w", err)
	}
	cfg := f.Name()
	_, err = f.WriteString(TrafgenConfig(&l))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(cfg)
		return nil, fmt.Errorf("trafgen: write configuration %s: %w", cfg, err)
	}
	cmd := l.NS.Command(path, TrafgenArgs(&l, cfg, g.RingSize)...)
	out := &syncbuf.Buffer{Max: 1 << 20}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed if we die: see StartTied. Its workers
	// are not; the next run's testbed kills them (testbed.Build).
	if err := StartTied(cmd); err != nil {
		os.Remove(cfg)
		return nil, fmt.Errorf("trafgen: start %s: %w", filepath.Base(path), err)
	}
	r := &trafgenRun{cmd: cmd, out: out, cfg: cfg, done: make(chan struct{})}
	go func() { r.waitErr = cmd.Wait(); close(r.done) }()

	// trafgen says "Running!" once its workers are set up; a bad
	// configuration or device makes it exit first.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), "Running!") {
		select {
		case <-r.done:
			// A worker it forked before it failed may still run.
			_, err := r.Stop()
			return nil, errors.Join(fmt.Errorf("trafgen exited at start (%v):\n%s", r.waitErr, trimOutput(out.String())), err)
		case <-ctx.Done():
			r.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			r.Stop()
			return nil, fmt.Errorf("trafgen not running after 10 s:\n%s", trimOutput(out.String()))
		case <-tick.C:
		}
	}
	return r, nil
}

type trafgenRun struct {
	cmd     *exec.Cmd
	out     *syncbuf.Buffer
	cfg     string
	done    chan struct{} // closed when cmd.Wait returned
	waitErr error
	once    sync.Once
	res     Result
	err     error
}

var trafgenSent = regexp.MustCompile(`(?m)^\s*(\d+) packets outgoing`)

// Stop signals trafgen's workers and then trafgen itself, by PID, and
// makes sure none survives.
func (r *trafgenRun) Stop() (Result, error) {
	r.once.Do(func() {
		defer os.Remove(r.cfg)
		note, err := stopTree(r.cmd.Process.Pid, r.done, 3*time.Second)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
		out := r.out.String()
		r.res.Output = trimOutput(out)
		if note != "" {
			r.res.Output += "\n(bench: " + note + ")"
		}
		if m := trafgenSent.FindStringSubmatch(out); m != nil {
			r.res.Sent, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if err != nil {
			r.err = fmt.Errorf("stop trafgen: %w", err)
		}
	})
	return r.res, r.err
}

// trimOutput drops trafgen's noise about socket-memory sysctls it may not
// write inside a namespace, and keeps at most 4 KiB.
func trimOutput(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "Cannot set system socket memory") || strings.TrimSpace(line) == "" {
			continue
		}
		keep = append(keep, line)
	}
	s = strings.Join(keep, "\n")
	if len(s) > 4096 {
		s = s[:4096] + "\n..."
	}
	return s
}
