package csum

// Add adds b, as big-endian 16-bit words (an odd last byte padded with
// zero), to the running sum s. A 32-bit sum holds any frame up to 128 KiB.
func Add(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// Fold folds the carries of s into 16 bits. The checksum to store is
// ^Fold(s); over data that includes a correct checksum, Fold gives 0xffff.
func Fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
