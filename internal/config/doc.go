// Package config turns a dsrlb configuration (a YAML file, or command-line
// flags for quick lab use) into a validated Config.
//
// # What it does
//
// Parse decodes YAML into a yaml.Node tree, walks it against the schema and
// converts every value into its typed form (netip.Addr, time.Duration,
// net.HardwareAddr, Protocol), applying defaults for absent keys. It then runs
// one validation pass over the typed Config. Load reads a file and calls
// Parse; FromFlags builds the same Config from flag values and runs the same
// validation.
//
// Every problem is reported, not just the first: the error is an Errors value
// (one *FieldError per problem, each with the field path such as
// "services[0].backends[1].address" and, for YAML input, the line). Problems
// with the input as a whole (not text, not YAML, empty) have an empty Path.
// Parse orders problems by line, those without a line first; FromFlags orders
// them by flag. Callers get at them with errors.As.
//
// # What it costs
//
// Parsing is linear in the size of the input and allocates freely; it belongs
// on the control path (start-up and reload), never on the packet path. Input
// is limited to 1 MiB; a worst-case 1 MiB file is rejected in about a second
// and can produce a very long error list, since every problem is reported.
//
// # What it never does
//
//   - It never panics, whatever the input.
//   - It never returns a partial Config: either a Config that passes every
//     check below, or nil and the errors. A reload that fails keeps the
//     running config because nothing is returned to replace it.
//   - It never looks at the host: the interface is checked for being a
//     plausible Linux interface name, not for existing, and no address is
//     resolved.
//   - It never expands YAML aliases (*name): they let a small file grow into a
//     very large config and are rejected. Merge keys (<<) are unknown keys.
//
// # Invariants of a returned Config
//
//   - Interface is a non-empty Linux interface name (at most 15 bytes).
//
//   - Workers is in 0..256 (0: one per CPU, or per listed CPU with CPUs).
//     CPUs are distinct; BusyPoll is in 0..10ms; VIPMAC is "interface",
//     "auto" or a unicast MAC.
//
//   - Fanout is "hash" or "cpu"; with "cpu" and more than one worker (or
//     workers 0), CPUs lists exactly one CPU per worker.
//
//   - Ring is "frames", "blocks" or "auto"; "auto" only with Workers 1 or
//     Fanout "cpu".
//
//   - FlowTable.Size is in 1..1<<24; FlowTable.IdleTimeout > 0;
//     NeighborRefresh >= 1s.
//
//   - There is at least one Service. Names are unique and match
//     [A-Za-z0-9_.-]{1,63}. VIP+Protocol+Port is unique across services.
//
//   - A VIP is a unicast address without a zone: not unspecified, loopback,
//     multicast, link-local, IPv4 broadcast or IPv4-mapped IPv6. So is every
//     backend address.
//
//   - Protocol is TCP or UDP. Port 0 means every port.
//
//   - TableSize is prime, at most 16777213 and at least len(Backends).
//
//   - Every Service has at least one Backend, and all services together have
//     at most MaxBackends (4096). Backend addresses are of the VIP's family,
//     unique within the service, and never the VIP of any service.
//
//   - Backend.MAC is nil (resolve at run time) or a 6-byte unicast,
//     non-zero Ethernet address. Weight is in 0..65535; 0 means draining.
//
//   - Health.Kind is none, tcp, http, https or dns; for any other kind than
//     none: Interval >= 100ms, 0 < Timeout <= Interval, Rise and Fall in
//     1..100, a port (its own, or the service's), and for http(s) a Path
//     starting with "/", a known Method and at least one Expect code; and
//     the check passes healthcheck's own validation (Spec.Validate: a request
//     path, a Host name or address, a DNS query name), so that a check the
//     config accepts is one the engine can start. VIP (the DSR-path check)
//     is false with kind none: it runs beside another check, never alone. A
//     backend's Health is its service's with the backend's overrides (a
//     backend's kind: none turns an inherited VIP off too).
//
//   - Admin is "" (off) or host:port with a numeric port in 1..65535 (the
//     host is not resolved); DrainTimeout >= 0 (0: no timeout).
//
// A Config is a plain value. Once handed to the rest of the program it is
// treated as immutable: nothing in this package keeps it. The setters a
// command line applies on top of a file (SetWorkers, SetCPUs, SetFanout, SetRing,
// SetBusyPoll, SetVIPMAC, SetAdmin) check their own field, not the fields
// it combines with: CheckFanout checks the fanout invariant after them.
package config
