package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics, that every error is a
// well-formed Errors, and that every Config it returns keeps the invariants
// of doc.go, checked here independently of validate.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("testdata/dsrlb.yaml"); err == nil {
		f.Add(example)
	}
	f.Add([]byte(validYAML))
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Config and error both returned")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			for i, e := range errs {
				if strings.ContainsAny(e.Error(), "\n\r") {
					t.Errorf("problem %d spans lines: %q", i, e.Error())
				}
				if e.Line < 0 || i > 0 && e.Line < errs[i-1].Line {
					t.Errorf("problems out of line order: %q", err.Error())
				}
			}
			return
		}
		if c == nil {
			t.Fatalf("nil Config and nil error")
		}
		checkInvariants(t, c)

		// validate with no knowledge of the input finds nothing either.
		r := &report{loc: &yamlLocator{lines: map[field]int{}, rejected: map[field]bool{}}}
		c.validate(r)
		if err := r.err(); err != nil {
			t.Errorf("returned Config fails validation:\n%v", err)
		}

		// Parsing is deterministic.
		c2, err := Parse(data)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Errorf("second Parse differs: %v", err)
		}
	})
}

func checkInvariants(t *testing.T, c *Config) {
	t.Helper()
	if c.Interface == "" || len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "/: \t\n\x00") {
		t.Errorf("interface %q", c.Interface)
	}
	if c.Workers < 0 || c.Workers > 256 {
		t.Errorf("workers %d", c.Workers)
	}
	if c.FlowTable.Size < 1 || c.FlowTable.Size > 1<<24 {
		t.Errorf("flow table size %d", c.FlowTable.Size)
	}
	if c.FlowTable.IdleTimeout <= 0 {
		t.Errorf("idle timeout %v", c.FlowTable.IdleTimeout)
	}
	if c.NeighborRefresh < time.Second {
		t.Errorf("neighbor refresh %v", c.NeighborRefresh)
	}
	if len(c.Services) == 0 {
		t.Errorf("no services")
	}
	type key struct {
		vip   netip.Addr
		port  uint16
		proto Protocol
	}
	names := map[string]bool{}
	keys := map[key]bool{}
	vips := map[netip.Addr]bool{}
	for _, s := range c.Services {
		vips[s.VIP] = true
	}
	for i, s := range c.Services {
		if !validName(s.Name) || names[s.Name] {
			t.Errorf("service %d: name %q", i, s.Name)
		}
		names[s.Name] = true
		if !usable(s.VIP) {
			t.Errorf("service %d: vip %v", i, s.VIP)
		}
		if s.Protocol != TCP && s.Protocol != UDP {
			t.Errorf("service %d: protocol %v", i, s.Protocol)
		}
		k := key{s.VIP, s.Port, s.Protocol}
		if keys[k] {
			t.Errorf("service %d: vip+port+protocol %v repeated", i, k)
		}
		keys[k] = true
		if len(s.Backends) == 0 {
			t.Errorf("service %d: no backends", i)
		}
		if !isPrime(s.TableSize) || s.TableSize > maxTableSize || int(s.TableSize) < len(s.Backends) {
			t.Errorf("service %d: table size %d for %d backends", i, s.TableSize, len(s.Backends))
		}
		addrs := map[netip.Addr]bool{}
		for j, b := range s.Backends {
			if !usable(b.Address) || b.Address.Is4() != s.VIP.Is4() || vips[b.Address] || addrs[b.Address] {
				t.Errorf("service %d backend %d: address %v (vip %v)", i, j, b.Address, s.VIP)
			}
			addrs[b.Address] = true
			if b.MAC != nil && (len(b.MAC) != 6 || b.MAC[0]&1 != 0 || string(b.MAC) == "\x00\x00\x00\x00\x00\x00") {
				t.Errorf("service %d backend %d: mac %v", i, j, b.MAC)
			}
			if b.Weight > 65535 {
				t.Errorf("service %d backend %d: weight %d", i, j, b.Weight)
			}
		}
	}
}

func usable(a netip.Addr) bool {
	return a.IsValid() && a.Zone() == "" && !a.Is4In6() && !a.IsUnspecified() && !a.IsLoopback() &&
		!a.IsMulticast() && !a.IsLinkLocalUnicast() && a != netip.MustParseAddr("255.255.255.255")
}
