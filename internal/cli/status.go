package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/dsrlb/dsrlb/internal/admin"
	"github.com/dsrlb/dsrlb/internal/config"
)

// adminFlag returns the admin endpoint a client command talks to: --admin,
// or the default for "", checked as the balancer checks its own.
func adminFlag(addr string) (string, error) {
	if addr == "" {
		return config.DefaultAdmin, nil
	}
	if err := config.CheckAdmin(addr); err != nil {
		return "", fmt.Errorf("--admin: %v", err)
	}
	return addr, nil
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "dsrlb status [--json] [--admin ADDR]\n\nShows the running balancer's frame counts, ring wait (how long frames waited for a worker), services,\nbackends (state, reason, share, pps, flows) and drops.", stderr)
	addr := fs.String("admin", config.DefaultAdmin, "the balancer's admin endpoint")
	asJSON := fs.Bool("json", false, "print the raw JSON status (for scripts)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	a, err := adminFlag(*addr)
	if err != nil {
		return fail(stderr, exitUsage, "status: %v", err)
	}
	c := &admin.Client{Addr: a}
	if *asJSON {
		b, err := c.StatusJSON(context.Background())
		if err != nil {
			return fail(stderr, exitFailure, "status: %v", err)
		}
		stdout.Write(b)
		return exitOK
	}
	st, err := c.Status(context.Background())
	if err != nil {
		return fail(stderr, exitFailure, "status: %v", err)
	}
	admin.Format(stdout, st)
	return exitOK
}

func reloadCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", "dsrlb reload [--admin ADDR]\n\nAsks the running balancer to re-read its config file (as SIGHUP does). An invalid file is\nrejected with its errors and the running configuration stays.", stderr)
	addr := fs.String("admin", config.DefaultAdmin, "the balancer's admin endpoint")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	a, err := adminFlag(*addr)
	if err != nil {
		return fail(stderr, exitUsage, "reload: %v", err)
	}
	summary, err := (&admin.Client{Addr: a}).Reload(context.Background())
	if err != nil {
		return fail(stderr, exitFailure, "reload: %v", err)
	}
	fmt.Fprintln(stdout, "reloaded:", summary)
	return exitOK
}

func backendCmd(args []string, stdout, stderr io.Writer) int {
	const synopsis = "dsrlb backend drain|enable SERVICE ADDRESS [--admin ADDR]\n\ndrain: no new flows to the backend, its established flows stay; enable: undo a drain.\nThe change lasts until the balancer restarts (set weight: 0 in the config to make it permanent)."
	if len(args) < 1 || (args[0] != "drain" && args[0] != "enable") {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprintf(stdout, "Usage: %s\n", synopsis)
			return exitOK
		}
		return fail(stderr, exitUsage, "usage: %s", synopsis)
	}
	action := args[0]
	fs := newFlags("backend "+action, synopsis, stderr)
	addr := fs.String("admin", config.DefaultAdmin, "the balancer's admin endpoint")
	// Flags may come after the positional arguments.
	var pos []string
	rest := args[1:]
	for len(rest) > 0 {
		if code, ok := parse(fs, rest, stdout); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 2 {
		return fail(stderr, exitUsage, "usage: %s", synopsis)
	}
	if _, err := netip.ParseAddr(pos[1]); err != nil {
		return fail(stderr, exitUsage, "backend %s: %q is not an IP address", action, pos[1])
	}
	a, err := adminFlag(*addr)
	if err != nil {
		return fail(stderr, exitUsage, "backend %s: %v", action, err)
	}
	msg, err := (&admin.Client{Addr: a}).Backend(context.Background(), action, pos[0], pos[1])
	if err != nil {
		return fail(stderr, exitFailure, "backend %s: %v", action, err)
	}
	fmt.Fprintln(stdout, msg)
	return exitOK
}
