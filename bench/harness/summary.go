package harness

import (
	"slices"
)

// Stat summarises repeated measurements of one quantity.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// NewStat returns the median, minimum and maximum of v.
func NewStat(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	return Stat{Median: Median(v), Min: slices.Min(v), Max: slices.Max(v), N: len(v)}
}

// Median returns the middle value of v (the mean of the two middle values
// when len(v) is even), or 0 for no values. v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio compares two modes measured in the same run.
type Ratio struct {
	Num string `json:"num"`
	Den string `json:"den"`
	// OfMedians is median(num) / median(den).
	OfMedians float64 `json:"of_medians"`
	// Paired is the distribution of num[i]/den[i] over repetitions i, each
	// pair measured back to back.
	Paired Stat `json:"paired"`
	// Saturated compares only the repetitions in which both windows had
	// every CPU busy (SaturatedBusy), where delivered pps measures capacity;
	// a window with idle CPU time means the generator stalled, and its rate
	// says little about the balancer. nil when no repetition qualifies.
	Saturated *SaturatedRatio `json:"saturated,omitempty"`
	// CPUNs, for an A/B twin over its base mode, is the distribution of
	// num[i]/den[i] of CPU ns per packet over repetitions i; nil otherwise.
	CPUNs *Stat `json:"cpu_ns_per_pkt_paired,omitempty"`
}

// SaturatedRatio is the median of num[i]/den[i] over the repetitions i in
// which both windows were saturated.
type SaturatedRatio struct {
	Median float64 `json:"median"`
	Reps   int     `json:"reps"`
}

// SaturatedBusy is the CPU busy fraction from which a window counts as
// saturated.
const SaturatedBusy = 0.98

// NewRatio returns the ratio of num to den; pairs with a zero denominator
// are left out.
func NewRatio(numName, denName string, num, den []float64) Ratio {
	r := Ratio{Num: numName, Den: denName}
	if md := Median(den); md != 0 {
		r.OfMedians = Median(num) / md
	}
	var paired []float64
	for i := 0; i < len(num) && i < len(den); i++ {
		if den[i] != 0 {
			paired = append(paired, num[i]/den[i])
		}
	}
	r.Paired = NewStat(paired)
	return r
}

// perPacketNs is CPU time per delivered frame in nanoseconds: busy ticks
// (of userHZ per second) over frames. 0 frames give 0.
func perPacketNs(busyTicks uint64, userHZ int, frames uint64) float64 {
	if frames == 0 {
		return 0
	}
	return float64(busyTicks) * 1e9 / float64(userHZ) / float64(frames)
}

// lossFraction is 1 - delivered/offered, 0 when nothing was offered; it
// may be negative when frames queued before the window arrive inside it.
func lossFraction(offered, delivered uint64) float64 {
	if offered == 0 {
		return 0
	}
	return 1 - float64(delivered)/float64(offered)
}
