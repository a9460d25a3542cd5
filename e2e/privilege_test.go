//go:build linux

package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/labnet"
	"github.com/dsrlb/dsrlb/internal/syncbuf"
)

// unprivilegedCopy copies the binary where user nobody can run it.
func unprivilegedCopy(t *testing.T) string {
	dir, err := os.MkdirTemp("", "dsrlb-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(dsrlbBin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "dsrlb")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	return bin
}

// asNobody runs bin in h's namespace as user nobody holding exactly caps
// ("" for none) as ambient capabilities.
func asNobody(h *labnet.Host, caps, bin string, args ...string) *exec.Cmd {
	sp := []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"}
	if caps != "" {
		sp = append(sp, "--inh-caps="+caps, "--ambient-caps="+caps, "--bounding-set=-all,"+caps)
	} else {
		sp = append(sp, "--inh-caps=-all", "--bounding-set=-all")
	}
	return h.NS.Command("setpriv", append(append(sp, "--"), append([]string{bin}, args...)...)...)
}

// Acceptance (ops 5): dsrlb forwards as an unprivileged user holding only
// CAP_NET_RAW and CAP_NET_ADMIN, and without them fails with a message
// naming what is missing.
func TestRunsWithOnlyNetCapabilities(t *testing.T) {
	l := newDSRLab(t, 3)
	bin := unprivilegedCopy(t)
	args := []string{"run", "--interface", "eth0", "--vip", vip4.String() + ":80/tcp", "--admin", "",
		"--backend", "198.18.0.11", "--backend", "198.18.0.12", "--backend", "198.18.0.13"}

	out, err := asNobody(l.lb, "", bin, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing capabilities: CAP_NET_RAW (AF_PACKET sockets) and CAP_NET_ADMIN (neighbour resolution)") {
		t.Errorf("without capabilities: %v\n%s", err, out)
	}
	out, err = asNobody(l.lb, "+net_raw", bin, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing capabilities: CAP_NET_ADMIN") {
		t.Errorf("with CAP_NET_RAW only: %v\n%s", err, out)
	}

	cmd := asNobody(l.lb, "+net_raw,+net_admin", bin, args...)
	var buf syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	c := l.client.HTTPClient(false)
	counts := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for sum := 0; sum < 60; {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := get(ctx, c, "http://"+vip4.String()+"/")
		cancel()
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("no answer through the unprivileged balancer: %v\n%s", err, buf.String())
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		counts[strings.TrimSpace(body)]++
		sum++
	}
	if len(counts) != 3 {
		t.Errorf("60 requests reached %v, want all three servers", counts)
	}
	// It really runs as nobody.
	out, _ = exec.Command("ps", "-o", "user=,comm=", "-p", itoa(cmd.Process.Pid)).CombinedOutput()
	t.Logf("balancer process: %s; answers %v", strings.TrimSpace(string(out)), counts)
	status, _ := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/status")
	if !strings.Contains(string(status), "Uid:\t65534") {
		t.Errorf("the balancer is not running as uid 65534:\n%s", status)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// Acceptance (ops 6): the admin endpoint listens on loopback by default: it
// answers inside the balancer's namespace and not from another host.
func TestAdminOnlyOnLoopback(t *testing.T) {
	l := newDSRLab(t, 1)
	l.startBalancer(webConfig(l.servers, "", nil))
	if _, err := l.adminGet("/status"); err != nil {
		t.Fatalf("admin endpoint not answering on the balancer's loopback: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := l.client.Dial(ctx, "tcp", net.JoinHostPort(l.lb.Addr4.String(), "9180"))
	if err == nil {
		c.Close()
		t.Fatal("the admin endpoint is reachable from the client's namespace")
	}
	// Refused by the balancer's kernel (nothing listens on that address),
	// not lost: a timeout would prove nothing.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("from the client: %v, want connection refused", err)
	}
}

// The admin endpoint listens before anything forwards: a port that is taken
// stops the start with an error that says so, and nothing is left running.
func TestAdminPortTaken(t *testing.T) {
	l := newDSRLab(t, 1)
	var ln net.Listener
	if err := l.lb.NS.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:9180"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(l.dir, "taken.yaml")
	if err := os.WriteFile(path, []byte(webConfig(l.servers, "", nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := l.lb.NS.Command(dsrlbBin, "run", "--config", path)
	var buf syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("dsrlb still running 15 s after start with its admin port taken:\n%s", buf.String())
	}
	out := buf.String()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("dsrlb run with the admin port taken: %v, want exit code 1\n%s", err, out)
	}
	if !strings.Contains(out, "admin endpoint: listen on 127.0.0.1:9180") || !strings.Contains(out, "address already in use") {
		t.Errorf("the error does not say the admin port is taken:\n%s", out)
	}
	if strings.Contains(out, "dsrlb running") {
		t.Errorf("the balancer started forwarding before it failed:\n%s", out)
	}
	if tables, _ := l.lb.NS.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(tables), "dsrlb") {
		t.Errorf("an nft table was left behind:\n%s", tables)
	}
}
