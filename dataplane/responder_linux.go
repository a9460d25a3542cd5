package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// responder answers ARP and neighbour solicitations for the VIPs with the
// balancer's MAC, on control-plane sockets of its own (not the workers').
type responder struct {
	ifi  *net.Interface
	mac  [6]byte
	log  *slog.Logger
	arp  *packet.Conn
	ndp  *packet.Conn
	vips atomic.Pointer[map[netip.Addr]bool]

	mu     sync.Mutex // serialises setVIPs
	joined map[[6]byte]bool

	arpReplies, naReplies atomic.Uint64
	closing               atomic.Bool
}

// nsFilter passes ICMPv6 neighbour solicitations without extension headers.
var nsFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoICMPv6, SkipFalse: 3},
	bpf.LoadAbsolute{Off: ethHeaderLen + 40, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmp6NS, SkipFalse: 1},
	bpf.RetConstant{Val: 1 << 16},
	bpf.RetConstant{Val: 0},
}

func openResponder(ifi *net.Interface, mac [6]byte, log *slog.Logger) (*responder, error) {
	r := &responder{ifi: ifi, mac: mac, log: log, joined: map[[6]byte]bool{}}
	empty := map[netip.Addr]bool{}
	r.vips.Store(&empty)
	var err error
	r.arp, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", ifi.Name, err)
	}
	raw, err := bpf.Assemble(nsFilter)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("assemble NDP filter: %w", err)
	}
	r.ndp, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: raw})
	if err != nil {
		r.close()
		return nil, fmt.Errorf("open NDP socket on %s: %w", ifi.Name, err)
	}
	return r, nil
}

func (r *responder) close() {
	r.closing.Store(true)
	if r.arp != nil {
		r.arp.Close()
	}
	if r.ndp != nil {
		r.ndp.Close()
	}
}

// setVIPs changes the answered VIPs and announces the new ones.
func (r *responder) setVIPs(vips []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.vips.Load()
	next := make(map[netip.Addr]bool, len(vips))
	for _, v := range vips {
		next[v] = true
		if v.Is6() {
			g := solicitedNodeMAC(v)
			if !r.joined[g] {
				if err := r.ndp.JoinGroup(net.HardwareAddr(g[:])); err != nil {
					r.log.Warn("cannot join solicited-node multicast group; neighbour solicitations for the VIP may not arrive",
						"vip", v, "group", net.HardwareAddr(g[:]).String(), "err", err)
				}
				r.joined[g] = true
			}
		}
	}
	r.vips.Store(&next)
	for _, v := range vips {
		if !old[v] {
			r.announce(v)
		}
	}
}

// announce tells the segment that vip is at our MAC.
func (r *responder) announce(vip netip.Addr) {
	var buf [naFrameLen]byte
	var err error
	if vip.Is4() {
		_, err = r.arp.WriteTo(gratuitousARP(buf[:0], vip, r.mac), &packet.Addr{HardwareAddr: broadcastMAC[:]})
	} else {
		_, err = r.ndp.WriteTo(unsolicitedNA(buf[:0], vip, r.mac), &packet.Addr{HardwareAddr: allNodesMAC[:]})
	}
	if err != nil {
		r.log.Warn("announce VIP", "vip", vip, "err", err)
		return
	}
	r.log.Debug("announced VIP", "vip", vip, "mac", net.HardwareAddr(r.mac[:]).String())
}

// run answers until ctx is done.
func (r *responder) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.serve(r.arp, r.answerARP) }()
	go func() { defer wg.Done(); r.serve(r.ndp, r.answerNS) }()
	<-ctx.Done()
	r.close()
	wg.Wait()
}

func (r *responder) serve(c *packet.Conn, answer func(frame, out []byte) ([]byte, [6]byte)) {
	in := make([]byte, 1<<16)
	out := make([]byte, 0, naFrameLen)
	var lastErr error
	for {
		n, _, err := c.ReadFrom(in)
		if err != nil {
			if r.closing.Load() {
				return
			}
			// A socket error is reported once and the socket goes on (the
			// ENETDOWN of a link that went down and up): keep answering.
			// The same error again right away waits a little, so a socket
			// that fails for good does not spin.
			if lastErr != nil && err.Error() == lastErr.Error() {
				time.Sleep(100 * time.Millisecond)
			} else {
				r.log.Warn("neighbour responder read failed; reading on", "err", err)
			}
			lastErr = err
			continue
		}
		lastErr = nil
		if n >= 12 && ([6]byte(in[6:12]) == r.mac || bytes.Equal(in[6:12], r.ifi.HardwareAddr)) {
			continue // our own request (the DSR health probe's): not a neighbour's
		}
		reply, to := answer(in[:n], out[:0])
		if reply == nil {
			continue
		}
		if _, err := c.WriteTo(reply, &packet.Addr{HardwareAddr: to[:]}); err != nil {
			r.log.Warn("neighbour reply failed", "err", err)
		}
	}
}

func (r *responder) answerARP(frame, out []byte) ([]byte, [6]byte) {
	req, ok := parseARPRequest(frame)
	if !ok || !(*r.vips.Load())[req.target] || req.senderIP == req.target {
		return nil, [6]byte{}
	}
	r.arpReplies.Add(1)
	return arpReply(out, req, r.mac), req.senderMAC
}

func (r *responder) answerNS(frame, out []byte) ([]byte, [6]byte) {
	ns, ok := parseNS(frame)
	if !ok || !(*r.vips.Load())[ns.target] {
		return nil, [6]byte{}
	}
	r.naReplies.Add(1)
	reply := naReply(out, ns, r.mac)
	return reply, [6]byte(reply[0:6])
}
