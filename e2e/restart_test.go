//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/balancer"
	"github.com/dsrlb/dsrlb/internal/labnet"
)

// lineConn is a long-lived TCP connection to the lines service.
type lineConn struct {
	c      net.Conn
	r      *bufio.Reader
	port   uint16
	server string
}

func (lc *lineConn) ask() (string, error) {
	lc.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := lc.c.Write([]byte("hi\n")); err != nil {
		return "", err
	}
	s, err := lc.r.ReadString('\n')
	return strings.TrimSpace(s), err
}

// Acceptance: a balancer restarted with the same config keeps every
// established connection working; restarted with one more backend, every
// connection whose flow Maglev does not move keeps working on its server.
func TestRestartKeepsConnections(t *testing.T) {
	l := newDSRLab(t, 4)
	l.checkOffloads()
	three, four := l.servers[:3], l.servers
	l.startBalancer(l.config(three, ""))

	const n = 80
	conns := make([]*lineConn, n)
	for i := range conns {
		c, err := l.client.Dial(context.Background(), "tcp", netip.AddrPortFrom(vip4, 7000).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		lc := &lineConn{c: c, r: bufio.NewReader(c), port: uint16(c.LocalAddr().(*net.TCPAddr).Port)}
		if lc.server, err = lc.ask(); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		conns[i] = lc
	}

	// Same config: every connection survives.
	l.stopBalancer()
	l.startBalancer(l.config(three, ""))
	for i, lc := range conns {
		got, err := lc.ask()
		if err != nil || got != lc.server {
			t.Fatalf("after a restart with the same config, conn %d: got %q, %v; want %q", i, got, err, lc.server)
		}
	}

	// One more backend: Maglev moves about a quarter of the flows to it.
	before, after := maglevFor(t, three), maglevFor(t, four)
	l.stopBalancer()
	l.startBalancer(l.config(four, ""))
	kept, moved, movedBroken := 0, 0, 0
	for i, lc := range conns {
		f := balancer.Flow{Src: l.client.Addr4, Dst: vip4, SrcPort: lc.port, DstPort: 7000, Proto: balancer.TCP}
		was, will := pick(before, &f), pick(after, &f)
		if was != lc.server {
			t.Fatalf("conn %d: served by %s but Maglev (computed here) says %s: the test's model of the balancer is wrong", i, lc.server, was)
		}
		got, err := lc.ask()
		if was == will {
			kept++
			if err != nil || got != lc.server {
				t.Errorf("conn %d (not moved by Maglev, %s): got %q, %v", i, lc.server, got, err)
			}
			continue
		}
		moved++
		if err != nil || got != lc.server {
			movedBroken++
		}
	}
	t.Logf("%d connections kept their server; %d were moved by Maglev to the new backend (%d of those broke, as a restart without flow state must)", kept, moved, movedBroken)
	if kept == 0 || moved == 0 {
		t.Fatalf("kept %d moved %d: the test did not exercise both cases", kept, moved)
	}
}

// maglevFor builds the table the balancer builds for the lines4 service over
// servers (same seed, same keys), so the test can predict every flow.
func maglevFor(t *testing.T, servers []*labnet.Host) *balancer.Service {
	spec := balancer.ServiceSpec{Name: "lines4", Key: balancer.ServiceKey{VIP: vip4, Proto: balancer.TCP, Port: 7000}}
	for _, s := range servers {
		spec.Backends = append(spec.Backends, balancer.Backend{Addr: s.Addr4, Weight: 1})
	}
	tab, err := balancer.NewTable(42, []balancer.ServiceSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	return tab.Lookup(vip4, balancer.TCP, 7000)
}

// pick returns the name of the server Maglev picks for f ("srvN" is the host
// whose address ends in 10+N).
func pick(s *balancer.Service, f *balancer.Flow) string {
	i, _ := s.Pick(f.Hash(42))
	return fmt.Sprintf("srv%d", s.Backend(i).Addr.As4()[3]-10)
}
