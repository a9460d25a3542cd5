package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capabilities dsrlb run needs (linux/capability.h).
const (
	capNetAdmin = 12 // neighbour resolution (NTF_USE), packet fanout on the interface
	capNetRaw   = 13 // AF_PACKET sockets: the dataplane, ARP/NDP answers, DSR-path probes
)

// checkCapabilities returns an error naming every capability dsrlb run needs
// and the process lacks in its effective set.
func checkCapabilities() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell: let the first failing call say what is wrong
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil
		}
		var missing []string
		if eff&(1<<capNetRaw) == 0 {
			missing = append(missing, "CAP_NET_RAW (AF_PACKET sockets)")
		}
		if eff&(1<<capNetAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN (neighbour resolution)")
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing capabilities: %s; run as root, or grant them (setcap cap_net_raw,cap_net_admin+ep dsrlb, or AmbientCapabilities= in dsrlb.service)",
				strings.Join(missing, " and "))
		}
		return nil
	}
	return nil
}
