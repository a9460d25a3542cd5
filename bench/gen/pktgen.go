package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pktgen drives the kernel's packet generator through /proc/net/pktgen of
// the load's namespace, the way the kernel's samples/pktgen scripts do:
// thread i (kernel thread kpktgend_i, bound to CPU i) gets the device
// "IF@i", each device gets count, clone_skb, burst, pkt_size, delay or
// ratep, dst_mac, src_mac, dst, src_min/src_max, udp_src_min/max,
// udp_dst_min/max, the IPSRC_RND and UDPSRC_RND flags (a source address
// and port drawn per frame) and UDPCSUM (a UDP checksum: pktgen leaves it 0
// otherwise), and pgctrl gets "start" (which blocks until "stop").
//
// Kernel details this follows (net/core/pktgen.c): pgctrl drops the last
// byte written (the newline echo adds), so commands end in "\n"; pgctrl acts
// on the namespace of the writing thread, not of the file, so "start" is
// written from a thread inside the namespace; random source addresses and
// ports are drawn from [min, max), so max is one past the last.
//
// Limits: UDP only; on veth clone_skb must be 0 and burst 1 (veth cannot
// share or batch skbs, pktgen refuses otherwise). The module must be loaded
// (`modprobe pktgen`); Available says whether it is.
type Pktgen struct {
	// CloneSkb and Burst are written as they are (0 and 1 if unset, the
	// only values veth accepts).
	CloneSkb, Burst int
}

// What pgctrl takes: it drops the last byte written (the newline of echo).
const (
	pgctrlStart = "start\n"
	pgctrlStop  = "stop\n"
)

// PktgenDir is where pktgen's control files live, for the calling
// thread's network namespace.
const PktgenDir = "/proc/thread-self/net/pktgen"

// PktgenAvailable reports whether the pktgen module is loaded. Its absence
// is why the benchmark falls back to trafgen or txring.
func PktgenAvailable() bool {
	_, err := os.Stat("/proc/net/pktgen/pgctrl")
	return err == nil
}

// Name implements Generator.
func (Pktgen) Name() string { return "pktgen" }

// PktgenWrite is one command written to one control file.
type PktgenWrite struct {
	File string // relative to PktgenDir: "kpktgend_0", "eth0@0", "pgctrl"
	Cmd  string
}

// Script returns the writes that set up l, thread by thread; "start" is
// not among them.
func (g Pktgen) Script(l *Load) ([]PktgenWrite, error) {
	if l.Traffic != UDP {
		return nil, errors.New("pktgen sends UDP only")
	}
	addrs, ports := FlowSpace(l.Flows)
	burst := max(g.Burst, 1)
	first := SourceBase.As4()
	// One past the last source address: pktgen draws from [src_min, src_max).
	// In 32 bits: 65,536 addresses carry into the second byte.
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], binary.BigEndian.Uint32(first[:])+uint32(addrs))
	var w []PktgenWrite
	for i := 0; i < l.Threads; i++ {
		thread := fmt.Sprintf("kpktgend_%d", i)
		dev := fmt.Sprintf("%s@%d", l.Interface, i)
		w = append(w, PktgenWrite{thread, "rem_device_all"}, PktgenWrite{thread, "add_device " + dev})
		cmds := []string{
			"count 0", // until stopped
			fmt.Sprintf("clone_skb %d", g.CloneSkb),
			fmt.Sprintf("burst %d", burst),
			fmt.Sprintf("pkt_size %d", UDPFrameLen),
		}
		if l.Rate > 0 {
			cmds = append(cmds, fmt.Sprintf("ratep %d", max(1, int64(l.Rate/float64(l.Threads)+0.5))))
		} else {
			cmds = append(cmds, "delay 0")
		}
		cmds = append(cmds,
			"dst_mac "+l.DstMAC.String(),
			"src_mac "+l.SrcMAC.String(),
			"dst "+l.VIP.Addr().String(),
			fmt.Sprintf("src_min %d.%d.%d.%d", first[0], first[1], first[2], first[3]),
			fmt.Sprintf("src_max %d.%d.%d.%d", end[0], end[1], end[2], end[3]),
			fmt.Sprintf("udp_dst_min %d", l.VIP.Port()),
			fmt.Sprintf("udp_dst_max %d", l.VIP.Port()),
			fmt.Sprintf("udp_src_min %d", FirstPort),
			fmt.Sprintf("udp_src_max %d", FirstPort+ports), // [min, max) too
			"flag IPSRC_RND",
			"flag UDPSRC_RND",
			"flag UDPCSUM", // without it the UDP checksum is 0 (none)
		)
		for _, c := range cmds {
			w = append(w, PktgenWrite{dev, c})
		}
	}
	return w, nil
}

// Start implements Generator.
func (g Pktgen) Start(ctx context.Context, l Load) (Run, error) {
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("pktgen: %w", err)
	}
	if l.StampEvery > 0 {
		return nil, errors.New("pktgen: cannot stamp frames (use the txring generator for latency)")
	}
	if !PktgenAvailable() {
		return nil, errors.New("pktgen: /proc/net/pktgen is absent (modprobe pktgen)")
	}
	script, err := g.Script(&l)
	if err != nil {
		return nil, err
	}
	r := &pktgenRun{l: l, started: make(chan error, 1)}
	err = l.NS.Do(func() error {
		for _, w := range script {
			if err := pktgenWrite(w); err != nil {
				return err
			}
		}
		// pgctrl is opened here, inside the namespace; "start" blocks in
		// the write until "stop", so it is written from a goroutine (on a
		// thread of its own in the namespace: see the type's doc).
		f, err := os.OpenFile(PktgenDir+"/pgctrl", os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		r.ctrl = f
		return nil
	})
	if err != nil {
		r.cleanup()
		return nil, fmt.Errorf("pktgen: set up in %s: %w", l.NS.Name(), err)
	}
	go func() {
		r.started <- l.NS.Do(func() error {
			_, err := r.ctrl.WriteString(pgctrlStart)
			return err
		})
	}()
	select {
	case err := <-r.started:
		r.cleanup()
		return nil, fmt.Errorf("pktgen: start returned at once: %v", err)
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
		r.Stop()
		return nil, ctx.Err()
	}
	return r, nil
}

func pktgenWrite(w PktgenWrite) error {
	path := PktgenDir + "/" + w.File
	if err := os.WriteFile(path, []byte(w.Cmd), 0); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write %q to %s: %w (no such pktgen thread or device)", w.Cmd, w.File, err)
		}
		return fmt.Errorf("write %q to %s: %w", w.Cmd, w.File, err)
	}
	return nil
}

type pktgenRun struct {
	l       Load
	ctrl    *os.File
	started chan error
	once    sync.Once
	res     Result
	err     error
}

var pktgenSofar = regexp.MustCompile(`pkts-sofar:\s*(\d+)`)

// Stop writes "stop" to pgctrl, collects every device's pkts-sofar and
// removes the devices from their threads.
func (r *pktgenRun) Stop() (Result, error) {
	r.once.Do(func() {
		var errs []error
		err := r.l.NS.Do(func() error { return pktgenWrite(PktgenWrite{"pgctrl", pgctrlStop}) })
		if err != nil {
			errs = append(errs, err)
		}
		select {
		case <-r.started:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New(`"start" still blocked 5 s after "stop"`))
		}
		var out []string
		r.l.NS.Do(func() error {
			for i := 0; i < r.l.Threads; i++ {
				dev := fmt.Sprintf("%s@%d", r.l.Interface, i)
				b, err := os.ReadFile(PktgenDir + "/" + dev)
				if err != nil {
					continue
				}
				if m := pktgenSofar.FindSubmatch(b); m != nil {
					n, _ := strconv.ParseUint(string(m[1]), 10, 64)
					r.res.Sent += n
				}
				for _, line := range strings.Split(string(b), "\n") {
					if strings.HasPrefix(strings.TrimSpace(line), "Result:") {
						out = append(out, dev+": "+strings.TrimSpace(line))
					}
				}
			}
			return nil
		})
		r.res.Output = strings.Join(out, "\n")
		r.cleanup()
		r.err = errors.Join(errs...)
	})
	return r.res, r.err
}

// cleanup removes the run's devices from their threads.
func (r *pktgenRun) cleanup() {
	if r.ctrl != nil {
		r.ctrl.Close()
	}
	r.l.NS.Do(func() error {
		for i := 0; i < r.l.Threads; i++ {
			pktgenWrite(PktgenWrite{fmt.Sprintf("kpktgend_%d", i), "rem_device_all"})
		}
		return nil
	})
}
