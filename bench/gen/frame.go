package gen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/dsrlb/dsrlb/internal/csum"
)

// Frame lengths, without the FCS.
const (
	UDPFrameLen = 60 // 14 Ethernet + 20 IPv4 + 8 UDP + 18 payload
	SYNFrameLen = 54 // 14 Ethernet + 20 IPv4 + 20 TCP
)

// Offsets into a frame.
const (
	offIPCsum  = 14 + 10
	offIPSrc   = 14 + 12
	offL4      = 14 + 20
	offSrcPort = offL4
	offUDPCsum = offL4 + 6
	offTCPCsum = offL4 + 16
	offTCPSeq  = offL4 + 4

	// PayloadOffset is where a UDP frame's payload, and so a stamp, starts.
	PayloadOffset = offL4 + 8
	// StampLen is the bytes a stamp takes: magic, time, sequence number.
	StampLen = 4 + 8 + 4
)

// StampMagic marks a stamped frame ("DSRB"); unstamped frames have zeros
// there.
const StampMagic = 0x44535242

// Template is the frame of a load for the first flow; Write derives any
// flow's frame from it.
type Template struct {
	Frame   []byte // UDPFrameLen or SYNFrameLen bytes
	Traffic Traffic
	ports   int // source ports per address, from FlowSpace
	flows   int // addrs*ports
}

// NewTemplate builds the template frame of l with gopacket.
func NewTemplate(l *Load) (*Template, error) {
	addrs, ports := FlowSpace(l.Flows)
	t := &Template{Traffic: l.Traffic, ports: ports, flows: addrs * ports}
	f, err := buildFrame(l.SrcMAC, l.DstMAC, SourceBase, l.VIP, FirstPort, l.Traffic, 0, nil)
	if err != nil {
		return nil, err
	}
	t.Frame = f
	return t, nil
}

// Flows is the size of the template's flow space.
func (t *Template) Flows() int { return t.flows }

// buildFrame serialises one frame with gopacket, checksums computed.
// For UDP, payload (UDPFrameLen-PayloadOffset bytes, nil for zeros) is the
// payload; for SYN, seq is the sequence number.
func buildFrame(srcMAC, dstMAC net.HardwareAddr, src netip.Addr, dst netip.AddrPort, sport uint16, tr Traffic, seq uint32, payload []byte) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment,
		SrcIP: src.AsSlice(), DstIP: dst.Addr().AsSlice(),
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	switch tr {
	case UDP:
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dst.Port())}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		if payload == nil {
			payload = make([]byte, UDPFrameLen-PayloadOffset)
		}
		err = gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload))
	case SYN:
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dst.Port()), Seq: seq, SYN: true, Window: 64240}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		err = gopacket.SerializeLayers(buf, opts, eth, ip, tcp)
	default:
		return nil, fmt.Errorf("unknown traffic %d", tr)
	}
	if err != nil {
		return nil, fmt.Errorf("build %s frame: %w", tr, err)
	}
	b := buf.Bytes()
	// gopacket pads short frames to 60 bytes; a SYN frame ends with its
	// TCP header, as trafgen sends it.
	n := UDPFrameLen
	if tr == SYN {
		n = SYNFrameLen
	}
	if len(b) < n {
		return nil, fmt.Errorf("build %s frame: %d bytes, want %d", tr, len(b), n)
	}
	return append([]byte(nil), b[:n]...), nil
}

// Write fills dst (at least len(t.Frame) bytes) with flow i's frame (i in
// [0, t.Flows())): the template with the flow's source address and port,
// the TCP sequence number seq for SYN frames, a stamp if stampNs != 0 (UDP
// only), and valid checksums. It returns the frame length. It does not
// allocate.
func (t *Template) Write(dst []byte, i int, seq uint32, stampNs int64) int {
	n := copy(dst, t.Frame)
	f := dst[:n]
	addr := uint32(i / t.ports)
	port := uint16(FirstPort + i%t.ports)
	base := SourceBase.As4()
	binary.BigEndian.PutUint32(f[offIPSrc:], binary.BigEndian.Uint32(base[:])+addr)
	binary.BigEndian.PutUint16(f[offSrcPort:], port)
	f[offIPCsum], f[offIPCsum+1] = 0, 0
	binary.BigEndian.PutUint16(f[offIPCsum:], ^csum.Fold(csum.Add(0, f[14:offL4])))
	switch t.Traffic {
	case UDP:
		if stampNs != 0 {
			binary.BigEndian.PutUint32(f[PayloadOffset:], StampMagic)
			binary.BigEndian.PutUint64(f[PayloadOffset+4:], uint64(stampNs))
			binary.BigEndian.PutUint32(f[PayloadOffset+12:], seq)
		}
		f[offUDPCsum], f[offUDPCsum+1] = 0, 0
		c := ^csum.Fold(csum.Add(pseudo(f, 17, n-offL4), f[offL4:]))
		if c == 0 {
			c = 0xffff // 0 means "no checksum" in UDP over IPv4
		}
		binary.BigEndian.PutUint16(f[offUDPCsum:], c)
	case SYN:
		binary.BigEndian.PutUint32(f[offTCPSeq:], seq)
		f[offTCPCsum], f[offTCPCsum+1] = 0, 0
		binary.BigEndian.PutUint16(f[offTCPCsum:], ^csum.Fold(csum.Add(pseudo(f, 6, n-offL4), f[offL4:])))
	}
	return n
}

// ReadStamp returns the time and sequence number of a stamped frame.
func ReadStamp(frame []byte) (stampNs int64, seq uint32, ok bool) {
	if len(frame) < PayloadOffset+StampLen || binary.BigEndian.Uint32(frame[PayloadOffset:]) != StampMagic {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(frame[PayloadOffset+4:])), binary.BigEndian.Uint32(frame[PayloadOffset+12:]), true
}

// pseudo returns the one's-complement sum of the IPv4 pseudo-header.
func pseudo(f []byte, proto uint32, l4len int) uint32 {
	s := csum.Add(0, f[offIPSrc:offIPSrc+8])
	return s + proto + uint32(l4len)
}
