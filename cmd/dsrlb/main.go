// Command dsrlb is a userspace L4 load balancer that forwards by Direct Server
// Return. See `dsrlb help` and README.md.
package main

import (
	"os"

	"github.com/dsrlb/dsrlb/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
