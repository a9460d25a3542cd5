//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
)

// Acceptance: a UDP service keeps every datagram of one flow on one server
// and spreads many flows over all servers.
func TestUDPFlows(t *testing.T) {
	l := newDSRLab(t, 3)
	l.checkOffloads()
	l.startBalancer(l.config(l.servers, ""))
	for _, vip := range []netip.Addr{vip4, vip6} {
		addr := netip.AddrPortFrom(vip, 5353).String()
		// One flow, many datagrams.
		c, err := l.client.Dial(context.Background(), "udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for i := 0; i < 50; i++ {
			who, err := udpAsk(c, fmt.Sprintf("q%d", i))
			if err != nil {
				t.Fatalf("%s datagram %d: %v", vip, i, err)
			}
			seen[who]++
		}
		c.Close()
		if len(seen) != 1 {
			t.Errorf("%s: one flow's datagrams reached %d servers: %v", vip, len(seen), seen)
		}
		// Many flows.
		spread := map[string]int{}
		for i := 0; i < 150; i++ {
			c, err := l.client.Dial(context.Background(), "udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			who, err := udpAsk(c, "hello")
			c.Close()
			if err != nil {
				t.Fatalf("%s flow %d: %v", vip, i, err)
			}
			spread[who]++
		}
		t.Logf("%s: one flow → %v; 150 flows → %v", vip, seen, spread)
		// Datagrams larger than the MTU leave the client fragmented; every
		// fragment must reach the same server for it to reassemble them.
		for i := 0; i < 10; i++ {
			c, err := l.client.Dial(context.Background(), "udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			big := strings.Repeat(fmt.Sprintf("fragment-%d-", i), 400) // ~5 KB: 4 fragments
			_, err = udpAsk(c, big)
			c.Close()
			if err != nil {
				t.Errorf("%s: %d-byte datagram (fragmented) not answered whole: %v", vip, len(big), err)
			}
		}
		for _, s := range l.servers {
			if spread[s.Name] < 150/6 {
				t.Errorf("%s: %s got %d of 150 flows", vip, s.Name, spread[s.Name])
			}
		}
	}
}

// udpAsk sends msg and returns the name of the server that echoed it.
func udpAsk(c net.Conn, msg string) (string, error) {
	var lastErr error
	for try := 0; try < 3; try++ { // UDP: a lost datagram is retried
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 65536)
		n, err := c.Read(buf)
		if err != nil {
			lastErr = err
			continue
		}
		name, echo, _ := strings.Cut(string(buf[:n]), " ")
		if echo != msg {
			return "", fmt.Errorf("echo %q, want %q", echo, msg)
		}
		return name, nil
	}
	return "", lastErr
}

// Acceptance: bulk transfers both ways, with the client's TSO/GSO and
// checksum offload on. Uploads go through the balancer as GSO super-frames
// with partial checksums; downloads come straight from the server.
func TestBulkTransfers(t *testing.T) {
	l := newDSRLab(t, 3)
	l.checkOffloads()
	l.startBalancer(l.config(l.servers, ""))
	for _, vip := range []netip.Addr{vip4, vip6} {
		for i := 0; i < 6; i++ {
			size := 3<<20 + i*12345
			data := make([]byte, size)
			rand.Read(data)
			want := fmt.Sprintf("%x", sha256.Sum256(data))
			who, got, err := upload(l.client, netip.AddrPortFrom(vip, 7001).String(), data)
			if err != nil {
				t.Fatalf("%s upload %d (%d bytes): %v", vip, i, size, err)
			}
			if got != want {
				t.Fatalf("%s upload %d: server %s got sha256 %s, want %s", vip, i, who, got, want)
			}
		}
		c := l.client.HTTPClient(false)
		for i := 0; i < 6; i++ {
			n := 4<<20 + i*777
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			body, err := get(ctx, c, fmt.Sprintf("http://%s/bytes?n=%d", netip.AddrPortFrom(vip, 80), n))
			cancel()
			if err != nil {
				t.Fatalf("%s download %d: %v", vip, i, err)
			}
			if len(body) != n {
				t.Fatalf("%s download %d: %d bytes, want %d", vip, i, len(body), n)
			}
			for j := 0; j < n; j++ {
				if body[j] != labnet.PatternByte(j) {
					t.Fatalf("%s download %d: byte %d corrupt", vip, i, j)
				}
			}
		}
	}
	out := l.stopBalancer()
	t.Logf("balancer: %s", lastLine(out))
}

func upload(h *labnet.Host, addr string, data []byte) (server, sum string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := h.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(data); err != nil {
		return "", "", err
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", "", err
	}
	server, sum, _ = strings.Cut(strings.TrimSpace(line), " ")
	return server, sum, nil
}
