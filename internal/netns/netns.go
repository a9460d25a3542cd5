package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// NS is a named network namespace. The zero value is not usable; get one from
// New or Open.
type NS struct {
	name string
	fd   int // handle to the namespace, valid until Close
	own  bool
}

// Name returns the namespace's name, as `ip netns` lists it.
func (n *NS) Name() string { return n.name }

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// UniquePrefix returns base, this process's ID and 6 random hex digits, each
// followed by a dash, e.g. "dsrlbt-4711-3fa2c1-". Names built on it do not
// collide with a second lab or test running at the same time, and name the
// process they belong to: before it returns, UniquePrefix deletes the
// namespaces named on base by processes that no longer run (a test that
// crashed or a lab killed with SIGKILL, whose cleanup never ran; see
// SweepStale). Keep base short.
func UniquePrefix(base string) string {
	SweepStale(base)
	return fmt.Sprintf("%s-%d-%s-", base, os.Getpid(), randomHex())
}

// KeptPrefix returns base, "k" and 6 random hex digits, e.g.
// "dsrlb-k3fa2c1-", for namespaces meant to outlive this process (a lab kept
// for exploring): with no process ID in it, no sweep deletes them.
func KeptPrefix(base string) string { return base + "-k" + randomHex() + "-" }

func randomHex() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// stale reports whether name was made from UniquePrefix(base) by a process
// that is gone.
func stale(name, base string) bool {
	rest, ok := strings.CutPrefix(name, base+"-")
	if !ok {
		return false
	}
	// The whole shape: PID-XXXXXX-, 6 lower-case hex digits.
	digits, rest, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(digits)
	if !ok || err != nil || pid <= 0 || pid == os.Getpid() || len(rest) < 7 || rest[6] != '-' ||
		strings.Trim(rest[:6], "0123456789abcdef") != "" {
		return false
	}
	return !processRuns(pid)
}

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("network namespace name %q: want 1-64 of [A-Za-z0-9_.-]", name)
	}
	return nil
}

// Exists reports whether a named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(bindDir + "/" + name)
	return err == nil
}
