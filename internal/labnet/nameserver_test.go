package labnet

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// The name server is plain HTTP, so it is tested on loopback without
// privileges; the lab tests run it inside namespaces.
func TestNameServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := NameServer(ln, "srv9")
	base := "http://" + ln.Addr().String()
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	resp, body := get("/")
	if resp.StatusCode != 200 || string(body) != "srv9\n" || resp.Header.Get("X-Server") != "srv9" {
		t.Fatalf("GET /: %s %q X-Server=%q", resp.Status, body, resp.Header.Get("X-Server"))
	}
	for _, n := range []int{0, 1, 250, 251, 252, 32128, 32129, 100000} {
		resp, body := get("/bytes?n=" + strconv.Itoa(n))
		if resp.StatusCode != 200 || len(body) != n {
			t.Fatalf("GET /bytes?n=%d: %s, %d bytes", n, resp.Status, len(body))
		}
		if i := checkPattern(body); i >= 0 {
			t.Fatalf("GET /bytes?n=%d: byte %d is %d, want %d", n, i, body[i], PatternByte(i))
		}
	}
	for _, q := range []string{"", "?n=-1", "?n=x", "?n=1073741825"} {
		if resp, _ := get("/bytes" + q); resp.StatusCode != 400 || resp.Header.Get("X-Server") != "srv9" {
			t.Errorf("GET /bytes%s: %s", q, resp.Status)
		}
	}
	if resp, _ := get("/nothing"); resp.StatusCode != 404 {
		t.Errorf("GET /nothing: %s", resp.Status)
	}

	stop()
	if _, err := http.Get(base + "/"); err == nil {
		t.Fatal("server still answers after stop")
	}
}

// checkPattern returns the index of the first byte that is not
// PatternByte(i), or -1.
func checkPattern(b []byte) int {
	for i, c := range b {
		if c != PatternByte(i) {
			return i
		}
	}
	return -1
}
