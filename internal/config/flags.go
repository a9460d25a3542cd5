package config

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// ParseVIP parses a --vip value: ADDR[:PORT][/PROTO], with IPv6 addresses in
// brackets when a port follows ("[2001:db8::100]:80/tcp"). No port means
// every port (0); no protocol means tcp. The address must be usable as a VIP
// (see doc.go).
func ParseVIP(s string) (netip.Addr, uint16, Protocol, error) {
	a, port, p, msg := parseVIP(s)
	if msg != "" {
		return netip.Addr{}, 0, 0, fmt.Errorf("parse vip %q: %s", s, msg)
	}
	return a, port, p, nil
}

func parseVIP(s string) (netip.Addr, uint16, Protocol, string) {
	rest, proto := s, TCP
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		p, msg := parseProtocol(s[i+1:])
		if msg != "" {
			return netip.Addr{}, 0, 0, msg
		}
		rest, proto = s[:i], p
	}
	var host, portStr string
	hasPort, bracketed := false, false
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return netip.Addr{}, 0, 0, fmt.Sprintf("%q: missing ']'", rest)
		}
		host, bracketed = rest[1:end], true
		switch after := rest[end+1:]; {
		case after == "":
		case after[0] == ':':
			portStr, hasPort = after[1:], true
		default:
			return netip.Addr{}, 0, 0, fmt.Sprintf("%q: want [ADDR]:PORT", rest)
		}
	case strings.Count(rest, ":") == 1:
		host, portStr, _ = strings.Cut(rest, ":")
		hasPort = true
	default:
		host = rest
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, 0, fmt.Sprintf("%q is not an IP address", host)
	}
	if bracketed && !a.Is6() {
		return netip.Addr{}, 0, 0, fmt.Sprintf("%q: brackets are only for IPv6 addresses", rest)
	}
	var port uint16
	if hasPort {
		n, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return netip.Addr{}, 0, 0, fmt.Sprintf("%q is not a port (0 to 65535)", portStr)
		}
		port = uint16(n)
	}
	if msg := checkAddr(a); msg != "" {
		return netip.Addr{}, 0, 0, msg
	}
	return a, port, proto, ""
}

// ParseBackend parses a --backend value: ADDR[,mac=MAC][,weight=N]. The
// weight defaults to 1; without mac= the MAC is resolved at run time.
func ParseBackend(s string) (Backend, error) {
	b, msg := parseBackend(s)
	if msg != "" {
		return Backend{}, fmt.Errorf("parse backend %q: %s", s, msg)
	}
	return b, nil
}

func parseBackend(s string) (Backend, string) {
	parts := strings.Split(s, ",")
	a, err := netip.ParseAddr(parts[0])
	if err != nil {
		return Backend{}, fmt.Sprintf("%q is not an IP address", parts[0])
	}
	if msg := checkAddr(a); msg != "" {
		return Backend{}, msg
	}
	b := Backend{Address: a, Weight: defaultWeight, Health: defaultHealth()}
	seen := map[string]bool{}
	for _, opt := range parts[1:] {
		k, v, ok := strings.Cut(opt, "=")
		if !ok || v == "" {
			return Backend{}, fmt.Sprintf("option %q: want key=value", opt)
		}
		if seen[k] {
			return Backend{}, fmt.Sprintf("option %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil {
				return Backend{}, fmt.Sprintf("mac %q is not a MAC address", v)
			}
			if msg := checkMAC(mac); msg != "" {
				return Backend{}, "mac " + msg
			}
			b.MAC = mac
		case "weight":
			w, err := strconv.ParseUint(v, 10, 32)
			if err != nil || w > maxWeight {
				return Backend{}, fmt.Sprintf("weight must be between 0 and %d, got %q", maxWeight, v)
			}
			b.Weight = uint32(w)
		default:
			return Backend{}, fmt.Sprintf("unknown option %q (want mac= or weight=)", k)
		}
	}
	return b, ""
}

// FromFlags builds a Config from command-line flags: one service per --vip,
// named "vip0", "vip1", ..., each with every --backend of the VIP's address
// family. Everything else takes its default. The Config passes the same
// validation as Parse; problems are Errors with paths "--interface",
// "--workers", "--vip[i]" and "--backend[k]" (indexes as given).
func FromFlags(iface string, workers int, vips []string, backends []string) (*Config, error) {
	loc := &flagLocator{backendFlag: map[[2]int]int{}, rejected: map[field]bool{}}
	r := &report{loc: loc}
	c := defaultConfig()
	c.Interface = iface
	c.Workers = workers

	parsed := make([]Backend, len(backends))
	ok := make([]bool, len(backends))
	allBackendsOK := true
	for k, s := range backends {
		b, msg := parseBackend(s)
		if msg != "" {
			r.addAt(backendFlag(k), 0, msg)
			allBackendsOK = false
			continue
		}
		parsed[k], ok[k] = b, true
	}

	allVIPsOK := true
	used := make([]bool, len(backends))
	for i, s := range vips {
		svc := Service{Name: "vip" + strconv.Itoa(i), Protocol: TCP, TableSize: defaultTableSize, Health: defaultHealth()}
		a, port, proto, msg := parseVIP(s)
		if msg != "" {
			r.addAt(vipFlag(i), 0, msg)
			loc.rejected[svcField(i, "")] = true
			allVIPsOK = false
			c.Services = append(c.Services, svc)
			continue
		}
		svc.VIP, svc.Port, svc.Protocol = a, port, proto
		for k, b := range parsed {
			if !ok[k] || b.Address.Is4() != a.Is4() {
				continue
			}
			if b.MAC != nil {
				b.MAC = append(net.HardwareAddr(nil), b.MAC...)
			}
			loc.backendFlag[[2]int{i, len(svc.Backends)}] = k
			svc.Backends = append(svc.Backends, b)
			used[k] = true
		}
		if !allBackendsOK {
			// The backend that failed to parse may have belonged here.
			loc.rejected[svcField(i, "backends")] = true
		}
		c.Services = append(c.Services, svc)
	}
	if allVIPsOK && len(vips) > 0 {
		for k, b := range parsed {
			if ok[k] && !used[k] {
				r.addAt(backendFlag(k), 0, fmt.Sprintf("%s is %s but no --vip is %s", b.Address, family(b.Address), family(b.Address)))
			}
		}
	}

	c.validate(r)
	if len(r.errs) > 0 {
		// All lines are 0: order by flag, then as found.
		sort.SliceStable(r.errs, func(i, j int) bool { return flagRank(r.errs[i].Path) < flagRank(r.errs[j].Path) })
		return nil, r.errs
	}
	return c, nil
}

func flagRank(path string) int {
	for i, prefix := range []string{"--interface", "--workers", "--vip", "--backend"} {
		if strings.HasPrefix(path, prefix) {
			return i
		}
	}
	return 4
}

func vipFlag(i int) string     { return "--vip[" + strconv.Itoa(i) + "]" }
func backendFlag(k int) string { return "--backend[" + strconv.Itoa(k) + "]" }

// flagLocator names fields after the flags they came from.
type flagLocator struct {
	backendFlag map[[2]int]int // (service, backend index) -> --backend index
	rejected    map[field]bool
}

func (l *flagLocator) bad(f field) bool { return l.rejected[f] }

func (l *flagLocator) locate(f field) (string, int) {
	switch {
	case f.be >= 0:
		if k, ok := l.backendFlag[[2]int{f.svc, f.be}]; ok {
			return backendFlag(k), 0
		}
		return f.path(), 0
	case f.svc >= 0:
		return vipFlag(f.svc), 0
	}
	switch f.name {
	case "interface":
		return "--interface", 0
	case "workers":
		return "--workers", 0
	case "services":
		return "--vip", 0
	}
	return f.path(), 0
}
