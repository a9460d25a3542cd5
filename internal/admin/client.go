package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dsrlb/dsrlb/dataplane"
)

// Client talks to a running balancer's admin endpoint.
type Client struct {
	Addr string // host:port
	HTTP *http.Client
}

func (c *Client) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no balancer answers on %s: is `dsrlb run` running (in this network namespace) with its admin endpoint on %s?", c.Addr, c.Addr)
		}
		return nil, fmt.Errorf("admin endpoint %s: %w", c.Addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin endpoint %s: %w", c.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Status fetches the balancer's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	body, err := c.do(ctx, http.MethodGet, "/status")
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("admin endpoint %s: bad status: %w", c.Addr, err)
	}
	return &st, nil
}

// StatusJSON fetches the balancer's status as JSON text.
func (c *Client) StatusJSON(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "/status")
}

// Reload asks the balancer to re-read its config file.
func (c *Client) Reload(ctx context.Context) (string, error) {
	body, err := c.do(ctx, http.MethodPost, "/reload")
	return strings.TrimSpace(string(body)), err
}

// Backend drains or enables a backend ("drain" or "enable").
func (c *Client) Backend(ctx context.Context, action, service, addr string) (string, error) {
	body, err := c.do(ctx, http.MethodPost, "/backends/"+url.PathEscape(service)+"/"+url.PathEscape(addr)+"/"+action)
	return strings.TrimSpace(string(body)), err
}

// Format writes st as tables for a person at a terminal.
func Format(w io.Writer, st *Status) {
	var fwd, recv, drop, ring, live, tracking, moves, onBlocks uint64
	var wait dataplane.RingWaits
	for _, wk := range st.Workers {
		live += wk.FlowsLive
		tracking += wk.FlowTracking
		recv += wk.Received
		fwd += wk.Forwarded()
		drop += wk.Dropped()
		ring += wk.RingDrops
		moves += wk.RingMoves
		onBlocks += wk.RingBlocks
		wait.Add(wk.RingWaits())
	}
	fmt.Fprintf(w, "dsrlb %s on %s, up %s, %d workers, %d table builds (last %s)\n",
		st.Version, st.Interface, time.Since(st.Started).Round(time.Second), len(st.Workers), st.Builds, st.LastBuild.Round(time.Microsecond))
	fmt.Fprintf(w, "frames: received %d, forwarded %d, dropped %d, ring full %d\n", recv, fwd, drop, ring)
	fmt.Fprintf(w, "flow tables: %d of %d workers tracking flows (since a table change), %d entries\n", tracking, len(st.Workers), live)
	if moves > 0 {
		fmt.Fprintf(w, "ring auto: %d moves, %d of %d workers on their ring of blocks\n", moves, onBlocks, len(st.Workers))
	}
	if n := wait.Count(); n > 0 {
		p99 := "beyond " + dataplane.RingWaitBounds[len(dataplane.RingWaitBounds)-1].String()
		if q := wait.Quantile(0.99); q >= 0 {
			p99 = "≤ " + q.String()
		}
		fmt.Fprintf(w, "ring wait (kernel's slot stamp → worker): mean %s, p99 %s, %.2f%% over 100µs\n",
			wait.Mean().Round(100*time.Nanosecond), p99, 100*float64(wait.Beyond(100*time.Microsecond))/float64(n))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVIP\tBACKEND\tSTATE\tWEIGHT\tSHARE\tPPS\tFLOWS\tPACKETS\tREASON")
	for _, s := range st.Services {
		for _, b := range s.Backends {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f%%\t%.0f\t%d\t%d\t%s\n",
				s.Name, s.Key, b.Address, b.State, b.Weight, 100*b.Share, b.PPS, b.NewFlows, b.Packets, b.Reason)
		}
	}
	tw.Flush()
	if drop > 0 {
		fmt.Fprintln(w, "\ndrops by reason:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for r := 1; r < dataplane.NumReasons && r < len(st.Reasons); r++ {
			var n uint64
			for _, wk := range st.Workers {
				n += wk.Reasons[r]
			}
			if n > 0 {
				fmt.Fprintf(tw, "  %s\t%d\n", st.Reasons[r], n)
			}
		}
		tw.Flush()
	}
}
