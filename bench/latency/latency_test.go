package latency

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, tc := range []struct {
		p    float64
		want int64
	}{{1, 10}, {10, 10}, {11, 20}, {50, 50}, {51, 60}, {90, 90}, {99, 100}, {99.9, 100}, {100, 100}} {
		if got := Percentile(s, tc.p); got != tc.want {
			t.Errorf("Percentile(%v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing is not 0")
	}
}

func TestSummarize(t *testing.T) {
	var s []int64
	for i := 1000; i >= 1; i-- { // unsorted on purpose
		s = append(s, int64(i)*1000)
	}
	got := Summarize(s)
	want := Summary{Count: 1000, Min: time.Microsecond, P50: 500 * time.Microsecond, P90: 900 * time.Microsecond,
		P99: 990 * time.Microsecond, P999: 999 * time.Microsecond, Max: time.Millisecond, Mean: 500500 * time.Nanosecond}
	if got != want {
		t.Errorf("Summarize = %+v\nwant %+v", got, want)
	}
	if s[0] != 1000000 {
		t.Error("Summarize sorted its input")
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("Summarize(nil) is not zero")
	}
}

func TestProbeTake(t *testing.T) {
	var p Probe
	p.add(5)
	p.add(-1)
	p.add(7)
	s, neg := p.Take()
	if len(s) != 2 || s[0] != 5 || s[1] != 7 || neg != 1 {
		t.Errorf("Take = %v, %d", s, neg)
	}
	if s, neg := p.Take(); len(s) != 0 || neg != 0 {
		t.Errorf("second Take = %v, %d", s, neg)
	}
}
