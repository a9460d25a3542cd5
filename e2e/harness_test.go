//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// binary is the dsrlb executable built by TestMain.
var dsrlbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dsrlb-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dsrlbBin = filepath.Join(dir, "dsrlb")
	out, err := exec.Command("go", "build", "-o", dsrlbBin, "../cmd/dsrlb").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build dsrlb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root to build network namespaces (CI runs it as root)")
	}
}

var (
	vip4 = netip.MustParseAddr("198.18.0.100")
	vip6 = netip.MustParseAddr("2001:db8:18::100")
)

// dsrLab is a client, a balancer and real servers on one bridge.
type dsrLab struct {
	t       *testing.T
	net     *labnet.Net
	client  *labnet.Host
	lb      *labnet.Host
	servers []*labnet.Host
	dir     string

	lbCmd   *exec.Cmd
	lbOut   *syncbuf.Buffer
	lbDone  chan error
	cfgPath string

	mu       sync.Mutex
	httpStop map[string]func() // each server's HTTP server on :80
}

// newDSRLab builds the topology with n servers, each prepared with
// `dsrlb server up` and serving HTTP on :80 (answering its name), a line
// service on :7000, and UDP on VIP:5353.
func newDSRLab(t *testing.T, n int) *dsrLab {
	t.Helper()
	requireRoot(t)
	spec := labnet.Spec{
		Prefix:  netns.UniquePrefix("dsrlbt"),
		Subnet4: netip.MustParsePrefix("198.18.0.0/24"),
		Subnet6: netip.MustParsePrefix("2001:db8:18::/64"),
		Hosts: []labnet.HostSpec{
			{Name: "client", Addr4: netip.MustParseAddr("198.18.0.2"), Addr6: netip.MustParseAddr("2001:db8:18::2")},
			{Name: "lb", Addr4: netip.MustParseAddr("198.18.0.1"), Addr6: netip.MustParseAddr("2001:db8:18::1")},
		},
	}
	for i := 1; i <= n; i++ {
		spec.Hosts = append(spec.Hosts, labnet.HostSpec{
			Name:  fmt.Sprintf("srv%d", i),
			Addr4: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}),
			Addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8:18::%d", 10+i)),
		})
	}
	ln, err := labnet.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	l := &dsrLab{t: t, net: ln, client: ln.Host("client"), lb: ln.Host("lb"), dir: t.TempDir()}
	t.Cleanup(l.close)
	for i := 1; i <= n; i++ {
		h := ln.Host(fmt.Sprintf("srv%d", i))
		l.servers = append(l.servers, h)
		l.prepareServer(h)
	}
	return l
}

func (l *dsrLab) close() {
	if l.lbCmd != nil {
		l.stopBalancer()
	}
	if err := l.net.Close(); err != nil {
		l.t.Errorf("tear down lab: %v", err)
	}
}

// dsrlb runs the binary inside h's namespace and returns its output. A
// `server` command that names no --state gets h's state file in the test's
// directory, never one in /run/dsrlb: the namespace dies with the lab, and
// the file with the directory.
func (l *dsrLab) dsrlb(h *labnet.Host, args ...string) (string, error) {
	if len(args) > 0 && args[0] == "server" && !slices.ContainsFunc(args, func(a string) bool {
		return a == "--state" || a == "-state" || strings.HasPrefix(a, "--state=") || strings.HasPrefix(a, "-state=")
	}) {
		args = append(slices.Clip(args), "--state", l.statePath(h))
	}
	out, err := h.NS.Command(dsrlbBin, args...).CombinedOutput()
	return string(out), err
}

// statePath is where `dsrlb server` on h records what up changed.
func (l *dsrLab) statePath(h *labnet.Host) string {
	return filepath.Join(l.dir, "server-state-"+h.Name+".json")
}

func (l *dsrLab) prepareServer(h *labnet.Host) {
	t := l.t
	if out, err := l.dsrlb(h, "server", "up", "--vip", vip4.String(), "--vip", vip6.String(), "--interface", "eth0"); err != nil {
		t.Fatalf("%s: server up: %v\n%s", h.Name, err, out)
	}
	l.startHTTP(h)
	t.Cleanup(func() { l.stopHTTP(h) })
	lines, err := h.Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	go serveLines(lines, h.Name)
	t.Cleanup(func() { lines.Close() })
	sink, err := h.Listen("tcp", ":7001")
	if err != nil {
		t.Fatal(err)
	}
	go serveSink(sink, h.Name)
	t.Cleanup(func() { sink.Close() })
	for _, vip := range []netip.Addr{vip4, vip6} {
		pc, err := h.ListenPacket("udp", netip.AddrPortFrom(vip, 5353).String())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(h.Name+" "), buf[:n]...), from)
			}
		}()
		t.Cleanup(func() { pc.Close() })
	}
}

// startHTTP starts h's HTTP server on :80 (answering its name).
func (l *dsrLab) startHTTP(h *labnet.Host) {
	ln, err := h.Listen("tcp", ":80")
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.httpStop == nil {
		l.httpStop = map[string]func(){}
	}
	l.httpStop[h.Name] = labnet.NameServer(ln, h.Name)
}

// stopHTTP stops h's HTTP server: the server is dead to clients and checks.
func (l *dsrLab) stopHTTP(h *labnet.Host) {
	l.mu.Lock()
	stop := l.httpStop[h.Name]
	delete(l.httpStop, h.Name)
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// serveLines answers every line received on a connection with name.
func serveLines(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
			}
		}()
	}
}

// serveSink reads everything a client sends until it half-closes, then
// answers "name sha256-hex" and closes.
func serveSink(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			h := sha256.New()
			if _, err := io.Copy(h, c); err != nil {
				return
			}
			fmt.Fprintf(c, "%s %x\n", name, h.Sum(nil))
		}()
	}
}

// config returns a balancer config serving every test service from the
// given servers (weights 1).
func (l *dsrLab) config(servers []*labnet.Host, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface: eth0\nworkers: 2\nseed: 42\n%sservices:\n", extra)
	svc := func(name string, vip netip.Addr, port int, proto string) {
		fmt.Fprintf(&b, "  - name: %s\n    vip: %s\n    port: %d\n    protocol: %s\n    backends:\n", name, vip, port, proto)
		for _, s := range servers {
			a := s.Addr4
			if vip.Is6() {
				a = s.Addr6
			}
			fmt.Fprintf(&b, "      - address: %s\n", a)
		}
	}
	svc("web4", vip4, 80, "tcp")
	svc("web6", vip6, 80, "tcp")
	svc("lines4", vip4, 7000, "tcp")
	svc("lines6", vip6, 7000, "tcp")
	svc("sink4", vip4, 7001, "tcp")
	svc("sink6", vip6, 7001, "tcp")
	svc("udp4", vip4, 5353, "udp")
	svc("udp6", vip6, 5353, "udp")
	return b.String()
}

// startBalancer runs `dsrlb run --config` in the balancer's namespace and
// waits until it forwards (an HTTP request to the VIP succeeds).
func (l *dsrLab) startBalancer(cfg string) {
	t := l.t
	t.Helper()
	path := filepath.Join(l.dir, fmt.Sprintf("dsrlb-%d.yaml", time.Now().UnixNano()))
	l.cfgPath = path
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l.lbOut = &syncbuf.Buffer{}
	l.lbCmd = l.lb.NS.Command(dsrlbBin, "run", "--config", path, "--log-level", "debug")
	l.lbCmd.Stdout, l.lbCmd.Stderr = l.lbOut, l.lbOut
	if err := l.lbCmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.lbDone = make(chan error, 1)
	go func() { l.lbDone <- l.lbCmd.Wait() }()
	c := l.client.HTTPClient(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-l.lbDone:
			t.Fatalf("balancer exited: %v\n%s", err, l.lbOut.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := get(ctx, c, "http://"+vip4.String()+"/")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balancer not forwarding after 15 s: %v\n%s", err, l.lbOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reload writes cfg over the running config file and sends SIGHUP.
func (l *dsrLab) reload(cfg string) {
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := l.lbCmd.Process.Signal(syscall.SIGHUP); err != nil {
		l.t.Fatal(err)
	}
}

// stopBalancer sends SIGTERM, waits, and returns its output.
func (l *dsrLab) stopBalancer() string {
	l.lbCmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-l.lbDone:
		if err != nil {
			l.t.Errorf("balancer exited with %v\n%s", err, l.lbOut.String())
		}
	case <-time.After(10 * time.Second):
		l.lbCmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump for the failure message
		select {
		case <-l.lbDone:
		case <-time.After(2 * time.Second):
			l.lbCmd.Process.Kill()
			<-l.lbDone
		}
		l.t.Errorf("balancer did not stop within 10 s of SIGTERM\n%s", l.lbOut.String())
	}
	l.lbCmd = nil
	return l.lbOut.String()
}

// settled polls read until two reads in a row, interval apart, are the same
// by same (or until limit has passed), and returns the last read. Tests
// that count frames in a window wait for earlier traffic to die down first:
// the last ACKs of a connection's teardown come from whichever CPU took the
// peer's FIN, well after the request returned.
func settled[T any](read func() T, same func(a, b T) bool, interval, limit time.Duration) T {
	last := read()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		time.Sleep(interval)
		now := read()
		if same(now, last) {
			return now
		}
		last = now
	}
	return last
}

// get fetches url and returns the body.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// vipSourceCounter counts TCP and UDP frames whose IP source is a VIP, by
// direction: replies to clients. (The balancer's own neighbour
// advertisements for the VIP are not replies and are not counted.)
type vipSourceCounter struct {
	out, in atomic.Int64
}

func (c *vipSourceCounter) frame(frame []byte, outgoing bool) {
	if len(frame) < 14 {
		return
	}
	var src netip.Addr
	var proto byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		if len(frame) >= 34 {
			src, proto = netip.AddrFrom4([4]byte(frame[26:30])), frame[23]
		}
	case 0x86dd:
		if len(frame) >= 54 {
			src, proto = netip.AddrFrom16([16]byte(frame[22:38])), frame[20]
		}
	}
	if (src == vip4 || src == vip6) && (proto == 6 || proto == 17) {
		if outgoing {
			c.out.Add(1)
		} else {
			c.in.Add(1)
		}
	}
}

// sniff counts VIP-sourced frames h sent or received, seen at the switch's
// port of h (so that what the balancer's dataplane sends past its own taps,
// with PACKET_QDISC_BYPASS, is seen too), until the test ends or stop.
func (l *dsrLab) sniff(h *labnet.Host) (c *vipSourceCounter, stop func()) {
	c = &vipSourceCounter{}
	ctx, cancel := context.WithCancel(context.Background())
	stopSniff, err := l.net.SniffPort(ctx, h.Name, c.frame)
	if err != nil {
		cancel()
		l.t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			stopSniff()
		})
	}
	l.t.Cleanup(stop)
	return c, stop
}

// checkOffloads asserts the client's veth still has its default offloads:
// the balancer must cope with them, nobody turned them off.
func (l *dsrLab) checkOffloads() {
	t := l.t
	out, err := l.client.NS.Command("ethtool", "-k", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool -k eth0 in client: %v\n%s", err, out)
	}
	for _, want := range []string{"tx-checksumming: on", "tcp-segmentation-offload: on", "generic-segmentation-offload: on"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("client eth0 offloads: want %q in\n%s", want, out)
		}
	}
}
