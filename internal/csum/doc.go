// Package csum computes the Internet checksum (RFC 1071) for the frames the
// project builds and checks: ARP/NDP answers, health-check probes, generated
// load. It is not on the forwarding path, which never touches a checksum.
package csum
