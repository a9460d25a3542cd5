package healthcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Tier 1: every prober against real servers on 127.0.0.1. Nothing here
// leaves the loopback interface.

// probeTimeout bounds probes that are meant to time out; passTimeout the
// others, which answer at once on loopback (a busy machine must not fail
// them).
const (
	probeTimeout = 300 * time.Millisecond
	passTimeout  = 10 * time.Second
)

var loopback = netip.MustParseAddr("127.0.0.1")

func mustProber(t *testing.T, s Spec) Prober {
	t.Helper()
	p, err := NewProber(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(a net.Addr) uint16 {
	return uint16(a.(interface{ AddrPort() netip.AddrPort }).AddrPort().Port())
}

func tcpPort(l net.Listener) uint16 { return l.Addr().(*net.TCPAddr).AddrPort().Port() }

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := tcpPort(ln)
	ln.Close()
	return p
}

// holdConns accepts connections on ln and keeps them open, silent, until
// the test ends.
func holdConns(t *testing.T, ln net.Listener) {
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
}

func TestTCPProbe(t *testing.T) {
	p := mustProber(t, Spec{Kind: KindTCP, Timeout: passTimeout})
	ctx := context.Background()

	accepting := listen(t)
	holdConns(t, accepting)
	if err := p.Probe(ctx, Target{Addr: loopback, Port: tcpPort(accepting)}); err != nil {
		t.Errorf("accepting listener: %v", err)
	}
	// Never accepts: the kernel still completes the handshake.
	idle := listen(t)
	if err := p.Probe(ctx, Target{Addr: loopback, Port: tcpPort(idle)}); err != nil {
		t.Errorf("listener that never accepts: %v", err)
	}

	closed := closedPort(t)
	err := p.Probe(ctx, Target{Addr: loopback, Port: closed})
	if want := fmt.Sprintf("tcp connect 127.0.0.1:%d: connection refused", closed); err == nil || err.Error() != want {
		t.Errorf("closed port: %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: %v does not wrap ECONNREFUSED", err)
	}

	// Spec.Port overrides the service port.
	p2 := mustProber(t, Spec{Kind: KindTCP, Port: tcpPort(accepting)})
	if err := p2.Probe(ctx, Target{Addr: loopback, Port: closed}); err != nil {
		t.Errorf("check port over a closed service port: %v", err)
	}
	if err := p.Probe(ctx, Target{Addr: loopback}); err == nil || !strings.Contains(err.Error(), "no port") {
		t.Errorf("no port anywhere: %v", err)
	}
}

// checkServer is an HTTP handler that records what it was asked.
type checkServer struct {
	mu           sync.Mutex
	method, host string
}

func (s *checkServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.method, s.host = r.Method, r.Host
	s.mu.Unlock()
	switch r.URL.Path {
	case "/healthz":
		io.WriteString(w, "ok\n")
	case "/down":
		http.Error(w, "draining", http.StatusServiceUnavailable)
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
	case "/moved":
		http.Redirect(w, r, "/healthz", http.StatusMovedPermanently)
	default:
		http.NotFound(w, r)
	}
}

func (s *checkServer) last() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.method, s.host
}

func quietServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // probes close connections abruptly
	return srv
}

func TestHTTPProbe(t *testing.T) {
	cs := &checkServer{}
	srv := quietServer(cs)
	srv.Start()
	defer srv.Close()
	tg := Target{Addr: loopback, Port: portOf(srv.Listener.Addr())}
	ctx := context.Background()

	for _, tc := range []struct {
		spec Spec
		want string // "" means pass
	}{
		{Spec{Kind: KindHTTP, Path: "/healthz"}, ""},
		{Spec{Kind: KindHTTP, Path: "/down"}, "http GET /down: status 503"},
		{Spec{Kind: KindHTTP, Path: "/nope"}, "http GET /nope: status 404"},
		{Spec{Kind: KindHTTP, Path: "/nocontent"}, "http GET /nocontent: status 204"},
		{Spec{Kind: KindHTTP, Path: "/nocontent", Expect: []int{200, 204}}, ""},
		{Spec{Kind: KindHTTP, Path: "/moved"}, "http GET /moved: status 301"}, // not followed
		{Spec{Kind: KindHTTP, Path: "/moved", Expect: []int{301}}, ""},
		{Spec{Kind: KindHTTP, Path: "/healthz", Method: "HEAD"}, ""},
	} {
		err := mustProber(t, tc.spec).Probe(ctx, tg)
		if (tc.want == "") != (err == nil) || (err != nil && err.Error() != tc.want) {
			t.Errorf("%s %s expect %v: %v, want %q", tc.spec.Method, tc.spec.Path, tc.spec.Expect, err, tc.want)
		}
	}
	if m, _ := cs.last(); m != "HEAD" {
		t.Errorf("server saw method %q, want HEAD", m)
	}

	if err := mustProber(t, Spec{Kind: KindHTTP, Path: "/healthz", Host: "health.example:8080"}).Probe(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if _, h := cs.last(); h != "health.example:8080" {
		t.Errorf("server saw Host %q, want health.example:8080", h)
	}
	// RFC 9110: an IPv6 literal in the Host header is in brackets.
	for host, want := range map[string]string{"2001:db8::1": "[2001:db8::1]", "[2001:db8::1]": "[2001:db8::1]", "[2001:db8::1]:8080": "[2001:db8::1]:8080"} {
		if err := mustProber(t, Spec{Kind: KindHTTP, Path: "/healthz", Host: host}).Probe(ctx, tg); err != nil {
			t.Fatalf("host %q: %v", host, err)
		}
		if _, h := cs.last(); h != want {
			t.Errorf("host %q: server saw Host %q, want %q", host, h, want)
		}
	}
	if err := mustProber(t, Spec{Kind: KindHTTP, Path: "/healthz"}).Probe(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if _, h := cs.last(); h != netip.AddrPortFrom(loopback, tg.Port).String() {
		t.Errorf("server saw Host %q without Spec.Host, want the backend address", h)
	}

	// A server that accepts and never answers.
	hang := listen(t)
	holdConns(t, hang)
	err := mustProber(t, Spec{Kind: KindHTTP, Path: "/healthz", Timeout: probeTimeout}).Probe(ctx, Target{Addr: loopback, Port: tcpPort(hang)})
	if want := "http GET /healthz: timeout after 300ms"; err == nil || err.Error() != want {
		t.Errorf("hanging server: %v, want %q", err, want)
	}

	closed := closedPort(t)
	err = mustProber(t, Spec{Kind: KindHTTP}).Probe(ctx, Target{Addr: loopback, Port: closed})
	if want := fmt.Sprintf("http GET /: connect 127.0.0.1:%d: connection refused", closed); err == nil || err.Error() != want {
		t.Errorf("closed port: %v, want %q", err, want)
	}
}

// selfSigned returns a certificate for 127.0.0.1 signed by itself.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "backend.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"backend.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestHTTPSProbe(t *testing.T) {
	cs := &checkServer{}
	srv := quietServer(cs)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	srv.StartTLS()
	defer srv.Close()
	tg := Target{Addr: loopback, Port: portOf(srv.Listener.Addr())}
	ctx := context.Background()

	if err := mustProber(t, Spec{Kind: KindHTTPS, Path: "/healthz"}).Probe(ctx, tg); err != nil {
		t.Errorf("self-signed, no verification: %v", err)
	}
	if err := mustProber(t, Spec{Kind: KindHTTPS, Path: "/down"}).Probe(ctx, tg); err == nil || err.Error() != "https GET /down: status 503" {
		t.Errorf("503 over TLS: %v", err)
	}
	err := mustProber(t, Spec{Kind: KindHTTPS, Path: "/healthz", TLSVerify: true}).Probe(ctx, tg)
	if err == nil || !strings.HasPrefix(err.Error(), "https GET /healthz: ") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed with verification: %v, want a certificate error", err)
	}
	// Plain HTTP to a TLS port fails too.
	if err := mustProber(t, Spec{Kind: KindHTTP, Path: "/healthz"}).Probe(ctx, tg); err == nil || !strings.Contains(err.Error(), "status 400") {
		t.Errorf("http to https port: %v", err)
	}
}

// dnsResponder answers queries by name:
//
//	ok.test.      NOERROR with an A record
//	nx.test.      NXDOMAIN
//	fail.test.    SERVFAIL
//	refused.test. REFUSED
//	silent.test.  nothing
//	noisy.test.   first a reply with the wrong ID, then one for another
//	              question, then NOERROR
//	.             NOERROR, no records
type dnsResponder struct {
	pc net.PacketConn

	mu   sync.Mutex
	seen []dnsmessage.Question
	rd   []bool
}

func newDNSResponder(t *testing.T) *dnsResponder {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &dnsResponder{pc: pc}
	done := make(chan struct{})
	go func() { defer close(done); r.serve() }()
	t.Cleanup(func() { pc.Close(); <-done })
	return r
}

func (r *dnsResponder) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.seen = append(r.seen, q)
		r.rd = append(r.rd, h.RecursionDesired)
		r.mu.Unlock()
		send := func(id uint16, rcode dnsmessage.RCode, q dnsmessage.Question, a bool) {
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RCode: rcode, RecursionDesired: h.RecursionDesired})
			b.StartQuestions()
			b.Question(q)
			if a {
				b.StartAnswers()
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}})
			}
			msg, _ := b.Finish()
			r.pc.WriteTo(msg, from)
		}
		switch strings.ToLower(q.Name.String()) { // the answer echoes the question as asked
		case "ok.test.":
			send(h.ID, dnsmessage.RCodeSuccess, q, true)
		case "nx.test.":
			send(h.ID, dnsmessage.RCodeNameError, q, false)
		case "fail.test.":
			send(h.ID, dnsmessage.RCodeServerFailure, q, false)
		case "refused.test.":
			send(h.ID, dnsmessage.RCodeRefused, q, false)
		case "noisy.test.":
			send(h.ID+1, dnsmessage.RCodeServerFailure, q, false)
			other := q
			other.Name = dnsmessage.MustNewName("other.test.")
			send(h.ID, dnsmessage.RCodeServerFailure, other, false)
			send(h.ID, dnsmessage.RCodeSuccess, q, true)
		case ".":
			send(h.ID, dnsmessage.RCodeSuccess, q, false)
		}
	}
}

func TestDNSProbe(t *testing.T) {
	r := newDNSResponder(t)
	tg := Target{Addr: loopback, Port: portOf(r.pc.LocalAddr())}
	ctx := context.Background()
	for _, tc := range []struct {
		query string
		want  string // "" means pass
	}{
		{"ok.test", ""},
		{"OK.test.", ""}, // names compare case-insensitively
		{"nx.test", ""},
		{"noisy.test", ""}, // the wrong ID and the wrong question are skipped
		{"", ""},           // the default, "."
		{"fail.test", "dns query fail.test A: rcode SERVFAIL"},
		{"refused.test", "dns query refused.test A: rcode REFUSED"},
		{"silent.test", "dns query silent.test A: timeout after 300ms"},
	} {
		timeout := passTimeout
		if tc.query == "silent.test" {
			timeout = probeTimeout
		}
		err := mustProber(t, Spec{Kind: KindDNS, Query: tc.query, Timeout: timeout}).Probe(ctx, tg)
		if (tc.want == "") != (err == nil) || (err != nil && err.Error() != tc.want) {
			t.Errorf("query %q: %v, want %q", tc.query, err, tc.want)
		}
	}
	r.mu.Lock()
	last, rd := r.seen[len(r.seen)-1], r.rd[len(r.rd)-1]
	r.mu.Unlock()
	if last.Name.String() != "silent.test." || last.Type != dnsmessage.TypeA || last.Class != dnsmessage.ClassINET || !rd {
		t.Errorf("server saw %v (RD %v), want silent.test. A IN with RD", last, rd)
	}

	// A closed UDP port answers with ICMP port unreachable.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := portOf(pc.LocalAddr())
	pc.Close()
	err = mustProber(t, Spec{Kind: KindDNS, Query: "ok.test", Timeout: passTimeout}).Probe(ctx, Target{Addr: loopback, Port: closed})
	if want := "dns query ok.test A: connection refused"; err == nil || err.Error() != want {
		t.Errorf("closed port: %v, want %q", err, want)
	}
}

func TestMatchAnswer(t *testing.T) {
	name := dnsmessage.MustNewName("example.org.")
	build := func(h dnsmessage.Header, q *dnsmessage.Question) []byte {
		b := dnsmessage.NewBuilder(nil, h)
		b.StartQuestions()
		if q != nil {
			b.Question(*q)
		}
		m, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	q := dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	qAAAA := q
	qAAAA.Type = dnsmessage.TypeAAAA
	for _, tc := range []struct {
		name string
		msg  []byte
		ok   bool
	}{
		{"answer", build(dnsmessage.Header{ID: 7, Response: true}, &q), true},
		{"no question (FORMERR)", build(dnsmessage.Header{ID: 7, Response: true, RCode: dnsmessage.RCodeFormatError}, nil), true},
		{"no question (REFUSED)", build(dnsmessage.Header{ID: 7, Response: true, RCode: dnsmessage.RCodeRefused}, nil), true},
		{"no question, NOERROR", build(dnsmessage.Header{ID: 7, Response: true}, nil), false},
		{"no question, NXDOMAIN", build(dnsmessage.Header{ID: 7, Response: true, RCode: dnsmessage.RCodeNameError}, nil), false},
		{"NOTIFY response", build(dnsmessage.Header{ID: 7, Response: true, OpCode: 4}, &q), false},
		{"IQUERY response, no question", build(dnsmessage.Header{ID: 7, Response: true, OpCode: 1, RCode: dnsmessage.RCodeNotImplemented}, nil), false},
		{"query, not response", build(dnsmessage.Header{ID: 7}, &q), false},
		{"wrong id", build(dnsmessage.Header{ID: 8, Response: true}, &q), false},
		{"wrong type", build(dnsmessage.Header{ID: 7, Response: true}, &qAAAA), false},
		{"garbage", []byte{0, 7, 0x80}, false},
	} {
		if _, ok := matchAnswer(tc.msg, 7, name); ok != tc.ok {
			t.Errorf("%s: match %v, want %v", tc.name, ok, tc.ok)
		}
	}
}

// FuzzMatchAnswer feeds arbitrary datagrams to matchAnswer: it must not
// panic, and what it accepts must be a response to our query, with our
// question unless its RCODE is an error.
func FuzzMatchAnswer(f *testing.F) {
	name := dnsmessage.MustNewName("example.org.")
	q := dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	for _, h := range []dnsmessage.Header{
		{ID: 7, Response: true},
		{ID: 7, Response: true, RCode: dnsmessage.RCodeNameError},
		{ID: 7, Response: true, RCode: dnsmessage.RCodeFormatError},
		{ID: 7, Response: true, OpCode: 4},
	} {
		for _, withQ := range []bool{true, false} {
			b := dnsmessage.NewBuilder(nil, h)
			b.StartQuestions()
			if withQ {
				b.Question(q)
			}
			m, err := b.Finish()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(m)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		rcode, ok := matchAnswer(msg, 7, name)
		if !ok {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(msg)
		if err != nil || h.ID != 7 || !h.Response || h.OpCode != 0 || h.RCode != rcode {
			t.Fatalf("accepted %x: header %+v (%v), rcode %v", msg, h, err, rcode)
		}
		got, err := p.Question()
		if err == dnsmessage.ErrSectionDone {
			if rcode == dnsmessage.RCodeSuccess || rcode == dnsmessage.RCodeNameError {
				t.Fatalf("accepted a question-less %v: %x", rcode, msg)
			}
			return
		}
		if err != nil || got.Type != q.Type || got.Class != q.Class || !strings.EqualFold(got.Name.String(), name.String()) {
			t.Fatalf("accepted %x with question %+v (%v)", msg, got, err)
		}
	})
}

func TestVIPProberRunsBoth(t *testing.T) {
	dsr := &recordingDSR{err: errors.New("dsr probe VIP 10.0.0.100:80 via 02:00:00:00:00:12: no SYN-ACK (is the VIP on the server's lo?)")}
	ln := listen(t)
	p, err := NewProber(Spec{Kind: KindTCP, VIP: true, Timeout: passTimeout}, dsr)
	if err != nil {
		t.Fatal(err)
	}
	tg := Target{Addr: loopback, Port: tcpPort(ln), VIP: netip.MustParseAddr("10.0.0.100"), MAC: [6]byte{2, 0, 0, 0, 0, 0x12}}
	err = p.Probe(context.Background(), tg)
	if err == nil || err.Error() != dsr.err.Error() {
		t.Fatalf("real address up, DSR path down: %v", err)
	}
	if dsr.vip != tg.VIP || dsr.port != tg.Port || dsr.mac != tg.MAC {
		t.Fatalf("DSR probe of %v:%d via %x, want %v:%d via %x", dsr.vip, dsr.port, dsr.mac, tg.VIP, tg.Port, tg.MAC)
	}
	dsr.err = nil
	if err := p.Probe(context.Background(), tg); err != nil {
		t.Fatalf("both up: %v", err)
	}
	ln.Close()
	err = p.Probe(context.Background(), tg)
	if err == nil || !strings.HasPrefix(err.Error(), "tcp connect 127.0.0.1:") {
		t.Fatalf("real address down, DSR path up: %v", err)
	}
	if err := p.Probe(context.Background(), Target{Addr: loopback, Port: 80}); err == nil || !strings.Contains(err.Error(), "no VIP or MAC") {
		t.Fatalf("target without VIP: %v", err)
	}
}

type recordingDSR struct {
	err  error
	vip  netip.Addr
	port uint16
	mac  [6]byte
}

func (r *recordingDSR) ProbeDSR(ctx context.Context, vip netip.Addr, port uint16, mac [6]byte) error {
	r.vip, r.port, r.mac = vip, port, mac
	return r.err
}
