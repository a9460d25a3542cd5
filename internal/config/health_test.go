package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHealthConfig(t *testing.T) {
	c, err := Parse([]byte(`
interface: eth0
admin: "127.0.0.1:9999"
drain_timeout: 30s
services:
  - name: web
    vip: 10.0.0.100
    port: 80
    health:
      kind: http
      path: /healthz
      expect: [200, 204]
      interval: 500ms
      timeout: 200ms
      rise: 1
      fall: 2
    backends:
      - address: 10.0.0.11
      - address: 10.0.0.12
        health:
          port: 8080
          vip: true
  - name: dns
    vip: 10.0.0.53
    protocol: udp
    backends:
      - address: 10.0.0.11
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin != "127.0.0.1:9999" || c.DrainTimeout != 30*time.Second {
		t.Errorf("admin %q drain %v", c.Admin, c.DrainTimeout)
	}
	web := c.Services[0]
	h := web.Health
	if h.Kind != "http" || h.Path != "/healthz" || !slices.Equal(h.Expect, []int{200, 204}) || h.Interval != 500*time.Millisecond ||
		h.Timeout != 200*time.Millisecond || h.Rise != 1 || h.Fall != 2 || h.Method != "GET" || h.Port != 0 || h.VIP {
		t.Errorf("service health %+v", h)
	}
	if b := web.Backends[0].Health; !b.equal(&h) {
		t.Errorf("backend without overrides: %+v, want the service's %+v", b, h)
	}
	o := web.Backends[1].Health
	if o.Port != 8080 || !o.VIP || o.Kind != "http" || o.Path != "/healthz" || o.Interval != 500*time.Millisecond {
		t.Errorf("backend override: %+v", o)
	}
	if c.Services[1].Health.Kind != "none" {
		t.Errorf("service without health block: %q, want none", c.Services[1].Health.Kind)
	}
}

func TestHealthConfigErrors(t *testing.T) {
	base := "interface: eth0\nservices:\n  - name: web\n    vip: 10.0.0.100\n    port: 80\n    health:\n%s    backends:\n      - address: 10.0.0.11\n"
	for _, c := range []struct{ block, want string }{
		{"      kind: smtp\n", `services[0].health.kind: "smtp" is not a health check kind: use none, tcp, http, https, dns (line 7)`},
		{"      interval: 10ms\n      timeout: 5ms\n", `services[0].health.interval: must be at least 100ms, got 10ms (line 7)`},
		{"      interval: 1s\n      timeout: 2s\n", `services[0].health.timeout: must be positive and at most the interval (1s), got 2s (line 8)`},
		{"      kind: http\n      path: healthz\n", `services[0].health.path: "healthz" must start with / (line 8)`},
		{"      kind: http\n      expect: [200, 700]\n", `services[0].health.expect: must be between 100 and 599, got 700 (line 8)`},
		{"      rise: 0\n", `services[0].health.rise: must be between 1 and 100, got 0 (line 7)`},
		{"      vip: maybe\n", `services[0].health.vip: must be true or false, got "maybe" (line 7)`},
		{"      color: red\n", `services[0].health.color: unknown key (line 7)`},
		// What healthcheck.NewProber would refuse is refused here, so that
		// a check the config accepts is one the engine can start.
		{"      kind: http\n      path: /a b\n", `services[0].health.path: "/a b" is not a request path (line 8)`},
		{"      kind: https\n      host: my host\n", `services[0].health.host: "my host" is not a host name or address, with an optional port (line 8)`},
		{"      kind: dns\n      query: a..b\n", `services[0].health.query: "a..b" is not a domain name (empty or over-long label) (line 8)`},
		// kind none starts no check, so the DSR-path probe would never run.
		{"      kind: none\n      vip: true\n", `services[0].health.vip: needs a health check kind other than none (tcp, http, https or dns): the DSR-path check runs beside that check, and the backend is up only if both pass (line 8)`},
	} {
		_, err := Parse([]byte(strings.Replace(base, "%s", c.block, 1)))
		var errs Errors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Error() != c.want {
			t.Errorf("%q:\n got %v\nwant %s", c.block, err, c.want)
		}
	}
}

// A backend's vip: true with kind none is refused at the backend, and a
// backend's kind: none turns off the DSR-path check it would inherit.
func TestHealthVIPNeedsAKind(t *testing.T) {
	const base = "interface: eth0\nservices:\n  - name: web\n    vip: 10.0.0.100\n    port: 80\n    health: {kind: tcp, vip: true}\n    backends:\n      - address: 10.0.0.11\n        health: %s\n"
	_, err := Parse([]byte(strings.Replace(base, "%s", "{kind: none, vip: true}", 1)))
	want := "services[0].backends[0].health.vip: needs a health check kind other than none"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("backend {kind: none, vip: true}: %v, want %q", err, want)
	}
	c, err := Parse([]byte(strings.Replace(base, "%s", "{kind: none}", 1)))
	if err != nil {
		t.Fatalf("backend {kind: none} under a vip: true service: %v", err)
	}
	if h := c.Services[0].Backends[0].Health; h.Kind != "none" || h.VIP {
		t.Errorf("backend {kind: none}: kind %q vip %v, want none without the DSR-path check", h.Kind, h.VIP)
	}
	if h := c.Services[0].Health; h.Kind != "tcp" || !h.VIP {
		t.Errorf("service: kind %q vip %v, want tcp with the DSR-path check", h.Kind, h.VIP)
	}
}

// More backends over all services than the dataplane has counter slots for
// are refused.
func TestTooManyBackends(t *testing.T) {
	config := func(extra int) []byte {
		var b strings.Builder
		b.WriteString("interface: eth0\nservices:\n")
		for svc := range 2 {
			fmt.Fprintf(&b, "  - name: s%d\n    vip: 10.0.%d.100\n    port: 80\n    table_size: 4099\n    backends:\n", svc, svc)
			for i := range MaxBackends/2 + svc*extra {
				fmt.Fprintf(&b, "      - address: 10.%d.%d.%d\n", 1+svc, i>>8, i&255)
			}
		}
		return []byte(b.String())
	}
	if _, err := Parse(config(0)); err != nil {
		t.Fatalf("Parse with %d backends: %v", MaxBackends, err)
	}
	_, err := Parse(config(1))
	want := fmt.Sprintf("services: %d backends over all services: at most %d", MaxBackends+1, MaxBackends)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse with %d backends: %v\nwant %q", MaxBackends+1, err, want)
	}
}

func TestHealthPortNeededForPortZeroService(t *testing.T) {
	_, err := Parse([]byte("interface: eth0\nservices:\n  - name: all\n    vip: 10.0.0.100\n    health:\n      kind: tcp\n    backends:\n      - address: 10.0.0.11\n"))
	if err == nil || !strings.Contains(err.Error(), "services[0].health.port: required: the service has no port of its own (port 0 = every port)") {
		t.Fatalf("got %v", err)
	}
}
