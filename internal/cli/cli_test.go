package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

// goodConfig and every run below name an interface that does not exist
// (noIface): a run that gets past the check a case is about fails at once,
// before anything opens, instead of forwarding and answering ARP on a real
// interface of the machine until the test times out.
const goodConfig = `interface: dsrlbnoif0
services:
  - name: web
    vip: 10.0.0.100
    port: 80
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
        mac: "02:00:00:00:00:12"
`

// noIface is goodConfig's interface.
const noIface = "dsrlbnoif0"

// Bad configs and flags: each is refused with exit code 2 and its exact
// error, before anything is opened (these run unprivileged).
func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		want string // the whole stderr
	}{
		{"bad backend address", []string{"run", "--config", file("a.yaml", strings.Replace(goodConfig, "10.0.0.12", "10.0.0.300", 1))},
			"dsrlb: run: invalid configuration:\n  services[0].backends[1].address: \"10.0.0.300\" is not an IP address (line 8)\n"},
		{"port out of range", []string{"run", "--config", file("b.yaml", strings.Replace(goodConfig, "port: 80", "port: 70000", 1))},
			"dsrlb: run: invalid configuration:\n  services[0].port: must be between 0 and 65535, got 70000 (line 5)\n"},
		{"table size not prime", []string{"run", "--config", file("c.yaml", strings.Replace(goodConfig, "port: 80", "port: 80\n    table_size: 65536", 1))},
			"dsrlb: run: invalid configuration:\n  services[0].table_size: 65536 is not prime (next prime: 65537) (line 6)\n"},
		{"unknown key", []string{"run", "--config", file("d.yaml", strings.Replace(goodConfig, "backends:", "bakends:", 1))},
			"dsrlb: run: invalid configuration:\n  services[0].backends: at least one backend is required (line 3)\n  services[0].bakends: unknown key (line 6)\n"},
		{"backend equals vip", []string{"run", "--config", file("e.yaml", strings.Replace(goodConfig, "10.0.0.11", "10.0.0.100", 1))},
			""},
		{"three problems at once", []string{"run", "--config", file("f.yaml", "interface: dsrlbnoif0\nworkers: -1\nservices:\n  - name: web\n    vip: 10.0.0.100\n    protocol: sctp\n    backends:\n      - address: 2001:db8::1\n")},
			""},
		{"empty file", []string{"run", "--config", file("g.yaml", "# nothing\n")}, "dsrlb: run: invalid configuration:\n  empty config\n"},
		{"missing file", []string{"run", "--config", filepath.Join(dir, "nope.yaml")}, ""},
		{"flag: bad vip", []string{"run", "--interface", noIface, "--vip", "10.0.0.300", "--backend", "10.0.0.1"},
			"dsrlb: run: invalid configuration:\n  --vip[0]: \"10.0.0.300\" is not an IP address\n"},
		{"flag: bad protocol", []string{"run", "--interface", noIface, "--vip", "10.0.0.100:80/sctp", "--backend", "10.0.0.1"}, ""},
		{"flag: no backend", []string{"run", "--interface", noIface, "--vip", "10.0.0.100:80/tcp"}, ""},
		{"flag: bad mac", []string{"run", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1,mac=zz"}, ""},
		{"config and flags", []string{"run", "--config", "x.yaml", "--interface", noIface}, "dsrlb: run: --config excludes --interface, --vip and --backend\n"},
		{"unknown flag", []string{"run", "--nope"}, ""},
		{"stray argument", []string{"run", "--interface", noIface, "extra"}, "dsrlb: run: unexpected argument \"extra\"\n"},
		{"bad log level", []string{"run", "--log-level", "loud", "--interface", noIface}, "dsrlb: run: --log-level \"loud\": want debug, info, warn or error\n"},
		{"busy poll too long", []string{"run", "--busy-poll", "1s", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --busy-poll: must be between 0s and 10ms, got 1s\n"},
		{"bad cpu list", []string{"run", "--cpus", "3-1", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --cpus: CPU list \"3-1\": \"3-1\" is not a CPU range (low-high)\n"},
		{"fanout cpu unpinned", []string{"run", "--fanout", "cpu", "--workers", "2", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: fanout: cpu needs every worker pinned to a CPU of its own: 2 workers, 0 CPUs in cpus (--fanout, --cpus, --workers)\n"},
		{"bad fanout", []string{"run", "--fanout", "rr", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --fanout: \"rr\": want \"hash\" or \"cpu\"\n"},
		{"bad ring", []string{"run", "--ring", "v3", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --ring: \"v3\": want \"frames\", \"blocks\" or \"auto\"\n"},
		{"ring auto on two workers", []string{"run", "--ring", "auto", "--workers", "2", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: ring: auto needs one worker (workers: 1), or workers spread by CPU (fanout: cpu): got 2 workers spread by flow hash (--ring, --workers, --fanout)\n"},
		{"workers out of range with a config", []string{"run", "--config", file("h.yaml", goodConfig), "--workers", "5000"},
			"dsrlb: run: --workers: must be between 0 and 256, got 5000\n"},
		{"negative workers with a config", []string{"run", "--config", file("i.yaml", goodConfig), "--workers", "-3"},
			"dsrlb: run: --workers: must be between 0 and 256, got -3\n"},
		{"unknown command", []string{"frobnicate"}, ""},
		{"flag: admin not host:port", []string{"run", "--admin", "foo", "--interface", noIface, "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --admin: \"foo\" is not host:port (use \"\" to turn the admin endpoint off)\n"},
		{"flag: admin port 0", []string{"run", "--admin", "127.0.0.1:0", "--config", file("j.yaml", goodConfig)},
			"dsrlb: run: --admin: \"127.0.0.1:0\": port \"0\" is not a number in 1..65535\n"},
		{"admin port not a number", []string{"run", "--config", file("k.yaml", "admin: \"localhost:nope\"\n"+goodConfig)},
			"dsrlb: run: invalid configuration:\n  admin: \"localhost:nope\": port \"nope\" is not a number in 1..65535 (line 1)\n"},
		{"status: bad admin", []string{"status", "--admin", "localhost:nope"},
			"dsrlb: status: --admin: \"localhost:nope\": port \"nope\" is not a number in 1..65535\n"},
		{"reload: bad admin", []string{"reload", "--admin", "foo"},
			"dsrlb: reload: --admin: \"foo\" is not host:port (use \"\" to turn the admin endpoint off)\n"},
		{"backend: bad admin", []string{"backend", "drain", "web", "10.0.0.11", "--admin", "127.0.0.1:99999"},
			"dsrlb: backend drain: --admin: \"127.0.0.1:99999\": port \"99999\" is not a number in 1..65535\n"},
		// A VIP the real-server setup cannot use is a usage error, found
		// before the host is looked at or changed.
		{"server check: loopback vip", []string{"server", "check", "--vip", "127.0.0.1"},
			"dsrlb: server check: VIP 127.0.0.1 is not a unicast service address\n"},
		{"server up: multicast vip", []string{"server", "up", "--vip", "10.0.0.100", "--vip", "ff02::1"},
			"dsrlb: server up: VIP ff02::1 is not a unicast service address\n"},
		{"server down: mapped vip", []string{"server", "down", "--vip", "::ffff:10.0.0.100"},
			"dsrlb: server down: VIP ::ffff:10.0.0.100 is an IPv4-mapped IPv6 address: give 10.0.0.100\n"},
		{"config check: two files", []string{"config", "check", "a.yaml", "b.yaml"}, ""},
		{"config: no subcommand", []string{"config"}, ""},
		{"version: stray argument", []string{"version", "extra"}, "dsrlb: version: unexpected argument \"extra\"\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := run(t, c.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("printed %q on stdout: something ran", stdout)
			}
			if c.want != "" && stderr != c.want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, c.want)
			}
			if c.want == "" && !strings.HasPrefix(stderr, "dsrlb: ") && !strings.Contains(stderr, "flag provided but not defined") {
				t.Errorf("stderr does not say what is wrong:\n%s", stderr)
			}
		})
	}
}

// The cases above whose message is built elsewhere are pinned here so a
// change of wording is seen.
func TestRunErrorWording(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.yaml")
	os.WriteFile(p, []byte("interface: dsrlbnoif0\nworkers: -1\nservices:\n  - name: web\n    vip: 10.0.0.100\n    protocol: sctp\n    backends:\n      - address: 2001:db8::1\n"), 0o644)
	_, _, stderr := run(t, "run", "--config", p)
	for _, want := range []string{
		"workers: must be between 0 and 256, got -1 (line 2)",
		"services[0].protocol: \"sctp\" is not a protocol: use tcp or udp (line 6)",
		"services[0].backends[0].address: 2001:db8::1 is IPv6 but the vip 10.0.0.100 is IPv4 (line 8)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("missing %q in:\n%s", want, stderr)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ok.yaml")
	os.WriteFile(p, []byte(goodConfig), 0o644)
	code, out, stderr := run(t, "config", "check", p)
	if code != 0 || out != p+": OK (1 services, 2 backends, interface dsrlbnoif0)\n" {
		t.Fatalf("code %d out %q err %q", code, out, stderr)
	}
	os.WriteFile(p, []byte(strings.Replace(goodConfig, "10.0.0.11", "nope", 1)), 0o644)
	code, _, stderr = run(t, "config", "check", p)
	if code != exitUsage || !strings.Contains(stderr, `services[0].backends[0].address: "nope" is not an IP address (line 7)`) {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, out, _ := run(t, args...)
		if code != 0 || !strings.Contains(out, "dsrlb run --config FILE") {
			t.Errorf("%v: code %d out %q", args, code, out)
		}
	}
	code, out, _ := run(t, "run", "--help")
	if code != 0 || !strings.Contains(out, "-backend") || !strings.Contains(out, "-config") {
		t.Errorf("run --help: code %d %q", code, out)
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "dsrlb ") {
		t.Errorf("version: %d %q", code, out)
	}
}

// 'dsrlb COMMAND --help' works for every command, as the usage promises:
// the command's synopsis on stdout, nothing on stderr, exit code 0.
func TestCommandHelp(t *testing.T) {
	cases := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"run", "--help"}, "Usage: dsrlb run --config FILE"},
		{[]string{"run", "-h"}, "Usage: dsrlb run --config FILE"},
		{[]string{"server", "--help"}, "Usage: dsrlb server up|down|check --vip VIP [--vip VIP6] [--interface NIC] [--state FILE]"},
		{[]string{"server", "-h"}, "Usage: dsrlb server up|down|check"},
		{[]string{"server", "up", "--help"}, "Usage: dsrlb server up|down|check --vip VIP [--vip VIP6] [--interface NIC] [--state FILE]"},
		{[]string{"server", "down", "-h"}, "Usage: dsrlb server up|down|check"},
		{[]string{"server", "check", "--help"}, "Usage: dsrlb server up|down|check"},
		{[]string{"lab", "--help"}, "Usage: dsrlb lab [--requests N]"},
		{[]string{"status", "--help"}, "Usage: dsrlb status [--json] [--admin ADDR]"},
		{[]string{"reload", "-h"}, "Usage: dsrlb reload [--admin ADDR]"},
		{[]string{"backend", "--help"}, "Usage: dsrlb backend drain|enable SERVICE ADDRESS"},
		{[]string{"backend", "-h"}, "Usage: dsrlb backend drain|enable SERVICE ADDRESS"},
		{[]string{"backend", "drain", "--help"}, "Usage: dsrlb backend drain|enable SERVICE ADDRESS"},
		{[]string{"backend", "enable", "web", "10.0.0.11", "--help"}, "Usage: dsrlb backend drain|enable SERVICE ADDRESS"},
		{[]string{"config", "--help"}, "Usage: dsrlb config check FILE"},
		{[]string{"config", "-h"}, "Usage: dsrlb config check FILE"},
		{[]string{"config", "check", "--help"}, "Usage: dsrlb config check FILE"},
		{[]string{"config", "check", "-h"}, "Usage: dsrlb config check FILE"},
		{[]string{"version", "--help"}, "Usage: dsrlb version"},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.args[0]] = true
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, c.args...)
			if code != exitOK {
				t.Errorf("exit code %d, want 0; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stdout, c.want) {
				t.Errorf("stdout lacks %q:\n%s", c.want, stdout)
			}
			if stderr != "" {
				t.Errorf("stderr: %q, want nothing", stderr)
			}
		})
	}
	// Every command of the top-level usage is in the table.
	for _, line := range strings.Split(usage, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  dsrlb ") && !covered[f[1]] {
			t.Errorf("no --help case for %q, listed in the usage", f[1])
		}
	}
}

// A start that fails before the dataplane opens prints no traffic summary:
// there was no traffic to sum up. (As root the start fails on the missing
// interface, otherwise on the missing capabilities: either way before
// anything opens.)
func TestRunFailedStartPrintsNoSummary(t *testing.T) {
	code, stdout, stderr := run(t, "run", "--interface", noIface, "--vip", "198.18.0.100:80/tcp", "--backend", "198.18.0.11", "--admin", "")
	if code != exitFailure {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailure, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing: the dataplane never ran", stdout)
	}
	if !strings.HasPrefix(stderr, "dsrlb: run: ") {
		t.Errorf("stderr does not say why the start failed:\n%s", stderr)
	}
}
