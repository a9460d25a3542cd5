package gen

import (
	"slices"
	"testing"
)

func TestPktgenScript(t *testing.T) {
	l := testLoad(UDP, 65536)
	l.Threads = 2
	w, err := Pktgen{}.Script(l)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range w {
		got = append(got, x.File+": "+x.Cmd)
	}
	for _, want := range []string{
		"kpktgend_0: rem_device_all",
		"kpktgend_0: add_device eth0@0",
		"kpktgend_1: add_device eth0@1",
		"eth0@0: count 0",
		"eth0@0: clone_skb 0",
		"eth0@0: burst 1",
		"eth0@0: pkt_size 60",
		"eth0@0: delay 0",
		"eth0@0: dst_mac 02:00:00:00:00:02",
		"eth0@0: src_mac 02:00:00:00:00:01",
		"eth0@0: dst 198.18.0.100",
		"eth0@0: src_min 198.19.0.0",
		"eth0@0: src_max 198.19.0.64", // one past the last: pktgen draws from [min, max)
		"eth0@0: udp_dst_min 9",
		"eth0@0: udp_dst_max 9",
		"eth0@0: udp_src_min 1024",
		"eth0@0: udp_src_max 2048",
		"eth0@0: flag IPSRC_RND",
		"eth0@1: flag UDPSRC_RND",
		"eth0@0: flag UDPCSUM", // pktgen sends checksum 0 without it
		"eth0@1: flag UDPCSUM",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	// A thread's device is added before it is configured.
	add := slices.Index(got, "kpktgend_1: add_device eth0@1")
	first := slices.IndexFunc(got, func(s string) bool { return len(s) > 7 && s[:7] == "eth0@1:" })
	if add < 0 || first < add {
		t.Errorf("eth0@1 configured (at %d) before it is added (at %d)", first, add)
	}

	l.Rate = 1000
	l.Flows = 300 * 1024 // src_max crosses a byte boundary
	w, _ = Pktgen{}.Script(l)
	var cmds []string
	for _, x := range w {
		if x.File == "eth0@1" {
			cmds = append(cmds, x.Cmd)
		}
	}
	for _, want := range []string{"ratep 500", "src_max 198.19.1.44"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("rate script lacks %q: %q", want, cmds)
		}
	}
	l.Flows = MaxFlows // 65,536 addresses: the end carries into the second byte
	w, _ = Pktgen{}.Script(l)
	if !slices.ContainsFunc(w, func(x PktgenWrite) bool { return x.Cmd == "src_max 198.20.0.0" }) {
		t.Errorf("at %d flows, src_max is not 198.20.0.0 (one past 198.19.255.255): %v", MaxFlows, w)
	}
	if slices.Contains(cmds, "delay 0") {
		t.Error("rate script has delay 0")
	}

	if _, err := (Pktgen{}).Script(testLoad(SYN, 10)); err == nil {
		t.Error("pktgen accepted SYN traffic")
	}
}
