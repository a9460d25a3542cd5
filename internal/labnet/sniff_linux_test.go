package labnet

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// A frame a host sends with PACKET_QDISC_BYPASS (as dsrlb's dataplane does)
// skips the host's own taps; SniffPort, at the bridge, sees it as sent by
// the host.
func TestSniffPortSeesBypassedFrames(t *testing.T) {
	requireRoot(t)
	n := buildLab(t, testSpec(netns.UniquePrefix("dsrlbt")))
	client := n.Host("client")
	frame := make([]byte, 60)
	copy(frame, []byte{0x02, 0, 0, 0, 0, 0xee}) // to nobody
	copy(frame[6:], client.MAC)
	frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType
	copy(frame[14:], "bypassed")
	var mu sync.Mutex
	counts := map[string]int{}
	count := func(name string) func([]byte, bool) {
		return func(f []byte, outgoing bool) {
			if outgoing && len(f) >= 22 && string(f[14:22]) == "bypassed" {
				mu.Lock()
				counts[name]++
				mu.Unlock()
			}
		}
	}
	stopHost, err := client.Sniff(context.Background(), count("host"))
	if err != nil {
		t.Fatal(err)
	}
	stopPort, err := n.SniffPort(context.Background(), "client", count("port"))
	if err != nil {
		t.Fatal(err)
	}
	err = client.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(client.Link)
		if err != nil {
			return err
		}
		for range 5 {
			if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := counts["port"]
		mu.Unlock()
		if got >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stopHost(); err != nil {
		t.Fatal(err)
	}
	if err := stopPort(); err != nil {
		t.Fatal(err)
	}
	t.Logf("5 frames sent with PACKET_QDISC_BYPASS: the host's capture saw %d, the switch port's %d", counts["host"], counts["port"])
	if counts["port"] != 5 {
		t.Fatalf("SniffPort saw %d of the 5 frames the host sent", counts["port"])
	}
	if _, err := n.SniffPort(context.Background(), "nobody", count("x")); err == nil {
		t.Error("SniffPort of an unknown host: no error")
	}
}
