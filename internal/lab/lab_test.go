package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOptionDefaults(t *testing.T) {
	o, err := Options{Binary: "/usr/bin/dsrlb"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Requests != DefaultRequests || o.Servers != DefaultServers || o.Out == nil || o.Log == nil || o.IPv6 || o.Keep {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = Options{Binary: "x", Requests: 7, Servers: maxServers, IPv6: true}.withDefaults()
	if err != nil || o.Requests != 7 || o.Servers != maxServers || !o.IPv6 {
		t.Fatalf("explicit values: %+v, %v", o, err)
	}

	_, err = Options{Requests: -1, Servers: maxServers + 1}.withDefaults()
	for _, want := range []string{"Binary: empty", "Requests: -1", "Servers: 90, want 1 to 89"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := (Options{Binary: "x", Servers: -2}).withDefaults(); err == nil {
		t.Error("Servers -2 accepted")
	}
}

func TestPlan(t *testing.T) {
	p := newPlan(3, true)
	if !slices.Equal(p.servers, []string{"srv1", "srv2", "srv3"}) {
		t.Fatalf("servers %v", p.servers)
	}
	for host, want := range map[string][2]string{
		"client": {"198.18.0.2", "2001:db8:18::2"},
		"lb":     {"198.18.0.1", "2001:db8:18::1"},
		"srv1":   {"198.18.0.11", "2001:db8:18::11"},
		"srv3":   {"198.18.0.13", "2001:db8:18::13"},
	} {
		for f := range 2 {
			if got := p.addr(f, host).String(); got != want[f] {
				t.Errorf("%s family %d: %s, want %s", host, f, got, want[f])
			}
		}
	}
	if p.addr(0, "nobody").IsValid() || newPlan(1, false).addr(1, "client").IsValid() {
		t.Error("address for an unknown host or a family not in the plan")
	}
	big := newPlan(maxServers, false)
	if got := big.addr(0, "srv10").String(); got != "198.18.0.20" {
		t.Errorf("srv10: %s", got)
	}
	if got := big.addr(0, "srv89").String(); got != "198.18.0.99" {
		t.Errorf("srv89: %s", got)
	}
	if got := newPlan(10, true).addr(1, "srv10").String(); got != "2001:db8:18::20" {
		t.Errorf("srv10 IPv6: %s", got)
	}

	spec := p.spec("dsrlb-abc-")
	if spec.Prefix != "dsrlb-abc-" || spec.Subnet4 != subnet4 || spec.Subnet6 != subnet6 || len(spec.Hosts) != 5 {
		t.Fatalf("spec %+v", spec)
	}
	if h := spec.Hosts[1]; h.Name != "lb" || h.Addr4 != netip.MustParseAddr("198.18.0.1") || h.Addr6 != netip.MustParseAddr("2001:db8:18::1") {
		t.Errorf("lb host spec %+v", h)
	}
	if s := newPlan(2, false).spec("x-"); s.Subnet6.IsValid() || s.Hosts[2].Addr6.IsValid() {
		t.Errorf("IPv4-only spec has IPv6: %+v", s)
	}

	check := func(name string, got []string, want string) {
		t.Helper()
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%s:\n got %s\nwant %s", name, g, want)
		}
	}
	check("server up", p.serverArgs("up", "/tmp/s/srv1.json"), "server up --vip 198.18.0.100 --vip 2001:db8:18::100 --interface eth0 --state /tmp/s/srv1.json")
	check("server down v4", newPlan(2, false).serverArgs("down", "/tmp/s/srv2.json"), "server down --vip 198.18.0.100 --interface eth0 --state /tmp/s/srv2.json")
	check("run", p.runArgs(), "run --interface eth0 --vip 198.18.0.100:80/tcp --vip [2001:db8:18::100]:80/tcp "+
		"--backend 198.18.0.11 --backend 198.18.0.12 --backend 198.18.0.13 "+
		"--backend 2001:db8:18::11 --backend 2001:db8:18::12 --backend 2001:db8:18::13")
	check("run v4", newPlan(1, false).runArgs(), "run --interface eth0 --vip 198.18.0.100:80/tcp --backend 198.18.0.11")
	if p.url(0) != "http://198.18.0.100:80/" || p.url(1) != "http://[2001:db8:18::100]:80/" {
		t.Errorf("urls %s %s", p.url(0), p.url(1))
	}
}

// frame builds an Ethernet frame with the given VLAN tags around an IP
// header whose source is src.
func frame(src netip.Addr, tags ...uint16) []byte {
	f := make([]byte, 12, 128) // MACs
	for _, tpid := range tags {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, 42) // TCI
	}
	if src.Is4() {
		f = binary.BigEndian.AppendUint16(f, etherTypeIPv4)
		ip := make([]byte, 20)
		ip[0] = 0x45
		copy(ip[12:16], src.AsSlice())
		return append(f, ip...)
	}
	f = binary.BigEndian.AppendUint16(f, etherTypeIPv6)
	ip := make([]byte, 40)
	ip[0] = 0x60
	copy(ip[8:24], src.AsSlice())
	return append(f, ip...)
}

// icmpv6 builds an IPv6 frame from src carrying an ICMPv6 message of the
// given type.
func icmpv6(src netip.Addr, typ byte) []byte {
	f := frame(src)
	f[14+6] = 58
	return append(f, typ, 0, 0, 0)
}

func TestIPSource(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:db8:18::100")
	for _, tc := range []struct {
		name  string
		frame []byte
		want  netip.Addr
	}{
		{"ipv4", frame(v4), v4},
		{"ipv6", frame(v6), v6},
		{"vlan ipv4", frame(v4, etherTypeVLAN), v4},
		{"qinq ipv6", frame(v6, etherTypeQinQ, etherTypeVLAN), v6},
		{"three tags", frame(v4, etherTypeVLAN, etherTypeVLAN, etherTypeVLAN), netip.Addr{}},
		{"truncated ipv4", frame(v4)[:14+19], netip.Addr{}},
		{"truncated ipv6", frame(v6)[:14+39], netip.Addr{}},
		{"truncated tag", frame(v4, etherTypeVLAN)[:16], netip.Addr{}},
		{"short", make([]byte, 13), netip.Addr{}},
		{"arp", append(append(make([]byte, 12), 0x08, 0x06), make([]byte, 28)...), netip.Addr{}},
		{"ipv4 type, version 6", func() []byte { f := frame(v4); f[14] = 0x65; return f }(), netip.Addr{}},
		{"neighbor advertisement", icmpv6(v6, 136), netip.Addr{}},
		{"router solicitation", icmpv6(v6, 133), netip.Addr{}},
		{"echo reply", icmpv6(v6, 129), v6},
		{"packet too big", icmpv6(v6, 2), v6},
	} {
		got, ok := ipSource(tc.frame)
		if got != tc.want || ok != tc.want.IsValid() {
			t.Errorf("%s: got %v %v, want %v", tc.name, got, ok, tc.want)
		}
	}
}

func sampleReport() *Report {
	r := &Report{Servers: []string{"srv1", "srv2", "srv3"}}
	r.Families = []Family{{
		Name: "IPv4", VIP: netip.MustParseAddrPort("198.18.0.100:80"), Elapsed: 1234567 * time.Microsecond,
		Counts: Counts{
			PerServer: map[string]int{"srv1": 334, "srv2": 333, "srv3": 333}, Total: 1000,
			LBRxPackets: 7000, LBTxPackets: 7000, LBRxBytes: 470_000, LBTxBytes: 470_000,
			ClientRxBytes: 12_345_678, ClientTxBytes: 480_000, ServersTxBytes: 12_300_000,
		},
	}, {
		Name: "IPv6", VIP: netip.MustParseAddrPort("[2001:db8:18::100]:80"), Elapsed: time.Second,
		Counts: Counts{PerServer: map[string]int{"srv1": 500, "srv2": 250, "srv3": 250}, Total: 1000},
	}}
	for _, f := range r.Families {
		r.add(f.Counts)
	}
	return r
}

func TestReport(t *testing.T) {
	r := sampleReport()
	if r.Total != 2000 || r.PerServer["srv1"] != 834 || r.LBRxPackets != 7000 {
		t.Fatalf("totals %+v", r.Counts)
	}
	if ps := r.Problems(); len(ps) != 0 {
		t.Fatalf("problems in a good report: %v", ps)
	}
	text := r.String()
	for _, want := range []string{
		"IPv4 via VIP 198.18.0.100:80: 1000 requests in 1.235s, one connection each",
		"srv1      334  33.4%",
		"srv2      333  33.3%",
		"failed        0   0.0%",
		"balancer eth0: received 7000 packets (470.0 kB), sent 7000 packets (470.0 kB)",
		"client eth0: received 12.3 MB, sent 480.0 kB; servers sent 12.3 MB",
		"frames sent by the balancer with source VIP: 0 — replies bypassed the balancer",
		"IPv6 via VIP [2001:db8:18::100]:80",
		"srv1      500  50.0%",
		"OK: every request answered",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	t.Logf("\n%s", text)

	r.Families[0].Failed, r.Families[0].FirstError = 3, "context deadline exceeded"
	r.Families[1].VIPFramesFromLB = 12
	r.Families[1].PerServer["srv3"] = 0
	r.CaptureError = "capture dropped frames: 2 of 900 frames"
	r.BalancerExit = "exit status 2"
	ps := r.Problems()
	want := []string{
		"IPv4: 3 of 1000 requests failed (first: context deadline exceeded)",
		"IPv6: the balancer sent 12 frames with source 2001:db8:18::100: replies went through it",
		"IPv6: no answers from srv3 out of 1000",
		"capture on the balancer's eth0 incomplete",
		"balancer did not exit cleanly on SIGTERM: exit status 2",
	}
	if len(ps) != len(want) {
		t.Fatalf("problems %q, want %d", ps, len(want))
	}
	for i := range want {
		if !strings.Contains(ps[i], want[i]) {
			t.Errorf("problem %d: %q lacks %q", i, ps[i], want[i])
		}
	}
	text = r.String()
	for _, want := range []string{"PROBLEMS:", "source VIP: 12 — replies went through the balancer, this is not DSR", "source VIP: 0 (capture incomplete)"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}

	// Too few requests to call an idle server a problem.
	small := &Report{Servers: []string{"srv1", "srv2", "srv3"}, Families: []Family{{Name: "IPv4",
		Counts: Counts{PerServer: map[string]int{"srv1": 29}, Total: 29}}}}
	if ps := small.Problems(); len(ps) != 0 {
		t.Errorf("29 requests over 3 servers: %v", ps)
	}
	small.Families[0].Total, small.Families[0].PerServer["srv1"] = 30, 30
	if ps := small.Problems(); len(ps) != 1 || !strings.Contains(ps[0], "no answers from srv2, srv3 out of 30") {
		t.Errorf("30 requests all to srv1: %v", ps)
	}
	if got := percent(1, 0); got != "-" {
		t.Errorf("percent of nothing: %s", got)
	}
	if got := size(9999); got != "9999 B" {
		t.Errorf("size(9999) = %s", got)
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{out: &lockedWriter{w: &out}, prefix: "lb| "}
	fmt.Fprint(w, "one\ntw")
	fmt.Fprint(w, "o\nthree\nfour\nfi")
	if got := out.String(); got != "lb| one\nlb| two\nlb| three\nlb| four\n" {
		t.Fatalf("before flush: %q", got)
	}
	w.flush()
	if got := out.String(); !strings.HasSuffix(got, "lb| four\nlb| fi\n") {
		t.Fatalf("after flush: %q", got)
	}
	if got := w.last(); got != "three / four / fi" {
		t.Fatalf("last: %q", got)
	}
}

func TestExploreText(t *testing.T) {
	ns := []string{"dsrlb-1-sw", "dsrlb-1-client", "dsrlb-1-lb", "dsrlb-1-srv1"}
	text := exploreText(ns, "dsrlb-1-lb", "dsrlb-1-client", "dsrlb-1-srv1", "/bin/dsrlb", "/tmp/dsrlb-lab-kept-state-1", newPlan(1, false))
	for _, want := range []string{
		"ip netns exec dsrlb-1-lb /bin/dsrlb run --interface eth0 --vip 198.18.0.100:80/tcp --backend 198.18.0.11",
		"ip netns exec dsrlb-1-srv1 /bin/dsrlb server down --vip 198.18.0.100 --interface eth0 --state /tmp/dsrlb-lab-kept-state-1/srv1.json",
		"ip netns exec dsrlb-1-srv1 bash",
		"ip netns del dsrlb-1-sw; ip netns del dsrlb-1-client; ip netns del dsrlb-1-lb; ip netns del dsrlb-1-srv1; rm -r /tmp/dsrlb-lab-kept-state-1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explore text lacks %q:\n%s", want, text)
		}
	}
}

func TestSweepStateDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	// A process that has exited: its ID is free (reuse within the test is
	// possible but unlikely, and would only keep its directory).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	dirs := map[string]bool{ // name: should survive the sweep
		stateDirBase + strconv.Itoa(dead) + "-123":        false,
		stateDirBase + strconv.Itoa(os.Getpid()) + "-456": true, // ours
		stateDirBase + "1-789":                            true, // init runs
		keptStateDir + "012":                              true,
		stateDirBase + "x-345":                            true, // not ours to judge
		"unrelated":                                       true,
	}
	for name := range dirs {
		if err := os.MkdirAll(filepath.Join(tmp, name, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := makeStateDir(false)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), stateDirBase+strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("state directory %s, want %s/%s%d-...", dir, tmp, stateDirBase, os.Getpid())
	}
	for name, survive := range dirs {
		_, err := os.Stat(filepath.Join(tmp, name))
		if got := err == nil; got != survive {
			t.Errorf("%s: present %v after the sweep, want %v (%v)", name, got, survive, err)
		}
	}
	kept, err := makeStateDir(true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(kept), keptStateDir) {
		t.Errorf("kept lab's state directory %s, want %s...", kept, keptStateDir)
	}
}
