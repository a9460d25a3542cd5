package healthcheck

import (
	"context"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	got := Spec{Kind: KindHTTPS}.WithDefaults()
	want := Spec{Kind: KindHTTPS, Path: "/", Method: "GET", Expect: []int{200},
		Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("https defaults:\n got %+v\nwant %+v", got, want)
	}
	if got := (Spec{Kind: KindDNS}).WithDefaults(); got.Query != "." || got.Path != "" {
		t.Fatalf("dns defaults: %+v", got)
	}
	set := Spec{Kind: KindHTTP, Path: "/h", Method: "HEAD", Expect: []int{204}, Interval: 5 * time.Second, Timeout: 3 * time.Second, Rise: 1, Fall: 7}
	if got := set.WithDefaults(); !reflect.DeepEqual(got, set) {
		t.Fatalf("set fields changed: %+v", got)
	}
}

type nopDSR struct{}

func (nopDSR) ProbeDSR(context.Context, netip.Addr, uint16, [6]byte) error { return nil }

func TestNewProberRejects(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		dsr  DSRProber
		want string
	}{
		{Spec{}, nil, `kind: "" is not one of`},
		{Spec{Kind: "icmp"}, nil, `kind: "icmp" is not one of`},
		{Spec{Kind: KindNone}, nil, "kind: none has nothing to probe"},
		{Spec{Kind: KindTCP, Interval: -time.Second}, nil, "interval: -1s is not positive"},
		{Spec{Kind: KindTCP, Timeout: -1}, nil, "timeout: -1ns is not positive"},
		{Spec{Kind: KindTCP, Rise: -1}, nil, "rise: -1, want at least 1"},
		{Spec{Kind: KindTCP, Fall: -2}, nil, "fall: -2, want at least 1"},
		{Spec{Kind: KindHTTP, Path: "healthz"}, nil, `path: "healthz" does not start with /`},
		{Spec{Kind: KindHTTP, Path: "/a b"}, nil, `path: "/a b" is not a request path`},
		{Spec{Kind: KindHTTP, Method: "GE T"}, nil, `method: "GE T" is not an HTTP method`},
		{Spec{Kind: KindHTTPS, Host: "a b"}, nil, `host: "a b" is not a host name`},
		{Spec{Kind: KindHTTPS, Host: "example.org:x"}, nil, `host: "example.org:x"`},
		{Spec{Kind: KindHTTP, Expect: []int{200, 42}}, nil, "expect: 42 is not an HTTP status code"},
		{Spec{Kind: KindDNS, Query: "a..b"}, nil, `query: "a..b" is not a domain name`},
		{Spec{Kind: KindDNS, Query: strings.Repeat("a", 64) + ".org"}, nil, "is not a domain name"},
		{Spec{Kind: KindTCP, VIP: true}, nil, "vip: the DSR-path probe needs a DSR prober"},
		{Spec{Kind: KindNone, VIP: true}, nopDSR{}, "kind: none"},
	} {
		_, err := NewProber(tc.spec, tc.dsr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewProber(%+v): %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
	for _, s := range []Spec{
		{Kind: KindTCP},
		{Kind: KindHTTP, Path: "/healthz?full=1", Method: "HEAD", Host: "www.example.org:8080", Expect: []int{200, 301}},
		{Kind: KindHTTPS, Host: "[2001:db8::1]:443", TLSVerify: true},
		{Kind: KindDNS, Query: "example.org"},
		{Kind: KindDNS, Query: "example.org."},
		{Kind: KindTCP, VIP: true},
	} {
		if _, err := NewProber(s, nopDSR{}); err != nil {
			t.Errorf("NewProber(%+v): %v", s, err)
		}
	}
}

func TestSpecName(t *testing.T) {
	tg := Target{Addr: netip.MustParseAddr("10.0.0.12"), Port: 80, VIP: netip.MustParseAddr("10.0.0.100"), MAC: [6]byte{2, 0, 0, 0, 0, 0x12}}
	for _, tc := range []struct {
		s    Spec
		want string
	}{
		{Spec{Kind: KindTCP}, "tcp connect 10.0.0.12:80"},
		{Spec{Kind: KindTCP, Port: 8080}, "tcp connect 10.0.0.12:8080"},
		{Spec{Kind: KindHTTPS, Path: "/healthz"}, "https GET /healthz"},
		{Spec{Kind: KindDNS, Query: "example.org"}, "dns query example.org A"},
		{Spec{Kind: KindTCP, VIP: true}, "tcp connect 10.0.0.12:80 and dsr probe VIP 10.0.0.100:80 via 02:00:00:00:00:12"},
	} {
		if got := tc.s.WithDefaults().name(tg); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, tc := range []struct {
		host       string
		ok         bool
		header     string // what the Host header carries, if ok
		serverName string // the TLS server name, if ok
	}{
		{"example.org", true, "example.org", "example.org"},
		{"example.org.", true, "example.org.", "example.org."},
		{"www.example.org:8080", true, "www.example.org:8080", "www.example.org"},
		{"10.0.0.1", true, "10.0.0.1", "10.0.0.1"},
		{"10.0.0.1:80", true, "10.0.0.1:80", "10.0.0.1"},
		{"2001:db8::1", true, "[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1:80", true, "[2001:db8::1:80]", "2001:db8::1:80"}, // an address: a port needs brackets
		{"::ffff:10.0.0.1", true, "[::ffff:10.0.0.1]", "::ffff:10.0.0.1"},
		{"[2001:db8::1]", true, "[2001:db8::1]", "2001:db8::1"},
		{"[2001:db8::1]:443", true, "[2001:db8::1]:443", "2001:db8::1"},
		{"", false, "", ""},
		{"a b", false, "", ""},
		{"example.org:", false, "", ""},
		{"example.org:x", false, "", ""},
		{"example.org:65536", false, "", ""},
		{"example.org:80:80", false, "", ""},
		{"[2001:db8::1", false, "", ""},
		{"2001:db8::1]", false, "", ""},
		{"[2001:db8::1]80", false, "", ""},
		{"[2001:db8::1]:", false, "", ""},
		{"[10.0.0.1]", false, "", ""},
		{"[example.org]:80", false, "", ""},
		{"[]", false, "", ""},
		{"fe80::1%eth0", false, "", ""},
		{"[fe80::1%eth0]:80", false, "", ""},
		{"2001:db8::g:80", false, "", ""},
	} {
		if got := validHost(tc.host); got != tc.ok {
			t.Errorf("validHost(%q) = %v, want %v", tc.host, got, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if got := hostHeader(tc.host); got != tc.header {
			t.Errorf("hostHeader(%q) = %q, want %q", tc.host, got, tc.header)
		}
		if got := tlsServerName(tc.host); got != tc.serverName {
			t.Errorf("tlsServerName(%q) = %q, want %q", tc.host, got, tc.serverName)
		}
	}
}

// FuzzValidHost: a host that validates makes a Host header that a URL
// parser takes whole, with the TLS server name as its host name.
func FuzzValidHost(f *testing.F) {
	for _, h := range []string{"example.org", "www.example.org:8080", "10.0.0.1:80", "2001:db8::1", "[2001:db8::1]:443", "[2001:db8::1", "fe80::1%eth0", "a_b.example:0"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if !validHost(h) {
			return
		}
		hdr := hostHeader(h)
		u, err := url.Parse("http://" + hdr + "/")
		if err != nil || u.Host != hdr {
			t.Fatalf("valid host %q sends Host %q, which parses as %+v (%v)", h, hdr, u, err)
		}
		if name := tlsServerName(h); name != u.Hostname() {
			t.Fatalf("valid host %q: TLS server name %q, want %q", h, name, u.Hostname())
		}
	})
}
