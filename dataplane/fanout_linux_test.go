package dataplane

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// With FanoutCPU, a frame goes to the worker pinned to the CPU that
// received it. On a veth the receiving CPU is the sender's, so frames sent
// from a thread pinned to CPU c must all land in the ring of the worker on c.
// The workers sit on CPUs 1 and 0, in that order, so that plain
// PACKET_FANOUT_CPU (cpu % workers) would put every frame in the wrong ring.
func TestFanoutCPUSteersByReceivingCPU(t *testing.T) {
	p := newTxPair(t)
	cpus := cpus10(t)
	group := fanoutGroup{id: 0x5a00 | int(p.a.Attrs().Index&0xff), prog: cpuFanoutProgram(cpus)}
	acceptAll := []bpf.Instruction{bpf.RetConstant{Val: 0xffff}}
	rings := make([]*ring, len(cpus))
	err := p.ns.Do(func() error {
		for i := range rings {
			r, err := openRing(p.a.Attrs().Index, DefaultRingConfig, group, acceptAll, nil)
			if err != nil {
				return err
			}
			t.Cleanup(func() { r.close() })
			rings[i] = r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	drain := func() {
		for _, r := range rings {
			for {
				if _, _, ok := r.next(); !ok {
					break
				}
			}
			r.release()
		}
	}
	count := func() []int {
		n := make([]int, len(rings))
		for i, r := range rings {
			for {
				s, _, ok := r.next()
				if !ok {
					break
				}
				h := slotHdr(s)
				if f := s[h.Mac:]; len(f) >= 14 && f[12] == 0x88 && f[13] == 0xb5 {
					n[i]++
				}
			}
			r.release()
		}
		return n
	}
	drain()
	const frames = 200
	for worker, cpu := range cpus {
		var fs [][]byte
		for i := range frames {
			fs = append(fs, txTestFrame(i)[sizeofVnetHdr:])
		}
		if err := sendPinned(p, cpu, fs); err != nil {
			t.Fatal(err)
		}
		// Usually every frame is in when sendto returns (the receive runs
		// in the sender's softirq); under load ksoftirqd may finish it
		// later: count until all are in, or a deadline.
		want := make([]int, len(rings))
		want[worker] = frames
		got := make([]int, len(rings))
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			for i, n := range count() {
				got[i] += n
			}
			total := 0
			for _, n := range got {
				total += n
			}
			if total >= frames || time.Now().After(deadline) {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%d frames sent from CPU %d: rings got %v, want %v (worker %d is on CPU %d)", frames, cpu, got, want, worker, cpu)
		}
	}
}

// cpus10 returns the CPUs the fanout tests pin their workers to, 1 and 0
// in that order, or skips the test if this process may not run on both.
func cpus10(t *testing.T) []int {
	t.Helper()
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	if runtime.NumCPU() < 2 || !allowed.IsSet(0) || !allowed.IsSet(1) {
		t.Skip("needs CPUs 0 and 1")
	}
	return []int{1, 0}
}

// sendPinned sends frames into the pair's b end from a thread pinned to
// cpu; they arrive at a.
func sendPinned(p *txPair, cpu int, frames [][]byte) error { return sendFrames(p, cpu, frames, 0) }

// sendFrames sends frames into the pair's b end from one socket, on a
// thread pinned to cpu (if not negative), perMs of them and then a
// millisecond's sleep (if perMs is not 0).
func sendFrames(p *txPair, cpu int, frames [][]byte, perMs int) error {
	return p.ns.Do(func() error { // on a locked thread of its own
		if cpu >= 0 {
			var old, set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				return err
			}
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return fmt.Errorf("pin to CPU %d: %w", cpu, err)
			}
			defer unix.SchedSetaffinity(0, &old)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: p.b.Attrs().Index}
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("send frame %d from CPU %d: %w", i, cpu, err)
			}
			if perMs > 0 && i%perMs == perMs-1 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
}

// The same through Open and Run: a Dataplane with Fanout FanoutCPU has
// worker i take the VIP frames received on CPUs[i].
func TestDataplaneFanoutCPU(t *testing.T) {
	p := newTxPair(t)
	cpus := cpus10(t)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 2, CPUs: cpus, Fanout: FanoutCPU})
	const n = 100
	var want [2]uint64
	for worker, cpu := range cpus {
		var frames [][]byte
		for i := range n {
			f := buildFrame(t, netip.MustParseAddr("198.51.100.7"), vip4, layers.IPProtocolUDP, uint16(1000+i), 53, []byte("q"))
			copy(f[0:6], p.a.Attrs().HardwareAddr)
			frames = append(frames, f)
		}
		if err := sendPinned(p, cpu, frames); err != nil {
			t.Fatal(err)
		}
		want[worker] += n
		var got [2]uint64
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			for i, s := range d.WorkerStats() {
				got[i] = s.Received
			}
			if got == want {
				break
			}
		}
		if got != want {
			t.Errorf("after %d frames from CPU %d (worker %d's): workers received %v, want %v", n, cpu, worker, got, want)
		}
	}
}
