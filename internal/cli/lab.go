package cli

import (
	"io"
	"os"
	"syscall"

	"github.com/dsrlb/dsrlb/internal/lab"
)

func labCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("lab", `dsrlb lab [--requests N] [--servers N] [--ipv6] [--keep]

Builds a DSR lab out of network namespaces on this machine (a client, the
balancer and the servers on one bridge), configures the servers with
'dsrlb server up', runs 'dsrlb run', sends requests from the client to the VIP
and reports which server answered each, with the evidence that the replies
bypassed the balancer. Needs root. Namespaces get a unique prefix and are
deleted at the end (unless --keep).`, stderr)
	requests := fs.Int("requests", 1000, "HTTP requests to send to the VIP")
	servers := fs.Int("servers", 3, "number of real servers (1-20)")
	ipv6 := fs.Bool("ipv6", false, "also serve and test an IPv6 VIP")
	keep := fs.Bool("keep", false, "leave the lab running and print how to explore it")
	var lf logFlags
	lf.register(fs)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, "lab: unexpected argument %q", fs.Arg(0))
	}
	if *requests < 1 || *servers < 1 || *servers > 20 {
		return fail(stderr, exitUsage, "lab: --requests must be >= 1 and --servers 1..20")
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, "lab: %v", err)
	}
	if os.Geteuid() != 0 {
		return fail(stderr, exitUsage, "lab: needs root (it creates network namespaces)")
	}
	self, err := os.Executable()
	if err != nil {
		return fail(stderr, exitFailure, "lab: find own executable: %v", err)
	}
	// A closed terminal (SIGHUP) tears the lab down as Ctrl-C does.
	ctx, stop := shutdownOnSignal(log, "tearing the lab down (a forced exit may leave its namespaces behind)", os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if _, err := lab.Run(ctx, lab.Options{Binary: self, Requests: *requests, Servers: *servers, IPv6: *ipv6, Keep: *keep, Out: stdout, Log: log}); err != nil {
		return fail(stderr, exitFailure, "lab: %v", err)
	}
	return exitOK
}
