// Package admin is dsrlb's admin endpoint: an HTTP server, on loopback by
// default, that serves
//
//	GET  /metrics                           Prometheus metrics
//	GET  /status                            services, backends and workers as JSON
//	POST /reload                            re-read and apply the config file (like SIGHUP)
//	POST /backends/{service}/{addr}/drain   drain a backend (no new flows)
//	POST /backends/{service}/{addr}/enable  undo a drain
//
// and the client side of `dsrlb status`, `dsrlb reload` and `dsrlb backend`.
// It reads counters when asked (a scrape costs one pass over the workers'
// counters); it never touches the packet path. It listens on a non-loopback
// address only when configured to.
package admin
