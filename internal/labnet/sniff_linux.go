package labnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// sniffBuffer holds the largest frame the capture passes on in full: a GSO
// super-frame is at most 64 KiB plus headers. Longer frames are truncated.
const sniffBuffer = 1 << 17

// sniffRcvBuf is the socket receive buffer asked for (as root, past rmem_max).
const sniffRcvBuf = 8 << 20

// maxDrain bounds the frames read after a stop: more than the receive buffer
// can hold (every queued frame is charged at least 256 bytes).
const maxDrain = sniffRcvBuf / 256

// sniffOn captures on interface link of namespace ns; what names it in
// errors ("eth0 of host lb").
func sniffOn(ctx context.Context, ns *netns.NS, link, what string, fn func([]byte, bool)) (func() error, error) {
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		// Protocol 0 receives nothing until bind names the protocol, so no
		// frame of another interface slips in before the bind.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sniffRcvBuf) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sniffRcvBuf) // best effort
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("bind", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open capture on %s: %w", what, err)
	}
	// A non-blocking fd makes a pollable os.File, so a read deadline can
	// wake the reader.
	f := os.NewFile(uintptr(fd), "packet:"+what)
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails if the file is not pollable
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open capture on %s: %w", what, err)
	}

	quit := make(chan struct{})
	finished := make(chan struct{})
	var result error
	go func() {
		select {
		case <-ctx.Done():
		case <-quit:
		}
		f.SetReadDeadline(time.Unix(1, 0))
		if stopDeadlineSet != nil {
			stopDeadlineSet()
		}
	}()
	go func() {
		defer close(finished)
		result = capture(rc, fn)
		var drops uint32
		var total uint32
		rc.Control(func(fd uintptr) {
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				drops, total = st.Drops, st.Packets
			}
		})
		f.Close()
		if result == nil && drops > 0 {
			result = fmt.Errorf("%w: %d of %d frames", ErrDropped, drops, total)
		}
		if result != nil {
			result = fmt.Errorf("capture on %s: %w", what, result)
		}
	}()
	var once sync.Once
	return func() error {
		once.Do(func() { close(quit) })
		<-finished
		return result
	}, nil
}

// capture reads frames until the read deadline passes (a normal stop, nil)
// or a receive fails. A deadline in the past ends a read without looking at
// the socket, so on a stop it then reads what the socket still holds, so
// that every frame captured before the stop reaches fn; at most maxDrain
// frames, so that traffic arriving as fast as it is read cannot hold the
// stop up.
func capture(rc syscall.RawConn, fn func([]byte, bool)) error {
	buf := make([]byte, sniffBuffer)
	var n int
	var from unix.Sockaddr
	var rerr error
	recv := func(fd uintptr) {
		n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
	}
	stopped, drained := false, 0
	for {
		var err error
		if stopped {
			if drained++; drained > maxDrain {
				return nil
			}
			err = rc.Control(recv)
			if err == nil && rerr == unix.EAGAIN {
				return nil
			}
		} else {
			err = rc.Read(func(fd uintptr) bool { recv(fd); return rerr != unix.EAGAIN })
			if errors.Is(err, os.ErrDeadlineExceeded) {
				stopped = true
				continue
			}
		}
		if err != nil {
			return err
		}
		if rerr == unix.EINTR {
			continue
		}
		if rerr != nil {
			return os.NewSyscallError("recvfrom", rerr)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			fn(buf[:min(n, len(buf))], ll.Pkttype == unix.PACKET_OUTGOING)
		}
	}
}

// htons returns v in network byte order, as sockaddr_ll.sll_protocol wants it.
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}
