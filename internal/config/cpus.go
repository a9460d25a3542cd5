package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseCPUList parses a CPU list in the kernel's format ("1", "0,2", "2-5",
// "0-1,4"), as taskset -c and isolcpus take it, into CPU numbers in the order
// given, without duplicates.
func ParseCPUList(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %q is not a CPU number or range", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: %q is not a CPU range (low-high)", s, part)
			}
		}
		for c := int(a); c <= int(b); c++ {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}
