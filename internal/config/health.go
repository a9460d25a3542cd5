package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsrlb/dsrlb/healthcheck"
)

// Health configures the health check of a service's backends. A backend's
// own health block overrides the fields it sets.
type Health struct {
	// Kind is none, tcp, http, https or dns.
	Kind string
	// Port is the port probed; 0 means the service port.
	Port uint16
	// Path, Method, Host and Expect apply to http and https.
	Path, Method, Host string
	Expect             []int
	// TLSVerify verifies an https server's certificate (off by default:
	// servers often present self-signed certificates).
	TLSVerify bool
	// Query is the name a dns check asks for (type A).
	Query string
	// VIP adds the DSR-path probe, which probes the service as clients
	// reach it: to the VIP, through the backend's MAC (see
	// healthcheck.DSRProber). It runs beside the kind's probe, so it needs a
	// kind other than none. A block that sets kind: none without vip turns
	// it off with the other checks.
	VIP bool
	// Interval between probes, Timeout of one probe; Rise successes bring a
	// backend up, Fall failures take it down.
	Interval, Timeout time.Duration
	Rise, Fall        int
}

// Health defaults, in the spirit of keepalived and HAProxy.
const (
	defaultHealthInterval = 2 * time.Second
	defaultHealthTimeout  = time.Second
	defaultHealthRise     = 2
	defaultHealthFall     = 3
	minHealthInterval     = 100 * time.Millisecond
	maxRiseFall           = 100
)

var healthKinds = []string{"none", "tcp", "http", "https", "dns"}

var healthKeys = []string{"kind", "port", "path", "method", "host", "expect", "tls_verify", "query", "vip", "interval", "timeout", "rise", "fall"}

// defaultHealth is what a service without a health block gets: no checks.
func defaultHealth() Health {
	return Health{Kind: "none", Path: "/", Method: "GET", Expect: []int{200},
		Interval: defaultHealthInterval, Timeout: defaultHealthTimeout, Rise: defaultHealthRise, Fall: defaultHealthFall}
}

// health decodes a health block on top of base. at names a field of the
// block ("health.kind" and so on) where it stands.
func (d *decoder) health(at func(name string) field, n *yaml.Node, base Health) Health {
	h := base
	h.Expect = slices.Clone(base.Expect)
	if !d.mapping(at("health"), n) {
		return h
	}
	m := d.fields(n, at("health").path(), healthKeys)
	if m["kind"] == nil && base.Kind == "none" {
		h.Kind = "tcp" // a health block without a kind checks that the port accepts
	}
	if v, ok := d.str(at("health.kind"), m["kind"]); ok {
		h.Kind = strings.ToLower(v)
		if h.Kind == "none" && m["vip"] == nil {
			// No checks at all: an inherited vip: true has nothing to run
			// beside.
			h.VIP = false
		}
	}
	if v, ok := d.integer(at("health.port"), m["port"], 0, 65535); ok {
		h.Port = uint16(v)
	}
	for key, dst := range map[string]*string{"path": &h.Path, "method": &h.Method, "host": &h.Host, "query": &h.Query} {
		if v, ok := d.str(at("health."+key), m[key]); ok {
			*dst = v
		}
	}
	if en := m["expect"]; d.list(at("health.expect"), en) {
		h.Expect = h.Expect[:0]
		for _, c := range en.Content {
			if v, ok := d.integer(at("health.expect"), c, 100, 599); ok {
				h.Expect = append(h.Expect, int(v))
			}
		}
	}
	if v, ok := d.boolean(at("health.tls_verify"), m["tls_verify"]); ok {
		h.TLSVerify = v
	}
	if v, ok := d.boolean(at("health.vip"), m["vip"]); ok {
		h.VIP = v
	}
	if v, ok := d.duration(at("health.interval"), m["interval"]); ok {
		h.Interval = v
	}
	if v, ok := d.duration(at("health.timeout"), m["timeout"]); ok {
		h.Timeout = v
	}
	if v, ok := d.integer(at("health.rise"), m["rise"], 1, maxRiseFall); ok {
		h.Rise = int(v)
	}
	if v, ok := d.integer(at("health.fall"), m["fall"], 1, maxRiseFall); ok {
		h.Fall = int(v)
	}
	return h
}

func (d *decoder) boolean(f field, n *yaml.Node) (bool, bool) {
	if !d.present(f, n) {
		return false, false
	}
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		d.fail(f, n, "must be true or false, got "+describe(n))
		return false, false
	}
	return v, true
}

// Spec is the check as the healthcheck package takes it.
func (h *Health) Spec() healthcheck.Spec {
	return healthcheck.Spec{
		Kind: healthcheck.Kind(h.Kind), Port: h.Port, Path: h.Path, Method: h.Method, Host: h.Host,
		Expect: slices.Clone(h.Expect), TLSVerify: h.TLSVerify, Query: h.Query, VIP: h.VIP,
		Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
	}
}

// validateHealth checks a decoded health block at field prefix at, of a
// service on servicePort.
func validateHealth(r *report, at func(name string) field, h *Health, servicePort uint16) {
	before := len(r.errs)
	defer func() {
		// What passed the checks above must also be a check the engine can
		// start: healthcheck validates request paths, Host and DNS names.
		if len(r.errs) > before || h.Kind == "none" {
			return
		}
		if err := h.Spec().WithDefaults().Validate(); err != nil {
			for _, msg := range strings.Split(err.Error(), "\n") {
				name, text, _ := strings.Cut(msg, ": ")
				r.add(at("health."+name), text)
			}
		}
	}()
	if !slices.Contains(healthKinds, h.Kind) {
		r.add(at("health.kind"), fmt.Sprintf("%q is not a health check kind: use %s", h.Kind, strings.Join(healthKinds, ", ")))
	}
	if h.Kind == "none" {
		if h.VIP {
			// The engine starts no check for kind none, so the DSR-path
			// probe the user asked for would never run.
			r.add(at("health.vip"), "needs a health check kind other than none (tcp, http, https or dns): the DSR-path check runs beside that check, and the backend is up only if both pass")
		}
		return
	}
	if h.Port == 0 && servicePort == 0 {
		r.add(at("health.port"), "required: the service has no port of its own (port 0 = every port)")
	}
	if h.Interval < minHealthInterval {
		r.add(at("health.interval"), "must be at least "+minHealthInterval.String()+", got "+h.Interval.String())
	}
	if h.Timeout <= 0 || h.Timeout > h.Interval {
		r.add(at("health.timeout"), fmt.Sprintf("must be positive and at most the interval (%s), got %s", h.Interval, h.Timeout))
	}
	if h.Kind == "http" || h.Kind == "https" {
		if !strings.HasPrefix(h.Path, "/") {
			r.add(at("health.path"), fmt.Sprintf("%q must start with /", h.Path))
		}
		if !slices.Contains([]string{"GET", "HEAD", "POST", "OPTIONS"}, h.Method) {
			r.add(at("health.method"), fmt.Sprintf("%q is not a method: use GET, HEAD, POST or OPTIONS", h.Method))
		}
		if len(h.Expect) == 0 {
			r.add(at("health.expect"), "at least one status code is required")
		}
	}
}

func (h *Health) equal(o *Health) bool {
	type plain struct {
		Kind                  string
		Port                  uint16
		Path, Method, Host, Q string
		TLSVerify, VIP        bool
		Interval, Timeout     time.Duration
		Rise, Fall            int
	}
	p := func(x *Health) plain {
		return plain{x.Kind, x.Port, x.Path, x.Method, x.Host, x.Query, x.TLSVerify, x.VIP, x.Interval, x.Timeout, x.Rise, x.Fall}
	}
	return p(h) == p(o) && slices.Equal(h.Expect, o.Expect)
}
