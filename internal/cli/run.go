package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/admin"
	"github.com/dsrlb/dsrlb/internal/config"
	"github.com/dsrlb/dsrlb/internal/engine"
)

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "dsrlb run --config FILE | --interface IF --vip VIP[:PORT][/PROTO] --backend ADDR[,mac=MAC][,weight=W] ...", stderr)
	cfgPath := fs.String("config", "", "YAML config file (see README.md); excludes --interface/--vip/--backend")
	iface := fs.String("interface", "", "interface that receives VIP traffic and reaches the servers")
	workers := fs.Int("workers", 0, "worker count (0: one per CPU); with --config, overrides the file's when set")
	cpus := fs.String("cpus", "", `pin worker i to the i-th CPU of this list ("1", "2-5", "0,2"); with --workers 0, one worker per listed CPU; overrides the config's cpus when set`)
	vipMAC := fs.String("vip-mac", config.VIPMACInterface, `MAC address the VIPs answer ARP/NDP on and forwarded frames leave from: "interface" (the interface's own), "auto" (a virtual MAC derived from it: the kernel then ignores VIP frames by itself, no nft rule, cheaper per packet; needs a network that allows a second MAC on the port) or a unicast MAC; overrides the config's vip_mac when set`)
	fanout := fs.String("fanout", config.FanoutHash, `how the kernel spreads received frames over several workers: "hash" (by flow: a flow always reaches one worker) or "cpu" (each worker takes the frames its own CPU received, which stay in that CPU's cache; needs --cpus with one CPU per worker, and a NIC whose RSS (or RPS) spreads the flows over those CPUs); overrides the config's fanout when set`)
	ring := fs.String("ring", config.RingFrames, `how the kernel hands received frames to a worker: "frames" (each frame on its own: the least latency), "blocks" (in blocks of frames, handed over when full or 1 ms after their first frame: less CPU per frame when the CPUs are saturated, for up to about a millisecond more latency) or "auto" (frames, and blocks while a worker falls behind; needs --workers 1, or --fanout cpu); overrides the config's ring when set`)
	busyPoll := fs.Duration("busy-poll", config.DefaultBusyPoll, "how long a worker spins on its empty ring before it sleeps (0: sleep at once; at most 10ms); spinning costs CPU, sleeping costs wake-up latency; overrides the config's busy_poll when set")
	adminAddr := fs.String("admin", "-", `admin endpoint address (metrics, status, reload); "" turns it off; default: the config's admin:, else `+config.DefaultAdmin)
	var vips, backends listFlag
	fs.Var(&vips, "vip", "service VIP, repeatable: 10.0.0.100:80/tcp, 10.0.0.100/udp (every port), [2001:db8::100]:80/tcp")
	fs.Var(&backends, "backend", "backend, repeatable: 10.0.0.11 or 10.0.0.11,mac=02:00:00:00:00:11,weight=2 (joins every VIP of its family)")
	var lf logFlags
	lf.register(fs)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, "run: unexpected argument %q", fs.Arg(0))
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, "run: %v", err)
	}
	// adjust applies the command line's overrides to a configuration: the
	// one the balancer starts with and every one a reload reads.
	adjust := func(cfg *config.Config) error {
		if *cfgPath != "" && flagSet(fs, "workers") {
			if err := cfg.SetWorkers(*workers); err != nil {
				return fmt.Errorf("--workers: %v", err)
			}
		}
		if *adminAddr != "-" {
			if err := cfg.SetAdmin(*adminAddr); err != nil {
				return fmt.Errorf("--admin: %v", err)
			}
		}
		if flagSet(fs, "cpus") {
			if err := cfg.SetCPUs(*cpus); err != nil {
				return fmt.Errorf("--cpus: %v", err)
			}
		}
		if flagSet(fs, "vip-mac") {
			if err := cfg.SetVIPMAC(*vipMAC); err != nil {
				return fmt.Errorf("--vip-mac: %v", err)
			}
		}
		if flagSet(fs, "fanout") {
			if err := cfg.SetFanout(*fanout); err != nil {
				return fmt.Errorf("--fanout: %v", err)
			}
		}
		if err := cfg.CheckFanout(); err != nil {
			return fmt.Errorf("fanout: %v (--fanout, --cpus, --workers)", err)
		}
		if flagSet(fs, "ring") {
			if err := cfg.SetRing(*ring); err != nil {
				return fmt.Errorf("--ring: %v", err)
			}
		}
		if err := cfg.CheckRing(); err != nil {
			return fmt.Errorf("ring: %v (--ring, --workers, --fanout)", err)
		}
		if flagSet(fs, "busy-poll") {
			if err := cfg.SetBusyPoll(*busyPoll); err != nil {
				return fmt.Errorf("--busy-poll: %v", err)
			}
		}
		return nil
	}
	var cfg *config.Config
	switch {
	case *cfgPath != "" && (*iface != "" || len(vips) > 0 || len(backends) > 0):
		return fail(stderr, exitUsage, "run: --config excludes --interface, --vip and --backend")
	case *cfgPath != "":
		cfg, err = config.Load(*cfgPath)
	case *iface == "" && len(vips) == 0 && len(backends) == 0:
		fs.Usage()
		return exitUsage
	default:
		cfg, err = config.FromFlags(*iface, *workers, vips, backends)
	}
	if err != nil {
		return fail(stderr, exitUsage, "run: invalid configuration:\n%s", indent(err.Error()))
	}
	if err := adjust(cfg); err != nil {
		return fail(stderr, exitUsage, "run: %v", err)
	}
	ctx, stop := shutdownOnSignal(log, "stopping", os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	st, err := engine.Serve(ctx, engine.ServeOptions{
		Config: cfg, ConfigPath: *cfgPath, Adjust: adjust, Reload: reload, Log: log,
		Admin: func(ctx context.Context, ln net.Listener, e *engine.Engine, dp *dataplane.Dataplane, rl func(context.Context) (string, error)) error {
			return admin.New(e, dp, rl, version(), log).ServeListener(ctx, ln)
		},
	})
	// The counters mean something only if the dataplane opened; it has a
	// flow table (of at least one entry) per worker from then on. A start
	// that failed before (the admin port taken, no capabilities) says so
	// without a summary of nothing.
	if st.FlowCapacity > 0 {
		fmt.Fprintln(stdout, summary(&st))
	}
	if err != nil {
		return fail(stderr, exitFailure, "run: %v", err)
	}
	return exitOK
}

// summary is the one line printed at shutdown.
func summary(st *dataplane.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dsrlb: received %d, forwarded %d (%d bytes), dropped %d", st.Received, st.Forwarded(), st.ForwardedBytes, st.Dropped())
	var parts []string
	for i := 1; i < dataplane.NumReasons; i++ {
		if n := st.Reasons[i]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", dataplane.ReasonName(i), n))
		}
	}
	if st.RingDrops > 0 {
		parts = append(parts, fmt.Sprintf("ring_full=%d", st.RingDrops))
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, " "))
	}
	fmt.Fprintf(&b, "; flows %d new, %d evicted", st.FlowsNew, st.FlowEvictions)
	if st.RingMoves > 0 {
		fmt.Fprintf(&b, "; ring moves %d", st.RingMoves)
	}
	return b.String()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func configCmd(args []string, stdout, stderr io.Writer) int {
	const synopsis = "dsrlb config check FILE\n\nValidates a config file as dsrlb run --config would, without running: every problem\nwith its field path and line, exit code 2 if there is any."
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprintf(stdout, "Usage: %s\n", synopsis)
			return exitOK
		}
		return fail(stderr, exitUsage, "usage: %s", synopsis)
	}
	fs := newFlags("config check", synopsis, stderr)
	if code, ok := parse(fs, args[1:], stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return fail(stderr, exitUsage, "usage: %s", synopsis)
	}
	path := fs.Arg(0)
	cfg, err := config.Load(path)
	if err != nil {
		return fail(stderr, exitUsage, "%s: invalid configuration:\n%s", path, indent(err.Error()))
	}
	n := 0
	for _, s := range cfg.Services {
		n += len(s.Backends)
	}
	fmt.Fprintf(stdout, "%s: OK (%d services, %d backends, interface %s)\n", path, len(cfg.Services), n, cfg.Interface)
	return exitOK
}
