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

const goodConfig = `interface: eth0
services:
  - name: web
    vip: 10.0.0.100
    port: 80
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
        mac: "02:00:00:00:00:12"
`

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
		{"three problems at once", []string{"run", "--config", file("f.yaml", "interface: eth0\nworkers: -1\nservices:\n  - name: web\n    vip: 10.0.0.100\n    protocol: sctp\n    backends:\n      - address: 2001:db8::1\n")},
			""},
		{"empty file", []string{"run", "--config", file("g.yaml", "# nothing\n")}, "dsrlb: run: invalid configuration:\n  empty config\n"},
		{"missing file", []string{"run", "--config", filepath.Join(dir, "nope.yaml")}, ""},
		{"flag: bad vip", []string{"run", "--interface", "eth0", "--vip", "10.0.0.300", "--backend", "10.0.0.1"},
			"dsrlb: run: invalid configuration:\n  --vip[0]: \"10.0.0.300\" is not an IP address\n"},
		{"flag: bad protocol", []string{"run", "--interface", "eth0", "--vip", "10.0.0.100:80/sctp", "--backend", "10.0.0.1"}, ""},
		{"flag: no backend", []string{"run", "--interface", "eth0", "--vip", "10.0.0.100:80/tcp"}, ""},
		{"flag: bad mac", []string{"run", "--interface", "eth0", "--vip", "10.0.0.100", "--backend", "10.0.0.1,mac=zz"}, ""},
		{"config and flags", []string{"run", "--config", "x.yaml", "--interface", "eth0"}, "dsrlb: run: --config excludes --interface, --vip and --backend\n"},
		{"unknown flag", []string{"run", "--nope"}, ""},
		{"stray argument", []string{"run", "--interface", "eth0", "extra"}, "dsrlb: run: unexpected argument \"extra\"\n"},
		{"bad log level", []string{"run", "--log-level", "loud", "--interface", "eth0"}, "dsrlb: run: --log-level \"loud\": want debug, info, warn or error\n"},
		{"busy poll too long", []string{"run", "--busy-poll", "1s", "--interface", "eth0", "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --busy-poll: must be between 0s and 10ms, got 1s\n"},
		{"bad cpu list", []string{"run", "--cpus", "3-1", "--interface", "eth0", "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --cpus: CPU list \"3-1\": \"3-1\" is not a CPU range (low-high)\n"},
		{"fanout cpu unpinned", []string{"run", "--fanout", "cpu", "--workers", "2", "--interface", "eth0", "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: fanout: cpu needs every worker pinned to a CPU of its own: 2 workers, 0 CPUs in cpus (--fanout, --cpus, --workers)\n"},
		{"bad fanout", []string{"run", "--fanout", "rr", "--interface", "eth0", "--vip", "10.0.0.100", "--backend", "10.0.0.1"},
			"dsrlb: run: --fanout: \"rr\": want \"hash\" or \"cpu\"\n"},
		{"workers out of range with a config", []string{"run", "--config", file("h.yaml", goodConfig), "--workers", "5000"},
			"dsrlb: run: --workers: must be between 0 and 256, got 5000\n"},
		{"negative workers with a config", []string{"run", "--config", file("i.yaml", goodConfig), "--workers", "-3"},
			"dsrlb: run: --workers: must be between 0 and 256, got -3\n"},
		{"unknown command", []string{"frobnicate"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(t, c.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
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
	os.WriteFile(p, []byte("interface: eth0\nworkers: -1\nservices:\n  - name: web\n    vip: 10.0.0.100\n    protocol: sctp\n    backends:\n      - address: 2001:db8::1\n"), 0o644)
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
	if code != 0 || out != p+": OK (1 services, 2 backends, interface eth0)\n" {
		t.Fatalf("code %d out %q err %q", code, out, stderr)
	}
	os.WriteFile(p, []byte(strings.Replace(goodConfig, "10.0.0.11", "nope", 1)), 0o644)
	code, _, stderr = run(t, "config", "check", p)
	if code != exitUsage || !strings.Contains(stderr, `services[0].backends[0].address: "nope" is not an IP address (line 7)`) {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}} {
		code, out, _ := run(t, args...)
		if code != 0 || !strings.Contains(out, "dsrlb run --config FILE") {
			t.Errorf("%v: code %d out %q", args, code, out)
		}
	}
	code, _, stderr := run(t, "run", "--help")
	if code != 0 || !strings.Contains(stderr, "-backend") || !strings.Contains(stderr, "-config") {
		t.Errorf("run --help: code %d %q", code, stderr)
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "dsrlb ") {
		t.Errorf("version: %d %q", code, out)
	}
}
