package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `dsrlb — a userspace L4 Direct Server Return load balancer

Usage:
  dsrlb run --config FILE                 run the balancer from a YAML config
  dsrlb run --interface IF --vip VIP[:PORT][/tcp|udp] --backend ADDR ...
                                          run it from flags (quick lab use)
  dsrlb server up|down|check --vip VIP [--vip VIP6] [--interface NIC] [--state FILE]
                                          prepare, restore or verify a real server
  dsrlb lab [--requests N] [--servers N] [--ipv6] [--keep]
                                          build a DSR lab in network namespaces and show it working
  dsrlb status [--json] [--admin ADDR]    show the running balancer's services and backends
  dsrlb reload [--admin ADDR]             make the running balancer re-read its config (or SIGHUP)
  dsrlb backend drain|enable SERVICE ADDR drain a backend (no new flows) or undo it
  dsrlb config check FILE                 validate a config file
  dsrlb version                           print the version

Run 'dsrlb COMMAND --help' for a command's flags.
`

// Main runs the command line args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(rest, stdout, stderr)
	case "server":
		return serverCmd(rest, stdout, stderr)
	case "status":
		return statusCmd(rest, stdout, stderr)
	case "reload":
		return reloadCmd(rest, stdout, stderr)
	case "backend":
		return backendCmd(rest, stdout, stderr)
	case "lab":
		return labCmd(rest, stdout, stderr)
	case "config":
		return configCmd(rest, stdout, stderr)
	case "version", "--version":
		return versionCmd(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "dsrlb: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "dsrlb version\n\nPrints the version (the module version and VCS revision it was built from).", stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, "version: unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(stdout, "dsrlb", version())
	return exitOK
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// newFlags returns a flag set that prints its usage with a synopsis (to
// stderr, unless parse was asked for it with -h or --help) and reports errors
// instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n", synopsis)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args; ok is false with the exit code to return when parsing
// ended the command: an error (the usage goes to the flag set's output,
// stderr) or -h/--help (the usage goes to stdout, exit code 0).
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, ok bool) {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, where it belongs
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		stderr := fs.Output()
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return exitOK, false
	case err != nil:
		fs.Usage()
		return exitUsage, false
	}
	return 0, true
}

// isHelp reports whether arg asks for a command's usage.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	json  bool
	level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.json, "log-json", false, "log as JSON lines instead of text")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if l.json {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func fail(stderr io.Writer, code int, format string, args ...any) int {
	fmt.Fprintf(stderr, "dsrlb: "+format+"\n", args...)
	return code
}

var _ = os.Stdout

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
