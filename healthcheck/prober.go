package healthcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// Prober performs one probe. Probe returns nil if the backend passed, or an
// error that says exactly what failed, such as "http GET /healthz: status
// 503" or "tcp connect 10.0.0.12:80: connection refused". Probe returns once
// ctx is done or the spec's Timeout has passed, whichever is first. A Prober
// may be shared by the checks of many backends: Probe is safe for
// concurrent use. A [Checker] calls Probe on a goroutine of its own and
// counts a call that overruns Timeout by another Timeout as failed.
type Prober interface {
	Probe(ctx context.Context, t Target) error
}

// DSRProber performs the DSR-path probe of a backend: is the service at
// vip:port reachable through the backend's MAC, as clients reach it through
// the balancer? See [PacketDSRProber].
type DSRProber interface {
	ProbeDSR(ctx context.Context, vip netip.Addr, port uint16, mac [6]byte) error
}

// NewProber returns the prober for s (defaults applied). dsr performs the
// DSR-path probe when s.VIP is set and may be nil otherwise. It rejects a
// spec it cannot probe with: KindNone, an unknown kind, or an unusable value.
func NewProber(s Spec, dsr DSRProber) (Prober, error) {
	s = s.WithDefaults()
	err := s.Validate()
	if s.VIP && dsr == nil {
		err = errors.Join(err, errors.New("vip: the DSR-path probe needs a DSR prober (the balancer's packet sockets)"))
	}
	if err != nil {
		return nil, fmt.Errorf("health check spec: %w", err)
	}
	var p Prober
	switch s.Kind {
	case KindTCP:
		p = &tcpProber{spec: s}
	case KindHTTP, KindHTTPS:
		p = newHTTPProber(s)
	case KindDNS:
		p, err = newDNSProber(s)
		if err != nil {
			return nil, fmt.Errorf("health check spec: %w", err)
		}
	}
	if s.VIP {
		p = &vipProber{spec: s, base: p, dsr: dsr}
	}
	return p, nil
}

var (
	_ Prober = (*tcpProber)(nil)
	_ Prober = (*httpProber)(nil)
	_ Prober = (*dnsProber)(nil)
	_ Prober = (*vipProber)(nil)
)

// checkTarget returns the address and port a probe of s goes to.
func checkTarget(s Spec, t Target) (netip.AddrPort, error) {
	if !t.Addr.IsValid() {
		return netip.AddrPort{}, errors.New("no backend address")
	}
	port := s.port(t)
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("backend %s: no port (neither the check nor the service has one)", t.Addr)
	}
	return netip.AddrPortFrom(t.Addr.Unmap(), port), nil
}

// tcpProber completes a TCP handshake and closes the connection. A server
// whose listener is up but never accepts still passes: the kernel completes
// handshakes into the accept queue until it is full, and only then do
// probes time out.
type tcpProber struct{ spec Spec }

func (p *tcpProber) Probe(ctx context.Context, t Target) error {
	ap, err := checkTarget(p.spec, t)
	if err != nil {
		return fmt.Errorf("tcp connect: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return fmt.Errorf("tcp connect %s: %w", ap, netFailure(ctx, err, p.spec.Timeout))
	}
	c.Close()
	return nil
}

// vipProber runs a kind's probe to the real address and the DSR-path probe
// at once; both must pass. The kind's probe runs on the calling goroutine,
// so its socket is made in the caller's network namespace.
type vipProber struct {
	spec Spec
	base Prober
	dsr  DSRProber
}

func (p *vipProber) Probe(ctx context.Context, t Target) error {
	if !t.VIP.IsValid() || t.MAC == [6]byte{} {
		return fmt.Errorf("dsr probe: backend %s has no VIP or MAC to probe through", t.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	dsrErr := make(chan error, 1)
	go func() { dsrErr <- p.dsr.ProbeDSR(ctx, t.VIP, p.spec.port(t), t.MAC) }()
	var errs []string
	if err := p.base.Probe(ctx, t); err != nil {
		errs = append(errs, err.Error())
	}
	if err := <-dsrErr; err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// timeoutError is what a probe reports when its time ran out.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string { return "timeout after " + e.d.String() }
func (e timeoutError) Timeout() bool { return true }

// netFailure turns a dial, read or HTTP error into the short cause a reason
// needs: "connection refused", "timeout after 1s", "tls: failed to verify
// certificate: ...". The result wraps err, so errors.Is still finds the
// syscall error.
func netFailure(ctx context.Context, err error, timeout time.Duration) error {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return timeoutError{timeout}
	}
	var cert *tls.CertificateVerificationError
	if errors.As(err, &cert) {
		return cert
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}
