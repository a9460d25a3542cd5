package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/dsrlb/dsrlb/internal/netns"
)

// Options configure a lab run. The zero value of every field but Binary is
// usable.
type Options struct {
	// Binary is the dsrlb executable run inside the namespaces with
	// `ip netns exec` (the CLI passes os.Executable()). Required.
	Binary   string
	Requests int  // requests per address family; 0 means 1000
	Servers  int  // number of servers, 1..89; 0 means 3
	IPv6     bool // also run everything over IPv6
	Keep     bool // leave the lab up after a complete run and print how to explore it
	// Out receives progress lines, the balancer's output and the report;
	// nil discards them.
	Out io.Writer
	Log *slog.Logger // nil logs nothing
}

// Defaults for Options.
const (
	DefaultRequests = 1000
	DefaultServers  = 3
)

// Timing of a run. These bound waits; they are not measurements.
const (
	readyTimeout   = 10 * time.Second // for the balancer to answer on the VIP
	requestTimeout = 5 * time.Second  // per request
	stopTimeout    = 10 * time.Second // between SIGTERM and SIGKILL
	commandTimeout = 30 * time.Second // for `server up` and `server down`
	workers        = 8                // requests in flight at once
)

func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Binary == "" {
		errs = append(errs, errors.New("Binary: empty, want the path of the dsrlb executable"))
	}
	switch {
	case o.Requests == 0:
		o.Requests = DefaultRequests
	case o.Requests < 0:
		errs = append(errs, fmt.Errorf("Requests: %d, want a positive number", o.Requests))
	}
	switch {
	case o.Servers == 0:
		o.Servers = DefaultServers
	case o.Servers < 0 || o.Servers > maxServers:
		errs = append(errs, fmt.Errorf("Servers: %d, want 1 to %d", o.Servers, maxServers))
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("lab options: %w", err)
	}
	return o, nil
}

// Run builds a lab, runs the balancer and the servers in it, sends the
// requests, prints the report to o.Out and tears the lab down (see the
// package documentation). A run that gets through all its steps returns its
// Report, with an error wrapping ErrChecksFailed if the report shows
// problems; a run that fails on the way returns a nil Report and an error
// naming the step. Cancelling ctx stops the run and tears the lab down; Run
// then returns ctx's error.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &session{o: o, plan: newPlan(o.Servers, o.IPv6), out: &lockedWriter{w: o.Out}}
	report, err := s.run(ctx)
	if terr := s.teardown(ctx.Err() == nil && err == nil); terr != nil {
		err = errors.Join(err, terr)
	}
	if err == nil && report != nil {
		if ps := report.Problems(); len(ps) > 0 {
			err = fmt.Errorf("%w: %s", ErrChecksFailed, strings.Join(ps, "; "))
		}
	}
	return report, err
}

// session is one run's state; teardown undoes what run did.
type session struct {
	o    Options
	plan plan
	out  *lockedWriter

	net         *labnet.Net
	stateDir    string // the servers' state files; "" until made, and once removed
	nameServers []func()
	serversUp   []*labnet.Host // where `server up` was started: teardown runs `server down` there
	capture     *vipCapture
	lb          *child
	report      *Report
}

func (s *session) phase(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.out.printf("==> %s\n", msg)
	s.o.Log.Debug("lab: " + msg)
}

func (s *session) run(ctx context.Context) (*Report, error) {
	prefix := netns.UniquePrefix("dsrlb")
	if s.o.Keep {
		prefix = netns.KeptPrefix("dsrlb") // it outlives this process: no sweep may take it
	}
	s.phase("building the lab network: namespaces %s{sw,client,lb,%s}", prefix, serverRange(s.plan.servers))
	n, err := labnet.Build(s.plan.spec(prefix))
	if err != nil {
		return nil, err
	}
	s.net = n
	s.report = &Report{Servers: s.plan.servers, Namespaces: n.Namespaces()}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	lb := n.Host("lb")
	s.capture, err = startCapture(n, s.plan)
	if err != nil {
		return nil, err
	}

	// The servers' state files go to a directory of the lab's own, not to
	// /run/dsrlb, so that teardown removes them whatever became of `up`.
	if s.stateDir, err = makeStateDir(s.o.Keep); err != nil {
		return nil, err
	}
	s.phase("configuring the servers: %s", strings.Join(append([]string{"dsrlb"}, s.plan.serverArgs("up", s.statePath("<server>"))...), " "))
	for _, name := range s.plan.servers {
		h := n.Host(name)
		// Registered first: an `up` that fails or is killed after writing
		// its state file has changed the server, and `down` undoes that.
		s.serversUp = append(s.serversUp, h)
		if err := s.command(ctx, h, "up"); err != nil {
			return nil, err
		}
		ln, err := h.Listen("tcp", fmt.Sprintf(":%d", vipPort))
		if err != nil {
			return nil, fmt.Errorf("start HTTP server on %s: %w", name, err)
		}
		s.nameServers = append(s.nameServers, labnet.NameServer(ln, name))
	}

	s.phase("starting the balancer: dsrlb %s", strings.Join(s.plan.runArgs(), " "))
	s.lb, err = startChild(lb.NS, s.o.Binary, s.plan.runArgs(), s.out, "balancer| ")
	if err != nil {
		return nil, fmt.Errorf("start the balancer in %s: %w", lb.NS.Name(), err)
	}
	client := n.Host("client")
	for f := range s.plan.families {
		s.phase("waiting for the balancer to answer on %s", s.plan.url(f))
		if err := s.waitReady(ctx, client, f); err != nil {
			return nil, err
		}
	}

	for f := range s.plan.families {
		fam, err := s.requests(ctx, f)
		if err != nil {
			return nil, err
		}
		s.report.Families = append(s.report.Families, fam)
	}
	s.stopBalancer()
	s.finishCapture()
	for _, f := range s.report.Families {
		s.report.add(f.Counts)
	}
	s.out.printf("\n%s\n", s.report)
	return s.report, nil
}

func serverRange(servers []string) string {
	if len(servers) == 1 {
		return servers[0]
	}
	return servers[0] + ".." + servers[len(servers)-1]
}

// State directories are made in os.TempDir(): stateDirBase, this process's
// ID, "-" and a random suffix, so that a lab killed before its teardown
// leaves one the next lab can tell is stale. A kept lab's has no process
// ID, like its namespaces (netns.KeptPrefix): no sweep takes it.
const (
	stateDirBase = "dsrlb-lab-state-"
	keptStateDir = "dsrlb-lab-kept-state-"
)

// makeStateDir removes the state directories of labs that are gone, then
// makes this lab's.
func makeStateDir(keep bool) (string, error) {
	sweepStateDirs()
	pattern := stateDirBase + strconv.Itoa(os.Getpid()) + "-"
	if keep {
		pattern = keptStateDir
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", fmt.Errorf("create the servers' state directory: %w", err)
	}
	return dir, nil
}

// sweepStateDirs removes, best effort, every state directory whose lab
// process no longer runs.
func sweepStateDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), stateDirBase+"*"))
	for _, d := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), stateDirBase), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue // still running (or its ID was reused: left alone)
		}
		os.RemoveAll(d)
	}
}

// statePath is the state file of `dsrlb server up` on a server.
func (s *session) statePath(server string) string {
	return filepath.Join(s.stateDir, server+".json")
}

// command runs `dsrlb server VERB ...` on a server host.
func (s *session) command(ctx context.Context, h *labnet.Host, verb string) error {
	args := s.plan.serverArgs(verb, s.statePath(h.Name))
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	c, err := startChild(h.NS, s.o.Binary, args, s.out, h.Name+"| ")
	if err == nil {
		select {
		case <-c.exited:
		case <-ctx.Done():
			c.kill()
			err = ctx.Err()
		}
		if err == nil {
			err = c.err
		}
	}
	if err != nil {
		return fmt.Errorf("dsrlb %s in %s: %w", strings.Join(args, " "), h.NS.Name(), err)
	}
	return nil
}

// waitReady retries a request to the VIP until one is answered by a server.
func (s *session) waitReady(ctx context.Context, client *labnet.Host, f int) error {
	hc := client.HTTPClient(false)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for attempt := 1; ; attempt++ {
		_, err := s.get(ctx, hc, s.plan.url(f), time.Second)
		if err == nil {
			s.o.Log.Debug("lab: balancer ready", "url", s.plan.url(f), "attempts", attempt)
			return nil
		}
		last = err
		select {
		case <-s.lb.exited:
			return fmt.Errorf("the balancer exited before answering on %s: %s", s.plan.url(f), s.lb.exitText())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the balancer did not answer on %s within %s: %w", s.plan.url(f), readyTimeout, last)
		}
	}
}

// get requests url and returns the name of the server that answered.
func (s *session) get(ctx context.Context, hc *http.Client, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	name := strings.TrimSpace(string(body))
	for _, srv := range s.plan.servers {
		if name == srv {
			return name, nil
		}
	}
	return "", fmt.Errorf("unexpected answer %q", body)
}

// requests sends o.Requests requests in family f, each on a new connection.
func (s *session) requests(ctx context.Context, f int) (Family, error) {
	fam := s.plan.families[f]
	res := Family{Name: fam.name, VIP: netip.AddrPortFrom(fam.vip, vipPort)}
	res.PerServer = make(map[string]int, len(s.plan.servers))
	total := s.o.Requests
	s.phase("sending %d requests to %s, one connection each", total, s.plan.url(f))

	before, err := s.readCounters()
	if err != nil {
		return res, err
	}
	start := time.Now()
	client := s.net.Host("client")
	hc := client.HTTPClient(false)
	jobs := make(chan struct{})
	type result struct {
		server string
		err    error
	}
	results := make(chan result)
	var wg sync.WaitGroup
	for range min(workers, total) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				name, err := s.get(ctx, hc, s.plan.url(f), requestTimeout)
				results <- result{name, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for range total {
			select {
			case jobs <- struct{}{}:
			case <-ctx.Done():
				return
			case <-s.lb.exited:
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	done, decile := 0, 0
	for r := range results {
		done++
		if r.err != nil {
			res.Failed++
			if res.FirstError == "" {
				res.FirstError = r.err.Error()
			}
			s.o.Log.Debug("lab: request failed", "family", fam.name, "err", r.err)
		} else {
			res.PerServer[r.server]++
		}
		if d := done * 10 / total; d > decile {
			decile = d
			s.out.printf("    %s: %3d%% (%d/%d requests, %d failed)\n", fam.name, d*10, done, total, res.Failed)
		}
	}
	res.Total = done
	res.Elapsed = time.Since(start)
	hc.CloseIdleConnections()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	select {
	case <-s.lb.exited:
		return res, fmt.Errorf("the balancer exited during the %s requests (%d of %d sent): %s", fam.name, done, total, s.lb.exitText())
	default:
	}
	after, err := s.readCounters()
	if err != nil {
		return res, err
	}
	lb := after.lb.Sub(before.lb)
	res.LBRxPackets, res.LBTxPackets = lb.RxPackets, lb.TxPackets
	res.LBRxBytes, res.LBTxBytes = lb.RxBytes, lb.TxBytes
	cl := after.client.Sub(before.client)
	res.ClientRxBytes, res.ClientTxBytes = cl.RxBytes, cl.TxBytes
	res.ServersTxBytes = after.serversTx - before.serversTx
	return res, nil
}

type counters struct {
	lb, client labnet.LinkStats
	serversTx  uint64
}

func (s *session) readCounters() (counters, error) {
	var c counters
	var err error
	if c.lb, err = s.net.Host("lb").Stats(); err != nil {
		return c, err
	}
	if c.client, err = s.net.Host("client").Stats(); err != nil {
		return c, err
	}
	for _, name := range s.plan.servers {
		st, err := s.net.Host(name).Stats()
		if err != nil {
			return c, err
		}
		c.serversTx += st.TxBytes
	}
	return c, nil
}

// stopBalancer sends SIGTERM and waits; a balancer that does not exit in
// time is killed. How it ended goes into the report.
func (s *session) stopBalancer() {
	if s.lb == nil {
		return
	}
	s.phase("stopping the balancer (SIGTERM)")
	lb := s.lb
	s.lb = nil
	if exit := lb.stop(stopTimeout); exit != "" && s.report != nil {
		s.report.BalancerExit = exit
	}
}

func (s *session) finishCapture() {
	if s.capture == nil {
		return
	}
	counts, err := s.capture.stop()
	s.capture = nil
	if s.report == nil {
		return
	}
	if err != nil {
		s.report.CaptureError = err.Error()
	}
	for i := range s.report.Families {
		s.report.Families[i].VIPFramesFromLB = counts[i]
	}
}

// teardown undoes whatever run got to, in reverse. With keep (and
// Options.Keep) the servers stay configured and the namespaces and the
// state directory stay.
func (s *session) teardown(complete bool) error {
	keep := complete && s.o.Keep && s.net != nil
	s.stopBalancer()
	s.finishCapture()
	for _, stop := range s.nameServers {
		stop()
	}
	s.nameServers = nil
	var errs []error
	if !keep && len(s.serversUp) > 0 {
		s.phase("unconfiguring the servers: dsrlb %s", strings.Join(s.plan.serverArgs("down", s.statePath("<server>")), " "))
		for _, h := range s.serversUp {
			// Up writes its state file before it changes anything: without
			// one there is nothing to restore, and down would only say so.
			if _, err := os.Stat(s.statePath(h.Name)); errors.Is(err, os.ErrNotExist) {
				s.o.Log.Debug("lab: server has no state file, nothing to restore", "server", h.Name)
				continue
			}
			// The run's context may be cancelled already: down gets its own.
			if err := s.command(context.Background(), h, "down"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.serversUp = nil
	if keep {
		s.report.Kept = true
		s.out.printf("%s", s.exploreText())
		return errors.Join(errs...)
	}
	if s.net != nil {
		s.phase("deleting the lab's namespaces")
		if err := s.net.Close(); err != nil {
			errs = append(errs, err)
		}
		s.net = nil
	}
	if s.stateDir != "" {
		if err := os.RemoveAll(s.stateDir); err != nil {
			errs = append(errs, fmt.Errorf("remove the servers' state directory: %w", err))
		}
		s.stateDir = ""
	}
	return errors.Join(errs...)
}

// exploreText tells how to look around a kept lab and delete it.
func (s *session) exploreText() string {
	return exploreText(s.net.Namespaces(), s.net.Host("lb").NS.Name(), s.net.Host("client").NS.Name(),
		s.net.Host(s.plan.servers[0]).NS.Name(), s.o.Binary, s.stateDir, s.plan)
}

// exploreText is the text for a kept lab; srvNS is the first server's
// namespace.
func exploreText(namespaces []string, lbNS, clientNS, srvNS, binary, stateDir string, p plan) string {
	var b strings.Builder
	b.WriteString("\nThe lab is still up. Look around with:\n")
	fmt.Fprintf(&b, "  ip netns exec %s %s %s    # start the balancer again\n", lbNS, binary, strings.Join(p.runArgs(), " "))
	fmt.Fprintf(&b, "  ip netns exec %s tcpdump -eni eth0    # watch the balancer's traffic\n", lbNS)
	fmt.Fprintf(&b, "  ip netns exec %s ip neigh             # the client's view of the VIP\n", clientNS)
	fmt.Fprintf(&b, "  ip netns exec %s %s %s    # undo server up on %s (state files in %s)\n",
		srvNS, binary, strings.Join(p.serverArgs("down", filepath.Join(stateDir, p.servers[0]+".json")), " "), p.servers[0], stateDir)
	for _, ns := range namespaces {
		fmt.Fprintf(&b, "  ip netns exec %s bash\n", ns)
	}
	b.WriteString("The servers keep their VIP configuration; their HTTP servers stopped with this\n" +
		"process, so start something listening on :80 in a server's namespace to get answers.\n")
	b.WriteString("Delete the lab with:\n ")
	for _, ns := range namespaces {
		fmt.Fprintf(&b, " ip netns del %s;", ns)
	}
	fmt.Fprintf(&b, " rm -r %s\n", stateDir)
	return b.String()
}

// vipCapture counts frames the balancer sends with a VIP as source.
type vipCapture struct {
	vips  []netip.Addr // by family index
	mu    sync.Mutex
	count []int // by family index
	stopf func() error
}

// startCapture counts at the switch's port of the balancer: a capture on the
// balancer's own eth0 would miss what its dataplane sends
// (PACKET_QDISC_BYPASS skips the host's taps).
func startCapture(n *labnet.Net, p plan) (*vipCapture, error) {
	c := &vipCapture{count: make([]int, len(p.families))}
	for _, f := range p.families {
		c.vips = append(c.vips, f.vip)
	}
	stop, err := n.SniffPort(context.Background(), "lb", func(frame []byte, outgoing bool) {
		if !outgoing {
			return
		}
		src, ok := ipSource(frame)
		if !ok {
			return
		}
		for i, vip := range c.vips {
			if src == vip {
				c.mu.Lock()
				c.count[i]++
				c.mu.Unlock()
			}
		}
	})
	if err != nil {
		return nil, err
	}
	c.stopf = stop
	return c, nil
}

// stop ends the capture and returns the counts by family.
func (c *vipCapture) stop() ([]int, error) {
	err := c.stopf()
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.count...), err
}

// child is a dsrlb process running in a namespace.
type child struct {
	exited chan struct{} // closed when the process has exited and its output is copied
	err    error         // the exit error with the last output lines; valid after exited is closed
	kill   func()
	signal func(syscall.Signal) error
}

// startChild runs binary with args in ns, copying its output line by line
// to out behind prefix.
func startChild(ns *netns.NS, binary string, args []string, out *lockedWriter, prefix string) (*child, error) {
	cmd := ns.Command(binary, args...)
	// A process group of its own: the terminal's signals (Ctrl-C, a
	// hangup, which dsrlb run would take for a reload) reach only the lab,
	// which stops its children in order. If the lab dies anyway, they get
	// SIGTERM (Linux: childAttr).
	cmd.SysProcAttr = childAttr()
	pw := &prefixWriter{out: out, prefix: prefix}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{
		exited: make(chan struct{}),
		kill:   func() { cmd.Process.Kill() },
		signal: func(sig syscall.Signal) error { return cmd.Process.Signal(sig) },
	}
	go func() {
		err := cmd.Wait()
		pw.flush()
		if err != nil {
			if tail := pw.last(); tail != "" {
				err = fmt.Errorf("%w: %s", err, tail)
			}
		}
		c.err = err
		close(c.exited)
	}()
	return c, nil
}

// exitText says how the process ended; call it after exited is closed.
func (c *child) exitText() string {
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

// stop sends SIGTERM, waits up to timeout, then kills. It returns "" for a
// clean exit and otherwise how the process ended.
func (c *child) stop(timeout time.Duration) string {
	select {
	case <-c.exited:
		if c.err != nil {
			return "exited before it was stopped: " + c.err.Error()
		}
		return "exited before it was stopped"
	default:
	}
	c.signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		if c.err != nil {
			return c.err.Error()
		}
		return ""
	case <-time.After(timeout):
		c.kill()
		<-c.exited
		return fmt.Sprintf("still running %s after SIGTERM, killed", timeout)
	}
}

// lockedWriter serializes writes from progress lines and child output.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) printf(format string, args ...any) {
	fmt.Fprintf(l, format, args...)
}

// prefixWriter writes complete lines to out, each behind prefix, and keeps
// the last few for error messages.
type prefixWriter struct {
	out    io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
	tail   []string
}

const tailLines = 3

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.line(string(p.buf[:i]))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) line(l string) {
	p.out.Write([]byte(p.prefix + l + "\n"))
	if len(p.tail) == tailLines {
		p.tail = p.tail[1:]
	}
	p.tail = append(p.tail, l)
}

// last returns the last lines written, joined by " / ".
func (p *prefixWriter) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, " / ")
}

// flush writes a last line that had no newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.line(string(p.buf))
		p.buf = nil
	}
}
