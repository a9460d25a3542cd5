package realserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tier 2: each test builds its own network namespace. The sysctls and addresses below all
// belong to that namespace; nothing here touches the host's.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to create network namespaces")
	}
}

// newServerNS creates a namespace that Close removes when the test ends, pass or fail. With
// nic it holds a veth pair: eth0 (up) and its peer eth0p (down).
func newServerNS(t *testing.T, nic bool) *netns.NS {
	t.Helper()
	requireRoot(t)
	ns, err := netns.New(netns.UniquePrefix("dsrlbt") + "rs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("remove test namespace: %v", err)
		}
	})
	if nic {
		do(t, ns, func() error {
			veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0p"}
			if err := netlink.LinkAdd(veth); err != nil {
				return fmt.Errorf("add veth eth0: %w", err)
			}
			return netlink.LinkSetUp(veth)
		})
	}
	return ns
}

// do runs fn inside ns and fails the test, from the test's goroutine, if fn fails.
func do(t *testing.T, ns *netns.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// sysVals reads iface.key for every key of every listed interface.
func sysVals(ifaces ...string) (map[string]int, error) {
	m := map[string]int{}
	for _, iface := range ifaces {
		for _, key := range []string{arpIgnore, arpAnnounce, rpFilter} {
			v, err := procSys.get(iface, key)
			if err != nil {
				return nil, err
			}
			m[iface+"."+key] = v
		}
	}
	return m, nil
}

func setVals(vals map[string]int) error {
	for name, v := range vals {
		iface, key, _ := strings.Cut(name, ".")
		if err := procSys.set(iface, key, v); err != nil {
			return err
		}
	}
	return nil
}

// loAddrs returns lo's addresses equal to ip.
func loAddrs(ip netip.Addr) ([]netlink.Addr, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	all, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, a := range all {
		if got, _ := netip.AddrFromSlice(a.IP); got.Unmap() == ip {
			out = append(out, a)
		}
	}
	return out, nil
}

func addAddr(link, prefix string) error {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		return err
	}
	return netlink.AddrAdd(l, a)
}

var (
	vip    = netip.MustParseAddr("10.0.0.100")
	vipOld = netip.MustParseAddr("10.0.0.200") // on lo before Up
)

func TestUpCheckIdempotent(t *testing.T) {
	ns := newServerNS(t, true)
	path := filepath.Join(t.TempDir(), "state.json")
	o := Options{VIPs: []netip.Addr{vip}, StatePath: path} // no Interfaces: every NIC that is up
	var log1, log2 bytes.Buffer
	var before, after1, after2 map[string]int
	var probs []Problem
	var addrs []netlink.Addr
	var state1, state2 []byte
	var fi1, fi2 os.FileInfo
	do(t, ns, func() (err error) {
		if before, err = sysVals("all", "eth0", "eth0p"); err != nil {
			return err
		}
		if err := Up(o, slog.New(slog.NewTextHandler(&log1, nil))); err != nil {
			return fmt.Errorf("first Up: %w", err)
		}
		if probs, err = Check(o); err != nil {
			return err
		}
		if after1, err = sysVals("all", "eth0", "eth0p"); err != nil {
			return err
		}
		if state1, err = os.ReadFile(path); err != nil {
			return err
		}
		if fi1, err = os.Stat(path); err != nil {
			return err
		}
		if err := Up(o, slog.New(slog.NewTextHandler(&log2, nil))); err != nil {
			return fmt.Errorf("second Up: %w", err)
		}
		if after2, err = sysVals("all", "eth0", "eth0p"); err != nil {
			return err
		}
		if state2, err = os.ReadFile(path); err != nil {
			return err
		}
		if fi2, err = os.Stat(path); err != nil {
			return err
		}
		addrs, err = loAddrs(vip)
		return err
	})
	if len(probs) != 0 {
		t.Errorf("Check after Up: %q", probs)
	}
	for name, want := range map[string]int{"all.arp_ignore": 1, "all.arp_announce": 2, "eth0.arp_ignore": 1, "eth0.arp_announce": 2} {
		if after1[name] != want {
			t.Errorf("after Up %s = %d, want %d", name, after1[name], want)
		}
	}
	for _, name := range []string{"eth0p.arp_ignore", "eth0p.arp_announce", "eth0p.rp_filter"} {
		if after1[name] != before[name] {
			t.Errorf("Up changed %s of eth0p, which is down and not listed: %d -> %d", name, before[name], after1[name])
		}
	}
	if !strings.Contains(log1.String(), "changed sysctl") || !strings.Contains(log1.String(), "added VIP") {
		t.Errorf("first Up did not log its changes:\n%s", log1.String())
	}
	// The second Up is a no-op: nothing logged, same sysctls, state file neither changed nor rewritten.
	if log2.Len() != 0 {
		t.Errorf("second Up logged changes:\n%s", log2.String())
	}
	if !reflect.DeepEqual(after1, after2) {
		t.Errorf("second Up changed sysctls:\n%v\n%v", after1, after2)
	}
	if !bytes.Equal(state1, state2) {
		t.Errorf("second Up changed the state file:\n%s\n%s", state1, state2)
	}
	if !os.SameFile(fi1, fi2) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("second Up rewrote the state file")
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.0.0.100/32" || addrs[0].Scope != unix.RT_SCOPE_HOST {
		t.Errorf("VIP on lo: %v, want exactly one 10.0.0.100/32 scope host", addrs)
	}
	var st state
	if err := json.Unmarshal(state1, &st); err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{hostPrefix(vip)}; !reflect.DeepEqual(st.LoAddresses, want) {
		t.Errorf("state lo_addresses %v, want %v", st.LoAddresses, want)
	}
	for _, c := range st.Sysctls {
		if c.Interface != "all" && c.Interface != "eth0" {
			t.Errorf("state records a sysctl of %s: %+v", c.Interface, c)
		}
	}
}

func TestDownRestores(t *testing.T) {
	ns := newServerNS(t, true)
	path := filepath.Join(t.TempDir(), "state.json")
	o := Options{VIPs: []netip.Addr{vip, vipOld}, Interfaces: []string{"eth0"}, StatePath: path}
	// Distinct values everywhere, each one Up must change (except all.rp_filter, which Up
	// never touches), so a restore that mixes up interfaces or keys shows.
	pre := map[string]int{
		"all.arp_ignore": 0, "eth0.arp_ignore": 2,
		"all.arp_announce": 1, "eth0.arp_announce": 0,
		"all.rp_filter": 1, "eth0.rp_filter": 1,
		"eth0p.arp_ignore": 0, "eth0p.arp_announce": 0, "eth0p.rp_filter": 1, // not listed: untouched
	}
	var before, up, down map[string]int
	var probs []Problem
	var st *state
	var vipUp, vipDown, oldDown []netlink.Addr
	var downErr error
	do(t, ns, func() (err error) {
		if err := setVals(pre); err != nil {
			return err
		}
		if err := addAddr("lo", "10.0.0.200/32"); err != nil {
			return err
		}
		if before, err = sysVals("all", "eth0", "eth0p"); err != nil {
			return err
		}
		if err := Up(o, nil); err != nil {
			return err
		}
		if up, err = sysVals("all", "eth0", "eth0p"); err != nil {
			return err
		}
		if probs, err = Check(o); err != nil {
			return err
		}
		if st, _, err = loadState(path); err != nil {
			return err
		}
		if vipUp, err = loAddrs(vip); err != nil {
			return err
		}
		if err := Down(o, nil); err != nil {
			return err
		}
		if down, err = sysVals("all", "eth0", "eth0p"); err != nil {
			return err
		}
		if vipDown, err = loAddrs(vip); err != nil {
			return err
		}
		if oldDown, err = loAddrs(vipOld); err != nil {
			return err
		}
		downErr = Down(o, nil)
		return nil
	})
	if !reflect.DeepEqual(before, pre) {
		t.Fatalf("could not set up the test: sysctls %v, want %v", before, pre)
	}
	wantUp := map[string]int{
		"all.arp_ignore": 1, "eth0.arp_ignore": 1,
		"all.arp_announce": 2, "eth0.arp_announce": 2,
		"all.rp_filter": 1, "eth0.rp_filter": 2,
		"eth0p.arp_ignore": 0, "eth0p.arp_announce": 0, "eth0p.rp_filter": 1,
	}
	if !reflect.DeepEqual(up, wantUp) {
		t.Errorf("after Up\n got %v\nwant %v", up, wantUp)
	}
	if len(probs) != 0 {
		t.Errorf("Check after Up: %q", probs)
	}
	if len(vipUp) != 1 {
		t.Errorf("after Up, %s on lo: %v", vip, vipUp)
	}
	if want := []netip.Prefix{hostPrefix(vip)}; !reflect.DeepEqual(st.LoAddresses, want) {
		t.Errorf("state records lo addresses %v, want only %v (%s was there before Up)", st.LoAddresses, want, vipOld)
	}
	if !reflect.DeepEqual(down, pre) {
		t.Errorf("after Down\n got %v\nwant %v (the values before Up)", down, pre)
	}
	if len(vipDown) != 0 {
		t.Errorf("after Down, %s still on lo: %v", vip, vipDown)
	}
	if len(oldDown) != 1 {
		t.Errorf("after Down, %s (on lo before Up) is gone: %v", vipOld, oldDown)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file still there after Down: %v", err)
	}
	if downErr == nil || !strings.Contains(downErr.Error(), "nothing to restore") {
		t.Errorf("second Down: %v, want nothing to restore", downErr)
	}
}

func TestUpKeepsFirstPrevious(t *testing.T) {
	ns := newServerNS(t, false)
	o := Options{VIPs: []netip.Addr{vip}, StatePath: filepath.Join(t.TempDir(), "state.json")}
	var reapplied, restored int
	do(t, ns, func() (err error) {
		if err := procSys.set("all", arpAnnounce, 1); err != nil {
			return err
		}
		if err := Up(o, nil); err != nil {
			return err
		}
		// Someone resets it; the next Up fixes it again but must still restore 1, not 0.
		if err := procSys.set("all", arpAnnounce, 0); err != nil {
			return err
		}
		if err := Up(o, nil); err != nil {
			return err
		}
		if reapplied, err = procSys.get("all", arpAnnounce); err != nil {
			return err
		}
		if err := Down(o, nil); err != nil {
			return err
		}
		restored, err = procSys.get("all", arpAnnounce)
		return err
	})
	if reapplied != 2 {
		t.Errorf("second Up left all.arp_announce = %d, want 2", reapplied)
	}
	if restored != 1 {
		t.Errorf("Down restored all.arp_announce = %d, want 1 (the value before the first Up)", restored)
	}
}

func TestDownLeavesSysctlChangedSinceUp(t *testing.T) {
	ns := newServerNS(t, true)
	o := Options{VIPs: []netip.Addr{vip}, StatePath: filepath.Join(t.TempDir(), "state.json")}
	var log bytes.Buffer
	var got map[string]int
	do(t, ns, func() (err error) {
		if err := Up(o, nil); err != nil {
			return err
		}
		if err := procSys.set("eth0", arpAnnounce, 1); err != nil { // an operator's own choice
			return err
		}
		if err := Down(o, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
			return err
		}
		got, err = sysVals("all", "eth0")
		return err
	})
	if got["eth0.arp_announce"] != 1 {
		t.Errorf("Down overwrote eth0.arp_announce changed after Up: %d, want 1", got["eth0.arp_announce"])
	}
	if got["all.arp_announce"] != 0 || got["eth0.arp_ignore"] != 0 || got["all.arp_ignore"] != 0 {
		t.Errorf("Down did not restore the rest: %v", got)
	}
	if !strings.Contains(log.String(), "changed since up") || !strings.Contains(log.String(), "net.ipv4.conf.eth0.arp_announce") {
		t.Errorf("Down did not warn about the sysctl it left:\n%s", log.String())
	}
}

func TestCheckBareNamespace(t *testing.T) {
	ns := newServerNS(t, false)
	var probs []Problem
	do(t, ns, func() (err error) {
		probs, err = Check(Options{VIPs: []netip.Addr{vip}})
		return err
	})
	want := []Problem{
		{"lo address 10.0.0.100/32", "present", "missing"},
		{"net.ipv4.conf.all.arp_ignore", "1", "0"},
		{"net.ipv4.conf.all.arp_announce", "2", "0"},
	}
	if !reflect.DeepEqual(probs, want) {
		t.Fatalf("Check on a bare namespace\n got %q\nwant %q", probs, want)
	}
}

func TestCheckFindsEveryProblem(t *testing.T) {
	ns := newServerNS(t, true)
	vipLo24 := netip.MustParseAddr("10.0.0.101")
	o := Options{VIPs: []netip.Addr{vip, vipLo24}, Interfaces: []string{"eth0"}, StatePath: filepath.Join(t.TempDir(), "state.json")}
	var probs []Problem
	var upErr error
	var after map[string]int
	do(t, ns, func() (err error) {
		if err := addAddr("eth0", "10.0.0.100/24"); err != nil {
			return err
		}
		if err := addAddr("lo", "10.0.0.101/24"); err != nil {
			return err
		}
		if err := setVals(map[string]int{"all.rp_filter": 1, "all.arp_ignore": 1}); err != nil {
			return err
		}
		if probs, err = Check(o); err != nil {
			return err
		}
		upErr = Up(o, nil)
		after, err = sysVals("all", "eth0")
		return err
	})
	want := []Problem{
		{"lo address 10.0.0.100/32", "present", "missing"},
		{"eth0 address 10.0.0.100/24", "absent (the VIP belongs on lo only)", "present"},
		{"prefix length of 10.0.0.101 on lo", "/32", "/24"},
		{"net.ipv4.conf.all.arp_announce", "2", "0"},
		{"net.ipv4.conf.eth0.arp_announce", "2", "0"},
		{"net.ipv4.conf.eth0.rp_filter", "0 or 2 (not strict)", "1 (from net.ipv4.conf.all.rp_filter; the interface's own value is 0)"},
	}
	if !reflect.DeepEqual(probs, want) {
		t.Errorf("Check\n got %q\nwant %q", probs, want)
	}
	// Up will not remove addresses it did not add, so it refuses and changes nothing.
	if upErr == nil || !strings.Contains(upErr.Error(), "eth0 address 10.0.0.100/24") || !strings.Contains(upErr.Error(), "10.0.0.101 on lo") {
		t.Errorf("Up with VIPs in the way: %v", upErr)
	}
	if after["all.arp_announce"] != 0 || after["eth0.rp_filter"] != 0 {
		t.Errorf("a refused Up changed sysctls: %v", after)
	}
	if _, err := os.Stat(o.StatePath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused Up wrote a state file: %v", err)
	}
}

func TestIPv6VIP(t *testing.T) {
	ns := newServerNS(t, true)
	v6 := netip.MustParseAddr("fd00:dead::100")
	o := Options{VIPs: []netip.Addr{v6}, StatePath: filepath.Join(t.TempDir(), "state.json")}
	var before, afterUp map[string]int
	var up, down []netlink.Addr
	var probs []Problem
	do(t, ns, func() (err error) {
		if before, err = sysVals("all", "eth0"); err != nil {
			return err
		}
		if err := Up(o, nil); err != nil {
			return err
		}
		if afterUp, err = sysVals("all", "eth0"); err != nil {
			return err
		}
		if up, err = loAddrs(v6); err != nil {
			return err
		}
		if probs, err = Check(o); err != nil {
			return err
		}
		if err := Down(o, nil); err != nil {
			return err
		}
		down, err = loAddrs(v6)
		return err
	})
	if len(up) != 1 || up[0].IPNet.String() != "fd00:dead::100/128" || up[0].Flags&unix.IFA_F_NODAD == 0 {
		t.Errorf("after Up, lo has %v (flags %#x), want fd00:dead::100/128 nodad", up, flagsOf(up))
	}
	if len(probs) != 0 {
		t.Errorf("Check after Up: %q", probs)
	}
	if !reflect.DeepEqual(before, afterUp) {
		t.Errorf("Up with only an IPv6 VIP changed IPv4 sysctls:\n%v\n%v", before, afterUp)
	}
	if len(down) != 0 {
		t.Errorf("after Down, lo still has %v", down)
	}
	if _, err := os.Stat(o.StatePath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file still there after Down: %v", err)
	}
}

func flagsOf(as []netlink.Addr) []int {
	var f []int
	for _, a := range as {
		f = append(f, a.Flags)
	}
	return f
}

// Down needs no privileges to find there is nothing to do.
func TestDownWithoutState(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "state.json"), filepath.Join(dir, "nosuchdir", "state.json")} {
		err := Down(Options{StatePath: path}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "nothing to restore: no state file at "+path) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Down with no state file: %v", err)
		}
	}
}

// VIPs are validated before anything else, so this needs no privileges either.
func TestNoVIPs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Up(Options{StatePath: path}, nil); err == nil || !strings.Contains(err.Error(), "no VIPs") {
		t.Errorf("Up with no VIPs: %v", err)
	}
	if _, err := Check(Options{}); err == nil || !strings.Contains(err.Error(), "no VIPs") {
		t.Errorf("Check with no VIPs: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Up with no VIPs wrote a state file: %v", err)
	}
}

func TestUnknownInterface(t *testing.T) {
	ns := newServerNS(t, true)
	o := Options{VIPs: []netip.Addr{vip}, Interfaces: []string{"eth0", "nosuch0"}, StatePath: filepath.Join(t.TempDir(), "state.json")}
	var upErr, checkErr, loErr error
	var before, after map[string]int
	var addrs []netlink.Addr
	do(t, ns, func() (err error) {
		if before, err = sysVals("all", "eth0"); err != nil {
			return err
		}
		upErr = Up(o, nil)
		_, checkErr = Check(o)
		_, loErr = Check(Options{VIPs: o.VIPs, Interfaces: []string{"lo"}})
		if after, err = sysVals("all", "eth0"); err != nil {
			return err
		}
		addrs, err = loAddrs(vip)
		return err
	})
	want := `interface "nosuch0" does not exist in this network namespace`
	if upErr == nil || upErr.Error() != want {
		t.Errorf("Up: %v, want %q", upErr, want)
	}
	if checkErr == nil || checkErr.Error() != want {
		t.Errorf("Check: %v, want %q", checkErr, want)
	}
	if loErr == nil || !strings.Contains(loErr.Error(), `"lo" is the loopback`) {
		t.Errorf("Check with lo as a NIC: %v", loErr)
	}
	if !reflect.DeepEqual(before, after) || len(addrs) != 0 {
		t.Errorf("a failed Up changed something: sysctls %v -> %v, VIP on lo %v", before, after, addrs)
	}
	if _, err := os.Stat(o.StatePath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed Up wrote a state file: %v", err)
	}
}

func TestDefaultStatePath(t *testing.T) {
	a := newServerNS(t, false)
	b := newServerNS(t, false)
	paths := map[string]bool{}
	for _, ns := range []*netns.NS{a, b} {
		do(t, ns, func() error {
			p, err := DefaultStatePath()
			if err != nil {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
				return err
			}
			if want := fmt.Sprintf("/run/dsrlb/server-netns-%d.json", st.Ino); p != want {
				return fmt.Errorf("DefaultStatePath in %s = %s, want %s", ns.Name(), p, want)
			}
			paths[p] = true
			return nil
		})
	}
	if len(paths) != 2 {
		t.Fatalf("two namespaces share a default state path: %v", paths)
	}
}

func TestStaleStateFile(t *testing.T) {
	ns := newServerNS(t, false)
	old := runDir
	runDir = t.TempDir()
	t.Cleanup(func() { runDir = old })
	stale := []byte(`{"version":1,"netns_inode":1,"netns_cookie":1,"sysctls":[{"interface":"all","key":"arp_ignore","previous":2,"set":1}],"lo_addresses":[]}`)
	other := filepath.Join(t.TempDir(), "other.json")
	var def string
	var downOther, upOther, downStale error
	var st *state
	var id netnsID
	do(t, ns, func() (err error) {
		if id, err = currentNetns(); err != nil {
			return err
		}
		def = defaultStatePathFor(id.inode)
		// At a path given by the caller, another namespace's file is an error.
		if err := os.WriteFile(other, stale, 0o644); err != nil {
			return err
		}
		downOther = Down(Options{StatePath: other}, nil)
		upOther = Up(Options{VIPs: []netip.Addr{vip}, StatePath: other}, nil)
		// At the default path it can only be left by a namespace that is gone.
		if err := os.WriteFile(def, stale, 0o644); err != nil {
			return err
		}
		downStale = Down(Options{}, nil)
		if err := os.WriteFile(def, stale, 0o644); err != nil {
			return err
		}
		if err := Up(Options{VIPs: []netip.Addr{vip}}, nil); err != nil {
			return err
		}
		if st, _, err = loadState(def); err != nil {
			return err
		}
		return Down(Options{}, nil)
	})
	if downOther == nil || !strings.Contains(downOther.Error(), "belongs to another network namespace") {
		t.Errorf("Down with another namespace's state file: %v", downOther)
	}
	if upOther == nil || !strings.Contains(upOther.Error(), "belongs to another network namespace") {
		t.Errorf("Up with another namespace's state file: %v", upOther)
	}
	if b, err := os.ReadFile(other); err != nil || !bytes.Equal(b, stale) {
		t.Errorf("another namespace's state file was changed: %s, %v", b, err)
	}
	if downStale == nil || !strings.Contains(downStale.Error(), "no longer exists") {
		t.Errorf("Down with a stale default state file: %v", downStale)
	}
	if st.NetnsInode != id.inode || st.NetnsCookie != id.cookie || len(st.Sysctls) != 2 || st.Sysctls[0].Previous != 0 {
		t.Errorf("Up did not replace the stale state file: %+v", st)
	}
	if _, err := os.Stat(def); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file still there after Down: %v", err)
	}
}
