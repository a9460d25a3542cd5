package realserver

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Tier 1: no privileges. Sysctls live in a directory the test owns.

// fakeProcSys builds root/net/ipv4/conf/{all,nics...}/{arp_ignore,arp_announce,rp_filter}.
// vals maps "iface.key" to a value; anything unset is 0.
func fakeProcSys(t *testing.T, nics []string, vals map[string]int) sysctls {
	t.Helper()
	s := sysctls{root: t.TempDir()}
	for _, iface := range append([]string{confAll}, nics...) {
		for _, key := range []string{arpIgnore, arpAnnounce, rpFilter} {
			if err := os.MkdirAll(filepath.Dir(s.path(iface, key)), 0o755); err != nil {
				t.Fatal(err)
			}
			v := vals[iface+"."+key]
			if err := os.WriteFile(s.path(iface, key), []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

func TestProblemString(t *testing.T) {
	p := Problem{"net.ipv4.conf.all.arp_ignore", "1", "0"}
	if got, want := p.String(), "net.ipv4.conf.all.arp_ignore: want 1, got 0"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestValidateVIPs(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.100")
	b := netip.MustParseAddr("fd00::100")
	got, err := ValidateVIPs([]netip.Addr{a, b, a})
	if err != nil || !reflect.DeepEqual(got, []netip.Addr{a, b}) {
		t.Fatalf("got %v, %v; want duplicates dropped, order kept", got, err)
	}
	for _, tc := range []struct {
		vips []netip.Addr
		want string
	}{
		{nil, "no VIPs"},
		{[]netip.Addr{{}}, "zero"},
		{[]netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}, "give 10.0.0.1"},
		{[]netip.Addr{netip.MustParseAddr("0.0.0.0")}, "0.0.0.0 is not a unicast"},
		{[]netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.2 is not a unicast"},
		{[]netip.Addr{netip.MustParseAddr("ff02::1")}, "ff02::1 is not a unicast"},
		{[]netip.Addr{netip.MustParseAddr("fe80::1%eth0")}, "has a zone"},
	} {
		if _, err := ValidateVIPs(tc.vips); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateVIPs(%v) = %v, want error containing %q", tc.vips, err, tc.want)
		}
	}
}

func TestSysctlsPath(t *testing.T) {
	s := fakeProcSys(t, []string{"eth0.100"}, map[string]int{"eth0.100.rp_filter": 1})
	if got, want := s.path("eth0.100", rpFilter), filepath.Join(s.root, "net/ipv4/conf/eth0.100/rp_filter"); got != want {
		t.Fatalf("path %s, want %s", got, want)
	}
	if v, err := s.get("eth0.100", rpFilter); err != nil || v != 1 {
		t.Fatalf("get = %d, %v; want 1", v, err)
	}
	if err := s.set("eth0.100", rpFilter, 2); err != nil {
		t.Fatal(err)
	}
	if v, err := s.get("eth0.100", rpFilter); err != nil || v != 2 {
		t.Fatalf("get after set = %d, %v; want 2", v, err)
	}
	err := s.set("nosuch0", arpIgnore, 1)
	if err == nil || !strings.HasPrefix(err.Error(), "set net.ipv4.conf.nosuch0.arp_ignore=1: ") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("set on a missing interface: %v", err)
	}
	if _, err := os.Stat(s.path("nosuch0", arpIgnore)); err == nil {
		t.Fatal("set created a sysctl file that did not exist")
	}
}

func TestPlanSysctls(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]int
		want []sysctlChange
	}{
		{"defaults", nil, []sysctlChange{
			{"all", arpIgnore, 0, 1}, {"all", arpAnnounce, 0, 2},
			{"eth0", arpIgnore, 0, 1}, {"eth0", arpAnnounce, 0, 2},
		}},
		{"already right", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2}, nil},
		{"strict on the NIC", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2,
			"eth0.rp_filter": 1}, []sysctlChange{{"eth0", rpFilter, 1, 2}}},
		{"strict from all", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2,
			"all.rp_filter": 1}, []sysctlChange{{"eth0", rpFilter, 0, 2}}},
		{"loose from all wins", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2,
			"all.rp_filter": 2, "eth0.rp_filter": 1}, nil},
		{"loose on the NIC wins", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2,
			"all.rp_filter": 1, "eth0.rp_filter": 2}, nil},
		{"stricter arp_ignore is rewritten", map[string]int{"all.arp_ignore": 2, "all.arp_announce": 2, "eth0.arp_ignore": 8, "eth0.arp_announce": 2},
			[]sysctlChange{{"all", arpIgnore, 2, 1}, {"eth0", arpIgnore, 8, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeProcSys(t, []string{"eth0"}, tc.vals)
			got, err := planSysctls(s, []string{"eth0"})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan\n got %+v\nwant %+v", got, tc.want)
			}
			// Applying the plan leaves nothing to do.
			for _, c := range got {
				if err := s.set(c.Interface, c.Key, c.Set); err != nil {
					t.Fatal(err)
				}
			}
			if again, err := planSysctls(s, []string{"eth0"}); err != nil || len(again) != 0 {
				t.Fatalf("plan after applying it: %+v, %v", again, err)
			}
			if probs, err := checkSysctls(s, []string{"eth0"}); err != nil || len(probs) != 0 {
				t.Fatalf("check after applying the plan: %v, %v", probs, err)
			}
		})
	}
}

func TestCheckSysctls(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]int
		want []Problem
	}{
		{"defaults", nil, []Problem{
			{"net.ipv4.conf.all.arp_ignore", "1", "0"},
			{"net.ipv4.conf.all.arp_announce", "2", "0"},
			{"net.ipv4.conf.eth0.arp_ignore", "1", "0"},
			{"net.ipv4.conf.eth0.arp_announce", "2", "0"},
		}},
		// A NIC left at 0 under a correct "all" behaves correctly: not reported.
		{"all covers the NIC", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2}, nil},
		// A NIC right under a wrong "all": only "all" is reported.
		{"NIC right, all wrong", map[string]int{"eth0.arp_ignore": 1, "eth0.arp_announce": 2}, []Problem{
			{"net.ipv4.conf.all.arp_ignore", "1", "0"},
			{"net.ipv4.conf.all.arp_announce", "2", "0"},
		}},
		{"all too strict overrides the NIC", map[string]int{"all.arp_ignore": 2, "all.arp_announce": 2, "eth0.arp_ignore": 1}, []Problem{
			{"net.ipv4.conf.all.arp_ignore", "1", "2"},
			{"net.ipv4.conf.eth0.arp_ignore", "1", "2 (from net.ipv4.conf.all.arp_ignore; the interface's own value is 1)"},
		}},
		{"strict rp_filter from all", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "all.rp_filter": 1}, []Problem{
			{"net.ipv4.conf.eth0.rp_filter", "0 or 2 (not strict)", "1 (from net.ipv4.conf.all.rp_filter; the interface's own value is 0)"},
		}},
		{"strict rp_filter on the NIC", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.rp_filter": 1}, []Problem{
			{"net.ipv4.conf.eth0.rp_filter", "0 or 2 (not strict)", "1"},
		}},
		{"loose rp_filter", map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "all.rp_filter": 1, "eth0.rp_filter": 2}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeProcSys(t, []string{"eth0"}, tc.vals)
			got, err := checkSysctls(s, []string{"eth0"})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestInspectVIPs(t *testing.T) {
	v4 := netip.MustParseAddr("10.0.0.100")
	v4b := netip.MustParseAddr("10.0.0.101")
	v6 := netip.MustParseAddr("fd00::100")
	found := []hostAddr{
		{link: "lo", loopback: true, prefix: netip.MustParsePrefix("10.0.0.101/24")},
		{link: "eth0", prefix: netip.MustParsePrefix("10.0.0.100/24")},
		{link: "lo", loopback: true, prefix: netip.MustParsePrefix("fd00::100/128"), tentative: true},
		{link: "lo", loopback: true, prefix: netip.MustParsePrefix("10.0.0.99/32")}, // not a VIP
	}
	toAdd, conflicts, probs := inspectVIPs([]netip.Addr{v4, v4b, v6}, found, "lo")
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32")}; !reflect.DeepEqual(toAdd, want) {
		t.Errorf("toAdd %v, want %v", toAdd, want)
	}
	onNIC := Problem{"eth0 address 10.0.0.100/24", "absent (the VIP belongs on lo only)", "present"}
	prefix := Problem{"prefix length of 10.0.0.101 on lo", "/32", "/24"}
	if want := []Problem{onNIC, prefix}; !reflect.DeepEqual(conflicts, want) {
		t.Errorf("conflicts\n got %q\nwant %q", conflicts, want)
	}
	want := []Problem{
		{"lo address 10.0.0.100/32", "present", "missing"},
		onNIC,
		prefix,
		{"lo address fd00::100/128", "usable", "tentative (duplicate address detection running)"},
	}
	if !reflect.DeepEqual(probs, want) {
		t.Errorf("problems\n got %q\nwant %q", probs, want)
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if _, _, err := loadState(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("load of a missing file: %v", err)
	}
	st := &state{Version: stateVersion, NetnsInode: 42, NetnsCookie: 7}
	st.recordSysctl(sysctlChange{"all", arpIgnore, 0, 1})
	st.recordSysctl(sysctlChange{"all", arpIgnore, 1, 1}) // later Up: first previous value wins
	st.recordAddress(netip.MustParsePrefix("10.0.0.100/32"))
	st.recordAddress(netip.MustParsePrefix("10.0.0.100/32"))
	if len(st.Sysctls) != 1 || st.Sysctls[0].Previous != 0 || len(st.LoAddresses) != 1 {
		t.Fatalf("records not deduplicated or first previous value lost: %+v", st)
	}
	b, err := st.encode()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second write replaces the first
		if err := saveState(path, b); err != nil {
			t.Fatal(err)
		}
	}
	got, raw, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) || string(raw) != string(b) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, st)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	for _, bad := range []string{
		`{"version":2}`,
		`{"version":1,"sysctls":[{"interface":"../../../etc","key":"arp_ignore"}]}`,
		`{"version":1,"sysctls":[{"interface":"eth0","key":"forwarding"}]}`,
		`{"version":1,"lo_addresses":["10.0.0.0/24"]}`,
		`not json`,
	} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadState(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("load of %s: %v, want an error naming the file", bad, err)
		}
	}
}
