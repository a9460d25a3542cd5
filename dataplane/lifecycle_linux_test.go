package dataplane

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// cpuTime is the CPU time this process has used.
// workerStates returns the scheduler state letter (R, S, ...) of each
// thread of this process running at nice -10, the dataplane's workers, by
// thread ID. An earlier test's worker can leave one behind: a worker locked
// to the main thread, which cannot exit, parks it for good when it ends.
func workerStates(t *testing.T) map[string]byte {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]byte{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// After "pid (comm) ": state is the first field, nice the 17th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 16 && f[16] == "-10" {
			out[task.Name()] = f[0][0]
		}
	}
	return out
}

// After the balancer's interface goes down and up, the kernel leaves
// ENETDOWN pending on the worker's socket. An idle worker must still sleep
// (a pending error makes poll return at once), and the next frame too large
// for a ring slot, read from the socket, must be forwarded (a pending error
// fails that read without dequeuing the frame). The same for a worker on a
// ring of blocks, where that frame is in a block.
func TestWorkerAfterLinkFlap(t *testing.T) {
	for _, blocks := range []bool{false, true} {
		t.Run(map[bool]string{false: "frames", true: "blocks"}[blocks], func(t *testing.T) { workerAfterLinkFlap(t, blocks) })
	}
}

func workerAfterLinkFlap(t *testing.T, blocks bool) {
	p := newTxPair(t)
	p.setMTU(t, 9000)
	stray := workerStates(t)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 1, Ring: RingConfig{BusyPoll: -1, Blocks: blocks}})
	rx := p.receiver(t)

	if err := p.h.LinkSetDown(p.a); err != nil {
		t.Fatal(err)
	}
	if err := p.h.LinkSetUp(p.a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the carrier comes back asynchronously
	// An idle worker sleeps in poll, waking every 100 ms; one that spins on
	// the pending error is never found asleep.
	asleep := 0
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		var st []byte
		for tid, state := range workerStates(t) {
			if _, old := stray[tid]; !old {
				st = append(st, state)
			}
		}
		if len(st) != 1 {
			t.Fatalf("found %d worker threads (nice -10) besides %d from before, want 1", len(st), len(stray))
		}
		if st[0] == 'S' {
			asleep++
		}
	}
	if asleep < 10 {
		t.Errorf("the idle worker was asleep in %d of 20 looks after a link flap: it spins", asleep)
	}

	payload := bytes.Repeat([]byte("big frame "), 600) // 6000 bytes: no 2 KiB ring slot holds it
	f := buildFrame(t, netip.MustParseAddr("198.51.100.7"), vip4, layers.IPProtocolUDP, 1234, 53, payload)
	copy(f[0:6], p.a.Attrs().HardwareAddr)
	if err := sendPinned(p, 0, [][]byte{f}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(3 * time.Second))
	unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 16384)
	for {
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err == unix.ENETDOWN || err == unix.EINTR {
			continue
		}
		if err != nil {
			break // the timeout
		}
		if n == len(f) && bytes.Equal(buf[12:n], f[12:]) {
			return // forwarded, the IP packet untouched
		}
	}
	st := d.Stats()
	t.Fatalf("the %d-byte frame sent after the link flap was not forwarded (received %d, forwarded %d, truncated %d)",
		len(f), st.Received, st.Forwarded(), st.Reasons[DropTruncated])
}

// Once Run has returned and released the sockets, SetTable fails instead of
// setting filters on closed (or reused) descriptors.
func TestSetTableAfterRun(t *testing.T) {
	p := newTxPair(t)
	d, stop := runDataplane(t, p, Config{Interface: "a", Workers: 1})
	tab := addBackend(t, testTable(t), 99, [6]byte{2, 0, 0, 0, 0, 99})
	if err := d.SetTable(tab); err != nil {
		t.Fatalf("SetTable while running: %v", err)
	}
	wide := editTable(t, tab, func(s *balancer.ServiceSpec) { s.Backends[0].Slot = MaxBackendSlots })
	if err := d.SetTable(wide); err == nil || !strings.Contains(err.Error(), "counter slot 4096") {
		t.Fatalf("SetTable with a counter slot beyond MaxBackendSlots: %v; want it refused", err)
	}
	if d.table.Load().t != tab {
		t.Fatal("a refused table was published")
	}
	stop()
	if err := d.SetTable(testTable(t)); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("SetTable after Run returned: %v; want an error saying the dataplane stopped", err)
	}
}

// runDataplane opens a dataplane on the pair's end a with testTable and runs
// it until stop is called or the test ends; stop fails the test if Run
// returned an error.
func runDataplane(t *testing.T, p *txPair, cfg Config) (d *Dataplane, stop func()) {
	t.Helper()
	err := p.ns.Do(func() error {
		var err error
		d, err = Open(cfg, testTable(t))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}

// After the interface goes down and up, the neighbour responder still
// answers ARP for the VIPs (its sockets get the same pending ENETDOWN as the
// workers'); and it never answers a request sent from the balancer's own
// MAC (the DSR health probe's).
func TestResponderAfterLinkFlap(t *testing.T) {
	p := newTxPair(t)
	runDataplane(t, p, Config{Interface: "a", Workers: 1})
	rx := p.receiver(t)
	if err := p.h.LinkSetDown(p.a); err != nil {
		t.Fatal(err)
	}
	if err := p.h.LinkSetUp(p.a); err != nil {
		t.Fatal(err)
	}
	asker := [6]byte(p.b.Attrs().HardwareAddr)
	request := func(from [6]byte) []byte {
		return appendARP(nil, broadcastMAC, arpOpRequest, from, client4, [6]byte{}, vip4)
	}
	replies := func(to [6]byte) int {
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		buf := make([]byte, 2048)
		n := 0
		for {
			m, _, err := unix.Recvfrom(rx, buf, 0)
			if err == unix.ENETDOWN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return n
			}
			if m >= 42 && [6]byte(buf[0:6]) == to && buf[12] == 0x08 && buf[13] == 0x06 && buf[21] == 2 {
				n++
			}
		}
	}
	// The carrier comes back asynchronously: ask until answered, or 10 s.
	got := 0
	for deadline := time.Now().Add(10 * time.Second); got == 0 && time.Now().Before(deadline); {
		if err := sendPinned(p, 0, [][]byte{request(asker)}); err != nil {
			t.Fatal(err)
		}
		got = replies(asker)
	}
	if got == 0 {
		t.Fatal("no ARP reply for the VIP after the link went down and up: the responder stopped")
	}
	own := [6]byte(p.a.Attrs().HardwareAddr)
	if err := sendPinned(p, 0, [][]byte{request(own)}); err != nil {
		t.Fatal(err)
	}
	if n := replies(own); n != 0 {
		t.Errorf("the responder answered %d requests sent from the balancer's own MAC", n)
	}
}

// A neighbour solicitation sent to the VIP itself, as a router sends to
// confirm a neighbour it has, gets an answer: the netdev ingress drop of the
// VIPs' frames lets it through to the responder.
func TestResponderAnswersUnicastNS(t *testing.T) {
	p := newTxPair(t)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 1})
	if d.sys.drop == nil {
		t.Fatal("no netdev ingress drop installed (is nft installed?): this test is about it")
	}
	rx := p.receiver(t)
	asker := [6]byte(p.b.Attrs().HardwareAddr)
	buf := solicitation(t, asker, p.a.Attrs().HardwareAddr, vip6.AsSlice())
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	frame := make([]byte, 2048)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if err := sendPinned(p, 0, [][]byte{buf.Bytes()}); err != nil {
			t.Fatal(err)
		}
		for {
			n, _, err := unix.Recvfrom(rx, frame, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break // the timeout: ask again
			}
			if n >= ethHeaderLen+40+24 && [6]byte(frame[0:6]) == asker && frame[12] == 0x86 && frame[13] == 0xdd && frame[ethHeaderLen+40] == icmp6NA {
				return
			}
		}
	}
	t.Fatalf("no neighbour advertisement for a solicitation sent to the VIP itself (answered: %d)", d.sys.responder.naReplies.Load())
}

// With the VIPs on a virtual MAC the kernel ignores their frames unless it
// forwards IP, so no drop rule is installed; a new table with a VIP of a
// family that the kernel forwards gets the rule then.
func TestSetTableNewFamilyForwarding(t *testing.T) {
	p := newTxPair(t)
	if err := p.ns.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0)
	}); err != nil {
		t.Fatal(err)
	}
	var specs []balancer.ServiceSpec
	for _, s := range testTable(t).Services() {
		if s.Key().VIP.Is4() {
			specs = append(specs, balancer.ServiceSpec{Name: s.Name(), Key: s.Key(), Backends: s.Backends()})
		}
	}
	v4, err := balancer.NewTable(7, specs)
	if err != nil {
		t.Fatal(err)
	}
	var d *Dataplane
	if err := p.ns.Do(func() (err error) {
		d, err = Open(Config{Interface: "a", Workers: 1, VIPMAC: net.HardwareAddr{2, 0, 0, 0, 0x77, 1}}, v4)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if d.sys.drop != nil {
		t.Fatal("a drop rule for IPv4 VIPs on a virtual MAC with IPv4 forwarding off")
	}
	if err := p.ns.Do(func() error { return d.SetTable(testTable(t)) }); err != nil {
		t.Fatalf("SetTable with an IPv6 VIP: %v", err)
	}
	if d.sys.drop == nil {
		t.Fatal("an IPv6 VIP was added with IPv6 forwarding on and no drop rule installed")
	}
}
