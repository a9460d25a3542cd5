//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
)

// webConfig serves http on vip4:80 from servers with the given health block
// (YAML lines at service level) and per-server weights (default 1).
func webConfig(servers []*labnet.Host, health string, weights map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface: eth0\nworkers: 2\nseed: 42\nservices:\n  - name: web\n    vip: %s\n    port: 80\n", vip4)
	if health != "" {
		b.WriteString("    health:\n")
		for _, line := range strings.Split(strings.TrimSpace(health), "\n") {
			b.WriteString("      " + strings.TrimSpace(line) + "\n")
		}
	}
	b.WriteString("    backends:\n")
	for _, s := range servers {
		w, ok := weights[s.Name]
		if !ok {
			w = 1
		}
		fmt.Fprintf(&b, "      - address: %s\n        weight: %d\n", s.Addr4, w)
	}
	return b.String()
}

const (
	checkInterval = 300 * time.Millisecond
	checkRise     = 2
	checkFall     = 3
)

var httpCheck = fmt.Sprintf("kind: http\npath: /\ninterval: %s\ntimeout: 200ms\nrise: %d\nfall: %d", checkInterval, checkRise, checkFall)

// Acceptance (health 1, 2): under steady load, a killed server leaves the
// table after fall × interval (within one interval), new requests then all
// succeed, connections to the healthy servers see no error at all; the
// restarted server is back after rise × interval and takes new flows.
func TestHealthKillAndRestart(t *testing.T) {
	l := newDSRLab(t, 3)
	l.checkOffloads()
	l.startBalancer(webConfig(l.servers, httpCheck, nil))
	url := "http://" + vip4.String() + "/"
	g := l.startLoad(url, 6, 3, 10*time.Millisecond) // ~9 workers × <100/s: a few hundred requests per second
	time.Sleep(time.Second)

	victim := l.servers[1]
	killed := time.Now()
	l.stopHTTP(victim)
	// Detection is when the table without the victim is published (the
	// engine logs the health event just before it rebuilds the table).
	seen, ok := l.waitLog(`why="backend `+victim.Addr4.String()+` down"`, 10*time.Second)
	if !ok {
		g.stop()
		t.Fatalf("%s never marked down\n%s", victim.Name, l.lbOut.String())
	}
	detect := seen.Sub(killed)
	time.Sleep(time.Second) // steady state without the victim
	restarted := time.Now()
	l.startHTTP(victim)
	back, ok := l.waitLog(`why="backend `+victim.Addr4.String()+` up"`, 10*time.Second)
	if !ok {
		g.stop()
		t.Fatalf("%s never came back up\n%s", victim.Name, l.lbOut.String())
	}
	recover := back.Sub(restarted)
	// Run until the recovered table has served enough new connections.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		n := 0
		for _, r := range g.snapshot() {
			if !r.keepAlive && r.start.After(back.Add(100*time.Millisecond)) {
				n++
			}
		}
		if n >= 150 {
			break
		}
	}
	results := g.stop()

	fall := time.Duration(checkFall) * checkInterval
	t.Logf("detection %v after the kill (fall × interval = %v); back up %v after the restart (rise × interval = %v)",
		detect.Round(time.Millisecond), fall, recover.Round(time.Millisecond), time.Duration(checkRise)*checkInterval)
	// Fall probes are needed, the first within one interval of the kill
	// (jitter ±10%): detection can come no sooner than (fall-1)·0.9·I; on an
	// idle machine by fall·I + I (the log line above says how long it
	// took). The upper bounds here are deadlines for a stuck checker, loose
	// enough for a busy machine: timing is not this test's to judge.
	if detect < time.Duration(float64(checkFall-1)*0.9*float64(checkInterval)) {
		t.Errorf("detection took %v: fewer than fall (%d) failed probes could have run", detect, checkFall)
	}
	if limit := fall + 10*checkInterval; detect > limit {
		t.Errorf("detection took %v, more than %v", detect, limit)
	}
	if limit := time.Duration(checkRise)*checkInterval + 10*checkInterval; recover > limit {
		t.Errorf("recovery took %v, more than %v", recover, limit)
	}

	var total, beforeDetect, failedBefore, failedAfter, healthyErrs, afterBack, toVictimAfterBack int
	for _, r := range results {
		total++
		switch {
		case r.start.Before(seen):
			beforeDetect++
			if r.err != nil {
				failedBefore++
			}
		case r.err != nil:
			failedAfter++
			t.Logf("failed after detection: worker %d keepalive=%v last server %s: %v", r.worker, r.keepAlive, r.server, r.err)
		}
		if r.err != nil && r.keepAlive && r.server != "" && r.server != victim.Name {
			healthyErrs++
			t.Errorf("a connection to healthy %s failed at +%v: %v", r.server, r.start.Sub(killed).Round(time.Millisecond), r.err)
		}
		if r.err == nil && !r.keepAlive && r.start.After(back.Add(100*time.Millisecond)) {
			afterBack++
			if r.server == victim.Name {
				toVictimAfterBack++
			}
		}
	}
	t.Logf("%d requests: %d before detection (%d failed), %d failed after detection; %d new connections after recovery, %d of them to %s",
		total, beforeDetect, failedBefore, failedAfter, afterBack, toVictimAfterBack, victim.Name)
	if failedAfter > 0 {
		t.Errorf("%d requests failed after the dead server was detected", failedAfter)
	}
	if afterBack < 150 {
		t.Errorf("only %d new connections in 10 s after the recovery (of %d requests in the run): the load was not steady", afterBack, total)
	}
	if toVictimAfterBack == 0 {
		t.Errorf("the restarted server got none of %d new connections", afterBack)
	}
}

// Acceptance (health 3): a server whose VIP is missing from lo passes a
// real-IP check but fails the DSR-path check, with a reason naming the VIP;
// restoring the VIP brings it back.
func TestHealthDSRPath(t *testing.T) {
	l := newDSRLab(t, 3)
	l.startBalancer(webConfig(l.servers, fmt.Sprintf("kind: tcp\nvip: true\ninterval: %s\ntimeout: 200ms\nrise: 2\nfall: 2", checkInterval), nil))
	srv := l.servers[0]
	ip := func(args ...string) {
		if out, err := srv.NS.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	// Generous waits: the test asserts the state changes and their reasons;
	// a machine still tearing down an earlier test's namespaces can hold the
	// kernel's netlink lock for seconds.
	removed := time.Now()
	ip("addr", "del", vip4.String()+"/32", "dev", "lo")
	down, ok := l.waitLog("backend "+srv.Addr4.String()+" down", 20*time.Second)
	t.Logf("marked down %v after the VIP left lo", down.Sub(removed).Round(time.Millisecond))
	if !ok {
		t.Fatalf("not marked down without the VIP on lo\n%s", l.lbOut.String())
	}
	line := lineWith(l.lbOut.String(), "backend "+srv.Addr4.String()+" down")
	if !strings.Contains(line, vip4.String()) {
		t.Errorf("the down reason does not name the VIP: %s", line)
	}
	t.Logf("reason: %s", line)
	// The real IP still answers: only the DSR path is broken.
	c := l.client.HTTPClient(false)
	if _, err := getWith(c, "http://"+srv.Addr4.String()+"/"); err != nil {
		t.Errorf("real-IP request failed: %v", err)
	}
	ip("addr", "add", vip4.String()+"/32", "dev", "lo")
	if _, ok := l.waitLog("backend "+srv.Addr4.String()+" up", 20*time.Second); !ok {
		t.Fatalf("not back up with the VIP restored\n%s", l.lbOut.String())
	}
}

func lineWith(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// Acceptance (health 4): draining a backend (weight 0, by reload) sends it no
// new flows, and its open connections complete.
func TestDrainByReload(t *testing.T) {
	l := newDSRLab(t, 3)
	l.startBalancer(webConfig(l.servers, "", nil))
	victim := l.servers[2]
	// 24 keep-alive connections: all of them miss the victim with odds
	// (2/3)^24, one in 17,000.
	g := l.startLoad("http://"+vip4.String()+"/", 24, 0, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	l.reload(webConfig(l.servers, "", map[string]int{victim.Name: 0}))
	reloaded := time.Now()
	if _, ok := l.waitLog("configuration reloaded", 5*time.Second); !ok {
		t.Fatalf("no reload\n%s", l.lbOut.String())
	}
	fresh := l.startLoad("http://"+vip4.String()+"/", 0, 4, 5*time.Millisecond)
	for deadline := time.Now().Add(15 * time.Second); len(fresh.snapshot()) < 100 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	kept, news := g.stop(), fresh.stop()
	drainedKept := 0
	for _, r := range kept {
		if r.err != nil {
			t.Errorf("keep-alive request failed: %v", r.err)
		}
		if r.start.After(reloaded) && r.server == victim.Name {
			drainedKept++
		}
	}
	onVictim := 0
	for _, r := range news {
		if r.err != nil {
			t.Errorf("new-connection request failed: %v", r.err)
		}
		if r.server == victim.Name {
			onVictim++
		}
	}
	t.Logf("after the drain: %d requests on connections already open to %s kept working; %d of %d new connections reached it",
		drainedKept, victim.Name, onVictim, len(news))
	if onVictim != 0 {
		t.Errorf("%d new connections reached the drained server", onVictim)
	}
	if drainedKept == 0 {
		t.Errorf("no open connection to the drained server was exercised")
	}
	if len(news) < 100 {
		t.Errorf("only %d new connections in 15 s", len(news))
	}
	_ = netip.Addr{}
}
