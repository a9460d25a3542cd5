package dataplane

import "encoding/binary"

// insertVLANTag puts back the 802.1Q tag that the kernel moved into the ring
// frame's metadata, so a tagged frame leaves tagged. buf[mac:] is the frame,
// preceded by its virtio_net_hdr; there must be vlanTagLen free bytes before
// that header. The header and the MAC addresses move 4 bytes down, the tag
// goes between them and the EtherType, and a pending checksum's start offset
// (relative to the frame) grows by the tag. It returns the new start of the
// virtio_net_hdr.
func insertVLANTag(buf []byte, mac int, tpid, tci uint16) int {
	start := mac - sizeofVnetHdr
	copy(buf[start-vlanTagLen:], buf[start:mac+12])
	binary.BigEndian.PutUint16(buf[mac+12-vlanTagLen:], tpid)
	binary.BigEndian.PutUint16(buf[mac+14-vlanTagLen:], tci)
	vh := buf[start-vlanTagLen:]
	if vh[0]&vnetNeedsCsum != 0 {
		// struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size,
		// csum_start, csum_offset (little-endian on every Linux host we run on).
		cs := binary.LittleEndian.Uint16(vh[6:])
		binary.LittleEndian.PutUint16(vh[6:], cs+vlanTagLen)
	}
	if hl := binary.LittleEndian.Uint16(vh[2:]); hl != 0 {
		binary.LittleEndian.PutUint16(vh[2:], hl+vlanTagLen)
	}
	return start - vlanTagLen
}
