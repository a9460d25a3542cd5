// Command bench measures dsrlb against the kernel on one machine: it builds
// a DSR topology of network namespaces (a generator, a balancer host and N
// sinks on one bridge), offers the same load through dsrlb, through an
// nftables reference balancer and straight to a sink, alternating the
// three, and reports delivered packets per second, loss, CPU time per
// packet and added latency. See bench/README.md.
//
//	go run ./bench [flags]
//
// It needs root. Everything it creates lives in namespaces named
// dsrlbb-PID-XXXXXX-*, deleted on exit, on error, on Ctrl-C and on a hang-up
// (and by the next run if this one is killed, which also kills what still
// runs inside them).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/bench/harness"
)

const usage = `Usage: go run ./bench [flags]

Builds namespaces gen, lb and sinks s1..sN on one bridge (prefix
dsrlbb-PID-XXXXXX-), then for each repetition runs every mode in turn
(A B C A B C ...) with the same offered load:

  dsrlb    the dsrlb binary (built from ./cmd/dsrlb) in the lb namespace:
           dsrlb run --interface eth0 --vip 198.18.0.100:9/udp
             --vip 198.18.0.100:9/tcp --backend <sink>,mac=<mac> ... --workers W
             --vip-mac auto
           (one mode per --workers value: dsrlb-w1, dsrlb-w2, ...; with
           --alt-bin/--alt-flags each gets an A/B twin, dsrlb-wN-alt)
  nft      the kernel reference: nftables netdev ingress on the lb's eth0
           sets the source MAC, picks a sink MAC by jhash(ip saddr . sport)
           mod N and fwd's the frame back out of eth0 (as nftlb does DSR);
           RPS on the lb's eth0 spreads it over all CPUs
  nft-local the same reference with RPS off: each frame is balanced on the
           CPU that sent it, inside the sender's softirq (no hand-over to
           another CPU, which on a VM costs an IPI)
  direct   no balancer: the generator sends to sink s1; the machine's ceiling

Delivered = frames the bridge handed to the sinks (switch port counters,
read in one pass). CPU ns/pkt = busy time of all CPUs (/proc/stat) per
delivered frame; "extra" is that minus the direct path's.

Then a latency phase: the built-in TX-ring generator at half the slowest
balancer's rate, in kicks of --latency-batch frames, a sample of frames
stamped with CLOCK_MONOTONIC, read at sink s1 by an AF_PACKET probe.

Generators (--gen): pktgen (kernel, /proc/net/pktgen; UDP only), trafgen
(netsniff-ng), txring (built in). auto takes the first available.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	ncpu := runtime.NumCPU()
	modes := fs.String("modes", "dsrlb,nft,nft-local,direct", "modes to run, in this order each repetition: dsrlb, nft, nft-local, direct")
	workers := fs.String("workers", strconv.Itoa(ncpu), "dsrlb worker counts, comma-separated (e.g. 1,2: scaling); each is a mode")
	reps := fs.Int("reps", 5, "repetitions of the throughput phase")
	latReps := fs.Int("latency-reps", 3, "repetitions of the latency phase")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each window")
	window := fs.Duration("window", 5*time.Second, "measurement window")
	sinks := fs.Int("sinks", 4, "number of sinks (backends)")
	flows := fs.Int("flows", 65536, fmt.Sprintf("distinct flows (source address x source port), up to %d", gen.MaxFlows))
	traffic := fs.String("traffic", "udp", "frames: udp (60 bytes) or syn (54-byte TCP SYNs)")
	generator := fs.String("gen", "auto", "generator: auto, pktgen, trafgen or txring")
	threads := fs.Int("gen-threads", ncpu, "generator threads (pinned to CPUs 0..N-1)")
	rate := fs.Float64("rate", 0, "throughput phase offered rate in pps; 0 is flat out")
	lat := fs.Bool("latency", true, "run the latency phase")
	latPin := fs.Bool("latency-pin", true, "in the latency phase, pin dsrlb's workers to CPUs 1..N-1, off the generator's CPU 0, and the bench's own threads (probes, Go runtime) to CPU 0 during dsrlb's windows")
	latRate := fs.Float64("latency-rate", 0, "latency phase offered rate in pps; 0 is half the slowest balancer's median")
	latBatch := fs.Int("latency-batch", harness.DefaultLatencyBatch, "latency phase: most frames the generator hands the kernel per send (a frame late in a kick waits for the sending of those before it)")
	rps := fs.String("rps", "nft", "RPS on the lb's eth0: nft (for the reference only), all (every balancer) or none; never for nft-local")
	brnf := fs.Bool("br-netfilter", false, "leave br_netfilter's bridge-nf-call-* on in the switch namespace")
	sinkPass := fs.Bool("sink-pass", false, "let frames into the sinks' IP stacks instead of dropping them at ingress")
	dsrlb := fs.String("dsrlb", "", "dsrlb binary to run (default: go build ./cmd/dsrlb into a temporary directory)")
	dsrlbFlags := fs.String("dsrlb-flags", "", `more flags for every "dsrlb run", space-separated, e.g. "--busy-poll 0"`)
	vipMAC := fs.String("vip-mac", "auto", "dsrlb's --vip-mac: auto (the VIPs on a virtual MAC, which the generator then targets) or interface (the lb's own MAC)")
	altBin := fs.String("alt-bin", "", "A/B: also run this dsrlb binary as mode dsrlb-wN-alt beside each dsrlb-wN")
	altFlags := fs.String("alt-flags", "", `A/B: also run dsrlb with these extra flags as mode dsrlb-wN-alt (with --alt-bin: that binary)`)
	ring := fs.String("trafgen-ring", "", "trafgen's ring size (-S, passed in KiB), e.g. 8MiB")
	jsonOut := fs.String("json", "", "write every measurement and the summary as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg := harness.Config{
		Reps: *reps, LatencyReps: *latReps, Warmup: *warmup, Window: *window,
		Sinks: *sinks, Flows: *flows, Generator: *generator, GenThreads: *threads,
		Rate: *rate, Latency: *lat, LatencyRate: *latRate, LatencyBatch: *latBatch, RPS: *rps,
		BridgeNetfilter: *brnf, SinkPass: *sinkPass, DsrlbBin: *dsrlb, DsrlbFlags: strings.Fields(*dsrlbFlags), AltBin: *altBin, VIPMAC: *vipMAC, AltFlags: strings.Fields(*altFlags), LatencyPin: *latPin,
		Progress: stderr,
	}
	var err error
	if *ring != "" {
		if cfg.TrafgenRing, err = gen.TrafgenRingSize(*ring); err != nil {
			fmt.Fprintf(stderr, "bench: --trafgen-ring: %v\n", err)
			return 2
		}
	}
	if cfg.Traffic, err = gen.ParseTraffic(*traffic); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	for _, m := range strings.Split(*modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Modes = append(cfg.Modes, m)
		}
	}
	for _, w := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil {
			fmt.Fprintf(stderr, "bench: --workers %q: %v\n", *workers, err)
			return 2
		}
		cfg.Workers = append(cfg.Workers, n)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "bench: needs root (network namespaces, AF_PACKET, nftables)")
		return 1
	}

	ctx, stop := cancelOnSignals(stderr)
	defer stop()
	rep, err := harness.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	rep.Command = append([]string{"go run ./bench"}, args...)
	fmt.Fprintln(stdout)
	rep.Print(stdout)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench: write %s: %v\n", *jsonOut, err)
			return 1
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", *jsonOut)
	}
	if rep.Interrupted {
		return 130
	}
	return 0
}

// cancelOnSignals returns a context that the first SIGINT, SIGTERM or
// SIGHUP (the terminal hung up) cancels, saying so on stderr: the run then
// tears down. Later ones are swallowed so that the teardown finishes, until
// stop is called.
func cancelOnSignals(stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(stderr, "bench: %v: stopping and deleting the namespaces\n", s)
		cancel()
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}
