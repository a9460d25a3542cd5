package realserver

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// runDir holds the state files at their default paths. A variable so tests can move it.
var runDir = "/run/dsrlb"

// defaultStatePathFor is the state file of the network namespace with inode ino.
func defaultStatePathFor(ino uint64) string {
	return filepath.Join(runDir, fmt.Sprintf("server-netns-%d.json", ino))
}

const stateVersion = 1

// state is what Up changed, as the state file records it.
type state struct {
	Version int `json:"version"`
	// NetnsInode and NetnsCookie identify the network namespace Up ran in. The cookie
	// (SO_NETNS_COOKIE) is never reused while the host runs; 0 means the kernel had none.
	NetnsInode  uint64 `json:"netns_inode"`
	NetnsCookie uint64 `json:"netns_cookie"`
	// Sysctls are in the order Up applied them.
	Sysctls []sysctlChange `json:"sysctls"`
	// LoAddresses are the VIPs Up added to lo, as /32 or /128.
	LoAddresses []netip.Prefix `json:"lo_addresses"`
}

// recordSysctl adds c unless that sysctl is already recorded: the first recorded previous
// value is the one Down must restore.
func (st *state) recordSysctl(c sysctlChange) {
	for _, old := range st.Sysctls {
		if old.Interface == c.Interface && old.Key == c.Key {
			return
		}
	}
	st.Sysctls = append(st.Sysctls, c)
}

// recordAddress adds p unless it is already recorded.
func (st *state) recordAddress(p netip.Prefix) {
	for _, old := range st.LoAddresses {
		if old == p {
			return
		}
	}
	st.LoAddresses = append(st.LoAddresses, p)
}

func (st *state) empty() bool { return len(st.Sysctls) == 0 && len(st.LoAddresses) == 0 }

func (st *state) encode() ([]byte, error) {
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// loadState reads the state file at path. A missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist). It also returns the file's bytes, to tell later whether
// the state changed.
func loadState(path string) (*state, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read state file: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, nil, fmt.Errorf("decode state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, nil, fmt.Errorf("state file %s has version %d, this dsrlb reads version %d", path, st.Version, stateVersion)
	}
	for _, c := range st.Sysctls {
		okKey := c.Key == arpIgnore || c.Key == arpAnnounce || c.Key == rpFilter
		okIface := c.Interface != "" && c.Interface != "." && c.Interface != ".." && !strings.Contains(c.Interface, "/")
		if !okKey || !okIface {
			return nil, nil, fmt.Errorf("state file %s: bad sysctl entry %+v", path, c)
		}
	}
	for _, p := range st.LoAddresses {
		if !p.IsValid() || !p.IsSingleIP() {
			return nil, nil, fmt.Errorf("state file %s: bad lo address %s", path, p)
		}
	}
	return &st, b, nil
}

// saveState writes b to path atomically: a temporary file in the same directory, synced,
// renamed over path, and the directory synced.
func saveState(path string, b []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: the rename is done either way
		d.Close()
	}
	return nil
}
