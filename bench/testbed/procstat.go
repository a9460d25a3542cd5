package testbed

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// UserHZ is the unit of /proc/stat's CPU times: USER_HZ, 100 per second on
// every Linux architecture the benchmark runs on.
const UserHZ = 100

// CPUTimes are /proc/stat's CPU times in USER_HZ ticks. Guest time is part
// of User and Nice already, so it is not kept.
type CPUTimes struct {
	User    uint64 `json:"user"`
	Nice    uint64 `json:"nice"`
	System  uint64 `json:"system"`
	Idle    uint64 `json:"idle"`
	IOWait  uint64 `json:"iowait"`
	IRQ     uint64 `json:"irq"`
	SoftIRQ uint64 `json:"softirq"`
	Steal   uint64 `json:"steal"`
}

// Busy is every tick that was not idle or waiting for I/O.
func (c CPUTimes) Busy() uint64 {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
}

// Total is every tick.
func (c CPUTimes) Total() uint64 { return c.Busy() + c.Idle + c.IOWait }

// Sub returns c minus an earlier reading.
func (c CPUTimes) Sub(e CPUTimes) CPUTimes {
	return CPUTimes{
		User: c.User - e.User, Nice: c.Nice - e.Nice, System: c.System - e.System,
		Idle: c.Idle - e.Idle, IOWait: c.IOWait - e.IOWait, IRQ: c.IRQ - e.IRQ,
		SoftIRQ: c.SoftIRQ - e.SoftIRQ, Steal: c.Steal - e.Steal,
	}
}

// ParseProcStat returns the "cpu" line and the "cpuN" lines of /proc/stat.
func ParseProcStat(s string) (all CPUTimes, per []CPUTimes, err error) {
	found := false
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if len(f) < 9 {
			return CPUTimes{}, nil, fmt.Errorf("/proc/stat: short line %q", line)
		}
		var v [8]uint64
		for i := range v {
			v[i], err = strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return CPUTimes{}, nil, fmt.Errorf("/proc/stat: %q: %w", line, err)
			}
		}
		t := CPUTimes{User: v[0], Nice: v[1], System: v[2], Idle: v[3], IOWait: v[4], IRQ: v[5], SoftIRQ: v[6], Steal: v[7]}
		if f[0] == "cpu" {
			all, found = t, true
		} else {
			per = append(per, t)
		}
	}
	if !found {
		return CPUTimes{}, nil, errors.New("/proc/stat: no cpu line")
	}
	return all, per, nil
}

// Softnet are /proc/net/softnet_stat's counters summed over CPUs.
type Softnet struct {
	Processed uint64 `json:"processed"` // frames taken off backlog and NAPI queues
	Dropped   uint64 `json:"dropped"`   // frames dropped because a backlog queue was full
	Squeezed  uint64 `json:"squeezed"`  // times net_rx_action ran out of budget or time
}

// Sub returns s minus an earlier reading.
func (s Softnet) Sub(e Softnet) Softnet {
	return Softnet{Processed: s.Processed - e.Processed, Dropped: s.Dropped - e.Dropped, Squeezed: s.Squeezed - e.Squeezed}
}

// ParseSoftnet sums /proc/net/softnet_stat (hex columns: processed,
// dropped, time_squeeze, ...) over its per-CPU lines.
func ParseSoftnet(s string) (Softnet, error) {
	var t Softnet
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		var v [3]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 16, 64)
			if err != nil {
				return Softnet{}, fmt.Errorf("softnet_stat: %q: %w", line, err)
			}
			v[i] = n
		}
		t.Processed += v[0]
		t.Dropped += v[1]
		t.Squeezed += v[2]
	}
	return t, nil
}
