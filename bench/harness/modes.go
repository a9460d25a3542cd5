package harness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/bench/testbed"
	"github.com/dsrlb/dsrlb/dataplane"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// ModeNftLocal is the name of the kernel reference run without RPS.
const ModeNftLocal = "nft-local"

// kernelReferences are the modes dsrlb's rates and CPU costs are compared
// with, besides the direct path.
var kernelReferences = []string{"nft", ModeNftLocal}

// Mode is one way of getting the generator's frames to the sinks.
type Mode interface {
	// Name is "direct", "nft", "nft-local", "dsrlb-wN" or "dsrlb-wN-alt".
	Name() string
	// Target is the MAC address the generator sends to.
	Target(b *testbed.Bed) net.HardwareAddr
	// Start sets the mode up on b and returns once it forwards.
	Start(ctx context.Context, b *testbed.Bed) error
	// Stop undoes Start and returns a note for the record (dsrlb's own
	// counters).
	Stop() (note string, err error)
}

// Direct is the path without a balancer: the generator sends straight to
// the first sink. Its rate is the ceiling of the machine.
type Direct struct{}

func (Direct) Name() string                              { return "direct" }
func (Direct) Target(b *testbed.Bed) net.HardwareAddr    { return b.Sinks[0].MAC }
func (Direct) Start(context.Context, *testbed.Bed) error { return nil }
func (Direct) Stop() (string, error)                     { return "", nil }

// Backend is a sink as the balancers see it.
type Backend struct {
	Addr netip.Addr
	MAC  net.HardwareAddr
}

func backends(b *testbed.Bed) []Backend {
	var out []Backend
	for _, s := range b.Sinks {
		out = append(out, Backend{Addr: s.Addr4, MAC: s.MAC})
	}
	return out
}

// NftTable is the nftables table of the kernel reference.
const NftTable = "dsrlb_bench"

// NftRuleset is the kernel reference balancer, the way nftlb does DSR: at
// the netdev ingress hook of the balancer's interface, a frame for the
// VIP's port gets the balancer's MAC as source, a backend's MAC chosen by
// jhash(source address . source port) mod N as destination, and is sent
// back out of the same interface. Both UDP and TCP are served.
func NftRuleset(ifname string, vip netip.AddrPort, lbMAC net.HardwareAddr, bes []Backend) string {
	var m strings.Builder
	for i, be := range bes {
		if i > 0 {
			m.WriteString(", ")
		}
		fmt.Fprintf(&m, "%d : %s", i, be.MAC)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n", NftTable)
	b.WriteString("\tchain ingress {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook ingress device %q priority 0; policy accept;\n", ifname)
	for _, proto := range []string{"udp", "tcp"} {
		fmt.Fprintf(&b, "\t\tip daddr %s %s dport %d ether saddr set %s ether daddr set jhash ip saddr . %s sport mod %d map { %s } fwd to %q\n",
			vip.Addr(), proto, vip.Port(), lbMAC, proto, len(bes), m.String(), ifname)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// Nft is the kernel reference (NftRuleset) on the balancer host.
type Nft struct {
	VIP netip.AddrPort
	// Local is the reference without RPS, whatever Config.RPS says: each
	// frame is balanced on the CPU that sent it, inside the sender's
	// softirq, with no hand-over to another CPU (mode "nft-local").
	Local    bool
	bed      *testbed.Bed
	leftover string // tables found (and flushed) before the reference loaded
}

func (n *Nft) Name() string {
	if n.Local {
		return ModeNftLocal
	}
	return "nft"
}
func (*Nft) Target(b *testbed.Bed) net.HardwareAddr { return b.LB.MAC }

// Start loads the reference into an empty ruleset: a table left behind in
// the balancer's namespace (dsrlb installs a netdev ingress drop for the
// VIPs while it runs, and a killed dsrlb cannot remove it) would sit in
// front of the reference, so the namespace's ruleset is flushed first.
func (n *Nft) Start(ctx context.Context, b *testbed.Bed) error {
	out, err := b.LB.NS.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft list tables in %s: %w\n%s", b.LB.NS.Name(), err, out)
	}
	n.leftover = strings.TrimSpace(string(out))
	if n.leftover != "" {
		if err := b.Nft(b.LB, "flush ruleset\n"); err != nil {
			return err
		}
	}
	n.bed = b
	return b.Nft(b.LB, NftRuleset(b.LB.Link, n.VIP, b.LB.MAC, backends(b)))
}

func (n *Nft) Stop() (string, error) {
	if n.bed == nil {
		return "", nil
	}
	b := n.bed
	n.bed = nil
	note := ""
	if n.leftover != "" {
		note = "flushed leftover tables before loading the reference: " + strings.ReplaceAll(n.leftover, "\n", "; ")
		n.leftover = ""
	}
	out, err := b.LB.NS.Command("nft", "delete", "table", "netdev", NftTable).CombinedOutput()
	if err != nil {
		return note, fmt.Errorf("remove nft table %s in %s: %w\n%s", NftTable, b.LB.NS.Name(), err, out)
	}
	return note, nil
}

// DsrlbArgs is the command line of `dsrlb run` for the benchmark: the VIP's
// port for UDP and TCP, every sink as a backend with its MAC (no ARP).
func DsrlbArgs(ifname string, vip netip.AddrPort, workers int, bes []Backend) []string {
	args := []string{"run", "--interface", ifname,
		"--vip", fmt.Sprintf("%s/udp", vip), "--vip", fmt.Sprintf("%s/tcp", vip)}
	for _, be := range bes {
		args = append(args, "--backend", fmt.Sprintf("%s,mac=%s", be.Addr, be.MAC))
	}
	return append(args, "--workers", fmt.Sprint(workers))
}

// Dsrlb runs the dsrlb binary on the balancer host.
type Dsrlb struct {
	Bin     string
	Workers int
	VIP     netip.AddrPort
	Flags   []string // more flags for dsrlb run
	// PhaseFlags are added after Flags for the current phase only.
	PhaseFlags []string
	// Label follows the mode's name (AltSuffix for the A/B variant).
	Label string
	// VirtualMAC runs dsrlb with --vip-mac auto: the generator then sends
	// to the balancer's virtual MAC (dataplane.VirtualMAC of its own).
	VirtualMAC bool

	cmd     *exec.Cmd
	out     *syncbuf.Buffer
	done    chan struct{}
	waitErr error
}

func (d *Dsrlb) Name() string { return fmt.Sprintf("dsrlb-w%d%s", d.Workers, d.Label) }

// AltSuffix ends the name of the A/B variant of a dsrlb mode (Config.AltBin,
// Config.AltFlags): dsrlb-w1-alt is compared with dsrlb-w1.
const AltSuffix = "-alt"

func (d *Dsrlb) Target(b *testbed.Bed) net.HardwareAddr {
	if d.VirtualMAC {
		return dataplane.VirtualMAC(b.LB.MAC)
	}
	return b.LB.MAC
}

// ReadyLine is what dsrlb logs once its dataplane is open.
const ReadyLine = "dsrlb running"

func (d *Dsrlb) Start(ctx context.Context, b *testbed.Bed) error {
	d.out = &syncbuf.Buffer{Max: 1 << 20}
	args := DsrlbArgs(b.LB.Link, d.VIP, d.Workers, backends(b))
	if d.VirtualMAC {
		// Pinned on the bridge like every host's MAC (dsrlb's forwarded
		// frames would teach it too, but not before the first one).
		if err := b.PinMAC(b.LB, dataplane.VirtualMAC(b.LB.MAC)); err != nil {
			return err
		}
		args = append(args, "--vip-mac", "auto")
	}
	d.cmd = b.LB.NS.Command(d.Bin, slices.Concat(args, d.Flags, d.PhaseFlags)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := gen.StartTied(d.cmd); err != nil { // its own process group, killed if we die
		d.cmd = nil // nothing for Stop to stop
		return fmt.Errorf("start dsrlb: %w", err)
	}
	d.done = make(chan struct{})
	go func() { d.waitErr = d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.out.String(), ReadyLine) {
		select {
		case <-d.done:
			out := d.out.String()
			d.cmd = nil
			return fmt.Errorf("dsrlb exited before %q (%v):\n%s", ReadyLine, d.waitErr, out)
		case <-ctx.Done():
			d.Stop()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out := d.out.String()
			d.Stop()
			return fmt.Errorf("dsrlb did not log %q within 15 s:\n%s", ReadyLine, out)
		}
	}
	// The line comes just before the workers start: give them a moment.
	time.Sleep(100 * time.Millisecond)
	return nil
}

var dsrlbSummary = regexp.MustCompile(`(?m)^dsrlb: received .*$`)

// Stop sends SIGTERM, waits up to 10 s (then SIGKILL) and returns dsrlb's
// final counters line.
func (d *Dsrlb) Stop() (string, error) {
	if d.cmd == nil {
		return "", nil
	}
	var errs []error
	select {
	case <-d.done:
		errs = append(errs, fmt.Errorf("dsrlb exited during the measurement (%v)", d.waitErr))
	default:
		syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-d.done:
			if d.waitErr != nil {
				errs = append(errs, fmt.Errorf("dsrlb exited with %v", d.waitErr))
			}
		case <-time.After(10 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
			errs = append(errs, fmt.Errorf("dsrlb ignored SIGTERM for 10 s and was killed"))
		}
	}
	d.cmd = nil
	out := d.out.String()
	note := dsrlbSummary.FindString(out)
	if len(errs) > 0 {
		return note, fmt.Errorf("%w\n%s", errs[0], tail(out, 2048))
	}
	return note, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Generators.

// ChooseGenerator picks the generator named want ("auto", "pktgen",
// "trafgen" or "txring") for traffic, and says why others were passed over.
func ChooseGenerator(want string, traffic gen.Traffic, pktgenOK bool, trafgenPath string) (g gen.Generator, notes []string, err error) {
	pktgenWhy := ""
	switch {
	case !pktgenOK:
		pktgenWhy = "/proc/net/pktgen is absent (pktgen module not loaded or not built; `modprobe pktgen` where it exists)"
	case traffic != gen.UDP:
		pktgenWhy = "pktgen sends UDP only"
	}
	trafgenWhy := ""
	if trafgenPath == "" {
		trafgenWhy = "trafgen is not installed (Debian: netsniff-ng)"
	}
	switch want {
	case "pktgen":
		if pktgenWhy != "" {
			return nil, nil, fmt.Errorf("generator pktgen: %s", pktgenWhy)
		}
		return gen.Pktgen{}, nil, nil
	case "trafgen":
		if trafgenWhy != "" {
			return nil, nil, fmt.Errorf("generator trafgen: %s", trafgenWhy)
		}
		return gen.Trafgen{Path: trafgenPath}, nil, nil
	case "txring":
		return gen.TxRing{}, nil, nil
	case "auto":
	default:
		return nil, nil, fmt.Errorf("generator %q: want auto, pktgen, trafgen or txring", want)
	}
	if pktgenWhy == "" {
		return gen.Pktgen{}, nil, nil
	}
	notes = append(notes, "pktgen skipped: "+pktgenWhy)
	if trafgenWhy == "" {
		return gen.Trafgen{Path: trafgenPath}, notes, nil
	}
	notes = append(notes, "trafgen skipped: "+trafgenWhy)
	return gen.TxRing{}, notes, nil
}
