package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/dsrlb/dsrlb/balancer"
	"golang.org/x/sys/unix"
)

type sysDataplane struct {
	rings     []*ring
	responder *responder
	vips      []netip.Addr // the VIPs the filters and responder currently hold
	drop      *kernelDrop  // nil: nft not available
	mu        sync.Mutex   // serialises SetTable
	stop      chan struct{}
}

// Open prepares the dataplane on cfg.Interface with table t: it opens one
// socket and ring per worker and the neighbour responder. Nothing is
// forwarded until Run. It must be called in the network namespace the
// interface lives in.
func Open(cfg Config, t *balancer.Table) (*Dataplane, error) {
	cfg = cfg.withDefaults()
	if t == nil {
		return nil, errors.New("dataplane: nil table")
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet MAC address (%q)", cfg.Interface, ifi.HardwareAddr)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("interface %s is down", cfg.Interface)
	}
	vips := t.VIPs()
	if err := CheckVIPsNotLocal(vips); err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: cfg, ifi: ifi, mac: [6]byte(ifi.HardwareAddr), start: time.Now()}
	if d.sys.drop = newKernelDrop(cfg.Interface); d.sys.drop != nil {
		if err := d.sys.drop.install(vips); err != nil {
			return nil, err
		}
		cfg.Log.Info("the kernel drops VIP frames at netdev ingress, after dsrlb's taps", "table", "netdev "+d.sys.drop.table)
	} else if err := checkForwarding(cfg.Interface, vips); err != nil {
		return nil, err
	} else {
		cfg.Log.Info("nft not found: relying on IP forwarding being off for the kernel to ignore VIP traffic")
	}
	d.table.Store(t)
	d.sys.stop = make(chan struct{})
	fanoutID := uint16(os.Getpid()) ^ uint16(ifi.Index)<<8
	filter := vipFilter(vips)
	for i := 0; i < cfg.Workers; i++ {
		r, err := openRing(ifi.Index, cfg.Ring, fanoutID, filter)
		if err != nil {
			d.closeRings()
			d.removeDrop()
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (dsrlb needs CAP_NET_RAW and CAP_NET_ADMIN)", err)
			}
			return nil, fmt.Errorf("worker %d on %s: %w", i, cfg.Interface, err)
		}
		d.sys.rings = append(d.sys.rings, r)
		d.workers = append(d.workers, NewWorker(d.mac, cfg.FlowTableSize, int64(cfg.FlowIdleTimeout)))
	}
	d.sys.responder, err = openResponder(ifi, d.mac, cfg.Log)
	if err != nil {
		d.closeRings()
		d.removeDrop()
		return nil, err
	}
	d.sys.vips = vips
	return d, nil
}

// checkForwarding refuses to run when the kernel would route VIP packets
// itself: with forwarding on, every frame the balancer forwards would also be
// forwarded (or answered with ICMP) by the kernel.
func checkForwarding(iface string, vips []netip.Addr) error {
	var paths []string
	for _, v := range vips {
		if v.Is4() {
			paths = append(paths, "/proc/sys/net/ipv4/conf/all/forwarding", "/proc/sys/net/ipv4/conf/"+iface+"/forwarding")
		} else {
			paths = append(paths, "/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv6/conf/"+iface+"/forwarding")
		}
	}
	slices.Sort(paths)
	for _, p := range slices.Compact(paths) {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) != "0" {
			name := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
			return fmt.Errorf("%s is on: the kernel would also route the VIP traffic that dsrlb forwards; set %s=0 on the balancer", name, name)
		}
	}
	return nil
}

// SetTable publishes t to the workers (they pick it up at their next ring
// block) and updates the socket filters and the VIPs the responder answers.
func (d *Dataplane) SetTable(t *balancer.Table) error {
	if t == nil {
		return errors.New("dataplane: nil table")
	}
	d.sys.mu.Lock()
	defer d.sys.mu.Unlock()
	vips := t.VIPs()
	if !slices.Equal(vips, d.sys.vips) {
		if err := CheckVIPsNotLocal(vips); err != nil {
			return err
		}
		if d.sys.drop != nil {
			if err := d.sys.drop.install(append(slices.Clone(d.sys.vips), vips...)); err != nil {
				return err
			}
			defer func() {
				if err := d.sys.drop.install(d.sys.vips); err != nil {
					d.cfg.Log.Error("narrow the netdev ingress drop", "err", err)
				}
			}()
		}
		filter := vipFilter(vips)
		// Widen first, publish, then narrow: filters never hide a VIP that
		// the table serves.
		for _, r := range d.sys.rings {
			if err := setFilter(r.fd, vipFilter(append(slices.Clone(d.sys.vips), vips...))); err != nil {
				return err
			}
		}
		d.table.Store(t)
		for _, r := range d.sys.rings {
			if err := setFilter(r.fd, filter); err != nil {
				return err
			}
		}
		d.sys.vips = vips
		d.sys.responder.setVIPs(vips)
		return nil
	}
	d.table.Store(t)
	return nil
}

// Run forwards until ctx is done, then releases every socket and ring.
func (d *Dataplane) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.sys.responder.run(rctx) }()
	d.sys.responder.setVIPs(d.sys.vips)
	errs := make([]error, len(d.workers))
	for i := range d.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.runWorker(rctx, d.workers[i], d.sys.rings[i])
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	errs = append(errs, d.closeRings(), d.removeDrop())
	return errors.Join(errs...)
}

func (d *Dataplane) removeDrop() error {
	if d.sys.drop == nil {
		return nil
	}
	return d.sys.drop.remove()
}

func (d *Dataplane) closeRings() error {
	var errs []error
	for _, r := range d.sys.rings {
		errs = append(errs, r.close())
	}
	if d.sys.responder != nil {
		d.sys.responder.close()
	}
	return errors.Join(errs...)
}

// runWorker is a worker's loop: wait for a ring block, decide every frame in
// it, send the forwarded ones straight from the ring, hand the block back.
func (d *Dataplane) runWorker(ctx context.Context, w *Worker, r *ring) error {
	const idlePollMs = 100
	// A worker owns its thread, and asks for a larger share of the CPU than
	// ordinary processes (nice -10) when allowed (CAP_SYS_NICE): under load
	// it competes with the kernel's receive work that fills its ring.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -10)
	blocks := 0
	for ctx.Err() == nil {
		if !r.ready() {
			if err := r.wait(idlePollMs); err != nil {
				return fmt.Errorf("worker ring: %w", err)
			}
			if !r.ready() {
				w.c.ringDrops += r.kernelDrops()
				w.publish()
			}
			continue
		}
		d.processBlock(w, r, r.block(r.cur))
		r.release()
		if blocks++; blocks%32 == 0 {
			w.c.ringDrops += r.kernelDrops()
		}
		w.publish()
	}
	return nil
}

// processBlock handles every frame of one ring block. It never allocates.
func (d *Dataplane) processBlock(w *Worker, r *ring, blk []byte) {
	t := d.table.Load()
	now := d.now()
	n := int(*(*uint32)(unsafe.Pointer(&blk[blockNumPktsOff])))
	off := int(*(*uint32)(unsafe.Pointer(&blk[blockFirstPktOff])))
	refused := 0
	for i := 0; i < n && off+unix.SizeofTpacket3Hdr <= len(blk); i++ {
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&blk[off]))
		mac, snap := off+int(h.Mac), int(h.Snaplen)
		next := int(h.Next_offset)
		if mac+snap > len(blk) || mac-sizeofVnetHdr-vlanTagLen < off+minFrameOff {
			w.c.received++
			w.c.reasons[DropTruncated]++
		} else if snap < int(h.Len) {
			w.c.received++
			w.c.reasons[DropTruncated]++
		} else if w.Handle(blk[mac:mac+snap], t, now) == Forwarded {
			start := mac - sizeofVnetHdr
			if h.Status&unix.TP_STATUS_VLAN_VALID != 0 {
				tpid := uint16(etherTypeVLAN)
				if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
					tpid = h.Hv1.Vlan_tpid
				}
				start = insertVLANTag(blk, mac, tpid, uint16(h.Hv1.Vlan_tci))
			}
			refused += r.queue(blk[start : mac+snap])
		}
		if next == 0 {
			break
		}
		off += next
	}
	refused += r.flush()
	if refused > 0 {
		w.c.reasons[Forwarded] -= uint64(refused)
		w.c.reasons[DropTxError] += uint64(refused)
	}
}
