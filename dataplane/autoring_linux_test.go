package dataplane

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The program of ring: auto with FanoutCPU picks the worker as the FanoutCPU
// program does (members 0..n-1), then that worker's ring of blocks (member
// n+i) or of slots. Run as in TestCPUFanoutProgram, the CPU loaded as a
// constant.
func TestAutoFanoutProgram(t *testing.T) {
	cpus := []int{5, 2, 7}
	onBlocks := []bool{false, true, false}
	prog := autoFanoutProgram(cpus, onBlocks)
	want := map[int]int{5: 0, 2: 4, 7: 2, 0: 0, 1: 4, 4: 4, 9: 0}
	for _, cpu := range slices.Sorted(maps.Keys(want)) {
		p := append([]bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(cpu)}}, prog[1:]...)
		vm, err := bpf.NewVM(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := vm.Run(make([]byte, 60))
		if err != nil || got != want[cpu] {
			t.Errorf("frame received on CPU %d: member %d (%v), want %d", cpu, got, err, want[cpu])
		}
	}
	if one := autoFanoutProgram(nil, []bool{true}); len(one) != 1 || one[0] != (bpf.RetConstant{Val: 1}) {
		t.Errorf("one worker on its blocks: program %v, want ret #1", one)
	}
}

// With RingConfig.Auto the worker moves between its ring of slots and its
// ring of blocks while frames keep coming, and every frame of a flow is
// forwarded once and in order across the moves: the kernel fills one ring
// at a time, and the worker empties the ring it leaves first.
func TestAutoRingMovesKeepOrder(t *testing.T) {
	p := newTxPair(t)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 1, Ring: RingConfig{Auto: true}})
	if len(d.sys.autos) != 1 {
		t.Fatalf("%d worker ring pairs, want 1", len(d.sys.autos))
	}
	a := d.sys.autos[0]
	if got := d.sockets(); len(got) != 2 || got[0] != a.slots || got[1] != a.blocks {
		t.Fatalf("SetTable's sockets: %d rings, want the worker's two", len(got))
	}
	for _, r := range []*ring{a.slots, a.blocks} {
		v, err := unix.GetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VERSION)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: unix.TPACKET_V2, true: unix.TPACKET_V3}[r.bsize > 0]; v != want {
			t.Fatalf("ring (blocks %v) has PACKET_VERSION %d, want %d", r.bsize > 0, v, want)
		}
	}
	// One flow, 20 frames every millisecond, while the test has the worker
	// move every 80 ms.
	movesKeepOrder(t, p, d, []int{-1}, 24000)
}

// Replacing the program can take the kernel long (it waits for an RCU grace
// period: half a second was seen on a loaded machine), and meanwhile the
// kernel already fills the new ring. The worker reads both rings during a
// move, so the new one does not overflow and every frame still arrives
// once and in order. Here each move takes 200 ms longer than the kernel's;
// at this rate the ring of blocks holds 64 ms of frames (the kernel hands
// over a block per 1 ms timeout, 64 blocks).
func TestAutoRingSlowSwitch(t *testing.T) {
	p := newTxPair(t)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 1, Ring: RingConfig{Auto: true}})
	d.sys.autos[0].slowSwitch.Store(int64(200 * time.Millisecond))
	movesKeepOrder(t, p, d, []int{-1}, 24000)
}

// With FanoutCPU each of several workers moves between its own two rings
// on its own (a move replaces the group's program, and keeps the other
// workers' choices in it), and each flow's frames still arrive once and in
// order. Workers on CPUs 1 and 0, as in TestFanoutCPUSteersByReceivingCPU.
func TestAutoRingMovesKeepOrderFanoutCPU(t *testing.T) {
	p := newTxPair(t)
	cpus := cpus10(t)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 2, CPUs: cpus, Fanout: FanoutCPU, Ring: RingConfig{Auto: true}})
	if len(d.sys.autos) != 2 {
		t.Fatalf("%d worker ring pairs, want 2", len(d.sys.autos))
	}
	movesKeepOrder(t, p, d, cpus, 12000)
	for i, st := range d.WorkerStats() {
		if st.RingMoves < 2 {
			t.Errorf("worker %d (CPU %d) moved %d times, want at least 2", i, cpus[i], st.RingMoves)
		}
		if st.Forwarded() < 12000 {
			t.Errorf("worker %d (CPU %d) forwarded %d frames, want its flow's 12000: the program gave its frames to another worker", i, cpus[i], st.Forwarded())
		}
	}
}

// flowFrames builds frames from..from+n-1 of test flow w (UDP from source
// port 4242+w to the test VIP, each carrying its number), addressed to the
// pair's a end.
func flowFrames(t *testing.T, p *txPair, w, from, n int) [][]byte {
	t.Helper()
	frames := make([][]byte, n)
	for i := range frames {
		payload := make([]byte, 18)
		binary.BigEndian.PutUint32(payload, uint32(from+i))
		frames[i] = buildFrame(t, netip.MustParseAddr("198.51.100.7"), vip4, layers.IPProtocolUDP, uint16(4242+w), 53, payload)
		copy(frames[i][0:6], p.a.Attrs().HardwareAddr)
	}
	return frames
}

// sendDuringMoves sends frames from a thread on cpu (-1: any), 20 a
// millisecond, in five parts, the k-th once d's workers have moved k times:
// a move takes the kernel's grace period, which on a loaded machine can
// outlast the whole of the frames at this rate.
func sendDuringMoves(p *txPair, d *Dataplane, cpu int, frames [][]byte) error {
	const parts = 5
	for k := range parts {
		for deadline := time.Now().Add(20 * time.Second); d.Stats().RingMoves < uint64(k); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the workers moved %d times in 20 s, want %d before part %d of the frames", d.Stats().RingMoves, k, k+1)
			}
		}
		if err := sendFrames(p, cpu, frames[k*len(frames)/parts:(k+1)*len(frames)/parts], 20); err != nil {
			return err
		}
	}
	return nil
}

// movesKeepOrder sends n frames of one flow per worker of d, worker i's
// from a thread on cpus[i] (-1: any), 20 a millisecond (sendDuringMoves),
// while every 80 ms it has one worker after the other move to its other
// ring; then it checks that each flow's frames were forwarded once each and
// in order.
func movesKeepOrder(t *testing.T, p *txPair, d *Dataplane, cpus []int, n int) {
	t.Helper()
	rx := p.receiver(t)
	sent := make(chan error, len(cpus))
	for w, cpu := range cpus {
		frames := flowFrames(t, p, w, 0, n)
		go func() { sent <- sendDuringMoves(p, d, cpu, frames) }()
	}
	stop := make(chan struct{})
	go func() {
		for next := 0; ; next = (next + 1) % len(d.sys.autos) {
			select {
			case <-stop:
				return
			case <-time.After(80 * time.Millisecond):
				d.sys.autos[next].force.Store(true)
			}
		}
	}()
	got := recvForwarded(t, rx, n*len(cpus))
	close(stop)
	for range cpus {
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // an idle worker publishes its counters
	moves := d.Stats().RingMoves
	if moves < 4 {
		t.Errorf("the workers moved %d times while the frames came, want at least 4", moves)
	}
	next := make([]uint32, len(cpus))
	for _, f := range got {
		flow := int(binary.BigEndian.Uint16(f[34:]) - 4242)
		if flow < 0 || flow >= len(cpus) {
			t.Fatalf("forwarded a frame from source port %d, not one of the test's flows", flow+4242)
		}
		seq := binary.BigEndian.Uint32(f[42:])
		if seq != next[flow] {
			t.Fatalf("flow %d: after frame %d came frame %d (%d frames forwarded of %d, %d moves; ring drops %d)",
				flow, int64(next[flow])-1, seq, len(got), n*len(cpus), moves, d.Stats().RingDrops)
		}
		next[flow]++
	}
	if len(got) != n*len(cpus) {
		t.Fatalf("%d of %d frames forwarded over %d moves (ring drops %d)", len(got), n*len(cpus), moves, d.Stats().RingDrops)
	}
	t.Logf("%d flows of %d frames, each in order, over %d moves", len(cpus), n, moves)

	// Then every worker moves to its ring of blocks, one after the other,
	// and stays there: each move must keep the others' choices, or a
	// worker's frames go to the ring it does not read.
	// A move forced above may still be under way (or not yet begun): the
	// workers settle first.
	for _, a := range d.sys.autos {
		a.hold.Store(true)
		a.force.Store(false)
	}
	for last, deadline := d.Stats().RingMoves, time.Now().Add(20*time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		now := d.Stats().RingMoves
		if now == last {
			break
		}
		last = now
	}
	for i, a := range d.sys.autos {
		if d.WorkerStats()[i].RingBlocks == 1 {
			continue
		}
		a.force.Store(true)
		for deadline := time.Now().Add(20 * time.Second); d.WorkerStats()[i].RingBlocks != 1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d did not move to its ring of blocks", i)
			}
		}
	}
	for w, cpu := range cpus {
		if err := sendFrames(p, cpu, flowFrames(t, p, w, n, 100), 0); err != nil {
			t.Fatal(err)
		}
	}
	late := recvWhere(t, rx, 100*len(cpus), func(f []byte) bool {
		return len(f) >= 46 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && binary.BigEndian.Uint32(f[42:]) >= uint32(n)
	})
	if len(late) != 100*len(cpus) {
		t.Fatalf("with every worker on its ring of blocks, %d of %d frames were forwarded", len(late), 100*len(cpus))
	}
}

// A link flap takes every ring out of the fanout group and puts it back,
// and the group's program names members by their place in it: on this
// kernel they come back in the order they joined, and each worker's frames
// still reach the ring it reads, whichever that is, on one worker or on
// several with FanoutCPU (one on its blocks, one on its slots).
func TestAutoRingAfterLinkFlap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		onBlocks []bool
	}{{"slots", []bool{false}}, {"blocks", []bool{true}}, {"fanout cpu", []bool{true, false}}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTxPair(t)
			cfg := Config{Interface: "a", Workers: len(tc.onBlocks), Ring: RingConfig{Auto: true}}
			cpus := []int{-1}
			if cfg.Workers > 1 {
				cpus = cpus10(t)
				cfg.CPUs, cfg.Fanout = cpus, FanoutCPU
			}
			d, _ := runDataplane(t, p, cfg)
			rx := p.receiver(t)
			for i, a := range d.sys.autos {
				a.hold.Store(true)
				if !tc.onBlocks[i] {
					continue
				}
				a.force.Store(true) // an idle worker looks at least every 100 ms
				for deadline := time.Now().Add(3 * time.Second); d.WorkerStats()[i].RingBlocks != 1; time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("worker %d did not move to its ring of blocks", i)
					}
				}
			}
			if err := p.h.LinkSetDown(p.a); err != nil {
				t.Fatal(err)
			}
			if err := p.h.LinkSetUp(p.a); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the carrier comes back asynchronously
			before := d.WorkerStats()
			const n = 200
			for w, cpu := range cpus {
				if err := sendFrames(p, cpu, flowFrames(t, p, w, 0, n), 20); err != nil {
					t.Fatal(err)
				}
			}
			got := recvForwarded(t, rx, n*len(cpus))
			if len(got) != n*len(cpus) {
				st := d.Stats()
				t.Fatalf("after a link flap %d of %d frames were forwarded (received %d, ring moves %d)", len(got), n*len(cpus), st.Received, st.RingMoves)
			}
			time.Sleep(200 * time.Millisecond) // an idle worker publishes its counters
			for i, st := range d.WorkerStats() {
				if fwd := st.Forwarded() - before[i].Forwarded(); fwd != n {
					t.Errorf("after a link flap worker %d (on its blocks: %v) forwarded %d frames, want its flow's %d", i, tc.onBlocks[i], fwd, n)
				}
			}
		})
	}
}
