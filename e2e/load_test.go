//go:build linux

package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// result is one request of a load run.
type result struct {
	start, end time.Time
	worker     int
	keepAlive  bool
	server     string // who answered; for a failure, who answered this worker's previous request
	err        error
}

// load sends requests to url from several workers until stopped: keep-alive
// workers reuse one connection (one flow) each, the others open a new
// connection per request. Each worker pauses between requests.
type load struct {
	mu      sync.Mutex
	results []result
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (l *dsrLab) startLoad(url string, keepAlive, fresh int, pause time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	g := &load{cancel: cancel}
	for w := 0; w < keepAlive+fresh; w++ {
		ka := w < keepAlive
		c := l.client.HTTPClient(ka)
		c.Timeout = 3 * time.Second
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer c.CloseIdleConnections()
			last := ""
			for ctx.Err() == nil {
				r := result{start: time.Now(), worker: w, keepAlive: ka, server: last}
				body, err := getWith(c, url)
				r.end = time.Now()
				if ctx.Err() != nil {
					return // stopped mid-request: not a result
				}
				if err != nil {
					r.err = err
				} else {
					r.server = strings.TrimSpace(body)
					last = r.server
				}
				g.mu.Lock()
				g.results = append(g.results, r)
				g.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	return g
}

func getWith(c *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return get(ctx, c, url)
}

// stop ends the load and returns every result.
func (g *load) stop() []result {
	g.cancel()
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]result(nil), g.results...)
}

// snapshot returns the results so far.
func (g *load) snapshot() []result {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]result(nil), g.results...)
}

// waitLog waits until the balancer's output contains s and returns when it
// was first seen.
func (l *dsrLab) waitLog(s string, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(l.lbOut.String(), s) {
			return time.Now(), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, false
}
