package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
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

// UniquePrefix returns base followed by a dash and 6 random hex digits and a
// dash, e.g. "dsrlbt-3fa2c1-". Names built on it do not collide with a second
// lab or test running at the same time. Keep base short: interface names are
// limited to 15 bytes.
func UniquePrefix(base string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return base + "-" + hex.EncodeToString(b[:]) + "-"
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

var errUnsupported = errors.New("network namespaces are only supported on Linux")
