package csum

import "testing"

// The example of RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to
// ddf2 once folded.
func TestRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Fold(Add(0, b)); got != 0xddf2 {
		t.Errorf("Fold(Add(example)) = %#04x, want 0xddf2", got)
	}
	// Split anywhere on a word boundary, the sum is the same.
	if got := Fold(Add(Add(0, b[:4]), b[4:])); got != 0xddf2 {
		t.Errorf("split sum = %#04x, want 0xddf2", got)
	}
	// An odd last byte counts as the high byte of a word.
	if got := Fold(Add(0, []byte{0x12, 0x34, 0x56})); got != 0x1234+0x5600 {
		t.Errorf("odd length: %#04x, want %#04x", got, 0x1234+0x5600)
	}
	// With its checksum stored, data sums to 0xffff.
	c := ^Fold(Add(0, b))
	if got := Fold(Add(Add(0, b), []byte{byte(c >> 8), byte(c)})); got != 0xffff {
		t.Errorf("data plus its checksum folds to %#04x, want 0xffff", got)
	}
}
