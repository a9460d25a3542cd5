package cli

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/dsrlb/dsrlb/internal/realserver"
)

const serverSynopsis = `dsrlb server up|down|check --vip VIP [--vip VIP6] [--interface NIC] [--state FILE]

  up     put each VIP on lo (/32, /128 nodad) and set the ARP sysctls a DSR real
         server needs (arp_ignore=1, arp_announce=2, rp_filter not strict);
         idempotent; remembers the previous values
  down   restore exactly what 'up' changed
  check  list every missing or wrong setting; exit 1 if any`

func serverCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "check") {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprintf(stdout, "Usage: %s\n", serverSynopsis)
			return exitOK
		}
		return fail(stderr, exitUsage, "usage: %s", serverSynopsis)
	}
	action := args[0]
	fs := newFlags("server "+action, serverSynopsis, stderr)
	var vips, ifaces listFlag
	fs.Var(&vips, "vip", "a VIP this server answers for (repeatable; IPv4 or IPv6)")
	fs.Var(&ifaces, "interface", "NIC facing the balancer (repeatable; default: every non-loopback link that is up)")
	state := fs.String("state", "", "state file recording what 'up' changed (default: /run/dsrlb/server-netns-<netns inode>.json)")
	var lf logFlags
	lf.register(fs)
	if code, ok := parse(fs, args[1:], stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, "server %s: unexpected argument %q", action, fs.Arg(0))
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, "server %s: %v", action, err)
	}
	o := realserver.Options{Interfaces: ifaces, StatePath: *state}
	for _, v := range vips {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return fail(stderr, exitUsage, "server %s: --vip %q is not an IP address", action, v)
		}
		o.VIPs = append(o.VIPs, a)
	}
	if len(o.VIPs) == 0 && action != "down" {
		return fail(stderr, exitUsage, "server %s: at least one --vip is required", action)
	}
	// down ignores the VIPs, but an unusable one is a mistake all the same.
	if len(o.VIPs) > 0 {
		if _, err := realserver.ValidateVIPs(o.VIPs); err != nil {
			return fail(stderr, exitUsage, "server %s: %v", action, err)
		}
	}
	switch action {
	case "up":
		if err := realserver.Up(o, log); err != nil {
			return fail(stderr, exitFailure, "server up: %v", err)
		}
		fmt.Fprintln(stdout, "dsrlb server up: done")
	case "down":
		if err := realserver.Down(o, log); err != nil {
			return fail(stderr, exitFailure, "server down: %v", err)
		}
		fmt.Fprintln(stdout, "dsrlb server down: restored")
	case "check":
		problems, err := realserver.Check(o)
		if err != nil {
			return fail(stderr, exitFailure, "server check: %v", err)
		}
		for _, p := range problems {
			fmt.Fprintln(stdout, p.String())
		}
		if len(problems) > 0 {
			fmt.Fprintf(stdout, "%d problem(s): this host is not ready to serve the VIP by DSR (run: dsrlb server up ...)\n", len(problems))
			return exitFailure
		}
		fmt.Fprintln(stdout, "OK: ready for DSR")
	}
	return exitOK
}
