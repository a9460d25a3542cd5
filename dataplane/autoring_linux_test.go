package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

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
	rx := p.receiver(t)

	// One flow, frame i carrying i; 20 frames every millisecond, while the
	// test has the worker move every 80 ms.
	const n = 24000
	frames := make([][]byte, n)
	for i := range frames {
		payload := make([]byte, 18)
		binary.BigEndian.PutUint32(payload, uint32(i))
		frames[i] = buildFrame(t, netip.MustParseAddr("198.51.100.7"), vip4, layers.IPProtocolUDP, 4242, 53, payload)
		copy(frames[i][0:6], p.a.Attrs().HardwareAddr)
	}
	sent := make(chan error, 1)
	go func() { sent <- sendFrames(p, -1, frames, 20) }()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(80 * time.Millisecond):
				a.force.Store(true)
			}
		}
	}()
	got := recvForwarded(t, rx, n)
	close(stop)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // an idle worker publishes its counters
	moves := d.Stats().RingMoves
	if moves < 4 {
		t.Errorf("the worker moved %d times while the frames came, want at least 4", moves)
	}
	next := uint32(0)
	for _, f := range got {
		seq := binary.BigEndian.Uint32(f[42:])
		if seq != next {
			st := d.Stats()
			t.Fatalf("after frame %d came frame %d (%d frames forwarded of %d, %d moves; ring drops %d)", next-1, seq, len(got), n, moves, st.RingDrops)
		}
		next++
	}
	if len(got) != n {
		t.Fatalf("%d of %d frames forwarded over %d moves (ring drops %d)", len(got), n, moves, d.Stats().RingDrops)
	}
	t.Logf("%d frames in order over %d moves", n, moves)
}

// A link flap takes the rings out of their fanout group and puts them back
// (the kernel relinks members in its own order); the worker's frames still
// reach the ring it reads, whichever that is.
func TestAutoRingAfterLinkFlap(t *testing.T) {
	for _, onBlocks := range []bool{false, true} {
		t.Run(map[bool]string{false: "slots", true: "blocks"}[onBlocks], func(t *testing.T) {
			p := newTxPair(t)
			d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 1, Ring: RingConfig{Auto: true}})
			a := d.sys.autos[0]
			rx := p.receiver(t)
			frames := make([][]byte, 200)
			for i := range frames {
				payload := make([]byte, 18)
				binary.BigEndian.PutUint32(payload, uint32(i))
				frames[i] = buildFrame(t, netip.MustParseAddr("198.51.100.7"), vip4, layers.IPProtocolUDP, 4242, 53, payload)
				copy(frames[i][0:6], p.a.Attrs().HardwareAddr)
			}
			if onBlocks {
				// Another flow's frames wake the worker, which then moves.
				other := buildFrame(t, netip.MustParseAddr("198.51.100.8"), vip4, layers.IPProtocolUDP, 4343, 53, make([]byte, 18))
				copy(other[0:6], p.a.Attrs().HardwareAddr)
				a.force.Store(true)
				for deadline := time.Now().Add(3 * time.Second); d.Stats().RingMoves < 1; time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the worker did not move to its ring of blocks")
					}
					if err := sendFrames(p, -1, [][]byte{other}, 1); err != nil {
						t.Fatal(err)
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
			go sendFrames(p, -1, frames, 20)
			got := recvWhere(t, rx, len(frames), func(f []byte) bool {
				return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && binary.BigEndian.Uint16(f[34:]) == 4242
			})
			if len(got) != len(frames) {
				st := d.Stats()
				t.Fatalf("after a link flap %d of %d frames were forwarded (received %d, ring moves %d)", len(got), len(frames), st.Received, st.RingMoves)
			}
		})
	}
}
