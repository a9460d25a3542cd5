package labnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Listen listens on addr (as net.Listen takes it, e.g. ":80") inside the
// host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.NS.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return ln, nil
}

// ListenPacket opens a packet socket (as net.ListenPacket takes it) inside
// the host's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.NS.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return pc, nil
}

// Dial connects to addr from inside the host's namespace. Give addr as an IP
// address and port: names are resolved inside the namespace too, where no
// name server is reachable.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.NS.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return c, nil
}

// HTTPClient returns an HTTP/1.1 client whose connections are dialed inside
// the host's namespace. With keepAlive false every request uses a new
// connection, so each one is a new flow for a load balancer. It uses no
// proxy and has no overall timeout: bound requests with their context.
func (h *Host) HTTPClient(keepAlive bool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil, // never the environment's proxy: the lab is closed
		DialContext:           h.Dial,
		DisableKeepAlives:     !keepAlive,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
}
