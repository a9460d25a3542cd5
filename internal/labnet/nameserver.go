package labnet

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

// MaxBytes bounds the n of a NameServer's /bytes?n=N.
const MaxBytes = 1 << 30

// NameServer serves HTTP on ln until stop is called:
//
//   - GET / answers name+"\n";
//   - GET /bytes?n=N answers N bytes (0 <= N <= MaxBytes) where byte i is
//     PatternByte(i), so a client can check a bulk transfer arrived intact;
//
// and every answer carries the header "X-Server: name". stop shuts the server
// down (waiting up to 5 s for requests in flight), closes ln and returns once
// the server has stopped. The server logs nothing.
func NameServer(ln net.Listener, name string) (stop func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+"\n")
	})
	mux.HandleFunc("GET /bytes", serveBytes)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Server", name)
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln) // returns http.ErrServerClosed after Shutdown
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
}

// PatternByte is byte i of a NameServer's /bytes body.
func PatternByte(i int) byte { return byte(i % 251) }

func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > MaxBytes {
		http.Error(w, "want /bytes?n=N with 0 <= N <= "+strconv.Itoa(MaxBytes), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	// A chunk of 251*k bytes ends where the pattern wraps, so chunks line up;
	// a byte lost, added or changed inside the body shifts or breaks the
	// pattern, and a whole lost chunk shows in the length.
	chunk := make([]byte, 251*128)
	for i := range chunk {
		chunk[i] = PatternByte(i)
	}
	for n > 0 {
		c := chunk[:min(n, len(chunk))]
		if _, err := w.Write(c); err != nil {
			return
		}
		n -= len(c)
	}
}
