// Package cli is dsrlb's command line: it parses arguments, builds loggers and
// calls into the packages that do the work. Exit codes: 0 success, 1 a
// runtime failure, 2 a usage or configuration error (nothing was started).
package cli
