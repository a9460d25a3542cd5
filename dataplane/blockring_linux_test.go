package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// A worker on a TPACKET_V3 ring (RingConfig.Blocks) forwards every frame, in
// the order received and with the IP packet untouched: small frames enough
// to fill several blocks, a jumbo frame (larger than a transmit slot, so
// sent on its own, after the frames before it), and then one lone frame,
// which reaches the worker only because the kernel hands over a block that
// is not full once its timeout passes.
func TestBlockRingForwards(t *testing.T) {
	p := newTxPair(t)
	p.setMTU(t, 9000)
	d, _ := runDataplane(t, p, Config{Interface: "a", Workers: 1, Ring: RingConfig{Blocks: true}})
	rx := p.receiver(t)
	if v, err := unix.GetsockoptInt(d.sys.rings[0].fd, unix.SOL_PACKET, unix.PACKET_VERSION); err != nil || v != unix.TPACKET_V3 {
		t.Fatalf("the worker's socket has PACKET_VERSION %d (%v), want TPACKET_V3 (%d)", v, err, unix.TPACKET_V3)
	}

	// Frame i carries i in its payload; 4,000 small frames are more than two
	// blocks hold.
	frame := func(i int, size int) []byte {
		payload := make([]byte, max(size, 4))
		binary.BigEndian.PutUint32(payload, uint32(i))
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 7)})
		f := buildFrame(t, src, vip4, layers.IPProtocolUDP, uint16(1000+i%300), 53, payload)
		copy(f[0:6], p.a.Attrs().HardwareAddr)
		return f
	}
	const small = 4000
	var sent [][]byte
	for i := range small {
		sent = append(sent, frame(i, 18))
	}
	sent = append(sent, frame(small, 6000))
	if err := sendPinned(p, 0, sent); err != nil {
		t.Fatal(err)
	}
	got := recvForwarded(t, rx, len(sent))
	time.Sleep(50 * time.Millisecond) // the worker is idle again, its block handed back
	lone := frame(small+1, 18)
	if err := sendPinned(p, 0, [][]byte{lone}); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, lone)
	got = append(got, recvForwarded(t, rx, 1)...)

	if len(got) != len(sent) {
		st := d.Stats()
		t.Fatalf("%d of %d frames forwarded (worker received %d, forwarded %d, truncated %d, ring drops %d, tx errors %d)",
			len(got), len(sent), st.Received, st.Forwarded(), st.Reasons[DropTruncated], st.RingDrops, st.Reasons[DropTxError])
	}
	for i, f := range got {
		if !bytes.Equal(f[12:], sent[i][12:]) {
			t.Fatalf("forwarded frame %d (%d bytes) is not sent frame %d (%d bytes): reordered or changed", i, len(f), i, len(sent[i]))
		}
		if !bytes.Equal(f[6:12], p.a.Attrs().HardwareAddr) || f[0]&1 != 0 {
			t.Fatalf("forwarded frame %d: MACs %x -> %x, want from the balancer to a backend", i, f[6:12], f[0:6])
		}
	}
}

// recvForwarded reads the UDP frames to the test VIP that arrive on fd
// (those the dataplane forwarded) as recvWhere does.
func recvForwarded(t *testing.T, fd int, n int) [][]byte {
	t.Helper()
	return recvWhere(t, fd, n, func(f []byte) bool {
		return len(f) >= 34 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && netip.AddrFrom4([4]byte(f[30:34])) == vip4
	})
}
