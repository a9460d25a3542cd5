package testbed

import (
	"os"
	"testing"
)

const procStat = `cpu  100 2 30 1000 5 6 7 8 9 10
cpu0 50 1 15 500 2 3 3 4 0 0
cpu1 50 1 15 500 3 3 4 4 0 0
intr 12345 0 0
ctxt 999
`

func TestParseProcStat(t *testing.T) {
	all, per, err := ParseProcStat(procStat)
	if err != nil {
		t.Fatal(err)
	}
	want := CPUTimes{User: 100, Nice: 2, System: 30, Idle: 1000, IOWait: 5, IRQ: 6, SoftIRQ: 7, Steal: 8}
	if all != want || len(per) != 2 || per[1].IOWait != 3 {
		t.Fatalf("got %+v %+v", all, per)
	}
	if all.Busy() != 100+2+30+6+7+8 || all.Total() != all.Busy()+1005 {
		t.Errorf("Busy %d Total %d", all.Busy(), all.Total())
	}
	if d := all.Sub(per[0]); d.User != 50 || d.Idle != 500 {
		t.Errorf("Sub = %+v", d)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu a b c d e f g h\n"} {
		if _, _, err := ParseProcStat(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
	// The real file parses too.
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if _, _, err := ParseProcStat(string(b)); err != nil {
			t.Errorf("/proc/stat: %v", err)
		}
	}
}

func TestParseSoftnet(t *testing.T) {
	s, err := ParseSoftnet("0000000a 00000001 00000002 00000000\n000000f0 00000000 00000010 00000000\n")
	if err != nil {
		t.Fatal(err)
	}
	if s != (Softnet{Processed: 0xfa, Dropped: 1, Squeezed: 0x12}) {
		t.Errorf("got %+v", s)
	}
	if _, err := ParseSoftnet("zz 1 2\n"); err == nil {
		t.Error("parsed garbage")
	}
}

func TestCPUMask(t *testing.T) {
	for n, want := range map[int]string{0: "0", 1: "1", 2: "3", 8: "ff", 32: "ffffffff", 33: "1,ffffffff", 64: "ffffffff,ffffffff", 70: "3f,ffffffff,ffffffff"} {
		if got := CPUMask(n); got != want {
			t.Errorf("CPUMask(%d) = %q, want %q", n, got, want)
		}
	}
}
