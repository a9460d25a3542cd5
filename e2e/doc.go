// Package e2e holds dsrlb's end-to-end tests: each builds a DSR topology out
// of network namespaces (a client, the balancer and real servers on one Linux
// bridge, with the veths' default offloads left on), prepares the servers with
// `dsrlb server up`, runs the real `dsrlb run` binary in the balancer's
// namespace, and drives real HTTP, TCP and UDP traffic through it. They need
// root and skip without it; CI runs them as root. Linux only (the test files
// build nowhere else).
package e2e
