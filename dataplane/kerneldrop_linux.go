package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// The balancer's kernel sees every VIP frame after the packet taps have
// copied it into the rings: it would run each through ip_rcv and a route
// lookup only to drop it (the VIP is not local and forwarding is off). A
// netdev ingress rule, which the kernel runs after the taps, drops those
// frames first: less kernel work per packet, and it also keeps a host with
// forwarding on from routing VIP traffic itself. It needs the nft command
// (Debian's nftables); without it dsrlb relies on forwarding being off.

// kernelDrop manages table netdev <name> on one interface.
type kernelDrop struct {
	nft   string // path of the nft command
	iface string
	table string
}

// newKernelDrop returns a manager, or nil when nft is not installed.
func newKernelDrop(iface string) *kernelDrop {
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil
	}
	name := "dsrlb_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, iface)
	return &kernelDrop{nft: path, iface: iface, table: name}
}

// ruleset returns the nft script that replaces the table atomically.
func (k *kernelDrop) ruleset(vips []netip.Addr) string {
	var v4, v6 []string
	for _, v := range vips {
		if v.Is4() {
			v4 = append(v4, v.String())
		} else {
			v6 = append(v6, v.String())
		}
	}
	var b strings.Builder
	// "add" then "delete" makes the delete succeed whether or not the table
	// existed; the whole script is one transaction.
	fmt.Fprintf(&b, "add table netdev %s\ndelete table netdev %s\n", k.table, k.table)
	fmt.Fprintf(&b, "table netdev %s {\n\tchain ingress {\n\t\ttype filter hook ingress device %q priority -500; policy accept;\n", k.table, k.iface)
	if len(v4) > 0 {
		fmt.Fprintf(&b, "\t\tip daddr { %s } counter drop\n", strings.Join(v4, ", "))
	}
	if len(v6) > 0 {
		// A neighbour solicitation sent to a VIP itself (a router
		// confirming that the VIP is still reachable) must get past the
		// drop: the responder's socket, bound to IPv6 alone, sees frames
		// only after this hook.
		fmt.Fprintf(&b, "\t\tip6 daddr { %s } icmpv6 type nd-neighbor-solicit accept\n", strings.Join(v6, ", "))
		fmt.Fprintf(&b, "\t\tip6 daddr { %s } counter drop\n", strings.Join(v6, ", "))
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func (k *kernelDrop) run(script string) error {
	cmd := exec.Command(k.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// install drops frames to vips at the interface's ingress (replacing any
// previous set).
func (k *kernelDrop) install(vips []netip.Addr) error {
	if err := k.run(k.ruleset(vips)); err != nil {
		return fmt.Errorf("install netdev ingress drop for the VIPs on %s: %w", k.iface, err)
	}
	return nil
}

// remove deletes the table.
func (k *kernelDrop) remove() error {
	if err := k.run(fmt.Sprintf("add table netdev %s\ndelete table netdev %s\n", k.table, k.table)); err != nil {
		return fmt.Errorf("remove netdev ingress drop on %s: %w", k.iface, err)
	}
	return nil
}
