package config

import (
	"slices"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"1", []int{1}},
		{"0,2", []int{0, 2}},
		{"2-4", []int{2, 3, 4}},
		{" 0-1 , 4 ", []int{0, 1, 4}},
		{"3,1-3", []int{3, 1, 2}},
	} {
		got, err := ParseCPUList(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "a", "1,", "-1", "3-1", "1-", "70000", "1-2-3"} {
		if got, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) = %v, want an error", bad, got)
		}
	}
}

func TestSetCPUsEmptyMeansNoPinning(t *testing.T) {
	c := Config{CPUs: []int{1}}
	if err := c.SetCPUs(" "); err != nil || c.CPUs != nil {
		t.Errorf("SetCPUs(\" \"): CPUs %v, err %v; want none, nil", c.CPUs, err)
	}
}
