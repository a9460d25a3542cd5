package dataplane

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// txPair is a veth pair a-b in a namespace of its own: frames sent on a
// arrive at b.
type txPair struct {
	ns   *netns.NS
	h    *netlink.Handle
	a, b netlink.Link
}

func newTxPair(t *testing.T) *txPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, AF_PACKET)")
	}
	ns, err := netns.New(netns.UniquePrefix("dsrlbt") + "tx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "b"}); err != nil {
		t.Fatal(err)
	}
	p := &txPair{ns: ns, h: h}
	for _, name := range []string{"a", "b"} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		if name == "a" {
			p.a = l
		} else {
			p.b = l
		}
	}
	return p
}

// receiver returns a socket receiving every frame arriving at b.
func (p *txPair) receiver(t *testing.T) int {
	t.Helper()
	var fd int
	err := p.ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.b.Attrs().Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// setMTU sets the MTU of both ends of the pair.
func (p *txPair) setMTU(t *testing.T, mtu int) {
	t.Helper()
	for _, l := range []netlink.Link{p.a, p.b} {
		if err := p.h.LinkSetMTU(l, mtu); err != nil {
			t.Fatalf("link %s: %v", l.Attrs().Name, err)
		}
	}
}

// recvN reads the test's frames (EtherType 0x88b5) from fd until n have
// come, then 100 ms more for any extra one, or until 10 s have passed.
func recvN(t *testing.T, fd int, n int) [][]byte {
	t.Helper()
	return recvWhere(t, fd, n, func(f []byte) bool {
		return len(f) >= 14 && f[12] == 0x88 && f[13] == 0xb5 // not the kernel's own IPv6 chatter
	})
}

// recvWhere reads the frames that keep accepts from fd until n have come,
// then 100 ms more for any extra one, or until 10 s have passed without one.
func recvWhere(t *testing.T, fd int, n int, keep func([]byte) bool) [][]byte {
	t.Helper()
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var out [][]byte
	buf := make([]byte, 16384)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		switch {
		case err == unix.ENETDOWN: // reported once after the link went down
			continue
		case err == unix.EAGAIN || err == unix.EINTR:
			if len(out) >= n {
				return out // and nothing more came
			}
			continue
		case err != nil:
			t.Fatalf("recvfrom: %v", err)
		}
		if keep(buf[:m]) {
			out = append(out, bytes.Clone(buf[:m]))
			deadline = time.Now().Add(10 * time.Second)
		}
	}
	return out
}

func txTestFrame(i int) []byte {
	f := make([]byte, sizeofVnetHdr+60+i%200)
	e := f[sizeofVnetHdr:]
	copy(e, []byte{0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x88, 0xb5}) // local experimental EtherType
	for j := 14; j < len(e); j++ {
		e[j] = byte(i + j)
	}
	return f
}

func openTestTxRing(t *testing.T, p *txPair, frames int) *txRing {
	t.Helper()
	var tx *txRing
	err := p.ns.Do(func() error {
		var err error
		tx, err = openTxRing(p.a.Attrs().Index, 2048, frames)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.close() })
	return tx
}

// Frames put on the TX ring leave in order and bit-identical.
func TestTxRingSends(t *testing.T) {
	p := newTxPair(t)
	rx := p.receiver(t)
	tx := openTestTxRing(t, p, 64)
	const n = 300 // the ring wraps
	for i := range n {
		if !tx.put(txTestFrame(i)) {
			t.Fatalf("frame %d: no free slot", i)
		}
		if tx.marked == 16 {
			tx.kick()
		}
	}
	tx.kick()
	got := recvN(t, rx, n)
	if len(got) != n {
		t.Fatalf("received %d frames, sent %d", len(got), n)
	}
	for i, f := range got {
		if want := txTestFrame(i)[sizeofVnetHdr:]; !bytes.Equal(f, want) {
			t.Fatalf("frame %d arrived as\n%x\nwant\n%x", i, f, want)
		}
	}
}

// While the device cannot send, frames stay on the ring; when the ring is
// full, put refuses; when the device is back, the frames on the ring leave
// in order.
func TestTxRingHoldsFramesWhileDown(t *testing.T) {
	p := newTxPair(t)
	rx := p.receiver(t)
	tx := openTestTxRing(t, p, 32)
	if err := p.h.LinkSetDown(p.b); err != nil { // a loses its carrier
		t.Fatal(err)
	}
	queued := 0
	for i := range 100 {
		if !tx.put(txTestFrame(i)) {
			break
		}
		queued++
		tx.kick()
	}
	if queued != tx.frames {
		t.Fatalf("queued %d frames on a ring of %d while the device was down", queued, tx.frames)
	}
	if err := p.h.LinkSetUp(p.b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tx.marked > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // carrier comes back asynchronously
		tx.kick()
	}
	if tx.marked > 0 {
		t.Fatal("frames still on the ring 5 s after the device came back")
	}
	got := recvN(t, rx, queued)
	if len(got) != queued {
		t.Fatalf("received %d frames, queued %d", len(got), queued)
	}
	for i, f := range got {
		if !bytes.Equal(f, txTestFrame(i)[sizeofVnetHdr:]) {
			t.Fatalf("frame %d out of order or changed", i)
		}
	}
	if !tx.put(txTestFrame(0)) {
		t.Error("no free slot after every frame was sent")
	}
}
