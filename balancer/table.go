package balancer

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// ServiceKey identifies a service. Port 0 means every port of that VIP and protocol.
type ServiceKey struct {
	VIP   netip.Addr
	Proto Protocol
	Port  uint16
}

// String returns "10.0.0.100:80/tcp", "[2001:db8::1]:80/tcp" or, for port 0, "10.0.0.100:*/udp".
func (k ServiceKey) String() string {
	var b strings.Builder
	if k.VIP.Is6() {
		b.WriteString("[" + k.VIP.String() + "]")
	} else {
		b.WriteString(k.VIP.String())
	}
	b.WriteByte(':')
	if k.Port == 0 {
		b.WriteByte('*')
	} else {
		b.WriteString(strconv.Itoa(int(k.Port)))
	}
	b.WriteString("/" + k.Proto.String())
	return b.String()
}

// Backend is a real server behind a service.
type Backend struct {
	Addr netip.Addr // same family as the service's VIP
	MAC  [6]byte    // destination MAC the dataplane rewrites frames to
	// Weight is the backend's relative share of new flows. 0 = draining: not in the Maglev
	// table (no new flows) but still found by Service.Index.
	Weight uint32
	// Slot numbers the backend's traffic counters in the dataplane. The control plane
	// assigns it, keeps it stable while the backend is configured, and keeps it below
	// the dataplane's MaxBackendSlots. The table does not interpret it.
	Slot uint16
	// SlotEpoch changes whenever the control plane gives Slot to another
	// backend (a removed backend's slot reused): the dataplane then restarts
	// the slot's counters, so the new backend does not inherit the old one's.
	SlotEpoch uint32
}

// ServiceSpec is the input describing one service.
type ServiceSpec struct {
	Name      string // unique, non-empty
	Key       ServiceKey
	TableSize uint32 // 0 = DefaultTableSize; must be prime
	Backends  []Backend
}

// Table is an immutable snapshot of every service, read by the dataplane.
type Table struct {
	seed     uint64
	services map[ServiceKey]*Service
	byName   []*Service // sorted by name
	gen      uint64     // unique per table built in this process
	// small is every service when there are at most smallTable of them:
	// a linear scan of a few keys beats hashing netip.Addr in a map.
	small  []*Service
	vips   []netip.Addr
	vipSet map[netip.Addr]struct{}
}

// Service is one service of a Table: its backends sorted by address, and their Maglev table.
type Service struct {
	name     string
	key      ServiceKey
	backends []Backend // sorted by Addr; indices match the Maglev keys
	maglev   *Maglev
}

// NewTable validates specs and builds a Table, with seed feeding every Maglev permutation.
// Nothing of specs is retained. Backend order in specs does not matter.
func NewTable(seed uint64, specs []ServiceSpec) (*Table, error) {
	t := &Table{
		seed:     seed,
		services: make(map[ServiceKey]*Service, len(specs)),
		vipSet:   make(map[netip.Addr]struct{}),
	}
	names := make(map[string]*Service, len(specs))
	for i := range specs {
		s, err := newService(seed, &specs[i])
		if err != nil {
			return nil, err
		}
		if other, dup := t.services[s.key]; dup {
			return nil, fmt.Errorf("balancer: service %q (%s): duplicate service key, also used by service %q", s.name, s.key, other.name)
		}
		if other, dup := names[s.name]; dup {
			return nil, fmt.Errorf("balancer: service %q (%s): duplicate service name, also used by %s", s.name, s.key, other.key)
		}
		t.services[s.key] = s
		names[s.name] = s
		t.byName = append(t.byName, s)
		if _, ok := t.vipSet[s.key.VIP]; !ok {
			t.vipSet[s.key.VIP] = struct{}{}
			t.vips = append(t.vips, s.key.VIP)
		}
	}
	slices.SortFunc(t.byName, func(a, b *Service) int { return strings.Compare(a.name, b.name) })
	if len(t.byName) <= smallTable {
		t.small = t.byName
	}
	t.gen = tableGen.Add(1)
	slices.SortFunc(t.vips, netip.Addr.Compare)
	return t, nil
}

func newService(seed uint64, spec *ServiceSpec) (*Service, error) {
	k := spec.Key
	fail := func(format string, args ...any) error {
		return fmt.Errorf("balancer: service %q (%s): %s", spec.Name, k, fmt.Sprintf(format, args...))
	}
	if spec.Name == "" {
		return nil, fail("empty service name")
	}
	if err := checkAddr(k.VIP); err != nil {
		return nil, fail("VIP %v", err)
	}
	if k.VIP.IsUnspecified() {
		return nil, fail("VIP is unspecified")
	}
	if k.Proto != TCP && k.Proto != UDP {
		return nil, fail("unsupported protocol %s (want tcp or udp)", k.Proto)
	}
	for i, b := range spec.Backends {
		if !b.Addr.IsValid() {
			return nil, fail("backends[%d]: address is not a valid IP address", i)
		}
		if err := checkAddr(b.Addr); err != nil {
			return nil, fail("backend %s: address %v", b.Addr, err)
		}
		if b.Addr.Is4() != k.VIP.Is4() {
			return nil, fail("backend %s: address family differs from VIP", b.Addr)
		}
	}
	s := &Service{name: spec.Name, key: k, backends: slices.Clone(spec.Backends)}
	slices.SortFunc(s.backends, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })
	keys := make([]string, len(s.backends))
	weights := make([]uint32, len(s.backends))
	for i, b := range s.backends {
		if i > 0 && b.Addr == s.backends[i-1].Addr {
			return nil, fail("backend %s: duplicate backend address", b.Addr)
		}
		keys[i], weights[i] = b.Addr.String(), b.Weight
	}
	size := spec.TableSize
	if size == 0 {
		size = DefaultTableSize
	}
	m, err := NewMaglev(keys, weights, size, seed)
	if err != nil {
		return nil, fmt.Errorf("balancer: service %q (%s): %w", spec.Name, k, err)
	}
	s.maglev = m
	return s, nil
}

// checkAddr rejects addresses a packet's parsed address could never equal.
func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("is not a valid IP address")
	case a.Zone() != "":
		return fmt.Errorf("%s has a zone", a)
	case a.Is4In6():
		return fmt.Errorf("%s is IPv4-mapped IPv6 (use %s)", a, a.Unmap())
	}
	return nil
}

// Lookup returns the service for a packet to vip:port over proto: the exact port's service
// if there is one, else the VIP's port-0 (all ports) service, else nil. t may be nil.
// It never allocates.
func (t *Table) Lookup(vip netip.Addr, proto Protocol, port uint16) *Service {
	if t == nil {
		return nil
	}
	if t.small != nil {
		var any *Service
		for _, s := range t.small {
			if s.key.VIP == vip && s.key.Proto == proto {
				if s.key.Port == port {
					return s
				}
				if s.key.Port == 0 {
					any = s
				}
			}
		}
		return any
	}
	if s, ok := t.services[ServiceKey{vip, proto, port}]; ok || port == 0 {
		return s
	}
	return t.services[ServiceKey{vip, proto, 0}]
}

// smallTable is the most services Lookup scans instead of hashing.
const smallTable = 16

var tableGen atomic.Uint64

// Gen returns a number unique to this table among the tables this process
// built: a worker that remembers a backend's index can tell whether the
// index still refers to the same table.
func (t *Table) Gen() uint64 { return t.gen }

// HasVIP reports whether any service uses vip. t may be nil. It never allocates.
func (t *Table) HasVIP(vip netip.Addr) bool {
	if t == nil {
		return false
	}
	_, ok := t.vipSet[vip]
	return ok
}

// VIPs returns every VIP, sorted and unique, in a new slice.
func (t *Table) VIPs() []netip.Addr { return slices.Clone(t.vips) }

// Services returns every service, sorted by name, in a new slice.
func (t *Table) Services() []*Service { return slices.Clone(t.byName) }

// NumServices returns the number of services, and ServiceAt the i-th of
// them by name (0 <= i < NumServices): Services without the copy, for the
// packet path. They never allocate.
func (t *Table) NumServices() int { return len(t.byName) }

// ServiceAt returns the i-th service by name; see NumServices.
func (t *Table) ServiceAt(i int) *Service { return t.byName[i] }

// Seed returns the seed the table was built with.
func (t *Table) Seed() uint64 { return t.seed }

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// Key returns the service's key.
func (s *Service) Key() ServiceKey { return s.key }

// Backends returns the backends sorted by address. Callers must not modify the slice.
func (s *Service) Backends() []Backend { return s.backends }

// Backend returns a pointer to backend i (0 <= i < len(Backends())), which must not be
// modified. It never allocates.
func (s *Service) Backend(i int) *Backend { return &s.backends[i] }

// Pick returns the index into Backends() of the backend owning flow hash h, or false when no
// backend has weight > 0. It never allocates.
func (s *Service) Pick(h uint64) (int, bool) {
	i := s.maglev.Lookup(h)
	return i, i >= 0
}

// Index returns the index of the backend with address addr, or false if there is none
// (draining backends are found too). It never allocates.
func (s *Service) Index(addr netip.Addr) (int, bool) {
	i, ok := slices.BinarySearchFunc(s.backends, addr, func(b Backend, a netip.Addr) int { return b.Addr.Compare(a) })
	if !ok {
		return -1, false
	}
	return i, true
}

// Maglev returns the service's Maglev table.
func (s *Service) Maglev() *Maglev { return s.maglev }

// SameFlows reports whether t sends every packet that prev sends to a
// backend to a backend of the same address, so that a dataplane going from
// prev to t need not remember where flows under way went: the same seed,
// every service of prev still there with the same Maglev slots owned by the
// same backend addresses, and no new service taking packets an old one
// served (an exact port under a VIP's all-ports service). A changed MAC, a
// backend added at weight 0, a renamed service or one for packets nobody
// served keep the flows; a removed service does not count as keeping them,
// so that SameFlows holds from the first to the last of a run of tables in
// which it holds from each to the next. Either table may be nil (no flows).
func (t *Table) SameFlows(prev *Table) bool {
	if t == prev || prev == nil {
		return true
	}
	if t == nil || t.seed != prev.seed {
		return false
	}
	for _, p := range prev.byName {
		if s := t.services[p.key]; s == nil || !sameSlots(p, s) {
			return false
		}
	}
	for _, s := range t.byName {
		if prev.services[s.key] == nil && s.key.Port != 0 && prev.services[ServiceKey{s.key.VIP, s.key.Proto, 0}] != nil {
			return false // takes packets the VIP's all-ports service served
		}
	}
	return true
}

// sameSlots reports whether every Maglev slot of a and b is owned by a
// backend of the same address (or by none in both).
func sameSlots(a, b *Service) bool {
	if a.maglev.Size() != b.maglev.Size() {
		return false
	}
	for h := range uint64(a.maglev.Size()) {
		i, j := a.maglev.Lookup(h), b.maglev.Lookup(h)
		if (i < 0) != (j < 0) || i >= 0 && a.backends[i].Addr != b.backends[j].Addr {
			return false
		}
	}
	return true
}
