package latency

import (
	"slices"
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
	a := func(seq uint32) Arrival { return Arrival{Frame: FrameID{StampNs: 100, Seq: seq}, RxNs: 200} }
	p.add(5, a(1)) // not recorded: arrivals are off
	p.RecordArrivals(true)
	p.add(-1, a(2)) // a negative latency is still an arrival
	p.add(7, a(3))
	s, neg := p.Take()
	if len(s) != 2 || s[0] != 5 || s[1] != 7 || neg != 1 {
		t.Errorf("Take = %v, %d", s, neg)
	}
	if got := p.TakeArrivals(); len(got) != 2 || got[0] != a(2) || got[1] != a(3) {
		t.Errorf("TakeArrivals = %v", got)
	}
	if s, neg := p.Take(); len(s) != 0 || neg != 0 {
		t.Errorf("second Take = %v, %d", s, neg)
	}
	if got := p.TakeArrivals(); len(got) != 0 {
		t.Errorf("second TakeArrivals = %v", got)
	}
	p.add(9, a(4))
	p.RecordArrivals(false)
	p.add(9, a(5))
	if got := p.TakeArrivals(); len(got) != 0 {
		t.Errorf("TakeArrivals after RecordArrivals(false) = %v", got)
	}
}

func TestMatchTransit(t *testing.T) {
	arr := func(stamp int64, seq uint32, rx int64) Arrival {
		return Arrival{Frame: FrameID{StampNs: stamp, Seq: seq}, RxNs: rx}
	}
	for _, tc := range []struct {
		name     string
		up, down []Arrival
		want     Transit
	}{
		{name: "nothing"},
		{
			name: "matched in downstream order",
			up:   []Arrival{arr(10, 1, 1000), arr(20, 2, 2000), arr(30, 3, 3000)},
			down: []Arrival{arr(30, 3, 3500), arr(10, 1, 1100)},
			want: Transit{Samples: []int64{500, 100}, UpstreamOnly: 1},
		},
		{
			name: "zero transit is a sample",
			up:   []Arrival{arr(10, 1, 1000)},
			down: []Arrival{arr(10, 1, 1000)},
			want: Transit{Samples: []int64{0}},
		},
		{
			name: "negative transit is counted, not sampled",
			up:   []Arrival{arr(10, 1, 1000), arr(20, 2, 2000)},
			down: []Arrival{arr(10, 1, 999), arr(20, 2, 2100)},
			want: Transit{Samples: []int64{100}, Negative: 1},
		},
		{
			// The same seq from two generator runs (or threads): the
			// stamp tells them apart.
			name: "same seq, different stamp",
			up:   []Arrival{arr(10, 1, 1000), arr(50, 1, 5000)},
			down: []Arrival{arr(50, 1, 5200)},
			want: Transit{Samples: []int64{200}, UpstreamOnly: 1},
		},
		{
			name: "same stamp, different seq",
			up:   []Arrival{arr(10, 1, 1000), arr(10, 2, 1001)},
			down: []Arrival{arr(10, 2, 1301), arr(10, 1, 1100)},
			want: Transit{Samples: []int64{300, 100}},
		},
		{
			name: "downstream only",
			up:   []Arrival{arr(10, 1, 1000)},
			down: []Arrival{arr(10, 1, 1010), arr(20, 2, 2000), arr(30, 3, 3000)},
			want: Transit{Samples: []int64{10}, DownstreamOnly: 2},
		},
		{
			name: "duplicates are left out everywhere",
			up:   []Arrival{arr(10, 1, 1000), arr(10, 1, 1005), arr(20, 2, 2000), arr(30, 3, 3000), arr(40, 4, 4000)},
			down: []Arrival{arr(10, 1, 1100), arr(20, 2, 2100), arr(20, 2, 2200), arr(30, 3, 3100), arr(50, 5, 5000), arr(50, 5, 5001)},
			want: Transit{Samples: []int64{100}, UpstreamOnly: 1, Duplicates: 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, down := slices.Clone(tc.up), slices.Clone(tc.down)
			got := MatchTransit(tc.up, tc.down)
			if !slices.Equal(got.Samples, tc.want.Samples) || got.UpstreamOnly != tc.want.UpstreamOnly ||
				got.DownstreamOnly != tc.want.DownstreamOnly || got.Negative != tc.want.Negative || got.Duplicates != tc.want.Duplicates {
				t.Errorf("MatchTransit = %+v\nwant %+v", got, tc.want)
			}
			if !slices.Equal(up, tc.up) || !slices.Equal(down, tc.down) {
				t.Error("MatchTransit modified its arguments")
			}
		})
	}
}
