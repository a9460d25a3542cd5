package healthcheck

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Kind says what a check does.
type Kind string

// The kinds of check.
const (
	KindNone  Kind = "none"  // no check: the backend is always up
	KindTCP   Kind = "tcp"   // a TCP handshake to the backend's real address
	KindHTTP  Kind = "http"  // an HTTP/1.1 request; the status code decides
	KindHTTPS Kind = "https" // the same over TLS
	KindDNS   Kind = "dns"   // a DNS query over UDP; the RCODE decides
)

// Defaults applied by [Spec.WithDefaults].
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultPath     = "/"
	DefaultMethod   = "GET"
	DefaultQuery    = "." // see Spec.Query
)

// Spec is one check's configuration.
type Spec struct {
	Kind Kind
	// Port is the port probed; 0 means the service port (Target.Port).
	Port uint16

	// Path, Method, Host, Expect and TLSVerify are valid for http and https.
	Path      string // request path, with an optional query; default "/"
	Method    string // default "GET"
	Host      string // Host header (and TLS server name); empty means the backend's address. A bare IPv6 address is sent in brackets
	Expect    []int  // accepted status codes; default [200]. Redirects are not followed.
	TLSVerify bool   // https: verify the certificate chain and name (needs an IP SAN without Host)

	// Query is valid for dns: the name asked for, with type A and RD set. The
	// default "." suits recursive resolvers, which answer it from the root
	// zone they always hold (NOERROR, no answer records). An authoritative-only
	// server answers REFUSED for names outside its zones: give it a name in one
	// of them.
	Query string

	// VIP adds the DSR-path probe (see the package doc) to the check: the
	// backend is up only if both pass. Not valid with KindNone.
	VIP bool

	Interval time.Duration // between probe starts, ±10% jitter; default 2s
	Timeout  time.Duration // bound on one probe; default 1s
	Rise     int           // consecutive passes that bring a down backend up; default 2
	Fall     int           // consecutive failures that take an up backend down; default 3
}

// WithDefaults returns s with every unset field given its default. Fields
// of other kinds stay as they are.
func (s Spec) WithDefaults() Spec {
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	switch s.Kind {
	case KindHTTP, KindHTTPS:
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if s.Method == "" {
			s.Method = DefaultMethod
		}
		if len(s.Expect) == 0 {
			s.Expect = []int{200}
		}
	case KindDNS:
		if s.Query == "" {
			s.Query = DefaultQuery
		}
	}
	return s
}

// Validate reports every unusable field of a spec that has its defaults
// (see WithDefaults), each error naming its field. NewProber refuses a spec
// that fails it.
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch s.Kind {
	case KindTCP, KindHTTP, KindHTTPS, KindDNS:
	case KindNone:
		bad("kind", "none has nothing to probe")
	default:
		bad("kind", "%q is not one of none, tcp, http, https, dns", s.Kind)
	}
	if s.Interval <= 0 {
		bad("interval", "%s is not positive", s.Interval)
	}
	if s.Timeout <= 0 {
		bad("timeout", "%s is not positive", s.Timeout)
	}
	if s.Rise < 1 {
		bad("rise", "%d, want at least 1", s.Rise)
	}
	if s.Fall < 1 {
		bad("fall", "%d, want at least 1", s.Fall)
	}
	if s.Kind == KindHTTP || s.Kind == KindHTTPS {
		if !strings.HasPrefix(s.Path, "/") {
			bad("path", "%q does not start with /", s.Path)
		} else if _, err := url.ParseRequestURI(s.Path); err != nil || strings.ContainsAny(s.Path, " \t#") {
			bad("path", "%q is not a request path", s.Path)
		}
		if !isToken(s.Method) {
			bad("method", "%q is not an HTTP method", s.Method)
		}
		if s.Host != "" && !validHost(s.Host) {
			bad("host", "%q is not a host name or address, with an optional port", s.Host)
		}
		for _, c := range s.Expect {
			if c < 100 || c > 599 {
				bad("expect", "%d is not an HTTP status code", c)
			}
		}
	}
	if s.Kind == KindDNS {
		if _, err := dnsName(s.Query); err != nil {
			bad("query", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// isToken reports whether m is an RFC 9110 token, as an HTTP method must be.
func isToken(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHost accepts a DNS name or an IPv4 address with an optional port, or
// an IPv6 address without a zone: bare (hostHeader brackets it), or in
// brackets with an optional port. A bare IPv6 address is never split at its
// last colon: "2001:db8::1:80" is an address, with a port it is
// "[2001:db8::1]:80".
func validHost(h string) bool {
	if lit, ok := strings.CutPrefix(h, "["); ok {
		lit, rest, ok := strings.Cut(lit, "]")
		if !ok {
			return false
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		port, hasPort := strings.CutPrefix(rest, ":")
		return rest == "" || hasPort && validPort(port)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	host := h
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i+1:]) {
			return false
		}
		host = h[:i]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Is4() // an IPv6 address with a port needs brackets
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validPort reports whether p is a decimal port number, 0 to 65535.
func validPort(p string) bool {
	if p == "" || strings.Trim(p, "0123456789") != "" {
		return false
	}
	_, err := strconv.ParseUint(p, 10, 16)
	return err == nil
}

// hostHeader returns a valid Spec.Host as the Host header sends it (RFC
// 9110 7.2, RFC 3986 3.2.2): a bare IPv6 address in brackets, anything
// else as it is.
func hostHeader(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		return "[" + h + "]"
	}
	return h
}

// tlsServerName returns the TLS server name for a valid Spec.Host: the
// host without its port or brackets.
func tlsServerName(h string) string {
	h = hostHeader(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// dnsName returns q as a fully qualified dnsmessage.Name.
func dnsName(q string) (dnsmessage.Name, error) {
	fq := q
	if !strings.HasSuffix(fq, ".") {
		fq += "."
	}
	if fq != "." {
		for _, label := range strings.Split(strings.TrimSuffix(fq, "."), ".") {
			if label == "" || len(label) > 63 {
				return dnsmessage.Name{}, fmt.Errorf("%q is not a domain name (empty or over-long label)", q)
			}
		}
	}
	n, err := dnsmessage.NewName(fq)
	if err != nil || len(fq) > 254 {
		return dnsmessage.Name{}, fmt.Errorf("%q is not a domain name (longer than 253 bytes)", q)
	}
	return n, nil
}

// Target is what one check probes.
type Target struct {
	Addr netip.Addr // the backend's real address
	Port uint16     // the service port, used when Spec.Port is 0
	VIP  netip.Addr // the service VIP; needed by the DSR-path probe
	MAC  [6]byte    // the backend's MAC; needed by the DSR-path probe
}

// port returns the port a check of s probes on t.
func (s Spec) port(t Target) uint16 {
	if s.Port != 0 {
		return s.Port
	}
	return t.Port
}

// name says what a probe of s does to t, for reasons: "tcp connect
// 10.0.0.12:80", "http GET /healthz", "dns query example.org A", followed
// by " and dsr probe VIP ..." with VIP set.
func (s Spec) name(t Target) string {
	var n string
	switch s.Kind {
	case KindTCP:
		n = "tcp connect " + netip.AddrPortFrom(t.Addr, s.port(t)).String()
	case KindHTTP, KindHTTPS:
		n = string(s.Kind) + " " + s.Method + " " + s.Path
	case KindDNS:
		n = "dns query " + s.Query + " A"
	default:
		n = string(s.Kind)
	}
	if s.VIP {
		n += " and " + dsrName(t.VIP, s.port(t), t.MAC)
	}
	return n
}
