package healthcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/bpf"

	"github.com/dsrlb/dsrlb/internal/csum"
)

// PacketDSRProber performs DSR-path probes on one interface of the balancer
// (see the package doc). Its packet sockets are opened once by
// [NewDSRProber] and shared by every probe; ProbeDSR is safe for concurrent
// use by the checks of any number of backends. Linux only.
type PacketDSRProber struct {
	link dsrLink

	mu     sync.Mutex
	closed bool
	syns   map[synKey]*synWait
	neighs map[neighKey]map[*neighWait]struct{}
}

var _ DSRProber = (*PacketDSRProber)(nil)

// dsrLink is the wire a PacketDSRProber sends on. Received frames go to
// PacketDSRProber.deliver.
type dsrLink interface {
	name() string
	mac() [6]byte
	// source returns the interface address to send a probe of vip from.
	source(vip netip.Addr) (netip.Addr, error)
	// send transmits an Ethernet frame as it is.
	send(frame []byte) error
	close() error
}

// Probe source ports come from [probePortFirst, probePortLast], above
// Linux's default ephemeral range (32768-60999), so that the receive
// filters pass few frames of the balancer's own connections. A collision
// is harmless: replies are matched on addresses, ports and sequence number.
const (
	probePortFirst = 61000
	probePortLast  = 65535
)

type synKey struct {
	remote       netip.Addr // the VIP
	rport, lport uint16
}

type synWait struct {
	key   synKey
	local netip.Addr
	mac   [6]byte // the backend probed: the answer must come from it
	iss   uint32
	c     chan tcpAnswer // buffered: deliver never blocks
}

type tcpAnswer uint8

const (
	answerSYNACK tcpAnswer = iota + 1
	answerRST
)

// neighKey names a neighbour answer: the address it claims (a VIP) and the
// MAC that sent it.
type neighKey struct {
	ip  netip.Addr
	mac [6]byte
}

// neighAnswer is what a neighbour frame from a probed backend shows.
type neighAnswer uint8

const (
	// neighReply is an ARP reply or a neighbour advertisement for the VIP:
	// the server claims the VIP on the segment.
	neighReply neighAnswer = iota + 1
	// neighRequest is an ARP request with the VIP as its sender address:
	// the server announces the VIP to whoever hears it (broadcast, so every
	// host on the segment), arp_announce not being 2.
	neighRequest
)

type neighWait struct{ c chan neighAnswer } // buffered: deliver never blocks; the first answer counts

func newPacketDSRProber(l dsrLink) *PacketDSRProber {
	return &PacketDSRProber{link: l, syns: map[synKey]*synWait{}, neighs: map[neighKey]map[*neighWait]struct{}{}}
}

// Close closes the sockets. Probes in flight end with their context; later
// probes fail.
func (p *PacketDSRProber) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	return p.link.close()
}

// dsrName names a DSR-path probe in reasons.
func dsrName(vip netip.Addr, port uint16, mac [6]byte) string {
	return "dsr probe VIP " + netip.AddrPortFrom(vip, port).String() + " via " + net.HardwareAddr(mac[:]).String()
}

// ProbeDSR sends a TCP SYN for vip:port to mac, and an ARP request (IPv4)
// or a neighbour solicitation (IPv6) for vip unicast to mac. It fails on a
// RST, on a neighbour answer from mac, on an ARP request from mac with vip
// as its sender, and on no SYN-ACK from mac by the time ctx is done (after
// DefaultTimeout if ctx has no deadline). A SYN-ACK is answered with a RST.
// A passing probe listens until ctx is done, since only silence shows the
// server does not answer for the VIP. An ARP request from the VIP shows only
// if the server happens to send one while the probe listens (as it does to
// resolve our address when it has no entry for it), so passing does not
// prove arp_announce.
func (p *PacketDSRProber) ProbeDSR(ctx context.Context, vip netip.Addr, port uint16, mac [6]byte) error {
	vip = vip.Unmap()
	what := dsrName(vip, port, mac)
	switch {
	case !vip.IsValid() || vip.Zone() != "":
		return fmt.Errorf("dsr probe: VIP %q is not usable", vip)
	case port == 0:
		return fmt.Errorf("%s: no port", what)
	case mac == [6]byte{}:
		return fmt.Errorf("%s: no backend MAC", what)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	src, err := p.link.source(vip)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w, err := p.addSYN(vip, port, src, mac)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer p.removeSYN(w)
	ours := p.link.mac()
	// The neighbour probe: an ARP request (IPv4) or a neighbour
	// solicitation (IPv6) for the VIP, unicast to the backend. Only
	// silence passes.
	a := p.addNeigh(vip, mac)
	defer p.removeNeigh(vip, mac, a)
	neighc := a.c
	var neigh []byte
	neighName := "ARP request"
	if vip.Is4() {
		neigh = arpRequest(nil, mac, ours, src, vip)
	} else {
		neigh, neighName = neighborSolicitation(nil, mac, ours, src, vip), "neighbour solicitation"
	}
	if err := p.link.send(neigh); err != nil {
		return fmt.Errorf("%s: send %s on %s: %w", what, neighName, p.link.name(), err)
	}
	if err := p.link.send(tcpFrame(nil, mac, ours, src, vip, w.key.lport, port, w.iss, 0, tcpSYN)); err != nil {
		return fmt.Errorf("%s: send SYN on %s: %w", what, p.link.name(), err)
	}
	var (
		tcpc   = w.c
		synACK bool
		done   = ctx.Done()
	)
	// answer handles the server's TCP answer; it returns nil for a SYN-ACK.
	answer := func(a tcpAnswer) error {
		if a == answerRST {
			return fmt.Errorf("%s: connection refused (RST)", what)
		}
		synACK, tcpc = true, nil
		// Best effort: without it the server's half-open connection times
		// out on its own, and our kernel sends a RST anyway.
		p.link.send(tcpFrame(nil, mac, ours, src, vip, w.key.lport, port, w.iss+1, 0, tcpRST))
		return nil
	}
	// neighFailure is the reason for a neighbour frame from the backend.
	neighFailure := func(a neighAnswer) error {
		switch {
		case vip.Is6():
			return fmt.Errorf("%s: server answers neighbour solicitations for VIP %s (is the VIP on its NIC instead of lo? run dsrlb server up)", what, vip)
		case a == neighRequest:
			return fmt.Errorf("%s: server sends ARP requests from VIP %s (arp_announce is not 2: run dsrlb server up)", what, vip)
		}
		return fmt.Errorf("%s: server answers ARP for VIP %s (arp_ignore/arp_announce not set: run dsrlb server up)", what, vip)
	}
	for {
		select {
		case a := <-tcpc:
			if err := answer(a); err != nil {
				return err
			}
		case a := <-neighc:
			return neighFailure(a)
		case <-done:
			// Answers that came in with the deadline still count, an ARP
			// answer first.
			select {
			case a := <-neighc:
				return neighFailure(a)
			default:
			}
			select {
			case a := <-tcpc:
				return answer(a)
			default:
			}
			if synACK {
				return nil
			}
			return fmt.Errorf("%s: no SYN-ACK (is the VIP on the server's lo?)", what)
		}
	}
}

var errClosed = errors.New("DSR prober closed")

// addSYN registers a probe of vip:port from src with a free source port
// and a random initial sequence number.
func (p *PacketDSRProber) addSYN(vip netip.Addr, port uint16, src netip.Addr, mac [6]byte) (*synWait, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	const n = probePortLast - probePortFirst + 1
	start := rand.IntN(n)
	for i := range n {
		k := synKey{remote: vip, rport: port, lport: uint16(probePortFirst + (start+i)%n)}
		if p.syns[k] == nil {
			w := &synWait{key: k, local: src, mac: mac, iss: rand.Uint32(), c: make(chan tcpAnswer, 1)}
			p.syns[k] = w
			return w, nil
		}
	}
	return nil, fmt.Errorf("%d probes of this VIP and port in flight: no source port left", n)
}

func (p *PacketDSRProber) removeSYN(w *synWait) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.syns, w.key)
}

func (p *PacketDSRProber) addNeigh(vip netip.Addr, mac [6]byte) *neighWait {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := neighKey{vip, mac}
	if p.neighs[k] == nil {
		p.neighs[k] = map[*neighWait]struct{}{}
	}
	w := &neighWait{c: make(chan neighAnswer, 1)}
	p.neighs[k][w] = struct{}{}
	return w
}

func (p *PacketDSRProber) removeNeigh(vip netip.Addr, mac [6]byte, w *neighWait) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := neighKey{vip, mac}
	delete(p.neighs[k], w)
	if len(p.neighs[k]) == 0 {
		delete(p.neighs, k)
	}
}

// deliver hands a received frame to the probe waiting for it, if any. A
// TCP answer must come from the probed VIP and port and from the probed
// backend's MAC, to our address and source port, and acknowledge our SYN; an
// ARP reply or request must have the probed MAC and the VIP as its sender,
// a neighbour advertisement come from the probed MAC for the VIP.
// Everything else is ignored. (An answer from another MAC is another
// server's: a backend with IP forwarding on and no VIP on lo sends the SYN
// back to the balancer, which balances it to a backend that answers.)
func (p *PacketDSRProber) deliver(frame []byte) {
	if r, ok := parseTCP(frame); ok {
		p.mu.Lock()
		w := p.syns[synKey{remote: r.src, rport: r.sport, lport: r.dport}]
		p.mu.Unlock()
		if w == nil || r.from != w.mac || r.dst != w.local || r.flags&tcpACK == 0 || r.ack != w.iss+1 {
			return
		}
		var a tcpAnswer
		switch {
		case r.flags&tcpRST != 0:
			a = answerRST
		case r.flags&tcpSYN != 0:
			a = answerSYNACK
		default:
			return
		}
		select {
		case w.c <- a:
		default:
		}
		return
	}
	r, a, ok := parseARP(frame)
	if !ok {
		r, ok = parseNA(frame)
		a = neighReply
	}
	if ok {
		p.mu.Lock()
		defer p.mu.Unlock()
		for w := range p.neighs[r] {
			select {
			case w.c <- a:
			default:
			}
		}
	}
}

// Frame layout.
const (
	ethLen      = 14
	ipv4Len     = 20
	ipv6Len     = 40
	tcpLen      = 20
	arpLen      = 28
	minFrameLen = 60 // Ethernet minimum without FCS: shorter frames are padded

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeARP  = 0x0806
	protoTCP      = 6
	protoICMPv6   = 58
	icmp6NS       = 135
	icmp6NA       = 136
	ndpLen        = 24 // ICMPv6 header, flags or reserved, target

	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	// snapLen is how much of a frame the filters pass: enough for Ethernet,
	// an IPv4 header with options and the fixed TCP header.
	snapLen = ethLen + 60 + tcpLen
)

// tcpFrame appends to b an Ethernet frame carrying a TCP segment without
// options or payload from src:sport to dst:dport, with checksums.
func tcpFrame(b []byte, dstMAC, srcMAC [6]byte, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8) []byte {
	start := len(b)
	b = append(b, dstMAC[:]...)
	b = append(b, srcMAC[:]...)
	var pseudo uint32
	if src.Is4() {
		b = binary.BigEndian.AppendUint16(b, etherTypeIPv4)
		ip := len(b)
		b = append(b, 0x45, 0)                               // version 4, IHL 5; TOS
		b = binary.BigEndian.AppendUint16(b, ipv4Len+tcpLen) // total length
		b = append(b, 0, 0, 0x40, 0)                         // ID 0 (atomic datagram, RFC 6864), DF
		b = append(b, 64, protoTCP, 0, 0)                    // TTL, protocol, checksum
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		binary.BigEndian.PutUint16(b[ip+10:], ^csum.Fold(csum.Add(0, b[ip:])))
		pseudo = csum.Add(csum.Add(0, s4[:]), d4[:]) + protoTCP + tcpLen
	} else {
		b = binary.BigEndian.AppendUint16(b, etherTypeIPv6)
		b = append(b, 0x60, 0, 0, 0)                 // version 6, no traffic class or flow label
		b = binary.BigEndian.AppendUint16(b, tcpLen) // payload length
		b = append(b, protoTCP, 64)                  // next header, hop limit
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
		pseudo = csum.Add(csum.Add(0, s16[:]), d16[:]) + protoTCP + tcpLen
	}
	t := len(b)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, ack)
	b = append(b, tcpLen/4<<4, flags)
	b = binary.BigEndian.AppendUint16(b, 65535) // window
	b = append(b, 0, 0, 0, 0)                   // checksum, urgent pointer
	binary.BigEndian.PutUint16(b[t+16:], ^csum.Fold(csum.Add(pseudo, b[t:])))
	return pad(b, start)
}

// arpRequest appends to b an ARP request from srcMAC/src for target, sent
// to dstMAC.
func arpRequest(b []byte, dstMAC, srcMAC [6]byte, src, target netip.Addr) []byte {
	start := len(b)
	b = append(b, dstMAC[:]...)
	b = append(b, srcMAC[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeARP)
	b = append(b, 0, 1, 0x08, 0, 6, 4, 0, 1) // Ethernet, IPv4, lengths, request
	s4, t4 := src.As4(), target.As4()
	b = append(b, srcMAC[:]...)
	b = append(b, s4[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, t4[:]...)
	return pad(b, start)
}

// neighborSolicitation appends to b an ICMPv6 neighbour solicitation from
// srcMAC/src for target, sent to dstMAC and to target's solicited-node
// multicast group (as a host resolving target sends it), with our
// link-layer address, so that a server holding target on that NIC answers.
func neighborSolicitation(b []byte, dstMAC, srcMAC [6]byte, src, target netip.Addr) []byte {
	const payload = ndpLen + 8 // and the source link-layer address option
	start := len(b)
	b = append(b, dstMAC[:]...)
	b = append(b, srcMAC[:]...)
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv6)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, payload)
	b = append(b, protoICMPv6, 255) // NDP's hop limit: the receiver checks it
	s16, t16 := src.As16(), target.As16()
	d16 := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: t16[13], 14: t16[14], 15: t16[15]}
	b = append(b, s16[:]...)
	b = append(b, d16[:]...)
	ic := len(b)
	b = append(b, icmp6NS, 0, 0, 0, 0, 0, 0, 0) // type, code, checksum, reserved
	b = append(b, t16[:]...)
	b = append(b, 1, 1) // source link-layer address, 8 bytes
	b = append(b, srcMAC[:]...)
	pseudo := csum.Add(csum.Add(0, s16[:]), d16[:]) + payload + protoICMPv6
	binary.BigEndian.PutUint16(b[ic+2:], ^csum.Fold(csum.Add(pseudo, b[ic:])))
	return pad(b, start)
}

func pad(b []byte, start int) []byte {
	for len(b)-start < minFrameLen {
		b = append(b, 0)
	}
	return b
}

// tcpHeader is what deliver needs of a received TCP segment.
type tcpHeader struct {
	from         [6]byte // Ethernet source
	src, dst     netip.Addr
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
}

// parseTCP reads the addresses, ports, sequence numbers and flags of an
// unfragmented TCP segment in an IPv4 or IPv6 (without extension headers)
// Ethernet frame, which may be cut short after the fixed TCP header.
// Checksums are not verified: the kernel hands frames from
// local senders over with the checksum still to be filled in, and the
// acknowledgement number proves the answer is to our SYN.
func parseTCP(f []byte) (tcpHeader, bool) {
	var h tcpHeader
	if len(f) < ethLen {
		return h, false
	}
	var t []byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherTypeIPv4:
		ip := f[ethLen:]
		if len(ip) < ipv4Len || ip[0]>>4 != 4 || ip[9] != protoTCP {
			return h, false
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < ipv4Len || total < ihl+tcpLen || len(ip) < ihl+tcpLen || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return h, false
		}
		h.src = netip.AddrFrom4([4]byte(ip[12:16]))
		h.dst = netip.AddrFrom4([4]byte(ip[16:20]))
		t = ip[ihl:min(total, len(ip))] // the filter may have cut the frame short
	case etherTypeIPv6:
		ip := f[ethLen:]
		if len(ip) < ipv6Len || ip[0]>>4 != 6 || ip[6] != protoTCP {
			return h, false
		}
		payload := int(binary.BigEndian.Uint16(ip[4:]))
		if payload < tcpLen {
			return h, false
		}
		h.src = netip.AddrFrom16([16]byte(ip[8:24]))
		h.dst = netip.AddrFrom16([16]byte(ip[24:40]))
		t = ip[ipv6Len:min(ipv6Len+payload, len(ip))]
	default:
		return h, false
	}
	if len(t) < tcpLen || int(t[12]>>4)*4 < tcpLen {
		return h, false
	}
	h.from = [6]byte(f[6:12])
	h.sport = binary.BigEndian.Uint16(t[0:])
	h.dport = binary.BigEndian.Uint16(t[2:])
	h.seq = binary.BigEndian.Uint32(t[4:])
	h.ack = binary.BigEndian.Uint32(t[8:])
	h.flags = t[13]
	return h, true
}

// ARP operations.
const (
	arpOpRequest = 1
	arpOpReply   = 2
)

// parseARP reads the sender hardware and protocol addresses of an
// Ethernet/IPv4 ARP request or reply, and which of the two it is.
func parseARP(f []byte) (neighKey, neighAnswer, bool) {
	if len(f) < ethLen+arpLen || binary.BigEndian.Uint16(f[12:]) != etherTypeARP {
		return neighKey{}, 0, false
	}
	a := f[ethLen:]
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != etherTypeIPv4 || a[4] != 6 || a[5] != 4 {
		return neighKey{}, 0, false
	}
	var kind neighAnswer
	switch binary.BigEndian.Uint16(a[6:]) {
	case arpOpRequest:
		kind = neighRequest
	case arpOpReply:
		kind = neighReply
	default:
		return neighKey{}, 0, false
	}
	return neighKey{mac: [6]byte(a[8:14]), ip: netip.AddrFrom4([4]byte(a[14:18]))}, kind, true
}

// parseNA reads an ICMPv6 neighbour advertisement: its target, and the
// Ethernet source that sent it.
func parseNA(f []byte) (neighKey, bool) {
	if len(f) < ethLen+ipv6Len+ndpLen || binary.BigEndian.Uint16(f[12:]) != etherTypeIPv6 {
		return neighKey{}, false
	}
	ip := f[ethLen:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 {
		return neighKey{}, false
	}
	ic := ip[ipv6Len:]
	if ic[0] != icmp6NA || ic[1] != 0 {
		return neighKey{}, false
	}
	return neighKey{ip: netip.AddrFrom16([16]byte(ic[8:24])), mac: [6]byte(f[6:12])}, true
}

// Socket filters. The balancer's interface carries every client packet to
// the VIPs; these pass only what a probe can be waiting for, cut to
// snapLen: TCP segments with ACK and SYN or RST set, to a probe source
// port, IPv4 ARP requests and replies, and neighbour advertisements. (The
// ARP filter passes every ARP request on the segment, as it must: the one
// that matters is a broadcast from a backend. Each costs a parse and a map
// lookup.)
var (
	ipv4AnswerFilter = []bpf.Instruction{
		bpf.LoadAbsolute{Off: ethLen + 9, Size: 1},                                  // 0: protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipFalse: 9},                // 1
		bpf.LoadAbsolute{Off: ethLen + 6, Size: 2},                                  // 2: flags, fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x3fff, SkipTrue: 7},                 // 3: a fragment
		bpf.LoadMemShift{Off: ethLen},                                               // 4: X = IPv4 header length
		bpf.LoadIndirect{Off: ethLen + 2, Size: 2},                                  // 5: TCP destination port
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: probePortFirst, SkipFalse: 4}, // 6
		bpf.LoadIndirect{Off: ethLen + 13, Size: 1},                                 // 7: TCP flags
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: tcpACK, SkipFalse: 2},                // 8
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: tcpSYN | tcpRST, SkipFalse: 1},       // 9
		bpf.RetConstant{Val: snapLen},                                               // 10
		bpf.RetConstant{Val: 0},                                                     // 11
	}
	ipv6AnswerFilter = []bpf.Instruction{
		bpf.LoadAbsolute{Off: ethLen + 6, Size: 1},                                         // 0: next header
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipFalse: 5},                       // 1: else to 7
		bpf.LoadAbsolute{Off: ethLen + ipv6Len + 2, Size: 2},                               // 2: TCP destination port
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: probePortFirst, SkipFalse: 7},        // 3
		bpf.LoadAbsolute{Off: ethLen + ipv6Len + 13, Size: 1},                              // 4: TCP flags
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: tcpACK, SkipFalse: 5},                       // 5
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: tcpSYN | tcpRST, SkipTrue: 3, SkipFalse: 4}, // 6
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoICMPv6, SkipFalse: 3},                    // 7: A is still the next header
		bpf.LoadAbsolute{Off: ethLen + ipv6Len, Size: 1},                                   // 8: ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmp6NA, SkipFalse: 1},                        // 9
		bpf.RetConstant{Val: snapLen},                                                      // 10
		bpf.RetConstant{Val: 0},                                                            // 11
	}
	arpFilter = []bpf.Instruction{
		bpf.LoadAbsolute{Off: ethLen + 6, Size: 2},                        // 0: operation
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: arpOpRequest, SkipTrue: 1},   // 1: request, to 3
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: arpOpReply, SkipFalse: 3},    // 2: reply, else to 6
		bpf.LoadAbsolute{Off: ethLen + 2, Size: 2},                        // 3: protocol type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv4, SkipFalse: 1}, // 4
		bpf.RetConstant{Val: snapLen},                                     // 5
		bpf.RetConstant{Val: 0},                                           // 6
	}
)

// ifaceAddr is one address of the balancer's interface.
type ifaceAddr struct {
	prefix    netip.Prefix
	usable    bool // not tentative, not failed duplicate address detection
	preferred bool // not deprecated
}

// pickSource returns the address to probe vip from: of vip's family, not
// link-local, usable; preferably in a subnet holding vip, then not
// deprecated, then the first.
func pickSource(addrs []ifaceAddr, vip netip.Addr) (netip.Addr, bool) {
	best, score := netip.Addr{}, -1
	for _, a := range addrs {
		ip := a.prefix.Addr().Unmap()
		if ip.Is4() != vip.Is4() || !a.usable || ip.IsLinkLocalUnicast() || ip.IsLoopback() {
			continue
		}
		s := 0
		if a.preferred {
			s++
		}
		if a.prefix.Masked().Contains(vip) {
			s += 2
		}
		if s > score {
			best, score = ip, s
		}
	}
	return best, score >= 0
}
