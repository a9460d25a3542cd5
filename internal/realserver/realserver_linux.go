package realserver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultStatePath is /run/dsrlb/server-netns-<inode of /proc/thread-self/ns/net>.json, so
// servers in different network namespaces on one host never share a state file.
func DefaultStatePath() (string, error) {
	id, err := currentNetns()
	if err != nil {
		return "", err
	}
	return defaultStatePathFor(id.inode), nil
}

// Up adds each VIP to lo and sets the ARP and rp_filter sysctls DSR needs (see the package
// doc), recording what it changed in the state file first. It is idempotent. It fails,
// changing nothing, if a listed interface does not exist or a VIP is in the way (on a NIC, or
// on lo with a shorter prefix). It logs each change on log, which may be nil.
func Up(o Options, log *slog.Logger) error {
	log = orDiscard(log)
	vips, err := ValidateVIPs(o.VIPs)
	if err != nil {
		return err
	}
	id, err := currentNetns()
	if err != nil {
		return err
	}
	path, isDefault := statePath(o, id)
	unlock, err := lockStateDir(path, true)
	if err != nil {
		return err
	}
	defer unlock()

	h, err := openHost()
	if err != nil {
		return err
	}
	defer h.close()
	nics, err := h.resolveNICs(o.Interfaces)
	if err != nil {
		return err
	}
	found, err := h.vipAddrs(vips)
	if err != nil {
		return err
	}
	toAdd, conflicts, _ := inspectVIPs(vips, found, h.loName())
	if len(conflicts) > 0 {
		errs := make([]error, len(conflicts))
		for i, p := range conflicts {
			errs[i] = errors.New(p.String())
		}
		return fmt.Errorf("VIPs in the way (Up never removes an address it did not add): %w", errors.Join(errs...))
	}
	var plan []sysctlChange
	if hasIPv4(vips) {
		if plan, err = planSysctls(procSys, nics); err != nil {
			return err
		}
	}

	st, old, err := loadState(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st = newState(id)
	case err != nil:
		return err
	case !id.same(st.netns()):
		if !isDefault {
			return errOtherNetns(path, st.netns(), id)
		}
		log.Warn("replacing state file left by a network namespace that no longer exists",
			"path", path, "netns_inode", st.NetnsInode, "netns_cookie", st.NetnsCookie)
		st, old = newState(id), nil
	}
	for _, c := range plan {
		st.recordSysctl(c)
	}
	for _, p := range toAdd {
		st.recordAddress(p)
	}
	b, err := st.encode()
	if err != nil {
		return fmt.Errorf("encode state file %s: %w", path, err)
	}
	if old == nil || !bytes.Equal(b, old) {
		if err := saveState(path, b); err != nil {
			return err
		}
	}

	// ARP first, then the VIPs: no NIC ever answers for a VIP that is already local.
	for _, c := range plan {
		if err := procSys.set(c.Interface, c.Key, c.Set); err != nil {
			return err
		}
		log.Info("changed sysctl", "sysctl", c.name(), "from", c.Previous, "to", c.Set)
	}
	for _, p := range toAdd {
		if err := h.nl.AddrAdd(h.lo, loAddr(p)); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, h.loName(), err)
		}
		log.Info("added VIP", "interface", h.loName(), "address", p)
	}
	return nil
}

// Down undoes what the state file records (see the package doc) and deletes it. With no
// state file it returns an error satisfying errors.Is(err, fs.ErrNotExist). Options.VIPs and
// Options.Interfaces are ignored. It logs each change on log, which may be nil.
func Down(o Options, log *slog.Logger) error {
	log = orDiscard(log)
	id, err := currentNetns()
	if err != nil {
		return err
	}
	path, isDefault := statePath(o, id)
	noState := func() error {
		return fmt.Errorf("nothing to restore: no state file at %s: %w", path, fs.ErrNotExist)
	}
	unlock, err := lockStateDir(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return noState()
	}
	if err != nil {
		return err
	}
	defer unlock()
	st, _, err := loadState(path)
	if errors.Is(err, fs.ErrNotExist) {
		return noState()
	}
	if err != nil {
		return err
	}
	if !id.same(st.netns()) {
		if !isDefault {
			return errOtherNetns(path, st.netns(), id)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale state file: %w", err)
		}
		log.Warn("removed state file left by a network namespace that no longer exists",
			"path", path, "netns_inode", st.NetnsInode, "netns_cookie", st.NetnsCookie)
		return fmt.Errorf("nothing to restore: state file %s was left by a network namespace that no longer exists (its inode is reused); removed it", path)
	}

	h, err := openHost()
	if err != nil {
		return err
	}
	defer h.close()
	left := newState(id)
	var errs []error
	for _, p := range slices.Backward(st.LoAddresses) {
		err := h.nl.AddrDel(h.lo, loAddr(p))
		switch {
		case err == nil:
			log.Info("removed VIP", "interface", h.loName(), "address", p)
		case errors.Is(err, unix.EADDRNOTAVAIL):
			log.Info("VIP already gone", "interface", h.loName(), "address", p)
		default:
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", p, h.loName(), err))
			left.LoAddresses = slices.Insert(left.LoAddresses, 0, p)
		}
	}
	for _, c := range slices.Backward(st.Sysctls) {
		cur, err := procSys.get(c.Interface, c.Key)
		switch {
		case errors.Is(err, fs.ErrNotExist) && c.Interface != confAll:
			log.Warn("interface gone, nothing to restore", "sysctl", c.name(), "before_up", c.Previous)
		case err != nil:
			errs = append(errs, err)
			left.Sysctls = slices.Insert(left.Sysctls, 0, c)
		case cur == c.Previous:
			// Already back where Up found it.
		case cur != c.Set:
			log.Warn("sysctl changed since up, leaving it", "sysctl", c.name(), "now", cur, "set_by_up", c.Set, "before_up", c.Previous)
		default:
			if err := procSys.set(c.Interface, c.Key, c.Previous); err != nil {
				errs = append(errs, err)
				left.Sysctls = slices.Insert(left.Sysctls, 0, c)
				continue
			}
			log.Info("restored sysctl", "sysctl", c.name(), "from", c.Set, "to", c.Previous)
		}
	}

	if left.empty() {
		if err := os.Remove(path); err != nil {
			errs = append(errs, fmt.Errorf("remove state file: %w", err))
		}
	} else {
		b, err := left.encode()
		if err == nil {
			err = saveState(path, b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("keep what could not be restored in %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// Check reports every setting that keeps this host from working as a DSR real server for
// o.VIPs on o.Interfaces, one Problem each (see the package doc); none means ready. It
// changes nothing. The error is for what it could not inspect, such as an unknown interface.
func Check(o Options) ([]Problem, error) {
	vips, err := ValidateVIPs(o.VIPs)
	if err != nil {
		return nil, err
	}
	h, err := openHost()
	if err != nil {
		return nil, err
	}
	defer h.close()
	nics, err := h.resolveNICs(o.Interfaces)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	if h.lo.Attrs().Flags&net.FlagUp == 0 {
		probs = append(probs, Problem{h.loName() + " link", "up", "down"})
	}
	found, err := h.vipAddrs(vips)
	if err != nil {
		return nil, err
	}
	_, _, vp := inspectVIPs(vips, found, h.loName())
	probs = append(probs, vp...)
	if hasIPv4(vips) {
		sp, err := checkSysctls(procSys, nics)
		if err != nil {
			return nil, err
		}
		probs = append(probs, sp...)
	}
	return probs, nil
}

// netnsID identifies a network namespace. Inodes are reused after a namespace is gone;
// cookies (SO_NETNS_COOKIE, Linux 5.14+) are not reused while the host runs.
type netnsID struct{ inode, cookie uint64 }

func currentNetns() (netnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return netnsID{}, fmt.Errorf("identify network namespace: %w", os.NewSyscallError("stat /proc/thread-self/ns/net", err))
	}
	id := netnsID{inode: uint64(st.Ino)}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netnsID{}, fmt.Errorf("identify network namespace: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	switch {
	case err == nil:
		id.cookie = c
	case errors.Is(err, unix.ENOPROTOOPT):
		// Before Linux 5.14: the inode is all there is.
	default:
		return netnsID{}, fmt.Errorf("identify network namespace: %w", os.NewSyscallError("getsockopt SO_NETNS_COOKIE", err))
	}
	return id, nil
}

func (a netnsID) same(b netnsID) bool {
	if a.cookie != 0 && b.cookie != 0 {
		return a.cookie == b.cookie
	}
	return a.inode == b.inode
}

func (st *state) netns() netnsID { return netnsID{inode: st.NetnsInode, cookie: st.NetnsCookie} }

func newState(id netnsID) *state {
	return &state{Version: stateVersion, NetnsInode: id.inode, NetnsCookie: id.cookie}
}

func errOtherNetns(path string, file, cur netnsID) error {
	return fmt.Errorf("state file %s belongs to another network namespace (inode %d, cookie %d; this one is inode %d, cookie %d): "+
		"run down there, or delete the file if that namespace is gone", path, file.inode, file.cookie, cur.inode, cur.cookie)
}

// statePath returns the state file to use and whether it is this namespace's default one.
func statePath(o Options, id netnsID) (string, bool) {
	def := defaultStatePathFor(id.inode)
	if o.StatePath == "" {
		return def, true
	}
	return o.StatePath, filepath.Clean(o.StatePath) == def
}

// lockStateDir takes an exclusive flock on the directory of path, creating the directory if
// create is set, and returns the function that releases it.
func lockStateDir(path string, create bool) (unlock func(), err error) {
	dir := filepath.Dir(path)
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, os.NewSyscallError("open", err))
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock state directory %s: %w", dir, os.NewSyscallError("flock", err))
	}
	return func() { unix.Close(fd) }, nil
}

// host is a netlink view of the calling thread's network namespace.
type host struct {
	nl    *netlink.Handle
	lo    netlink.Link
	links []netlink.Link
}

func openHost() (*host, error) {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	links, err := nl.LinkList()
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	h := &host{nl: nl, links: links}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			h.lo = l
			break
		}
	}
	if h.lo == nil {
		nl.Close()
		return nil, errors.New("find loopback interface: none in this network namespace")
	}
	return h, nil
}

func (h *host) close() { h.nl.Close() }

func (h *host) loName() string { return h.lo.Attrs().Name }

// resolveNICs returns the named interfaces, or with no names every non-loopback interface
// that is up, sorted by name.
func (h *host) resolveNICs(names []string) ([]string, error) {
	if len(names) == 0 {
		var up []string
		for _, l := range h.links {
			if a := l.Attrs(); a.Flags&net.FlagLoopback == 0 && a.Flags&net.FlagUp != 0 {
				up = append(up, a.Name)
			}
		}
		slices.Sort(up)
		return up, nil
	}
	var nics []string
	for _, name := range names {
		i := slices.IndexFunc(h.links, func(l netlink.Link) bool { return l.Attrs().Name == name })
		switch {
		case i < 0:
			return nil, fmt.Errorf("interface %q does not exist in this network namespace", name)
		case h.links[i].Attrs().Flags&net.FlagLoopback != 0:
			return nil, fmt.Errorf("interface %q is the loopback: list the NICs facing the balancer", name)
		}
		if !slices.Contains(nics, name) {
			nics = append(nics, name)
		}
	}
	return nics, nil
}

// vipAddrs returns every address on any interface that equals one of vips.
func (h *host) vipAddrs(vips []netip.Addr) ([]hostAddr, error) {
	addrs, err := h.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var found []hostAddr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ip = ip.Unmap()
		if !slices.Contains(vips, ip) {
			continue
		}
		ones, _ := a.Mask.Size()
		name := fmt.Sprintf("interface %d", a.LinkIndex)
		if i := slices.IndexFunc(h.links, func(l netlink.Link) bool { return l.Attrs().Index == a.LinkIndex }); i >= 0 {
			name = h.links[i].Attrs().Name
		}
		found = append(found, hostAddr{
			link:      name,
			loopback:  a.LinkIndex == h.lo.Attrs().Index,
			prefix:    netip.PrefixFrom(ip, ones),
			tentative: a.Flags&unix.IFA_F_TENTATIVE != 0,
			dadFailed: a.Flags&unix.IFA_F_DADFAILED != 0,
		})
	}
	return found, nil
}

// loAddr is p as Up puts it on lo: scope host for IPv4, nodad for IPv6.
func loAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is4() {
		a.Scope = unix.RT_SCOPE_HOST
	} else {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}
