package latency

import (
	"context"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/dsrlb/dsrlb/bench/gen"
	"github.com/dsrlb/dsrlb/bench/testbed"
	"github.com/dsrlb/dsrlb/internal/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The filter passes stamped frames and nothing else.
func TestStampFilter(t *testing.T) {
	vm, err := bpf.NewVM(stampFilter())
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := gen.NewTemplate(&gen.Load{
		SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2},
		VIP: testbed.VIPPort(9), Flows: 1, Traffic: gen.UDP,
	})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 128)
	n := tmpl.Write(frame, 0, 1, 12345)
	if got, _ := vm.Run(frame[:n]); got != probeSnap {
		t.Errorf("stamped frame: filter returns %d, want %d", got, probeSnap)
	}
	n = tmpl.Write(frame, 0, 1, 0)
	if got, _ := vm.Run(frame[:n]); got != 0 {
		t.Errorf("unstamped frame: filter returns %d", got)
	}
	frame[12] = 0x86
	if got, _ := vm.Run(frame[:n]); got != 0 {
		t.Errorf("non-IPv4 frame: filter returns %d", got)
	}
}

// Privileged: the TX-ring generator sends stamped frames straight to a
// sink of a real testbed, the probe there reads them. Two more probes in
// the switch namespace: on the generator's port, which receives the
// frames (upstream of the sink: transit = the bridge hop), and on the
// sink's port, which only sends them (outgoing frames are not read).
func TestProbeOnTestbed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to build network namespaces")
	}
	bed, err := testbed.Build(testbed.Spec{Sinks: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var probes []*Probe
	done := make(chan error, 3)
	for _, where := range []struct {
		ns   *netns.NS
		link string
	}{{bed.Sinks[0].NS, bed.Sinks[0].Link}, {bed.Net.Switch, bed.Gen.Port}, {bed.Net.Switch, bed.Sinks[0].Port}} {
		p, err := Open(where.ns, where.link)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.RecordArrivals(true)
		probes = append(probes, p)
		go func() { done <- p.Run(ctx) }()
	}
	sink, genPort, sinkPort := probes[0], probes[1], probes[2]
	// At 200 kpps the generator's 50 µs pace makes bursts of about 10
	// frames: kicks of at most 4 are its Batch at work.
	const batch, stampEvery = 4, 50
	run, err := gen.TxRing{Batch: batch}.Start(ctx, gen.Load{
		Interface: bed.Gen.Link, NS: bed.Gen.NS, SrcMAC: bed.Gen.MAC, DstMAC: bed.Sinks[0].MAC,
		VIP: testbed.VIPPort(9), Flows: 100, Traffic: gen.UDP, Threads: 1, Rate: 200000, StampEvery: stampEvery,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A count, not a time: a slow machine sends them later.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _ := sink.Seen(); n >= 120 {
			break
		}
	}
	res, err := run.Stop()
	if err != nil {
		t.Error(err)
	}
	// The generator's port and the sink see every stamped frame (the sink's
	// port, which only sends them, none): wait until the last are in at both.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, atSink := sink.Seen()
		_, atGen := genPort.Seen()
		if atSink == atGen {
			break
		}
	}
	cancel()
	for range probes {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	samples, negative := sink.Take()
	s := Summarize(samples)
	t.Logf("sent %d frames in %d kicks; %d samples, p50 %v, p99 %v, max %v, %d negative", res.Sent, res.Kicks, s.Count, s.P50, s.P99, s.Max, negative)
	if res.Kicks < res.Sent/batch {
		t.Errorf("sent %d frames in %d kicks: want at most %d per kick", res.Sent, res.Kicks, batch)
	}
	if s.Count < 120 || s.Count < int(res.Sent/stampEvery)*8/10 {
		t.Errorf("sent %d frames, got %d samples: want about 1 in %d", res.Sent, s.Count, stampEvery)
	}
	if negative > 0 || s.Max > time.Second || s.Min <= 0 {
		t.Errorf("implausible latencies: %+v, %d negative", s, negative)
	}

	down := sink.TakeArrivals()
	if len(down) != s.Count+negative {
		t.Errorf("sink: %d arrivals for %d stamped frames", len(down), s.Count+negative)
	}
	tr := MatchTransit(genPort.TakeArrivals(), down)
	ts := Summarize(tr.Samples)
	t.Logf("bridge transit: %d samples, p50 %v, p99 %v, max %v; upstream only %d, downstream only %d, negative %d, duplicates %d",
		ts.Count, ts.P50, ts.P99, ts.Max, tr.UpstreamOnly, tr.DownstreamOnly, tr.Negative, tr.Duplicates)
	if ts.Count != len(down) || tr.UpstreamOnly != 0 || tr.DownstreamOnly != 0 || tr.Negative != 0 || tr.Duplicates != 0 {
		t.Errorf("every frame passes both probes once: %d of %d matched; upstream only %d, downstream only %d, negative %d, duplicates %d",
			ts.Count, len(down), tr.UpstreamOnly, tr.DownstreamOnly, tr.Negative, tr.Duplicates)
	}
	if ts.Count > 0 && (ts.Min <= 0 || ts.Max > time.Second || ts.P50 > s.P50) {
		t.Errorf("implausible transits (latency p50 %v): %+v", s.P50, ts)
	}
	if got := sinkPort.TakeArrivals(); len(got) != 0 {
		t.Errorf("the probe on the sink's switch port read %d frames the port sent", len(got))
	}
}

// timestampCmsg is an SCM_TIMESTAMPNS control message holding ns.
func timestampCmsg(ns int64) []byte {
	b := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))))
	*(*unix.Timespec)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = unix.NsecToTimespec(ns)
	return b
}

// rxTime finds the timestamp behind other messages, refuses truncated and
// malformed headers, and allocates nothing.
func TestRxTime(t *testing.T) {
	const ns = 1_796_300_000_123_456_789
	ts := timestampCmsg(ns)
	for _, tc := range []struct {
		name   string
		ctrl   []byte
		want   int64
		wantOK bool
	}{
		{"alone", ts, ns, true},
		{"after SCM_RIGHTS", append(unix.UnixRights(3, 4, 5), ts...), ns, true},
		{"none", unix.UnixRights(3), 0, false},
		{"empty", nil, 0, false},
		{"truncated data", ts[:len(ts)-4], 0, false},
		{"truncated header", ts[:unix.CmsgLen(0)-1], 0, false},
		{"zero length", make([]byte, 64), 0, false},
	} {
		got, ok := rxTime(tc.ctrl)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: rxTime = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
	ctrl := append(unix.UnixRights(3), ts...)
	if n := testing.AllocsPerRun(100, func() { rxTime(ctrl) }); n != 0 {
		t.Errorf("rxTime allocates %.0f times per call", n)
	}
}

// FuzzRxTime: no control data makes rxTime panic or loop, and where the
// library's parser accepts the data, both find the same first timestamp.
func FuzzRxTime(f *testing.F) {
	f.Add(timestampCmsg(42))
	f.Add(append(unix.UnixRights(1, 2), timestampCmsg(7)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ctrl []byte) {
		got, ok := rxTime(ctrl)
		msgs, err := unix.ParseSocketControlMessage(ctrl)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				want := (*unix.Timespec)(unsafe.Pointer(&m.Data[0])).Nano()
				if !ok || got != want {
					t.Fatalf("rxTime = %d, %v; the library's parser found %d", got, ok, want)
				}
				return
			}
		}
		if ok {
			t.Fatalf("rxTime = %d, true; the library's parser found no timestamp", got)
		}
	})
}
