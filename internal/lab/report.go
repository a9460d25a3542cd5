package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"
)

// ErrChecksFailed is wrapped by Run's error when the lab ran to the end but
// what it saw is wrong; the Report is returned with it.
var ErrChecksFailed = errors.New("lab checks failed")

// Counts is what one batch of requests produced. Counter fields are
// differences over the batch; VIPFramesFromLB counts the whole run.
type Counts struct {
	PerServer map[string]int // answers by server name
	Failed    int            // requests without a valid answer
	Total     int            // requests sent

	LBRxPackets, LBTxPackets uint64 // balancer eth0
	LBRxBytes, LBTxBytes     uint64
	ClientRxBytes            uint64 // client eth0
	ClientTxBytes            uint64
	ServersTxBytes           uint64 // sum over the servers' eth0

	// VIPFramesFromLB counts frames the balancer transmitted on eth0 with
	// the VIP as IP source, over the whole run (readiness probes included).
	VIPFramesFromLB int
}

func (c *Counts) add(o Counts) {
	if c.PerServer == nil {
		c.PerServer = make(map[string]int)
	}
	for k, v := range o.PerServer {
		c.PerServer[k] += v
	}
	c.Failed += o.Failed
	c.Total += o.Total
	c.LBRxPackets += o.LBRxPackets
	c.LBTxPackets += o.LBTxPackets
	c.LBRxBytes += o.LBRxBytes
	c.LBTxBytes += o.LBTxBytes
	c.ClientRxBytes += o.ClientRxBytes
	c.ClientTxBytes += o.ClientTxBytes
	c.ServersTxBytes += o.ServersTxBytes
	c.VIPFramesFromLB += o.VIPFramesFromLB
}

// Family is the result for one address family.
type Family struct {
	Name       string         // "IPv4" or "IPv6"
	VIP        netip.AddrPort // what the client requested
	Counts                    // of this family's requests
	FirstError string         // the first failure, if any
	Elapsed    time.Duration  // time for the family's requests
}

// Report is what a lab run saw. The embedded Counts are totals over the
// families.
type Report struct {
	Counts
	Families   []Family
	Servers    []string // server names, srv1..srvN
	Namespaces []string // the lab's namespaces (deleted unless Kept)
	Kept       bool     // the lab was left up (Options.Keep)

	// CaptureError says why the balancer capture may have missed frames;
	// empty when it saw everything.
	CaptureError string
	// BalancerExit says how the balancer ended after SIGTERM: empty for a
	// clean exit.
	BalancerExit string
}

// Problems lists what is wrong with the run, in words; none means the lab
// passed.
func (r *Report) Problems() []string {
	var ps []string
	for _, f := range r.Families {
		if f.Failed > 0 {
			p := fmt.Sprintf("%s: %d of %d requests failed", f.Name, f.Failed, f.Total)
			if f.FirstError != "" {
				p += " (first: " + f.FirstError + ")"
			}
			ps = append(ps, p)
		}
		if f.VIPFramesFromLB > 0 {
			ps = append(ps, fmt.Sprintf("%s: the balancer sent %d frames with source %s: replies went through it instead of straight from the servers",
				f.Name, f.VIPFramesFromLB, f.VIP.Addr()))
		}
		// With 10 new flows per server or more, a server that got none is
		// not bad luck.
		if ok := f.Total - f.Failed; ok >= 10*len(r.Servers) {
			var idle []string
			for _, s := range r.Servers {
				if f.PerServer[s] == 0 {
					idle = append(idle, s)
				}
			}
			if len(idle) > 0 {
				ps = append(ps, fmt.Sprintf("%s: no answers from %s out of %d", f.Name, strings.Join(idle, ", "), ok))
			}
		}
	}
	if r.CaptureError != "" {
		ps = append(ps, "capture on the balancer's eth0 incomplete, VIP frame count is a lower bound: "+r.CaptureError)
	}
	if r.BalancerExit != "" {
		ps = append(ps, "balancer did not exit cleanly on SIGTERM: "+r.BalancerExit)
	}
	return ps
}

// String renders the report for people.
func (r *Report) String() string {
	var b strings.Builder
	for i, f := range r.Families {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s via VIP %s: %d requests in %s, one connection each\n",
			f.Name, f.VIP, f.Total, f.Elapsed.Round(time.Millisecond))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "  \tserver\tanswers\tshare\t\n")
		for _, s := range r.Servers {
			fmt.Fprintf(tw, "  \t%s\t%d\t%s\t\n", s, f.PerServer[s], percent(f.PerServer[s], f.Total))
		}
		fmt.Fprintf(tw, "  \tfailed\t%d\t%s\t\n", f.Failed, percent(f.Failed, f.Total))
		tw.Flush()
		fmt.Fprintf(&b, "  balancer eth0: received %d packets (%s), sent %d packets (%s)\n",
			f.LBRxPackets, size(f.LBRxBytes), f.LBTxPackets, size(f.LBTxBytes))
		fmt.Fprintf(&b, "  client eth0: received %s, sent %s; servers sent %s\n",
			size(f.ClientRxBytes), size(f.ClientTxBytes), size(f.ServersTxBytes))
		fmt.Fprintf(&b, "  frames sent by the balancer with source VIP: %d", f.VIPFramesFromLB)
		switch {
		case f.VIPFramesFromLB > 0:
			b.WriteString(" — replies went through the balancer, this is not DSR\n")
		case r.CaptureError != "":
			b.WriteString(" (capture incomplete)\n")
		default:
			b.WriteString(" — replies bypassed the balancer\n")
		}
	}
	if ps := r.Problems(); len(ps) > 0 {
		b.WriteString("\nPROBLEMS:\n")
		for _, p := range ps {
			b.WriteString("  - " + p + "\n")
		}
	} else if len(r.Families) > 0 {
		b.WriteString("\nOK: every request answered, no reply through the balancer\n")
	}
	return b.String()
}

func percent(n, total int) string {
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

// size renders a byte count with a decimal unit.
func size(n uint64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
