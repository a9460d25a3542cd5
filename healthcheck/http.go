package healthcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
)

// httpProber sends one request per probe on a new connection and checks
// the status code. It reads no body.
type httpProber struct {
	spec   Spec
	client *http.Client
}

func newHTTPProber(s Spec) *httpProber {
	tlsConf := &tls.Config{InsecureSkipVerify: !s.TLSVerify}
	if s.Host != "" {
		tlsConf.ServerName = tlsServerName(s.Host)
	}
	return &httpProber{spec: s, client: &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // never the environment's proxy
			TLSClientConfig:        tlsConf,
			DisableKeepAlives:      true, // every probe tests the server's accept path
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		// A redirect is an answer like any other: Expect decides.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (p *httpProber) Probe(ctx context.Context, t Target) error {
	s := p.spec
	what := string(s.Kind) + " " + s.Method + " " + s.Path
	ap, err := checkTarget(s, t)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, s.Method, string(s.Kind)+"://"+ap.String()+s.Path, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if s.Host != "" {
		req.Host = hostHeader(s.Host)
	}
	req.Header.Set("User-Agent", "dsrlb-healthcheck")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, httpFailure(ctx, err, ap, s))
	}
	resp.Body.Close()
	if !slices.Contains(s.Expect, resp.StatusCode) {
		return fmt.Errorf("%s: status %d", what, resp.StatusCode)
	}
	return nil
}

// httpFailure names the connection a failed dial was for.
func httpFailure(ctx context.Context, err error, ap fmt.Stringer, s Spec) error {
	f := netFailure(ctx, err, s.Timeout)
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" && ctx.Err() == nil {
		return fmt.Errorf("connect %s: %w", ap, f)
	}
	return f
}
