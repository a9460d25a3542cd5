package gen

import (
	"slices"
	"strings"
	"testing"
)

func TestTrafgenConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    *Load
		want string
	}{
		{"udp many flows", testLoad(UDP, 65536), `# dsrlb bench: 60-byte udp frames to 198.18.0.100:9 from 65536 flows (64 source addresses x 1024 source ports)
{
  eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01),
  ipv4(sa=198.19.0.0, sa[2:2]=drnd(0, 63), da=198.18.0.100, ttl=64, df),
  udp(sp=drnd(1024, 2047), dp=9),
  fill(0x00, 18)
}
`},
		{"syn one flow", testLoad(SYN, 1), `# dsrlb bench: 54-byte syn frames to 198.18.0.100:9 from 1 flows (1 source addresses x 1 source ports)
{
  eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01),
  ipv4(sa=198.19.0.0, da=198.18.0.100, ttl=64, df),
  tcp(sp=1024, dp=9, syn, seq=drnd(), win=64240)
}
`},
		{"udp ports only", testLoad(UDP, 100), `# dsrlb bench: 60-byte udp frames to 198.18.0.100:9 from 100 flows (1 source addresses x 100 source ports)
{
  eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01),
  ipv4(sa=198.19.0.0, da=198.18.0.100, ttl=64, df),
  udp(sp=drnd(1024, 1123), dp=9),
  fill(0x00, 18)
}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TrafgenConfig(tc.l); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestTrafgenArgs(t *testing.T) {
	l := testLoad(UDP, 10)
	l.Threads = 2
	got := TrafgenArgs(l, "/tmp/x.trafgen", "")
	want := []string{"-o", "eth0", "-i", "/tmp/x.trafgen", "-P", "2", "-Q"}
	if !slices.Equal(got, want) {
		t.Errorf("flat out: %q, want %q", got, want)
	}
	l.Rate = 123456.7
	got = TrafgenArgs(l, "c", "8MiB")
	if s := strings.Join(got, " "); !strings.HasSuffix(s, "-Q -b 123457pps -S 8MiB") {
		t.Errorf("with rate and ring: %q", s)
	}
}

// trafgen runs one worker when it shapes the rate, whatever -P says.
func TestTrafgenThreads(t *testing.T) {
	l := testLoad(UDP, 10)
	l.Threads = 4
	if n := Threads(Trafgen{}, l); n != 4 {
		t.Errorf("trafgen flat out with 4 threads: %d", n)
	}
	l.Rate = 100_000
	if n := Threads(Trafgen{}, l); n != 1 {
		t.Errorf("trafgen at 100 kpps with 4 threads: %d, want 1", n)
	}
	if n := Threads(TxRing{}, l); n != 4 {
		t.Errorf("txring at 100 kpps with 4 threads: %d", n)
	}
}

func TestTrimOutput(t *testing.T) {
	in := "Cannot set system socket memory in /proc/sys/net/core/rmem_max: Permission denied\n\n   10 packets outgoing\n"
	if got := trimOutput(in); got != "   10 packets outgoing" {
		t.Errorf("trimOutput = %q", got)
	}
	if m := trafgenSent.FindStringSubmatch("Running!\n\r      865690 packets outgoing\n"); m == nil || m[1] != "865690" {
		t.Errorf("sent regexp: %q", m)
	}
}

// Ring sizes reach trafgen in KiB, the form it reads right.
func TestTrafgenRingSize(t *testing.T) {
	for in, want := range map[string]string{"8MiB": "8192KiB", "512KiB": "512KiB", "1GiB": "1048576KiB", "1MiB": "1024KiB"} {
		if got, err := TrafgenRingSize(in); err != nil || got != want {
			t.Errorf("TrafgenRingSize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "8", "8M", "8 MiB", "0MiB", "-1KiB", "1.5MiB", "MiB", "99999999999GiB"} {
		if got, err := TrafgenRingSize(in); err == nil {
			t.Errorf("TrafgenRingSize(%q) = %q, want an error", in, got)
		}
	}
}
