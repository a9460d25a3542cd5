package healthcheck

import (
	"context"
	"fmt"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTCPProbeTimeout fills the accept queue of a loopback listener with
// backlog 0: the kernel then drops further SYNs, so the probe's handshake
// never completes.
func TestTCPProbeTimeout(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)

	first, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// Wait until the first connection sits in the accept queue.
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1); err != nil {
		t.Fatal(err)
	}

	err = mustProber(t, Spec{Kind: KindTCP, Timeout: probeTimeout}).Probe(context.Background(), Target{Addr: loopback, Port: port})
	if want := fmt.Sprintf("tcp connect 127.0.0.1:%d: timeout after 300ms", port); err == nil || err.Error() != want {
		t.Fatalf("full accept queue: %v, want %q", err, want)
	}
}
