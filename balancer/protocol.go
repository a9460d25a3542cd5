package balancer

import (
	"fmt"
	"strconv"
	"strings"
)

// Protocol is an IP protocol number.
type Protocol uint8

// Protocols a service can balance.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String returns "tcp", "udp" or "proto(N)".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses "tcp" or "udp", in any case.
func ParseProtocol(s string) (Protocol, error) {
	switch {
	case strings.EqualFold(s, "tcp"):
		return TCP, nil
	case strings.EqualFold(s, "udp"):
		return UDP, nil
	}
	return 0, fmt.Errorf("balancer: unknown protocol %q (want tcp or udp)", s)
}
