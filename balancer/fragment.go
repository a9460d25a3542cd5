package balancer

import "net/netip"

// LookupFragment returns the service that IP fragments to vip over proto
// belong to. Fragments after the first carry no ports, so every fragment of a
// datagram is matched the same way, without ports: the VIP's port-0 service if
// it has one, else its only service for proto. With several port services and
// no port-0 service the answer is ambiguous and LookupFragment returns nil.
// It never allocates; it costs a scan of the services, fragments being rare.
func (t *Table) LookupFragment(vip netip.Addr, proto Protocol) *Service {
	if t == nil {
		return nil
	}
	if s, ok := t.services[ServiceKey{vip, proto, 0}]; ok {
		return s
	}
	var only *Service
	for _, s := range t.byName {
		if s.key.VIP == vip && s.key.Proto == proto {
			if only != nil {
				return nil
			}
			only = s
		}
	}
	return only
}

// EchoService returns the service that ICMP echo requests to vip go to: the
// VIP's first service by name, or nil. Pings carry no port, so the balancer
// hands them to one of the VIP's backends, which answers directly. It never
// allocates; it scans the services, pings being rare.
func (t *Table) EchoService(vip netip.Addr) *Service {
	if t == nil {
		return nil
	}
	for _, s := range t.byName {
		if s.key.VIP == vip {
			return s
		}
	}
	return nil
}
