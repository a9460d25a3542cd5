package labnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to build namespaces, veths and bridges")
	}
}

var (
	testSubnet4 = netip.MustParsePrefix("198.18.0.0/24")
	testSubnet6 = netip.MustParsePrefix("2001:db8:18::/64")
)

func testSpec(prefix string) Spec {
	a := netip.MustParseAddr
	return Spec{Prefix: prefix, Subnet4: testSubnet4, Subnet6: testSubnet6, Hosts: []HostSpec{
		{Name: "client", Addr4: a("198.18.0.2"), Addr6: a("2001:db8:18::2")},
		{Name: "srv1", Addr4: a("198.18.0.11"), Addr6: a("2001:db8:18::11")},
	}}
}

// buildLab builds a lab and registers its Close; it also fails the test if any
// namespace with the prefix survives the test.
func buildLab(t *testing.T, spec Spec) *Net {
	t.Helper()
	t.Cleanup(func() { assertNoNamespaces(t, spec.Prefix) })
	n, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// namespacesWith lists the named namespaces starting with prefix.
func namespacesWith(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

func assertNoNamespaces(t *testing.T, prefix string) {
	t.Helper()
	if left := namespacesWith(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

func TestLab(t *testing.T) {
	requireRoot(t)
	spec := testSpec(netns.UniquePrefix("dsrlbt"))
	n := buildLab(t, spec)
	client, srv := n.Host("client"), n.Host("srv1")
	if client == nil || srv == nil || n.Host("nobody") != nil {
		t.Fatalf("Host lookups: client=%v srv1=%v", client, srv)
	}

	wantNS := []string{spec.Prefix + "sw", spec.Prefix + "client", spec.Prefix + "srv1"}
	if got := n.Namespaces(); fmt.Sprint(got) != fmt.Sprint(wantNS) {
		t.Fatalf("Namespaces() = %v, want %v", got, wantNS)
	}
	for _, name := range wantNS {
		if !netns.Exists(name) {
			t.Fatalf("namespace %s missing", name)
		}
	}

	t.Run("topology", func(t *testing.T) { checkTopology(t, n) })
	t.Run("http", func(t *testing.T) { checkHTTP(t, n) })
	t.Run("udp", func(t *testing.T) { checkUDP(t, n) })
	t.Run("sniff", func(t *testing.T) { checkSniff(t, n) })

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range wantNS {
		if netns.Exists(name) {
			t.Errorf("namespace %s still exists after Close", name)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func run(t *testing.T, ns *netns.NS, args ...string) string {
	t.Helper()
	out, err := ns.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), ns.Name(), err, out)
	}
	return string(out)
}

func checkTopology(t *testing.T, n *Net) {
	br := run(t, n.Switch, "ip", "-d", "link", "show", BridgeName)
	for _, want := range []string{"state UP", "stp_state 0", "forward_delay 0", "mcast_snooping 0"} {
		if !strings.Contains(br, want) {
			t.Errorf("bridge lacks %q:\n%s", want, br)
		}
	}
	for i, name := range []string{"client", "srv1"} {
		h := n.Host(name)
		if h.Link != "eth0" || h.MAC.String() != fmt.Sprintf("02:00:00:00:00:%02x", i+1) {
			t.Errorf("%s: link %s MAC %s", name, h.Link, h.MAC)
		}
		port := run(t, n.Switch, "ip", "-d", "link", "show", h.Port)
		if !strings.Contains(port, "master "+BridgeName) || !strings.Contains(port, "state forwarding") {
			t.Errorf("port %s not forwarding on %s:\n%s", h.Port, BridgeName, port)
		}
		link := run(t, h.NS, "ip", "addr", "show", "eth0")
		for _, want := range []string{
			"link/ether " + h.MAC.String(),
			"inet " + h.Addr4.String() + "/24",
			"inet6 " + h.Addr6.String() + "/64",
			"state UP",
		} {
			if !strings.Contains(link, want) {
				t.Errorf("%s eth0 lacks %q:\n%s", name, want, link)
			}
		}
		if strings.Contains(link, "tentative") {
			t.Errorf("%s has a tentative address (DAD not skipped):\n%s", name, link)
		}
		// The product must cope with the default offloads: the lab keeps them.
		k := run(t, h.NS, "ethtool", "-k", "eth0")
		for _, want := range []string{"tx-checksumming: on", "tcp-segmentation-offload: on", "generic-segmentation-offload: on"} {
			if !strings.Contains(k, want) {
				t.Errorf("%s eth0 offloads: want %q:\n%s", name, want, k)
			}
		}
	}
}

func checkHTTP(t *testing.T, n *Net) {
	client, srv := n.Host("client"), n.Host("srv1")
	ln, err := srv.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	stop := NameServer(ln, "srv1")
	defer stop()

	before, err := client.Stats()
	if err != nil {
		t.Fatal(err)
	}
	hc := client.HTTPClient(false)
	for _, addr := range []netip.Addr{srv.Addr4, srv.Addr6} {
		url := "http://" + netip.AddrPortFrom(addr, 80).String()
		body := get(t, hc, url+"/")
		if string(body) != "srv1\n" {
			t.Fatalf("GET %s/: %q", url, body)
		}
		const size = 4 << 20
		body = get(t, hc, fmt.Sprintf("%s/bytes?n=%d", url, size))
		if len(body) != size {
			t.Fatalf("GET %s/bytes: %d bytes, want %d", url, len(body), size)
		}
		if i := checkPattern(body); i >= 0 {
			t.Fatalf("GET %s/bytes: byte %d is %d, want %d", url, i, body[i], PatternByte(i))
		}
	}
	after, err := client.Stats()
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if d.RxBytes < 2*4<<20 || d.TxPackets == 0 || d.RxPackets == 0 {
		t.Errorf("client eth0 counters over two 4 MB transfers: %+v", d)
	}
	port, err := n.PortStats("client")
	if err != nil {
		t.Fatal(err)
	}
	// The port is the other end of client's veth: it received what the
	// client sent (read after the client's counters, so at least as much).
	if port.RxBytes < after.TxBytes || port.TxBytes < 2*4<<20 {
		t.Errorf("port counters %+v vs client %+v", port, after)
	}
	if _, err := n.PortStats("nobody"); err == nil {
		t.Error("PortStats of an unknown host succeeded")
	}
}

func get(t *testing.T, hc *http.Client, url string) []byte {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Server") != "srv1" {
		t.Fatalf("GET %s: %s, X-Server %q", url, resp.Status, resp.Header.Get("X-Server"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

func checkUDP(t *testing.T, n *Net) {
	client, srv := n.Host("client"), n.Host("srv1")
	pc, err := srv.ListenPacket("udp", ":5000")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() { // echo
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:k], from)
		}
	}()
	for _, addr := range []netip.Addr{srv.Addr4, srv.Addr6} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.Dial(ctx, "udp", netip.AddrPortFrom(addr, 5000).String())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		k, err := c.Read(buf)
		c.Close()
		if err != nil || string(buf[:k]) != "ping" {
			t.Fatalf("UDP echo via %s: %q %v", addr, buf[:k], err)
		}
	}
}

// ipAddrs returns the Ethernet source and the IP source and destination of
// an untagged IPv4 or IPv6 frame.
func ipAddrs(frame []byte) (mac net.HardwareAddr, src, dst netip.Addr, ok bool) {
	if len(frame) < 14 {
		return nil, src, dst, false
	}
	mac = net.HardwareAddr(frame[6:12])
	p := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		if len(p) >= 20 {
			return mac, netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), true
		}
	case 0x86dd:
		if len(p) >= 40 {
			return mac, netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), true
		}
	}
	return nil, src, dst, false
}

func checkSniff(t *testing.T, n *Net) {
	client, srv := n.Host("client"), n.Host("srv1")
	ln, err := srv.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	stopServer := NameServer(ln, "srv1")
	defer stopServer()

	type seen struct {
		out, in bool
	}
	var mu sync.Mutex
	got := map[netip.Addr]*seen{srv.Addr4: {}, srv.Addr6: {}}
	var frames int
	stop, err := client.Sniff(context.Background(), func(frame []byte, outgoing bool) {
		mu.Lock()
		defer mu.Unlock()
		frames++
		mac, src, dst, ok := ipAddrs(frame)
		if !ok {
			return
		}
		switch {
		case outgoing && bytes.Equal(mac, client.MAC) && (src == client.Addr4 || src == client.Addr6) && got[dst] != nil:
			got[dst].out = true
		case !outgoing && bytes.Equal(mac, srv.MAC) && (dst == client.Addr4 || dst == client.Addr6) && got[src] != nil:
			got[src].in = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	hc := client.HTTPClient(false)
	for a := range got {
		get(t, hc, "http://"+netip.AddrPortFrom(a, 80).String()+"/")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	mu.Lock()
	after := frames
	for a, s := range got {
		if !s.out || !s.in {
			t.Errorf("capture on client eth0, traffic with %s: outgoing seen %v, incoming seen %v", a, s.out, s.in)
		}
	}
	mu.Unlock()

	// Nothing is delivered after stop has returned.
	get(t, hc, "http://"+netip.AddrPortFrom(srv.Addr4, 80).String()+"/")
	mu.Lock()
	if frames != after {
		t.Errorf("fn called %d times after stop returned", frames-after)
	}
	mu.Unlock()

	// Cancelling the context ends a capture too.
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 1)
	stop, err = client.Sniff(ctx, func([]byte, bool) {
		select {
		case calls <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	get(t, hc, "http://"+netip.AddrPortFrom(srv.Addr4, 80).String()+"/")
	<-calls
	cancel()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Frames captured before stop reach fn even if the reader is behind:
	// fn holds the first frame until stop has been called, while the
	// rest of an HTTP exchange queues on the socket.
	first, release, deadlineSet := make(chan struct{}), make(chan struct{}), make(chan struct{})
	stopDeadlineSet = func() { close(deadlineSet) }
	defer func() { stopDeadlineSet = nil }()
	var in, held bool
	stop, err = client.Sniff(context.Background(), func(frame []byte, outgoing bool) {
		if !held {
			held = true
			close(first)
			<-release
		}
		if mac, src, _, ok := ipAddrs(frame); ok && !outgoing && bytes.Equal(mac, srv.MAC) && src == srv.Addr4 {
			in = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	get(t, hc, "http://"+netip.AddrPortFrom(srv.Addr4, 80).String()+"/")
	<-first
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	<-deadlineSet // stop has set the read deadline: the reader is behind it
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if !in {
		t.Error("stop lost the frames queued behind a slow fn: no frame from the server reached it")
	}
}

// Two labs with the same host names and addresses coexist: each client
// reaches its own server.
func TestTwoLabsAtOnce(t *testing.T) {
	requireRoot(t)
	var labs [2]*Net
	var wg sync.WaitGroup
	var errs [2]error
	var prefixes [2]string
	for i := range labs {
		prefixes[i] = netns.UniquePrefix("dsrlbt")
		t.Cleanup(func() { assertNoNamespaces(t, prefixes[i]) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			labs[i], errs[i] = Build(testSpec(prefixes[i]))
		}()
	}
	wg.Wait()
	for i := range labs {
		if labs[i] != nil {
			t.Cleanup(func() { labs[i].Close() })
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	for i, n := range labs {
		ln, err := n.Host("srv1").Listen("tcp", ":80")
		if err != nil {
			t.Fatal(err)
		}
		defer NameServer(ln, fmt.Sprintf("srv1-of-lab%d", i))()
	}
	for i, n := range labs {
		resp, err := n.Host("client").HTTPClient(false).Get("http://198.18.0.11/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("srv1-of-lab%d\n", i); string(body) != want {
			t.Errorf("lab %d client reached %q, want %q", i, body, want)
		}
	}
	for _, n := range labs {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestBuildFailureCleansUp(t *testing.T) {
	requireRoot(t)

	t.Run("invalid host name", func(t *testing.T) {
		spec := testSpec(netns.UniquePrefix("dsrlbt"))
		// The bad host comes after a good one, so the switch and client are
		// built before the failure.
		spec.Hosts = append(spec.Hosts[:1], HostSpec{Name: "bad/name"})
		n, err := Build(spec)
		if err == nil {
			n.Close()
			t.Fatal("Build succeeded with host bad/name")
		}
		if !strings.Contains(err.Error(), `host "bad/name": create namespace`) {
			t.Errorf("error does not name the step: %v", err)
		}
		assertNoNamespaces(t, spec.Prefix)
	})

	t.Run("namespace exists", func(t *testing.T) {
		spec := testSpec(netns.UniquePrefix("dsrlbt"))
		squatter, err := netns.New(spec.Prefix + "srv1")
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			squatter.Close()
			assertNoNamespaces(t, spec.Prefix)
		}()
		n, err := Build(spec)
		if err == nil {
			n.Close()
			t.Fatal("Build succeeded over an existing namespace")
		}
		if !strings.Contains(err.Error(), `host "srv1": create namespace`) {
			t.Errorf("error does not name the step: %v", err)
		}
		// Only the namespace Build did not make is left, untouched.
		if left := namespacesWith(t, spec.Prefix); fmt.Sprint(left) != fmt.Sprint([]string{squatter.Name()}) {
			t.Errorf("after failed Build: namespaces %v, want only %s", left, squatter.Name())
		}
	})
}
