package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dsrlb/dsrlb/balancer"
	"go.yaml.in/yaml/v3"
)

// Limits and defaults. They are part of the contract in doc.go.
const (
	maxInputSize = 1 << 20 // bytes of YAML accepted by Load and Parse

	defaultFlowTableSize   = 65536
	maxFlowTableSize       = 1 << 24
	maxBusyPoll            = 10 * time.Millisecond
	defaultIdleTimeout     = 5 * time.Minute
	defaultNeighborRefresh = 10 * time.Second
	minNeighborRefresh     = time.Second
	maxWorkers             = 256

	defaultTableSize = 65537
	maxTableSize     = 16777213 // largest prime below 1<<24

	defaultWeight = 1
	maxWeight     = 65535
)

// MaxBackends bounds the backends over all services (a service's backend is
// counted once per service it serves): the dataplane keeps one set of
// counters per backend in fixed arrays of this size.
const MaxBackends = 4096

// Config is a validated dsrlb configuration. See doc.go for the invariants
// every Config returned by this package satisfies.
type Config struct {
	// Interface receives VIP traffic and reaches the servers (one-armed).
	Interface string
	// Workers is the number of packet workers; 0 means one per CPU.
	Workers int
	// Seed seeds the Maglev and flow hashes. Equal configs with equal seeds
	// build identical tables.
	Seed uint64
	// FlowTable sizes the per-worker flow table.
	FlowTable FlowTable
	// NeighborRefresh is how often backend MACs are re-resolved. Backends
	// with a static MAC are not resolved.
	NeighborRefresh time.Duration
	// Admin is the admin endpoint's listen address (metrics, status,
	// reload); "" turns it off.
	Admin string
	// DrainTimeout is how long a draining backend (weight 0) keeps its
	// established flows; 0 means until they end.
	DrainTimeout time.Duration
	// CPUs pins worker i to CPUs[i % len(CPUs)]; empty: no pinning.
	CPUs []int
	// BusyPoll is how long a worker whose ring ran empty keeps watching it
	// before it sleeps; 0 means it sleeps at once.
	BusyPoll time.Duration
	// Fanout is how received frames are spread over several workers:
	// FanoutHash (by flow) or FanoutCPU (by the CPU that received them;
	// every worker then needs a CPU of its own in CPUs).
	Fanout string
	// Ring is how the kernel hands received frames to a worker: RingFrames
	// (each on its own, the least latency), RingBlocks (in blocks of
	// frames: less CPU per frame, up to a millisecond more latency) or
	// RingAuto (frames, and blocks while the worker falls behind; one
	// worker, or several with FanoutCPU).
	Ring string
	// VIPMAC is the MAC address the VIPs answer on: VIPMACInterface (the
	// interface's own), VIPMACAuto (a virtual MAC derived from it) or a
	// unicast MAC in canonical form.
	VIPMAC string
	// Services is never empty.
	Services []Service
}

// FlowTable configures each worker's connection-tracking table.
type FlowTable struct {
	// Size is the number of entries per worker.
	Size int
	// IdleTimeout is how long an entry lives without packets.
	IdleTimeout time.Duration
}

// Service is one virtual service: traffic to VIP (and Port, unless Port is
// 0) with Protocol is spread over Backends.
type Service struct {
	// Name is unique across services.
	Name string
	// VIP is the virtual address; IPv4 or IPv6.
	VIP netip.Addr
	// Port is the destination port; 0 means every port.
	Port uint16
	// Protocol is TCP or UDP.
	Protocol Protocol
	// TableSize is the Maglev lookup table size: prime, >= len(Backends).
	TableSize uint32
	// Health checks every backend (Kind "none": no checks).
	Health Health
	// Backends is never empty; every address has the VIP's family.
	Backends []Backend
}

// Backend is one real server of a Service.
type Backend struct {
	// Address is the server's address, in the VIP's family.
	Address netip.Addr
	// MAC is a static next-hop MAC for Address, or nil when it is to be
	// resolved on the interface at run time.
	MAC net.HardwareAddr
	// Weight is the relative share of new flows; 0 drains the backend
	// (no new flows, existing flows stay).
	Weight uint32
	// Health is the service's health check with this backend's overrides.
	Health Health
}

// Protocol is an IP protocol number, the balancer's type. Only TCP and UDP
// are valid.
type Protocol = balancer.Protocol

// Supported protocols, by IANA protocol number.
const (
	TCP = balancer.TCP
	UDP = balancer.UDP
)

// FieldError is one problem with one value of a configuration.
type FieldError struct {
	// Path names the value: "services[0].backends[1].address" for YAML,
	// "--vip[0]" or "--backend[1]" for flags, "" for the input as a whole.
	Path string
	// Line is the 1-based line in the YAML input, or 0 when unknown.
	Line int
	// Msg says what is wrong. It never contains a newline.
	Msg string
}

// Error returns `path: msg (line N)`, leaving out what is unknown.
func (e *FieldError) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.Line > 0 {
		s += " (line " + strconv.Itoa(e.Line) + ")"
	}
	return s
}

// Errors is every problem found in one configuration. Parse, Load and
// FromFlags return it as their error when the configuration is invalid; it
// is never empty then.
type Errors []*FieldError

// Error returns one problem per line.
func (e Errors) Error() string {
	var b strings.Builder
	for i, fe := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Load reads the YAML configuration at path and parses it with Parse. I/O
// problems and files over 1 MiB are returned as wrapped errors naming the
// path; problems with the content are returned as Errors, unwrapped.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	if len(data) > maxInputSize {
		return nil, fmt.Errorf("load config %s: file is larger than %d bytes", path, maxInputSize)
	}
	return Parse(data)
}

// Parse decodes and validates a YAML configuration, applying defaults for
// absent keys. On any problem it returns nil and Errors listing all of them.
func Parse(data []byte) (*Config, error) {
	loc := &yamlLocator{lines: map[field]int{}, rejected: map[field]bool{}}
	r := &report{loc: loc}
	d := &decoder{r: r, loc: loc}
	c := d.decode(data)
	if c != nil {
		c.validate(r)
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// SetCPUs sets CPUs from a list in the kernel's format ("1", "0,2", "2-5");
// an empty list means no pinning.
func (c *Config) SetCPUs(list string) error {
	if strings.TrimSpace(list) == "" {
		c.CPUs = nil // no pinning
		return nil
	}
	cpus, err := ParseCPUList(list)
	if err != nil {
		return err
	}
	c.CPUs = cpus
	return nil
}

// The symbolic values of vip_mac.
const (
	VIPMACInterface = "interface"
	VIPMACAuto      = "auto"
)

// SetVIPMAC sets VIPMAC, as the vip_mac key would: "interface" (or ""),
// "auto", or a unicast Ethernet address.
func (c *Config) SetVIPMAC(v string) error {
	switch v = strings.TrimSpace(v); v {
	case "", VIPMACInterface:
		c.VIPMAC = VIPMACInterface
		return nil
	case VIPMACAuto:
		c.VIPMAC = VIPMACAuto
		return nil
	}
	m, err := net.ParseMAC(v)
	if err != nil || len(m) != 6 {
		return fmt.Errorf("%q: want %q, %q or an Ethernet address like 02:00:5e:00:01:01", v, VIPMACInterface, VIPMACAuto)
	}
	if msg := checkMAC(m); msg != "" {
		return errors.New(msg)
	}
	c.VIPMAC = m.String()
	return nil
}

// The values of fanout.
const (
	FanoutHash = "hash"
	FanoutCPU  = "cpu"
)

// SetFanout sets Fanout, as the fanout key would: "hash" (or "") or "cpu".
func (c *Config) SetFanout(v string) (err error) {
	c.Fanout, err = oneOf(v, c.Fanout, FanoutHash, FanoutCPU)
	return err
}

// oneOf returns v, trimmed, if it is one of values, and the first of them if
// it is empty; anything else is an error, and old is returned.
func oneOf(v, old string, values ...string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return values[0], nil
	}
	if slices.Contains(values, v) {
		return v, nil
	}
	return old, errors.New(wantOneOf(v, values))
}

// wantOneOf says that v is none of values: `"v": want "a", "b" or "c"`.
func wantOneOf(v string, values []string) string {
	q := make([]string, len(values))
	for i, s := range values {
		q[i] = strconv.Quote(s)
	}
	return fmt.Sprintf("%q: want %s or %s", v, strings.Join(q[:len(q)-1], ", "), q[len(q)-1])
}

// The values of ring.
const (
	RingFrames = "frames"
	RingBlocks = "blocks"
	RingAuto   = "auto"
)

// SetRing sets Ring, as the ring key would: "frames" (or ""), "blocks" or
// "auto".
func (c *Config) SetRing(v string) (err error) {
	c.Ring, err = oneOf(v, c.Ring, RingFrames, RingBlocks, RingAuto)
	return err
}

// CheckRing returns an error if Ring does not fit Workers and Fanout, as
// Parse would report it: use it after changing any of them.
func (c *Config) CheckRing() error { return errorOf(c.checkRing()) }

// checkRing returns what is wrong with Ring given Workers and Fanout, or "".
func (c *Config) checkRing() string {
	switch c.Ring {
	case RingFrames, RingBlocks:
		return ""
	case RingAuto:
		if c.Workers != 1 && c.Fanout != FanoutCPU {
			return fmt.Sprintf("auto needs one worker (workers: 1), or workers spread by CPU (fanout: cpu): got %s workers spread by flow hash", workersString(c.Workers))
		}
		return ""
	}
	return wantOneOf(c.Ring, []string{RingFrames, RingBlocks, RingAuto})
}

func workersString(n int) string {
	if n == 0 {
		return "0 (one per CPU)"
	}
	return strconv.Itoa(n)
}

// SetWorkers sets Workers, as the workers key would: 0 (one per CPU) to 256.
func (c *Config) SetWorkers(n int) error {
	if n < 0 || n > maxWorkers {
		return errors.New(rangeMsg(0, maxWorkers, int64(n)))
	}
	c.Workers = n
	return nil
}

// SetBusyPoll sets BusyPoll, as the busy_poll key would.
func (c *Config) SetBusyPoll(d time.Duration) error {
	if d < 0 || d > maxBusyPoll {
		return fmt.Errorf("must be between 0s and %s, got %s", maxBusyPoll, d)
	}
	c.BusyPoll = d
	return nil
}

func defaultConfig() *Config {
	return &Config{
		FlowTable: FlowTable{
			Size:        defaultFlowTableSize,
			IdleTimeout: defaultIdleTimeout,
		},
		NeighborRefresh: defaultNeighborRefresh,
		Admin:           DefaultAdmin,
		BusyPoll:        DefaultBusyPoll,
		Fanout:          FanoutHash,
		Ring:            RingFrames,
		VIPMAC:          VIPMACInterface,
	}
}

// DefaultAdmin is the admin endpoint's default address: loopback only.
const DefaultAdmin = "127.0.0.1:9180"

// CheckAdmin reports why addr is not usable as the admin endpoint's address:
// it must be "" (off) or host:port, the host an address, a name or empty
// (every address), the port a number in 1..65535. Port 0 is refused: the
// kernel would pick a port that dsrlb status and reload cannot know. The
// host is not resolved.
func CheckAdmin(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (use \"\" to turn the admin endpoint off)", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not a number in 1..65535", addr, port)
	}
	return nil
}

// SetAdmin sets Admin, as the admin key would: "" (off) or host:port.
func (c *Config) SetAdmin(addr string) error {
	if err := CheckAdmin(addr); err != nil {
		return err
	}
	c.Admin = addr
	return nil
}

// DefaultBusyPoll is how long a worker spins on its empty ring before it
// sleeps, unless busy_poll says otherwise.
const DefaultBusyPoll = 200 * time.Microsecond

// field identifies one value of a Config independently of where it came
// from, so that validation can report it as a YAML path with a line or as a
// command-line flag. svc and be are -1 outside a service or backend; name ""
// is the service or backend itself.
type field struct {
	svc, be int
	name    string
}

func topField(name string) field          { return field{-1, -1, name} }
func svcField(i int, name string) field   { return field{i, -1, name} }
func beField(i, j int, name string) field { return field{i, j, name} }

// path returns the YAML path of f, like services[0].backends[1].address.
func (f field) path() string {
	var p string
	switch {
	case f.svc < 0:
		return f.name
	case f.be < 0:
		p = "services[" + strconv.Itoa(f.svc) + "]"
	default:
		p = "services[" + strconv.Itoa(f.svc) + "].backends[" + strconv.Itoa(f.be) + "]"
	}
	if f.name != "" {
		p += "." + f.name
	}
	return p
}

// A locator turns a field into the path and line to report. bad reports
// whether the field's value was already rejected while decoding, in which
// case validation says nothing more about it.
type locator interface {
	locate(f field) (path string, line int)
	bad(f field) bool
}

// yamlLocator knows the line of every value seen in the YAML input.
type yamlLocator struct {
	lines    map[field]int
	rejected map[field]bool
}

func (l *yamlLocator) bad(f field) bool { return l.rejected[f] }

// locate gives an absent value the line of the mapping that lacks it.
func (l *yamlLocator) locate(f field) (string, int) {
	if line, ok := l.lines[f]; ok {
		return f.path(), line
	}
	switch {
	case f.be >= 0:
		return f.path(), l.lines[beField(f.svc, f.be, "")]
	case f.svc >= 0:
		return f.path(), l.lines[svcField(f.svc, "")]
	}
	return f.path(), 0
}

// report collects problems, dropping exact repeats.
type report struct {
	loc  locator
	errs Errors
	seen map[FieldError]bool
}

func (r *report) addAt(path string, line int, msg string) {
	fe := FieldError{Path: path, Line: line, Msg: msg}
	if r.seen[fe] {
		return
	}
	if r.seen == nil {
		r.seen = map[FieldError]bool{}
	}
	r.seen[fe] = true
	r.errs = append(r.errs, &fe)
}

// add reports a problem with f unless f was already found bad.
func (r *report) add(f field, msg string) {
	if r.loc.bad(f) {
		return
	}
	path, line := r.loc.locate(f)
	r.addAt(path, line, msg)
}

func (r *report) bad(f field) bool { return r.loc.bad(f) }

// err returns the problems ordered by line (stable, line 0 first), or nil.
func (r *report) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	sort.SliceStable(r.errs, func(i, j int) bool { return r.errs[i].Line < r.errs[j].Line })
	return r.errs
}

// decoder walks the YAML node tree and fills a Config.
type decoder struct {
	r   *report
	loc *yamlLocator
}

var (
	topKeys       = []string{"interface", "workers", "seed", "flow_table", "neighbor_refresh", "admin", "drain_timeout", "busy_poll", "cpus", "fanout", "ring", "vip_mac", "services"}
	flowTableKeys = []string{"size", "idle_timeout"}
	serviceKeys   = []string{"name", "vip", "port", "protocol", "table_size", "health", "backends"}
	backendKeys   = []string{"address", "mac", "weight", "health"}
)

// decode returns nil when the input cannot be walked at all (not text, not
// YAML, not a mapping), after reporting why.
func (d *decoder) decode(data []byte) *Config {
	if len(data) > maxInputSize {
		d.r.addAt("", 0, fmt.Sprintf("config is %d bytes, more than the limit of %d", len(data), maxInputSize))
		return nil
	}
	if off, msg := checkText(data); msg != "" {
		d.r.addAt("", lineAt(data, off), msg)
		return nil
	}
	root, extraLine, err := parseYAML(data)
	if err != nil {
		line, msg := yamlError(err)
		d.r.addAt("", line, "invalid YAML: "+msg)
		return nil
	}
	if root == nil || isNull(root) {
		d.r.addAt("", 0, "empty config")
		return nil
	}
	if extraLine > 0 {
		d.r.addAt("", extraLine, "config must be a single YAML document")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.r.addAt("", root.Line, "config must be a mapping, got "+describe(root))
		return nil
	}

	c := defaultConfig()
	top := d.fields(root, "", topKeys)
	if v, ok := d.str(topField("interface"), top["interface"]); ok {
		c.Interface = v
	}
	if v, ok := d.integer(topField("workers"), top["workers"], 0, maxWorkers); ok {
		c.Workers = int(v)
	}
	if v, ok := d.uint64(topField("seed"), top["seed"]); ok {
		c.Seed = v
	}
	if n := top["flow_table"]; d.mapping(topField("flow_table"), n) {
		ft := d.fields(n, "flow_table", flowTableKeys)
		if v, ok := d.integer(topField("flow_table.size"), ft["size"], 1, maxFlowTableSize); ok {
			c.FlowTable.Size = int(v)
		}
		if v, ok := d.duration(topField("flow_table.idle_timeout"), ft["idle_timeout"]); ok {
			c.FlowTable.IdleTimeout = v
		}
	}
	if v, ok := d.duration(topField("neighbor_refresh"), top["neighbor_refresh"]); ok {
		c.NeighborRefresh = v
	}
	if v, ok := d.str(topField("admin"), top["admin"]); ok {
		c.Admin = v
	} else if n := top["admin"]; n != nil && isNull(n) {
		c.Admin = ""
	}
	if v, ok := d.duration(topField("drain_timeout"), top["drain_timeout"]); ok {
		c.DrainTimeout = v
	}
	if v, ok := d.duration(topField("busy_poll"), top["busy_poll"]); ok {
		c.BusyPoll = v
	}
	if v, ok := d.str(topField("cpus"), top["cpus"]); ok {
		if err := c.SetCPUs(v); err != nil {
			d.fail(topField("cpus"), top["cpus"], err.Error())
		}
	}
	if v, ok := d.str(topField("fanout"), top["fanout"]); ok {
		if err := c.SetFanout(v); err != nil {
			d.fail(topField("fanout"), top["fanout"], err.Error())
		}
	}
	if v, ok := d.str(topField("ring"), top["ring"]); ok {
		if err := c.SetRing(v); err != nil {
			d.fail(topField("ring"), top["ring"], err.Error())
		}
	}
	if v, ok := d.str(topField("vip_mac"), top["vip_mac"]); ok {
		if err := c.SetVIPMAC(v); err != nil {
			d.fail(topField("vip_mac"), top["vip_mac"], err.Error())
		}
	}
	if n := top["services"]; d.list(topField("services"), n) {
		for i, sn := range n.Content {
			c.Services = append(c.Services, d.service(i, sn))
		}
	}
	return c
}

func (d *decoder) service(i int, n *yaml.Node) Service {
	s := Service{Protocol: TCP, TableSize: defaultTableSize}
	if !d.entry(svcField(i, ""), n) {
		return s
	}
	m := d.fields(n, svcField(i, "").path(), serviceKeys)
	if v, ok := d.str(svcField(i, "name"), m["name"]); ok {
		s.Name = v
	}
	if v, ok := d.addr(svcField(i, "vip"), m["vip"]); ok {
		s.VIP = v
	}
	if v, ok := d.integer(svcField(i, "port"), m["port"], 0, 65535); ok {
		s.Port = uint16(v)
	}
	if f, n := svcField(i, "protocol"), m["protocol"]; n != nil {
		if v, ok := d.str(f, n); ok {
			p, err := parseProtocol(v)
			if err != "" {
				d.fail(f, n, err)
			} else {
				s.Protocol = p
			}
		}
	}
	if v, ok := d.integer(svcField(i, "table_size"), m["table_size"], 2, maxTableSize); ok {
		s.TableSize = uint32(v)
	}
	s.Health = d.health(func(name string) field { return svcField(i, name) }, m["health"], defaultHealth())
	if bn := m["backends"]; d.list(svcField(i, "backends"), bn) {
		for j, b := range bn.Content {
			s.Backends = append(s.Backends, d.backend(i, j, b, s.Health))
		}
	}
	return s
}

func (d *decoder) backend(i, j int, n *yaml.Node, health Health) Backend {
	b := Backend{Weight: defaultWeight, Health: health}
	if !d.entry(beField(i, j, ""), n) {
		return b
	}
	m := d.fields(n, beField(i, j, "").path(), backendKeys)
	if v, ok := d.addr(beField(i, j, "address"), m["address"]); ok {
		b.Address = v
	}
	if f, n := beField(i, j, "mac"), m["mac"]; n != nil {
		if v, ok := d.str(f, n); ok {
			mac, err := net.ParseMAC(v)
			if err != nil {
				d.fail(f, n, fmt.Sprintf("%q is not a MAC address", v))
			} else {
				b.MAC = mac
			}
		}
	}
	if v, ok := d.integer(beField(i, j, "weight"), m["weight"], 0, maxWeight); ok {
		b.Weight = uint32(v)
	}
	b.Health = d.health(func(name string) field { return beField(i, j, name) }, m["health"], health)
	return b
}

// fields returns the value node of every known key of mapping n, reporting
// unknown keys, duplicate keys and keys that are not scalars.
func (d *decoder) fields(n *yaml.Node, parent string, known []string) map[string]*yaml.Node {
	out := make(map[string]*yaml.Node, len(known))
	first := make(map[string]int, len(known))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.r.addAt(parent, k.Line, "keys must be strings, got "+describe(k))
			continue
		}
		p := keyPath(parent, k.Value)
		if line, dup := first[k.Value]; dup {
			d.r.addAt(p, k.Line, fmt.Sprintf("duplicate key (first at line %d)", line))
			continue
		}
		first[k.Value] = k.Line
		if !slices.Contains(known, k.Value) {
			d.r.addAt(p, k.Line, "unknown key")
			continue
		}
		out[k.Value] = v
	}
	return out
}

// keyPath joins a mapping path and a key, quoting keys that are not plain
// identifiers so that a path stays on one line and unambiguous.
func keyPath(parent, key string) string {
	plain := key != ""
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if !plain {
		key = strconv.Quote(key)
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// fail reports that the value n of f is bad and marks it so.
func (d *decoder) fail(f field, n *yaml.Node, msg string) {
	d.loc.lines[f] = n.Line
	d.r.add(f, msg)
	d.loc.rejected[f] = true
}

// present records where f is and says whether it has a non-null value that
// is not an alias. A null value is treated as absent.
func (d *decoder) present(f field, n *yaml.Node) bool {
	if n == nil {
		return false
	}
	d.loc.lines[f] = n.Line
	if n.Kind == yaml.AliasNode {
		d.fail(f, n, "YAML aliases are not supported")
		return false
	}
	return !isNull(n)
}

func (d *decoder) mapping(f field, n *yaml.Node) bool {
	if !d.present(f, n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.fail(f, n, "must be a mapping, got "+describe(n))
		return false
	}
	return true
}

// entry is mapping for an entry of a list, where a null (a bare "-") is not
// an absent value but an empty entry, and so a mistake.
func (d *decoder) entry(f field, n *yaml.Node) bool {
	if isNull(n) {
		d.fail(f, n, "must be a mapping, got an empty entry")
		return false
	}
	return d.mapping(f, n)
}

func (d *decoder) list(f field, n *yaml.Node) bool {
	if !d.present(f, n) {
		return false
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(f, n, "must be a list, got "+describe(n))
		return false
	}
	return true
}

func (d *decoder) str(f field, n *yaml.Node) (string, bool) {
	if !d.present(f, n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(f, n, "must be a string, got "+describe(n))
		return "", false
	}
	return n.Value, true
}

// integer decodes a YAML integer and checks that it is in lo..hi.
func (d *decoder) integer(f field, n *yaml.Node, lo, hi int64) (int64, bool) {
	if !d.present(f, n) {
		return 0, false
	}
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.fail(f, n, "must be an integer, got "+describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		d.fail(f, n, rangeMsg(lo, hi, v))
		return 0, false
	}
	return v, true
}

func (d *decoder) uint64(f field, n *yaml.Node) (uint64, bool) {
	if !d.present(f, n) {
		return 0, false
	}
	var v uint64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.fail(f, n, "must be an integer between 0 and 18446744073709551615, got "+describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) duration(f field, n *yaml.Node) (time.Duration, bool) {
	s, ok := d.str(f, n)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.fail(f, n, fmt.Sprintf("%q is not a duration (like \"30s\" or \"5m\")", s))
		return 0, false
	}
	return v, true
}

func (d *decoder) addr(f field, n *yaml.Node) (netip.Addr, bool) {
	s, ok := d.str(f, n)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		d.fail(f, n, fmt.Sprintf("%q is not an IP address", s))
		return netip.Addr{}, false
	}
	return a, true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" ||
		n.Kind == yaml.DocumentNode && len(n.Content) == 0
}

// describe names what a node is for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

func rangeMsg(lo, hi, v int64) string {
	return fmt.Sprintf("must be between %d and %d, got %d", lo, hi, v)
}

// parseYAML returns the single document's root node, or nil when the input
// holds no document, and the line of a second document if there is one.
// The YAML library is outside code: a panic in it is turned into an error so
// that Parse keeps its promise never to panic.
func parseYAML(data []byte) (root *yaml.Node, extraLine int, err error) {
	defer func() {
		if p := recover(); p != nil {
			root, extraLine, err = nil, 0, fmt.Errorf("parser failure: %s", strconv.Quote(fmt.Sprint(p)))
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, 0, err
	default:
		extraLine = max(extra.Line, 1)
	}
	root = &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	return root, extraLine, nil
}

// yamlError splits "yaml: line N: msg" into N and msg.
func yamlError(err error) (int, string) {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.ReplaceAll(s, "\n", " ")
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil && n > 0 {
				return n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return 0, s
}

// checkText rejects input that is not UTF-8 text: invalid UTF-8, NUL and
// other C0 control bytes except tab, LF and CR. It returns the offset of the
// first offending byte and a message, or "" when the input is text.
func checkText(data []byte) (int, string) {
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return i, fmt.Sprintf("config is not text: control byte 0x%02x at offset %d", c, i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i, fmt.Sprintf("config is not UTF-8 text: invalid byte 0x%02x at offset %d", c, i)
		}
		i += size
	}
	return 0, ""
}

func lineAt(data []byte, off int) int {
	return 1 + bytes.Count(data[:off], []byte{'\n'})
}

// CheckFanout returns an error if Fanout does not fit Workers and CPUs, as
// validation would report it: for a caller that changed them after Load.
func (c *Config) CheckFanout() error { return errorOf(c.checkFanout()) }

// errorOf returns msg as an error, nil if it is "".
func errorOf(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

// checkFanout returns what is wrong with Fanout given Workers and CPUs, or "".
func (c *Config) checkFanout() string {
	switch c.Fanout {
	case FanoutHash:
		return ""
	case FanoutCPU:
	default:
		return wantOneOf(c.Fanout, []string{FanoutHash, FanoutCPU})
	}
	n := c.Workers
	if n == 0 {
		if len(c.CPUs) == 0 {
			return "cpu needs every worker pinned to a CPU of its own: set cpus (with workers 0, one worker per listed CPU)"
		}
		n = len(c.CPUs)
	}
	if n > 1 && n != len(c.CPUs) {
		return fmt.Sprintf("cpu needs every worker pinned to a CPU of its own: %d workers, %d CPUs in cpus", n, len(c.CPUs))
	}
	return ""
}

// validate checks every invariant listed in doc.go and reports each broken
// one through r. It is shared by Parse, FromFlags and the fuzz test.
func (c *Config) validate(r *report) {
	if c.Interface == "" {
		r.add(topField("interface"), "required")
	} else if !validIfName(c.Interface) {
		r.add(topField("interface"), fmt.Sprintf("%q is not a valid interface name", c.Interface))
	}
	if c.Workers < 0 || c.Workers > maxWorkers {
		r.add(topField("workers"), rangeMsg(0, maxWorkers, int64(c.Workers)))
	}
	if c.FlowTable.Size < 1 || c.FlowTable.Size > maxFlowTableSize {
		r.add(topField("flow_table.size"), rangeMsg(1, maxFlowTableSize, int64(c.FlowTable.Size)))
	}
	if c.FlowTable.IdleTimeout <= 0 {
		r.add(topField("flow_table.idle_timeout"), "must be positive, got "+c.FlowTable.IdleTimeout.String())
	}
	if c.NeighborRefresh < minNeighborRefresh {
		r.add(topField("neighbor_refresh"), "must be at least "+minNeighborRefresh.String()+", got "+c.NeighborRefresh.String())
	}
	if len(c.Services) == 0 {
		r.add(topField("services"), "at least one service is required")
	}
	if n := c.backendCount(); n > MaxBackends {
		r.add(topField("services"), fmt.Sprintf("%d backends over all services: at most %d", n, MaxBackends))
	}
	if err := CheckAdmin(c.Admin); err != nil {
		r.add(topField("admin"), err.Error())
	}
	if c.DrainTimeout < 0 {
		r.add(topField("drain_timeout"), "must not be negative, got "+c.DrainTimeout.String())
	}
	if c.BusyPoll < 0 || c.BusyPoll > maxBusyPoll {
		r.add(topField("busy_poll"), fmt.Sprintf("must be between 0s and %s, got %s", maxBusyPoll, c.BusyPoll))
	}
	if msg := c.checkFanout(); msg != "" {
		r.add(topField("fanout"), msg)
	}
	if msg := c.checkRing(); msg != "" {
		r.add(topField("ring"), msg)
	}

	type key struct {
		vip   netip.Addr
		port  uint16
		proto Protocol
	}
	names := map[string]int{}
	keys := map[key]int{}
	vips := map[netip.Addr]int{} // first service with this VIP
	for i := range c.Services {
		s := &c.Services[i]
		if r.bad(svcField(i, "")) {
			continue
		}
		switch {
		case s.Name == "":
			r.add(svcField(i, "name"), "required")
		case !validName(s.Name):
			r.add(svcField(i, "name"), fmt.Sprintf("%q is not a valid service name (use 1 to 63 of A-Z a-z 0-9 _ . -)", s.Name))
		default:
			if k, dup := names[s.Name]; dup {
				r.add(svcField(i, "name"), fmt.Sprintf("duplicate name %q (also %s)", s.Name, pathOf(r, svcField(k, ""))))
			} else {
				names[s.Name] = i
			}
		}
		vipOK := false
		switch {
		case !s.VIP.IsValid():
			r.add(svcField(i, "vip"), "required")
		default:
			if msg := checkAddr(s.VIP); msg != "" {
				r.add(svcField(i, "vip"), msg)
			} else {
				vipOK = !r.bad(svcField(i, "vip"))
			}
		}
		if s.Protocol != TCP && s.Protocol != UDP {
			r.add(svcField(i, "protocol"), s.Protocol.String()+" is not supported: use tcp or udp")
		}
		if vipOK && !r.bad(svcField(i, "port")) && !r.bad(svcField(i, "protocol")) {
			k := key{s.VIP, s.Port, s.Protocol}
			if other, dup := keys[k]; dup {
				r.add(svcField(i, ""), fmt.Sprintf("%s is also used by %s (%q)",
					formatVIP(s.VIP, s.Port, s.Protocol), pathOf(r, svcField(other, "")), c.Services[other].Name))
			} else {
				keys[k] = i
			}
		}
		if vipOK {
			if _, seen := vips[s.VIP]; !seen {
				vips[s.VIP] = i
			}
		}
		if len(s.Backends) == 0 {
			r.add(svcField(i, "backends"), "at least one backend is required")
		}
		validateHealth(r, func(name string) field { return svcField(i, name) }, &s.Health, s.Port)
		switch ts := s.TableSize; {
		case ts < 2 || ts > maxTableSize:
			r.add(svcField(i, "table_size"), rangeMsg(2, maxTableSize, int64(ts)))
		case !isPrime(ts):
			msg := fmt.Sprintf("%d is not prime", ts)
			if p := nextPrime(ts); p <= maxTableSize {
				msg += fmt.Sprintf(" (next prime: %d)", p)
			}
			r.add(svcField(i, "table_size"), msg)
		case uint64(ts) < uint64(len(s.Backends)):
			r.add(svcField(i, "table_size"), fmt.Sprintf("must be at least the number of backends (%d), got %d", len(s.Backends), ts))
		}
	}

	for i := range c.Services {
		s := &c.Services[i]
		if r.bad(svcField(i, "")) {
			continue
		}
		vipOK := s.VIP.IsValid() && !r.bad(svcField(i, "vip")) && checkAddr(s.VIP) == ""
		seen := map[netip.Addr]int{}
		for j := range s.Backends {
			b := &s.Backends[j]
			if r.bad(beField(i, j, "")) {
				continue
			}
			af := beField(i, j, "address")
			a := b.Address
			switch {
			case !a.IsValid():
				r.add(af, "required")
			case checkAddr(a) != "":
				r.add(af, checkAddr(a))
			case r.bad(af):
			case vipOK && a.Is4() != s.VIP.Is4():
				r.add(af, fmt.Sprintf("%s is %s but the vip %s is %s", a, family(a), s.VIP, family(s.VIP)))
			case vipOK && a == s.VIP:
				r.add(af, fmt.Sprintf("%s is the service's own vip", a))
			default:
				if k, isVIP := vips[a]; isVIP {
					r.add(af, fmt.Sprintf("%s is the vip of %s (%q)", a, pathOf(r, svcField(k, "")), c.Services[k].Name))
				} else if k, dup := seen[a]; dup {
					r.add(af, fmt.Sprintf("%s is listed twice (also %s)", a, pathOf(r, beField(i, k, ""))))
				} else {
					seen[a] = j
				}
			}
			if b.MAC != nil {
				if msg := checkMAC(b.MAC); msg != "" {
					r.add(beField(i, j, "mac"), msg)
				}
			}
			if b.Weight > maxWeight {
				r.add(beField(i, j, "weight"), rangeMsg(0, maxWeight, int64(b.Weight)))
			}
			if !b.Health.equal(&s.Health) {
				validateHealth(r, func(name string) field { return beField(i, j, name) }, &b.Health, s.Port)
			}
		}
	}
}

// backendCount counts the backends of every service.
func (c *Config) backendCount() int {
	n := 0
	for i := range c.Services {
		n += len(c.Services[i].Backends)
	}
	return n
}

func pathOf(r *report, f field) string {
	p, _ := r.loc.locate(f)
	return p
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkAddr returns why a is not usable as a VIP or backend address, or "".
func checkAddr(a netip.Addr) string {
	switch {
	case a.Zone() != "":
		return fmt.Sprintf("%q has a zone; zones are not supported", a.String())
	case a.Is4In6():
		return fmt.Sprintf("%s is an IPv4-mapped IPv6 address; write it as %s", a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Sprintf("%s is the unspecified address", a)
	case a.IsLoopback():
		return fmt.Sprintf("%s is a loopback address", a)
	case a.IsMulticast():
		return fmt.Sprintf("%s is a multicast address", a)
	case a.IsLinkLocalUnicast():
		return fmt.Sprintf("%s is a link-local address", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%s is the broadcast address", a)
	}
	return ""
}

// checkMAC returns why m is not usable as a static backend MAC, or "".
func checkMAC(m net.HardwareAddr) string {
	switch {
	case len(m) != 6:
		return fmt.Sprintf("%s is not a 6-byte Ethernet address", m)
	case m[0]&1 != 0:
		return fmt.Sprintf("%s is a multicast address", m)
	case bytes.Equal(m, make([]byte, 6)):
		return fmt.Sprintf("%s is the all-zero address", m)
	}
	return ""
}

// validIfName mirrors the kernel's dev_valid_name.
func validIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == ':' || c == 0:
			return false
		case c == ' ' || c >= '\t' && c <= '\r':
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func parseProtocol(s string) (Protocol, string) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, ""
	case "udp":
		return UDP, ""
	}
	return 0, fmt.Sprintf("%q is not a protocol: use tcp or udp", s)
}

// isPrime is trial division; table sizes are below 1<<24, so at most ~2000
// divisions.
func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint64(3); d*d <= uint64(n); d += 2 {
		if uint64(n)%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the smallest prime above n, or a value above
// maxTableSize when there is none in range.
func nextPrime(n uint32) uint32 {
	for p := uint64(n) + 1; p <= maxTableSize; p++ {
		if isPrime(uint32(p)) {
			return uint32(p)
		}
	}
	return maxTableSize + 1
}

// formatVIP writes a VIP in the syntax ParseVIP reads.
func formatVIP(a netip.Addr, port uint16, p Protocol) string {
	if port == 0 {
		return a.String() + "/" + p.String()
	}
	return netip.AddrPortFrom(a, port).String() + "/" + p.String()
}
