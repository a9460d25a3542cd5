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
// A scrape or a status costs a request to the engine's loop and a pass over
// the workers' counters per backend; besides, every 2 s it samples each
// backend's packet count (for pps). It never touches the packet path. It
// listens on a non-loopback address only when configured to; there, and on
// loopback too, it refuses cross-site requests (CrossOriginProtection), and
// on loopback a Host other than an IP address or localhost (403). No
// endpoint takes a body (413); header, read, write and idle times are
// bounded (5, 10, 30, 60 s). /reload answers 422 for a refused file, 409
// when dsrlb was started from flags, 503 while it stops; drain and enable
// answer 404 for an unknown service or backend.
package admin
