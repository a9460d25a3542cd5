package config

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadExample(t *testing.T) {
	got, err := Load("testdata/dsrlb.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Interface:       "eth0",
		Workers:         0,
		Seed:            0,
		FlowTable:       FlowTable{Size: 65536, IdleTimeout: 5 * time.Minute},
		NeighborRefresh: 10 * time.Second,
		Admin:           DefaultAdmin,
		BusyPoll:        DefaultBusyPoll,
		Fanout:          FanoutHash,
		Ring:            RingFrames,
		VIPMAC:          VIPMACInterface,
		Services: []Service{{
			Name:      "web",
			VIP:       netip.MustParseAddr("10.0.0.100"),
			Port:      80,
			Protocol:  TCP,
			TableSize: 65537,
			Health:    defaultHealth(),
			Backends: []Backend{
				{Address: netip.MustParseAddr("10.0.0.11"), MAC: nil, Weight: 1, Health: defaultHealth()},
				// weight absent: defaults to 1.
				{Address: netip.MustParseAddr("10.0.0.12"), MAC: mustMAC(t, "02:00:00:00:00:12"), Weight: 1, Health: defaultHealth()},
			},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(testdata/dsrlb.yaml)\n got %+v\nwant %+v", got, want)
	}
}

// TestParseDefaults checks every default against a file that sets nothing
// optional, and that explicit values override them.
func TestParseDefaults(t *testing.T) {
	got, err := Parse([]byte(`
interface: eth1
services:
  - name: dns
    vip: 2001:db8::53
    backends:
      - address: 2001:db8::1
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Interface:       "eth1",
		FlowTable:       FlowTable{Size: 65536, IdleTimeout: 5 * time.Minute},
		NeighborRefresh: 10 * time.Second,
		Admin:           DefaultAdmin,
		BusyPoll:        DefaultBusyPoll,
		Fanout:          FanoutHash,
		Ring:            RingFrames,
		VIPMAC:          VIPMACInterface,
		Services: []Service{{
			Name:      "dns",
			VIP:       netip.MustParseAddr("2001:db8::53"),
			Port:      0,
			Protocol:  TCP,
			TableSize: 65537,
			Health:    defaultHealth(),
			Backends:  []Backend{{Address: netip.MustParseAddr("2001:db8::1"), Weight: 1, Health: defaultHealth()}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults\n got %+v\nwant %+v", got, want)
	}

	got, err = Parse([]byte(`
interface: eth1
workers: 256
seed: 18446744073709551615
flow_table: {size: 16777216, idle_timeout: 90s}
neighbor_refresh: 1s
busy_poll: 0s
cpus: "1-2,0"
vip_mac: 02:00:5E:00:01:01
services:
  - {name: dns, vip: 2001:db8::53, port: 53, protocol: UDP, table_size: 7,
     backends: [{address: 2001:db8::1, weight: 0}, {address: 2001:db8::2, weight: 65535}]}
  - {name: dns-tcp, vip: 2001:db8::53, port: 53, protocol: tcp, table_size: 2,
     backends: [{address: 2001:db8::1}]}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got.Workers != 256 || got.Seed != 1<<64-1 || got.FlowTable.Size != 1<<24 ||
		got.FlowTable.IdleTimeout != 90*time.Second || got.NeighborRefresh != time.Second || got.BusyPoll != 0 ||
		!slices.Equal(got.CPUs, []int{1, 2, 0}) || got.VIPMAC != "02:00:5e:00:01:01" {
		t.Errorf("top-level values not taken: %+v", got)
	}
	s := got.Services[0]
	if s.Port != 53 || s.Protocol != UDP || s.TableSize != 7 || s.Backends[0].Weight != 0 || s.Backends[1].Weight != 65535 {
		t.Errorf("service values not taken: %+v", s)
	}
	if got.Services[1].Protocol != TCP || got.Services[1].TableSize != 2 {
		t.Errorf("second service: %+v", got.Services[1])
	}
}

// The template the error cases vary; one problem per case unless said.
//
//	1 interface: eth0
//	2 services:
//	3   - name: web
//	4     vip: 10.0.0.100
//	5     port: 80
//	6     backends:
//	7       - address: 10.0.0.11
const validYAML = `interface: eth0
services:
  - name: web
    vip: 10.0.0.100
    port: 80
    backends:
      - address: 10.0.0.11
`

// parseErrorCases are shared with the fuzz test as its seed corpus.
var parseErrorCases = []struct {
	name string
	in   string
	want []string
}{
	{
		name: "bad IP",
		in:   strings.Replace(validYAML, "10.0.0.11", "10.0.0.300", 1),
		want: []string{`services[0].backends[0].address: "10.0.0.300" is not an IP address (line 7)`},
	},
	{
		name: "port 70000",
		in:   strings.Replace(validYAML, "port: 80", "port: 70000", 1),
		want: []string{`services[0].port: must be between 0 and 65535, got 70000 (line 5)`},
	},
	{
		name: "port as string",
		in:   strings.Replace(validYAML, "port: 80", `port: "80"`, 1),
		want: []string{`services[0].port: must be an integer, got "80" (line 5)`},
	},
	{
		name: "protocol sctp",
		in:   strings.Replace(validYAML, "port: 80", "port: 80\n    protocol: sctp", 1),
		want: []string{`services[0].protocol: "sctp" is not a protocol: use tcp or udp (line 6)`},
	},
	{
		name: "table_size not prime",
		in:   strings.Replace(validYAML, "port: 80", "port: 80\n    table_size: 65536", 1),
		want: []string{`services[0].table_size: 65536 is not prime (next prime: 65537) (line 6)`},
	},
	{
		name: "table_size above cap",
		in:   strings.Replace(validYAML, "port: 80", "port: 80\n    table_size: 16777259", 1),
		want: []string{`services[0].table_size: must be between 2 and 16777213, got 16777259 (line 6)`},
	},
	{
		name: "table_size below backend count",
		in: strings.Replace(validYAML, "port: 80", "port: 80\n    table_size: 2", 1) +
			"      - address: 10.0.0.12\n      - address: 10.0.0.13\n",
		want: []string{`services[0].table_size: must be at least the number of backends (3), got 2 (line 6)`},
	},
	{
		name: "duplicate service name",
		in: validYAML + `  - name: web
    vip: 10.0.0.101
    backends:
      - address: 10.0.0.11
`,
		want: []string{`services[1].name: duplicate name "web" (also services[0]) (line 8)`},
	},
	{
		name: "duplicate vip+port+protocol",
		in: validYAML + `  - name: api
    vip: 10.0.0.100
    port: 80
    protocol: TCP
    backends:
      - address: 10.0.0.12
`,
		want: []string{`services[1]: 10.0.0.100:80/tcp is also used by services[0] ("web") (line 8)`},
	},
	{
		name: "backend family mismatch",
		in:   strings.Replace(validYAML, "10.0.0.11", "2001:db8::11", 1),
		want: []string{`services[0].backends[0].address: 2001:db8::11 is IPv6 but the vip 10.0.0.100 is IPv4 (line 7)`},
	},
	{
		name: "backend is the vip",
		in:   strings.Replace(validYAML, "10.0.0.11", "10.0.0.100", 1),
		want: []string{`services[0].backends[0].address: 10.0.0.100 is the service's own vip (line 7)`},
	},
	{
		name: "duplicate backend",
		in:   validYAML + "      - address: 10.0.0.11\n",
		want: []string{`services[0].backends[1].address: 10.0.0.11 is listed twice (also services[0].backends[0]) (line 8)`},
	},
	{
		name: "bad mac",
		in:   validYAML + `        mac: "02:00:00:00:00"` + "\n",
		want: []string{`services[0].backends[0].mac: "02:00:00:00:00" is not a MAC address (line 8)`},
	},
	{
		name: "multicast mac",
		in:   validYAML + `        mac: "01:00:5e:00:00:01"` + "\n",
		want: []string{`services[0].backends[0].mac: 01:00:5e:00:00:01 is a multicast address (line 8)`},
	},
	{
		name: "all-zero mac",
		in:   validYAML + `        mac: "00:00:00:00:00:00"` + "\n",
		want: []string{`services[0].backends[0].mac: 00:00:00:00:00:00 is the all-zero address (line 8)`},
	},
	{
		name: "EUI-64 mac",
		in:   validYAML + `        mac: "02:00:00:00:00:00:00:12"` + "\n",
		want: []string{`services[0].backends[0].mac: 02:00:00:00:00:00:00:12 is not a 6-byte Ethernet address (line 8)`},
	},
	{
		name: "weight 70000",
		in:   validYAML + "        weight: 70000\n",
		want: []string{`services[0].backends[0].weight: must be between 0 and 65535, got 70000 (line 8)`},
	},
	{
		name: "unknown key",
		in:   strings.Replace(validYAML, "backends:", "bakends:", 1),
		want: []string{
			`services[0].backends: at least one backend is required (line 3)`,
			`services[0].bakends: unknown key (line 6)`,
		},
	},
	{
		name: "unknown key with odd characters is quoted",
		in:   validYAML + "\"a b\\nc\": 1\n",
		want: []string{`"a b\nc": unknown key (line 8)`},
	},
	{
		name: "duplicate key",
		in:   strings.Replace(validYAML, "port: 80", "port: 80\n    port: 81", 1),
		want: []string{`services[0].port: duplicate key (first at line 5) (line 6)`},
	},
	{
		name: "missing interface",
		in:   strings.Replace(validYAML, "interface: eth0\n", "", 1),
		want: []string{`interface: required`},
	},
	{
		name: "bad interface name",
		in:   strings.Replace(validYAML, "interface: eth0", "interface: eth0:1", 1),
		want: []string{`interface: "eth0:1" is not a valid interface name (line 1)`},
	},
	{
		name: "no services key",
		in:   "interface: eth0\n",
		want: []string{`services: at least one service is required`},
	},
	{
		name: "empty services",
		in:   "interface: eth0\nservices: []\n",
		want: []string{`services: at least one service is required (line 2)`},
	},
	{
		name: "no backends",
		in:   strings.Replace(validYAML, "backends:\n      - address: 10.0.0.11\n", "backends: []\n", 1),
		want: []string{`services[0].backends: at least one backend is required (line 6)`},
	},
	{
		name: "bad duration",
		in:   "neighbor_refresh: 10\n" + validYAML,
		want: []string{`neighbor_refresh: "10" is not a duration (like "30s" or "5m") (line 1)`},
	},
	{
		name: "duration below minimum",
		in:   "neighbor_refresh: 500ms\nflow_table:\n  idle_timeout: 0s\n" + validYAML,
		want: []string{
			`neighbor_refresh: must be at least 1s, got 500ms (line 1)`,
			`flow_table.idle_timeout: must be positive, got 0s (line 3)`,
		},
	},
	{
		name: "busy_poll out of range",
		in:   "busy_poll: 1s\n" + validYAML,
		want: []string{`busy_poll: must be between 0s and 10ms, got 1s (line 1)`},
	},
	{
		name: "bad cpu list",
		in:   "cpus: 1-a\n" + validYAML,
		want: []string{`cpus: CPU list "1-a": "1-a" is not a CPU range (low-high) (line 1)`},
	},
	{
		name: "fanout unknown",
		in:   "fanout: round-robin\n" + validYAML,
		want: []string{`fanout: "round-robin": want "hash" or "cpu" (line 1)`},
	},
	{
		name: "ring unknown",
		in:   "ring: v3\n" + validYAML,
		want: []string{`ring: "v3": want "frames", "blocks" or "auto" (line 1)`},
	}, {
		name: "ring auto with more than one worker",
		in:   "ring: auto\n" + validYAML,
		want: []string{`ring: auto needs one worker (workers: 1), or workers spread by CPU (fanout: cpu): got 0 (one per CPU) workers spread by flow hash (line 1)`},
	}, {
		name: "fanout cpu without cpus",
		in:   "fanout: cpu\n" + validYAML,
		want: []string{`fanout: cpu needs every worker pinned to a CPU of its own: set cpus (with workers 0, one worker per listed CPU) (line 1)`},
	},
	{
		name: "fanout cpu with fewer cpus than workers",
		in:   "workers: 3\ncpus: \"0,1\"\nfanout: cpu\n" + validYAML,
		want: []string{`fanout: cpu needs every worker pinned to a CPU of its own: 3 workers, 2 CPUs in cpus (line 3)`},
	},
	{
		name: "vip_mac multicast",
		in:   "vip_mac: 01:00:5e:00:00:01\n" + validYAML,
		want: []string{`vip_mac: 01:00:5e:00:00:01 is a multicast address (line 1)`},
	},
	{
		name: "vip_mac not a MAC",
		in:   "vip_mac: virtual\n" + validYAML,
		want: []string{`vip_mac: "virtual": want "interface", "auto" or an Ethernet address like 02:00:5e:00:01:01 (line 1)`},
	},
	{
		name: "busy_poll negative",
		in:   "busy_poll: -1us\n" + validYAML,
		want: []string{`busy_poll: must be between 0s and 10ms, got -1µs (line 1)`},
	},
	{
		name: "workers -1",
		in:   "workers: -1\n" + validYAML,
		want: []string{`workers: must be between 0 and 256, got -1 (line 1)`},
	},
	{
		name: "workers not an integer",
		in:   "workers: many\n" + validYAML,
		want: []string{`workers: must be an integer, got "many" (line 1)`},
	},
	{
		name: "seed negative",
		in:   "seed: -1\n" + validYAML,
		want: []string{`seed: must be an integer between 0 and 18446744073709551615, got "-1" (line 1)`},
	},
	{
		name: "flow table size 0",
		in:   "flow_table: {size: 0}\n" + validYAML,
		want: []string{`flow_table.size: must be between 1 and 16777216, got 0 (line 1)`},
	},
	{
		name: "vip is a backend of another service",
		in: validYAML + `  - name: api
    vip: 10.0.0.11
    backends:
      - address: 10.0.0.12
`,
		want: []string{`services[0].backends[0].address: 10.0.0.11 is the vip of services[1] ("api") (line 7)`},
	},
	{
		name: "multicast vip",
		in:   strings.Replace(validYAML, "10.0.0.100", "224.0.0.1", 1),
		want: []string{`services[0].vip: 224.0.0.1 is a multicast address (line 4)`},
	},
	{
		name: "loopback backend",
		in:   strings.Replace(validYAML, "10.0.0.11", "127.0.0.1", 1),
		want: []string{`services[0].backends[0].address: 127.0.0.1 is a loopback address (line 7)`},
	},
	{
		name: "link-local vip with zone",
		in:   strings.Replace(strings.Replace(validYAML, "10.0.0.100", "fe80::1%eth0", 1), "10.0.0.11", "fe80::2", 1),
		want: []string{
			`services[0].vip: "fe80::1%eth0" has a zone; zones are not supported (line 4)`,
			`services[0].backends[0].address: fe80::2 is a link-local address (line 7)`,
		},
	},
	{
		name: "IPv4-mapped vip",
		in:   strings.Replace(validYAML, "10.0.0.100", "::ffff:10.0.0.100", 1),
		want: []string{`services[0].vip: ::ffff:10.0.0.100 is an IPv4-mapped IPv6 address; write it as 10.0.0.100 (line 4)`},
	},
	{
		name: "bad service name",
		in:   strings.Replace(validYAML, "name: web", "name: my web", 1),
		want: []string{`services[0].name: "my web" is not a valid service name (use 1 to 63 of A-Z a-z 0-9 _ . -) (line 3)`},
	},
	{
		name: "three problems at three levels",
		in: `interface: eth0
workers: 300
services:
  - name: web
    vip: 10.0.0.300
    backends:
      - address: 10.0.0.11
        mac: 01:00:5e:00:00:01
`,
		want: []string{
			`workers: must be between 0 and 256, got 300 (line 2)`,
			`services[0].vip: "10.0.0.300" is not an IP address (line 5)`,
			`services[0].backends[0].mac: 01:00:5e:00:00:01 is a multicast address (line 8)`,
		},
	},
	{
		name: "many problems, file order",
		in: `services:
  - name: a
    vip: 10.0.0.1
    port: -1
    protocol: icmp
    backends:
      - address: 10.0.0.1
        weight: 1.5
  - vip: 10.0.0.1
    backends: 10.0.0.2
  - 7
`,
		want: []string{
			`interface: required`,
			`services[0].port: must be between 0 and 65535, got -1 (line 4)`,
			`services[0].protocol: "icmp" is not a protocol: use tcp or udp (line 5)`,
			`services[0].backends[0].address: 10.0.0.1 is the service's own vip (line 7)`,
			`services[0].backends[0].weight: must be an integer, got "1.5" (line 8)`,
			`services[1].name: required (line 9)`,
			`services[1].backends: must be a list, got "10.0.0.2" (line 10)`,
			`services[2]: must be a mapping, got "7" (line 11)`,
		},
	},
	{
		name: "empty list entries",
		in: `interface: eth0
services:
  -
  - name: web
    vip: 10.0.0.1
    port: 80
    backends:
      -
      - address: 10.0.0.2
`,
		want: []string{
			`services[0]: must be a mapping, got an empty entry (line 3)`,
			`services[1].backends[0]: must be a mapping, got an empty entry (line 8)`,
		},
	},
	{
		name: "binary input",
		in:   "\x7fELF\x02\x01\x01\x00\x00\x00",
		want: []string{`config is not text: control byte 0x7f at offset 0 (line 1)`},
	},
	{
		name: "NUL byte", // validYAML is 114 bytes
		in:   validYAML + "\x00",
		want: []string{`config is not text: control byte 0x00 at offset 114 (line 8)`},
	},
	{
		name: "not UTF-8",
		in:   strings.Replace(validYAML, "web", "caf\xe9", 1),
		want: []string{`config is not UTF-8 text: invalid byte 0xe9 at offset 39 (line 3)`},
	},
	{
		name: "empty",
		in:   "",
		want: []string{`empty config`},
	},
	{
		name: "only comments",
		in:   "# nothing here\n\n   # still nothing\n",
		want: []string{`empty config`},
	},
	{
		name: "only document marker",
		in:   "---\n",
		want: []string{`empty config`},
	},
	{
		name: "YAML syntax error",
		in:   "interface: eth0\nservices: [\n",
		want: []string{`invalid YAML: did not find expected node content (line 2)`},
	},
	{
		name: "two documents",
		in:   validYAML + "---\ninterface: eth1\n",
		want: []string{`config must be a single YAML document (line 8)`},
	},
	{
		name: "top level is a list",
		in:   "- interface: eth0\n",
		want: []string{`config must be a mapping, got a list (line 1)`},
	},
	{
		name: "alias",
		in:   strings.Replace(validYAML, "vip: 10.0.0.100", "vip: &v 10.0.0.100", 1) + "      - address: *v\n",
		want: []string{`services[0].backends[1].address: YAML aliases are not supported (line 8)`},
	},
	{
		name: "merge key is unknown",
		in:   validYAML + "        <<: {weight: 2}\n",
		want: []string{`services[0].backends[0]."<<": unknown key (line 8)`},
	},
	{
		name: "flow_table not a mapping",
		in:   "flow_table: 65536\n" + validYAML,
		want: []string{`flow_table: must be a mapping, got "65536" (line 1)`},
	},
	{
		name: "admin port not a number",
		in:   validYAML + "admin: \"localhost:nope\"\n",
		want: []string{`admin: "localhost:nope": port "nope" is not a number in 1..65535 (line 8)`},
	},
	{
		name: "admin port 0",
		in:   validYAML + "admin: 127.0.0.1:0\n",
		want: []string{`admin: "127.0.0.1:0": port "0" is not a number in 1..65535 (line 8)`},
	},
	{
		name: "admin port 65536",
		in:   validYAML + "admin: \"[::1]:65536\"\n",
		want: []string{`admin: "[::1]:65536": port "65536" is not a number in 1..65535 (line 8)`},
	},
	{
		name: "admin without port",
		in:   validYAML + "admin: localhost\n",
		want: []string{`admin: "localhost" is not host:port (use "" to turn the admin endpoint off) (line 8)`},
	},
	{
		name: "non-scalar key",
		in:   validYAML + "[a]: 1\n",
		want: []string{`keys must be strings, got a list (line 8)`},
	},
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse([]byte(validYAML)); err != nil {
		t.Fatalf("template does not parse: %v", err)
	}
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors\n got %q\nwant %q", got, tc.want)
			}
			if err.Error() != strings.Join(tc.want, "\n") {
				t.Errorf("Error() = %q, want the problems one per line", err.Error())
			}
		})
	}
}

func TestFieldErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{"services[0].backends[1].address", 12, `"10.0.0.300" is not an IP address`},
			`services[0].backends[1].address: "10.0.0.300" is not an IP address (line 12)`},
		{FieldError{"interface", 0, "required"}, "interface: required"},
		{FieldError{"", 0, "empty config"}, "empty config"},
		{FieldError{"", 3, "invalid YAML: x"}, "invalid YAML: x (line 3)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.yaml")
	data := []byte(validYAML + "#" + strings.Repeat("x", 1<<20) + "\n")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(big)
	if want := "load config " + big + ": file is larger than 1048576 bytes"; err == nil || err.Error() != want {
		t.Errorf("big file: got %v, want %q", err, want)
	}
	if _, err := Parse(data); err == nil || err.Error() != "config is "+strconv.Itoa(len(data))+" bytes, more than the limit of 1048576" {
		t.Errorf("Parse of big input: got %v", err)
	}

	bin := filepath.Join(dir, "bin.yaml")
	if err := os.WriteFile(bin, []byte("\x1f\x8b\x08\x00gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bin)
	var errs Errors
	if !errors.As(err, &errs) || err.Error() != "config is not text: control byte 0x1f at offset 0 (line 1)" {
		t.Errorf("binary file: got %v", err)
	}

	exact := filepath.Join(dir, "exact.yaml")
	data = []byte(validYAML + "#")
	data = append(data, strings.Repeat("x", 1<<20-len(data))...)
	if err := os.WriteFile(exact, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(exact); err != nil {
		t.Errorf("file of exactly 1 MiB: %v", err)
	}
}

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{TCP: "tcp", UDP: "udp", 1: "proto(1)", 0: "proto(0)"} {
		if got := p.String(); got != want {
			t.Errorf("Protocol(%d).String() = %q, want %q", uint8(p), got, want)
		}
	}
}

func TestPrimes(t *testing.T) {
	if !isPrime(maxTableSize) {
		t.Errorf("maxTableSize %d is not prime", maxTableSize)
	}
	for n := uint32(maxTableSize + 1); n < 1<<24; n++ {
		if isPrime(n) {
			t.Errorf("%d is prime and below 1<<24: maxTableSize is not the largest", n)
		}
	}
	// Against a sieve for the small range.
	const n = 10000
	composite := make([]bool, n)
	for i := 2; i < n; i++ {
		if !composite[i] {
			for j := i * i; j < n; j += i {
				composite[j] = true
			}
		}
		if isPrime(uint32(i)) == composite[i] {
			t.Errorf("isPrime(%d) = %v", i, !composite[i])
		}
	}
	for _, n := range []uint32{0, 1} {
		if isPrime(n) {
			t.Errorf("isPrime(%d) = true", n)
		}
	}
	if p := nextPrime(65536); p != 65537 {
		t.Errorf("nextPrime(65536) = %d", p)
	}
	if p := nextPrime(maxTableSize); p <= maxTableSize {
		t.Errorf("nextPrime(maxTableSize) = %d, want > maxTableSize", p)
	}
}

func TestParseVIP(t *testing.T) {
	good := []struct {
		in    string
		addr  string
		port  uint16
		proto Protocol
	}{
		{"10.0.0.100:80/tcp", "10.0.0.100", 80, TCP},
		{"10.0.0.100:80", "10.0.0.100", 80, TCP},
		{"10.0.0.100/udp", "10.0.0.100", 0, UDP},
		{"10.0.0.100", "10.0.0.100", 0, TCP},
		{"10.0.0.100:0/UDP", "10.0.0.100", 0, UDP},
		{"[2001:db8::100]:80/tcp", "2001:db8::100", 80, TCP},
		{"[2001:db8::100]:53/udp", "2001:db8::100", 53, UDP},
		{"2001:db8::100/udp", "2001:db8::100", 0, UDP},
		{"2001:db8::100", "2001:db8::100", 0, TCP},
		{"[2001:db8::100]", "2001:db8::100", 0, TCP},
		// Without brackets an IPv6 address takes every colon: no port.
		{"2001:db8::100:80", "2001:db8::100:80", 0, TCP},
	}
	for _, tc := range good {
		a, port, p, err := ParseVIP(tc.in)
		if err != nil || a != netip.MustParseAddr(tc.addr) || port != tc.port || p != tc.proto {
			t.Errorf("ParseVIP(%q) = %v, %d, %v, %v; want %s, %d, %v", tc.in, a, port, p, err, tc.addr, tc.port, tc.proto)
		}
	}
	bad := []struct{ in, want string }{
		{"", `parse vip "": "" is not an IP address`},
		{"10.0.0.300:80", `parse vip "10.0.0.300:80": "10.0.0.300" is not an IP address`},
		{"10.0.0.100:70000", `parse vip "10.0.0.100:70000": "70000" is not a port (0 to 65535)`},
		{"10.0.0.100:", `parse vip "10.0.0.100:": "" is not a port (0 to 65535)`},
		{"10.0.0.100:+80", `parse vip "10.0.0.100:+80": "+80" is not a port (0 to 65535)`},
		{"10.0.0.100/sctp", `parse vip "10.0.0.100/sctp": "sctp" is not a protocol: use tcp or udp`},
		{"10.0.0.100/24", `parse vip "10.0.0.100/24": "24" is not a protocol: use tcp or udp`},
		{"10.0.0.100:80/", `parse vip "10.0.0.100:80/": "" is not a protocol: use tcp or udp`},
		{"[10.0.0.100]:80", `parse vip "[10.0.0.100]:80": "[10.0.0.100]:80": brackets are only for IPv6 addresses`},
		{"[2001:db8::100:80", `parse vip "[2001:db8::100:80": "[2001:db8::100:80": missing ']'`},
		{"[2001:db8::100]x", `parse vip "[2001:db8::100]x": "[2001:db8::100]x": want [ADDR]:PORT`},
		{"224.0.0.1:80", `parse vip "224.0.0.1:80": 224.0.0.1 is a multicast address`},
		{"0.0.0.0", `parse vip "0.0.0.0": 0.0.0.0 is the unspecified address`},
		{"255.255.255.255", `parse vip "255.255.255.255": 255.255.255.255 is the broadcast address`},
		{"[::1]:80", `parse vip "[::1]:80": ::1 is a loopback address`},
		{"::ffff:10.0.0.1", `parse vip "::ffff:10.0.0.1": ::ffff:10.0.0.1 is an IPv4-mapped IPv6 address; write it as 10.0.0.1`},
		{"[2001:db8::1%eth0]:80", `parse vip "[2001:db8::1%eth0]:80": "2001:db8::1%eth0" has a zone; zones are not supported`},
	}
	for _, tc := range bad {
		_, _, _, err := ParseVIP(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseVIP(%q) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseBackend(t *testing.T) {
	good := []struct {
		in   string
		want Backend
	}{
		{"10.0.0.11", Backend{Address: netip.MustParseAddr("10.0.0.11"), Weight: 1, Health: defaultHealth()}},
		{"10.0.0.11,mac=02:00:00:00:00:12,weight=3",
			Backend{Address: netip.MustParseAddr("10.0.0.11"), MAC: mustMAC(t, "02:00:00:00:00:12"), Weight: 3, Health: defaultHealth()}},
		{"2001:db8::11,weight=2", Backend{Address: netip.MustParseAddr("2001:db8::11"), Weight: 2, Health: defaultHealth()}},
		{"10.0.0.11,weight=0", Backend{Address: netip.MustParseAddr("10.0.0.11"), Weight: 0, Health: defaultHealth()}},
		{"10.0.0.11,weight=65535,mac=02-00-00-00-00-12",
			Backend{Address: netip.MustParseAddr("10.0.0.11"), MAC: mustMAC(t, "02:00:00:00:00:12"), Weight: 65535, Health: defaultHealth()}},
	}
	for _, tc := range good {
		got, err := ParseBackend(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseBackend(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", `parse backend "": "" is not an IP address`},
		{"10.0.0.300", `parse backend "10.0.0.300": "10.0.0.300" is not an IP address`},
		{"10.0.0.11:80", `parse backend "10.0.0.11:80": "10.0.0.11:80" is not an IP address`},
		{"127.0.0.1", `parse backend "127.0.0.1": 127.0.0.1 is a loopback address`},
		{"10.0.0.11,weight=70000", `parse backend "10.0.0.11,weight=70000": weight must be between 0 and 65535, got "70000"`},
		{"10.0.0.11,weight=-1", `parse backend "10.0.0.11,weight=-1": weight must be between 0 and 65535, got "-1"`},
		{"10.0.0.11,mac=zz", `parse backend "10.0.0.11,mac=zz": mac "zz" is not a MAC address`},
		{"10.0.0.11,mac=01:00:5e:00:00:01", `parse backend "10.0.0.11,mac=01:00:5e:00:00:01": mac 01:00:5e:00:00:01 is a multicast address`},
		{"10.0.0.11,mac=00:00:00:00:00:00", `parse backend "10.0.0.11,mac=00:00:00:00:00:00": mac 00:00:00:00:00:00 is the all-zero address`},
		{"10.0.0.11,mac=02:00:00:00:00:00:00:12", `parse backend "10.0.0.11,mac=02:00:00:00:00:00:00:12": mac 02:00:00:00:00:00:00:12 is not a 6-byte Ethernet address`},
		{"10.0.0.11,color=red", `parse backend "10.0.0.11,color=red": unknown option "color" (want mac= or weight=)`},
		{"10.0.0.11,weight", `parse backend "10.0.0.11,weight": option "weight": want key=value`},
		{"10.0.0.11,", `parse backend "10.0.0.11,": option "": want key=value`},
		{"10.0.0.11,weight=1,weight=2", `parse backend "10.0.0.11,weight=1,weight=2": option "weight" given twice`},
	}
	for _, tc := range bad {
		_, err := ParseBackend(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseBackend(%q) error = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestFromFlags(t *testing.T) {
	got, err := FromFlags("eth0", 4,
		[]string{"10.0.0.100:80/tcp", "[2001:db8::100]:53/udp", "10.0.0.100:443"},
		[]string{"10.0.0.11", "10.0.0.12,mac=02:00:00:00:00:12,weight=3", "2001:db8::11,weight=2"})
	if err != nil {
		t.Fatalf("FromFlags: %v", err)
	}
	v4 := []Backend{
		{Address: netip.MustParseAddr("10.0.0.11"), Weight: 1, Health: defaultHealth()},
		{Address: netip.MustParseAddr("10.0.0.12"), MAC: mustMAC(t, "02:00:00:00:00:12"), Weight: 3, Health: defaultHealth()},
	}
	want := &Config{
		Interface:       "eth0",
		Workers:         4,
		FlowTable:       FlowTable{Size: 65536, IdleTimeout: 5 * time.Minute},
		NeighborRefresh: 10 * time.Second,
		Admin:           DefaultAdmin,
		BusyPoll:        DefaultBusyPoll,
		Fanout:          FanoutHash,
		Ring:            RingFrames,
		VIPMAC:          VIPMACInterface,
		Services: []Service{
			{Name: "vip0", VIP: netip.MustParseAddr("10.0.0.100"), Port: 80, Protocol: TCP, TableSize: 65537,
				Health: defaultHealth(), Backends: v4},
			{Name: "vip1", VIP: netip.MustParseAddr("2001:db8::100"), Port: 53, Protocol: UDP, TableSize: 65537,
				Health:   defaultHealth(),
				Backends: []Backend{{Address: netip.MustParseAddr("2001:db8::11"), Weight: 2, Health: defaultHealth()}}},
			{Name: "vip2", VIP: netip.MustParseAddr("10.0.0.100"), Port: 443, Protocol: TCP, TableSize: 65537,
				Health: defaultHealth(), Backends: v4},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FromFlags\n got %+v\nwant %+v", got, want)
	}
	// Services sharing a backend must not share its MAC's backing array.
	got.Services[0].Backends[1].MAC[5] = 0xff
	if got.Services[2].Backends[1].MAC[5] != 0x12 {
		t.Errorf("services share a MAC slice")
	}

	bad := []struct {
		name     string
		iface    string
		workers  int
		vips     []string
		backends []string
		want     []string
	}{
		{"no vip", "eth0", 0, nil, []string{"10.0.0.11"},
			[]string{"--vip: at least one service is required"}},
		{"no interface", "", 0, []string{"10.0.0.100"}, []string{"10.0.0.11"},
			[]string{"--interface: required"}},
		{"bad interface", "a/b", 0, []string{"10.0.0.100"}, []string{"10.0.0.11"},
			[]string{`--interface: "a/b" is not a valid interface name`}},
		{"workers", "eth0", 300, []string{"10.0.0.100"}, []string{"10.0.0.11"},
			[]string{"--workers: must be between 0 and 256, got 300"}},
		{"bad vip only", "eth0", 0, []string{"10.0.0.300"}, []string{"10.0.0.11"},
			[]string{`--vip[0]: "10.0.0.300" is not an IP address`}},
		{"bad backend only", "eth0", 0, []string{"10.0.0.100"}, []string{"10.0.0.11,weight=x"},
			[]string{`--backend[0]: weight must be between 0 and 65535, got "x"`}},
		{"no backends", "eth0", 0, []string{"10.0.0.100"}, nil,
			[]string{"--vip[0]: at least one backend is required"}},
		{"backend of no vip's family", "eth0", 0, []string{"10.0.0.100"}, []string{"10.0.0.11", "2001:db8::11"},
			[]string{"--backend[1]: 2001:db8::11 is IPv6 but no --vip is IPv6"}},
		{"duplicate backend", "eth0", 0, []string{"10.0.0.100"}, []string{"10.0.0.11", "10.0.0.11,weight=2"},
			[]string{"--backend[1]: 10.0.0.11 is listed twice (also --backend[0])"}},
		{"duplicate vip", "eth0", 0, []string{"10.0.0.100:80", "10.0.0.100:80/tcp"}, []string{"10.0.0.11"},
			[]string{`--vip[1]: 10.0.0.100:80/tcp is also used by --vip[0] ("vip0")`}},
		{"backend is the vip", "eth0", 0, []string{"10.0.0.100"}, []string{"10.0.0.100"},
			[]string{"--backend[0]: 10.0.0.100 is the service's own vip"}},
		{"backend is another vip", "eth0", 0, []string{"10.0.0.100:80", "10.0.0.11:80"}, []string{"10.0.0.11", "10.0.0.12"},
			[]string{
				`--backend[0]: 10.0.0.11 is the vip of --vip[1] ("vip1")`,
				`--backend[0]: 10.0.0.11 is the service's own vip`,
			}},
		{"three problems", "", -1, []string{"10.0.0.100/sctp"}, []string{"10.0.0.11,mac=ff:ff:ff:ff:ff:ff"},
			[]string{
				`--interface: required`,
				`--workers: must be between 0 and 256, got -1`,
				`--vip[0]: "sctp" is not a protocol: use tcp or udp`,
				`--backend[0]: mac ff:ff:ff:ff:ff:ff is a multicast address`,
			}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromFlags(tc.iface, tc.workers, tc.vips, tc.backends)
			if err == nil {
				t.Fatalf("FromFlags succeeded: %+v", c)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestFanout(t *testing.T) {
	for _, in := range []string{"fanout: cpu\ncpus: 2-3\n", "fanout: cpu\nworkers: 2\ncpus: \"3,1\"\n", "fanout: cpu\nworkers: 1\n", "fanout: hash\nworkers: 4\ncpus: \"1\"\n"} {
		c, err := Parse([]byte(in + validYAML))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if err := c.CheckFanout(); err != nil {
			t.Errorf("%q: CheckFanout after Parse: %v", in, err)
		}
	}
	// What a command line does after Load: override, then check again.
	c, err := Parse([]byte("fanout: cpu\ncpus: 2-3\n" + validYAML))
	if err != nil {
		t.Fatal(err)
	}
	c.Workers = 4
	if err := c.CheckFanout(); err == nil {
		t.Error("CheckFanout took 4 workers on 2 CPUs")
	}
	if err := c.SetFanout("hash"); err != nil || c.CheckFanout() != nil || c.Fanout != FanoutHash {
		t.Errorf("SetFanout(hash): %v, %v, %q", err, c.CheckFanout(), c.Fanout)
	}
	if err := c.SetFanout("CPU"); err == nil {
		t.Errorf("SetFanout(CPU) took it as %q", c.Fanout)
	}
}

func TestRing(t *testing.T) {
	for in, want := range map[string]string{"": RingFrames, "ring: frames\n": RingFrames, "ring: blocks\n": RingBlocks, "ring: auto\nworkers: 1\n": RingAuto, "ring: auto\nfanout: cpu\ncpus: 0-1\n": RingAuto} {
		c, err := Parse([]byte(in + validYAML))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if c.Ring != want {
			t.Errorf("%q: Ring %q, want %q", in, c.Ring, want)
		}
	}
	var c Config
	if err := c.SetRing("blocks"); err != nil || c.Ring != RingBlocks {
		t.Errorf("SetRing(blocks): %v, %q", err, c.Ring)
	}
	if err := c.SetRing(""); err != nil || c.Ring != RingFrames {
		t.Errorf("SetRing(\"\"): %v, %q", err, c.Ring)
	}
	if err := c.SetRing("Blocks"); err == nil || c.Ring != RingFrames {
		t.Errorf("SetRing(Blocks) took it (Ring %q)", c.Ring)
	}
	// What a command line does after Load: override, then check again.
	c.Workers = 1
	if err := c.SetRing("auto"); err != nil || c.CheckRing() != nil {
		t.Errorf("SetRing(auto) with one worker: %v, %v", err, c.CheckRing())
	}
	c.Workers = 2
	if err := c.CheckRing(); err == nil {
		t.Error("CheckRing took ring auto with 2 workers")
	}
}

func TestCheckAdmin(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:9180", "[::1]:1", ":65535", "localhost:9180", "admin.example:80"} {
		var c Config
		if err := c.SetAdmin(ok); err != nil || c.Admin != ok {
			t.Errorf("SetAdmin(%q) = %v, Admin %q", ok, err, c.Admin)
		}
	}
	for _, bad := range []string{"foo", "localhost:nope", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:", "::1:80"} {
		c := Config{Admin: DefaultAdmin}
		if err := c.SetAdmin(bad); err == nil || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("SetAdmin(%q) = %v, want an error quoting it", bad, err)
		}
		if c.Admin != DefaultAdmin {
			t.Errorf("SetAdmin(%q) changed Admin to %q", bad, c.Admin)
		}
	}
}

func TestSetVIPMAC(t *testing.T) {
	for in, want := range map[string]string{
		"": VIPMACInterface, "interface": VIPMACInterface, " auto ": VIPMACAuto,
		"02-00-5E-00-01-01": "02:00:5e:00:01:01",
	} {
		var c Config
		if err := c.SetVIPMAC(in); err != nil || c.VIPMAC != want {
			t.Errorf("SetVIPMAC(%q) = %q, %v; want %q", in, c.VIPMAC, err, want)
		}
	}
	for _, in := range []string{"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "02:00:5e:00:01", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "Auto"} {
		var c Config
		if err := c.SetVIPMAC(in); err == nil {
			t.Errorf("SetVIPMAC(%q) took it as %q", in, c.VIPMAC)
		}
	}
}
