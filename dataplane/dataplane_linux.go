package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/dsrlb/dsrlb/balancer"
	"golang.org/x/sys/unix"
)

type sysDataplane struct {
	rings     []*ring
	autos     []*autoRing // RingConfig.Auto: worker i's pair of rings (rings[i] is its ring of slots)
	autoMu    sync.Mutex  // serialises the workers' moves: each replaces the whole group's program
	autoOn    []bool      // under autoMu: whether worker i's ring of blocks is the one filled
	autoCPUs  []int       // RingConfig.Auto with several workers: the CPU of each (FanoutCPU)
	responder *responder
	vips      []netip.Addr // the VIPs the filters and responder currently hold
	drop      *kernelDrop  // nil: nft not available
	mu        sync.Mutex   // serialises SetTable and Run's teardown
	closed    bool         // under mu: Run has released the sockets
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
	if err := checkSlots(t); err != nil {
		return nil, err
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
	if err := checkCPUs(cfg.CPUs); err != nil {
		return nil, err
	}
	if err := checkFanout(cfg.Fanout, cfg.Workers, cfg.CPUs); err != nil {
		return nil, err
	}
	if cfg.Ring.Auto && cfg.Workers != 1 && cfg.Fanout != FanoutCPU {
		return nil, fmt.Errorf("dataplane: the automatic choice of ring needs one worker, or FanoutCPU; got %d workers spread by flow hash", cfg.Workers)
	}
	d := &Dataplane{cfg: cfg, ifi: ifi, mac: [6]byte(ifi.HardwareAddr), start: time.Now()}
	virtual := false
	if cfg.VIPMAC != nil {
		if err := checkVIPMAC(cfg.VIPMAC); err != nil {
			return nil, err
		}
		d.mac = [6]byte(cfg.VIPMAC)
		virtual = !bytes.Equal(cfg.VIPMAC, ifi.HardwareAddr)
	}
	// The kernel must not handle VIP frames itself. Frames to a virtual
	// MAC it drops on its own (not addressed to it) unless it forwards IP;
	// otherwise an nft netdev ingress rule drops them after dsrlb's taps.
	forwarding := checkForwarding(cfg.Interface, vips)
	drop := newKernelDrop(cfg.Interface)
	switch {
	case virtual && forwarding == nil:
		cfg.Log.Info("VIPs answer on a virtual MAC: the kernel ignores their frames (not addressed to it), no drop rule needed", "vip_mac", d.MAC().String())
	case drop != nil:
		d.sys.drop = drop
		if err := d.sys.drop.install(vips); err != nil {
			return nil, err
		}
		cfg.Log.Info("the kernel drops VIP frames at netdev ingress, after dsrlb's taps", "table", "netdev "+d.sys.drop.table)
	case forwarding != nil:
		return nil, forwarding
	default:
		cfg.Log.Info("nft not found: relying on IP forwarding being off for the kernel to ignore VIP traffic")
	}
	d.publish(t)
	d.sys.stop = make(chan struct{})
	group := fanoutGroup{id: -1}
	if cfg.Ring.Auto || cfg.Workers > 1 {
		group.id = int(uint16(os.Getpid()) ^ uint16(ifi.Index)<<8)
	}
	switch {
	case cfg.Ring.Auto:
		// Every worker's ring of slots, then every worker's ring of
		// blocks: the program picks a worker and one of its rings.
		d.sys.autoOn = make([]bool, cfg.Workers)
		if cfg.Workers > 1 {
			d.sys.autoCPUs = workerCPUs(cfg.Workers, cfg.CPUs)
		}
		group.prog = autoFanoutProgram(d.sys.autoCPUs, d.sys.autoOn)
	case cfg.Workers > 1 && cfg.Fanout == FanoutCPU:
		group.prog = cpuFanoutProgram(workerCPUs(cfg.Workers, cfg.CPUs))
	}
	filter := vipFilter(vips)
	slotsCfg := cfg.Ring
	slotsCfg.Blocks = slotsCfg.Blocks && !cfg.Ring.Auto
	fail := func(i int, err error) (*Dataplane, error) {
		d.closeRings()
		d.removeDrop()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (dsrlb needs CAP_NET_RAW and CAP_NET_ADMIN)", err)
		}
		return nil, fmt.Errorf("worker %d on %s: %w", i, cfg.Interface, err)
	}
	for i := 0; i < cfg.Workers; i++ {
		r, err := openRing(ifi.Index, slotsCfg, group, filter, nil)
		if err == nil && virtual {
			if err = r.acceptMAC(ifi.Index, d.mac); err != nil {
				r.close()
			}
		}
		if err != nil {
			return fail(i, err)
		}
		d.sys.rings = append(d.sys.rings, r)
		d.workers = append(d.workers, NewWorker(d.mac, cfg.FlowTableSize, int64(cfg.FlowIdleTimeout)))
	}
	if cfg.Ring.Auto {
		blocksCfg := cfg.Ring
		blocksCfg.Blocks = true
		for i, r := range d.sys.rings {
			rb, err := openRing(ifi.Index, blocksCfg, group, filter, r.tx)
			if err != nil {
				return fail(i, err)
			}
			d.sys.autos = append(d.sys.autos, &autoRing{idx: i, slots: r, blocks: rb})
		}
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

// checkCPUs returns an error if a CPU to pin a worker to is not one this
// process may run on.
func checkCPUs(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return os.NewSyscallError("sched_getaffinity", err)
	}
	var have []string
	for c := 0; c < 1024; c++ {
		if allowed.IsSet(c) {
			have = append(have, strconv.Itoa(c))
		}
	}
	for _, c := range cpus {
		if c >= 1024 || !allowed.IsSet(c) {
			return fmt.Errorf("cannot pin a worker to CPU %d: this process may run on CPUs %s only", c, strings.Join(have, ","))
		}
	}
	return nil
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

// SetTable publishes t to the workers (they pick it up at their next batch)
// and updates the socket filters and the VIPs the responder answers.
func (d *Dataplane) SetTable(t *balancer.Table) error {
	if t == nil {
		return errors.New("dataplane: nil table")
	}
	if err := checkSlots(t); err != nil {
		return err
	}
	d.sys.mu.Lock()
	defer d.sys.mu.Unlock()
	if d.sys.closed {
		return errors.New("dataplane: stopped")
	}
	vips := t.VIPs()
	if !slices.Equal(vips, d.sys.vips) {
		if err := CheckVIPsNotLocal(vips); err != nil {
			return err
		}
		if d.sys.drop == nil {
			// Without the drop (VIPs on a virtual MAC), forwarding was
			// checked at Open for the address families then; a VIP of
			// another family needs the same, or the drop after all.
			if err := checkForwarding(d.cfg.Interface, vips); err != nil {
				drop := newKernelDrop(d.cfg.Interface)
				if drop == nil {
					return err
				}
				if err := drop.install(d.sys.vips); err != nil {
					return err
				}
				d.sys.drop = drop
				d.cfg.Log.Info("IP forwarding is on for a new VIP's family: the kernel now drops VIP frames at netdev ingress, after dsrlb's taps", "table", "netdev "+drop.table)
			}
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
		for i, r := range d.sockets() {
			if err := setFilter(r.fd, vipFilter(append(slices.Clone(d.sys.vips), vips...))); err != nil {
				return fmt.Errorf("widen worker %d's socket filter on %s to the new VIPs: %w", d.workerOf(i), d.ifi.Name, err)
			}
		}
		d.publish(t)
		d.sys.vips = vips
		d.sys.responder.setVIPs(vips)
		for i, r := range d.sockets() {
			if err := setFilter(r.fd, filter); err != nil {
				// The table is published: a filter left wider than it
				// needs passes frames the workers drop as not_vip.
				d.cfg.Log.Error("narrow the socket filter to the new VIPs", "worker", d.workerOf(i), "interface", d.ifi.Name, "err", err)
			}
		}
		return nil
	}
	d.publish(t)
	return nil
}

// Run forwards until ctx is done, then releases every socket and ring.
func (d *Dataplane) Run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.sys.responder.run(rctx) }()
	d.sys.mu.Lock()
	d.sys.responder.setVIPs(d.sys.vips)
	d.sys.mu.Unlock()
	errs := make([]error, len(d.workers))
	cpus := workerCPUs(len(d.workers), d.cfg.CPUs)
	if len(d.cfg.CPUs) > 0 && len(d.workers) > len(d.cfg.CPUs) {
		d.cfg.Log.Warn("more workers than CPUs to pin them to: workers sharing a CPU take turns on it (and do not busy-poll); latency suffers", "workers", len(d.workers), "cpus", fmt.Sprint(d.cfg.CPUs))
	}
	for i := range d.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A worker spins on its empty ring only if no other worker is
			// pinned to its CPU: two spinning workers on one CPU each keep
			// the CPU from the other while its frames wait.
			spin := d.cfg.Ring.BusyPoll
			if cpus[i] >= 0 && sharesCPU(cpus, i) {
				spin = 0
			}
			var a *autoRing
			if d.sys.autos != nil {
				a = d.sys.autos[i]
			}
			if err := d.runWorker(rctx, d.workers[i], d.sys.rings[i], a, cpus[i], spin); err != nil {
				errs[i] = fmt.Errorf("worker %d on %s: %w", i, d.ifi.Name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	d.sys.mu.Lock() // a SetTable still running finishes first; later ones fail
	d.sys.closed = true
	errs = append(errs, d.closeRings(), d.removeDrop())
	d.sys.mu.Unlock()
	return errors.Join(errs...)
}

func (d *Dataplane) removeDrop() error {
	if d.sys.drop == nil {
		return nil
	}
	return d.sys.drop.remove()
}

// sockets returns every worker's receive rings: each worker's own, then
// with RingConfig.Auto each worker's ring of blocks.
func (d *Dataplane) sockets() []*ring {
	all := slices.Clone(d.sys.rings)
	for _, a := range d.sys.autos {
		all = append(all, a.blocks)
	}
	return all
}

// workerOf returns the worker of sockets()[i].
func (d *Dataplane) workerOf(i int) int { return i % len(d.sys.rings) }

func (d *Dataplane) closeRings() error {
	var errs []error
	// A ring of blocks shares its worker's transmit ring: close it first.
	for _, a := range d.sys.autos {
		errs = append(errs, a.blocks.close())
	}
	for _, r := range d.sys.rings {
		errs = append(errs, r.close())
	}
	if d.sys.responder != nil {
		d.sys.responder.close()
	}
	return errors.Join(errs...)
}

// runWorker is a worker's loop: take the ready ring slots, decide every frame,
// copy the forwarded ones to the transmit ring and send them, hand the slots
// back; when
// the ring is empty, watch it for a while (Ring.BusyPoll), then sleep in poll.
// With a (RingConfig.Auto) the ring is whichever of a's the kernel fills.
func (d *Dataplane) runWorker(ctx context.Context, w *Worker, r *ring, a *autoRing, cpu int, spin time.Duration) error {
	const idlePollMs = 100
	// A worker owns its thread, and asks for a larger share of the CPU than
	// ordinary processes (nice -10) when allowed (CAP_SYS_NICE): under load
	// it competes with the kernel's receive work that fills its ring.
	// The thread is never unlocked: it ends with the worker, and its
	// priority with it.
	runtime.LockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -10)
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, os.NewSyscallError("sched_setaffinity", err))
		}
	}
	if a != nil {
		// A move under way ends first: its goroutine uses the rings.
		defer func() {
			if a.switching != nil {
				<-a.switching
			}
		}()
	}
	batches := 0
	for ctx.Err() == nil {
		if a != nil {
			if a.switching != nil {
				if err := d.autoStep(w, a); err != nil {
					return fmt.Errorf("wait on the receive rings: %w", err)
				}
				continue
			}
			r = a.active()
		}
		if !r.ready() {
			w.publish()
			if a != nil {
				now, _ := d.clock()
				if d.autoLook(w, a, now, false); a.switching != nil {
					continue
				}
			}
			if r.spin(spin) {
				continue
			}
			if a != nil {
				w.c.ringDrops += a.slots.kernelDrops() + a.blocks.kernelDrops()
			} else {
				w.c.ringDrops += r.kernelDrops()
			}
			w.publish()
			r.flush() // frames the device refused before, if any
			if err := r.wait(idlePollMs); err != nil {
				return fmt.Errorf("wait on the receive ring: %w", err)
			}
			if t := d.table.Load().t; t != w.c.slotsOf {
				w.adoptSlots(t) // idle: a reused slot's old counts go now
				w.publish()
			}
			continue
		}
		now := d.processBatch(w, r)
		if batches++; batches%64 == 0 {
			w.c.ringDrops += r.kernelDrops()
		}
		if a != nil {
			d.autoLook(w, a, now, true)
		}
		w.publish()
	}
	return nil
}

// processBatch handles the ready slots, at most one transmit batch of them
// (or the current block, whole), and gives them back to the kernel. It never
// allocates. It returns the monotonic time it took them at.
func (d *Dataplane) processBatch(w *Worker, r *ring) (now int64) { return d.processUpTo(w, r, r.batch) }

// processUpTo is processBatch taking at most n slots (a block whole).
func (d *Dataplane) processUpTo(w *Worker, r *ring, n int) (now int64) {
	p := d.table.Load()
	w.adoptSlots(p.t)
	// The kernel stamps each frame with the wall clock when it writes it,
	// or when the frame reached the interface if the system takes receive
	// timestamps: the ring wait ends here, for the whole batch.
	now, wall := d.clock()
	if r.bsize > 0 {
		d.processBlock(w, r, p, now, wall)
	} else {
		d.processSlots(w, r, p, now, wall, n)
	}
	r.flush()
	r.release()
	w.maintain(now)
	return now
}

func (d *Dataplane) processSlots(w *Worker, r *ring, p *tableRef, now, wall int64, n int) {
	for range n {
		s, status, ok := r.next()
		if !ok {
			break
		}
		h := slotHdr(s)
		w.c.observeRingWait(wall - (int64(h.Sec)*1e9 + int64(h.Nsec)))
		if status&unix.TP_STATUS_COPY != 0 {
			// Too large for a slot: the whole frame waits on the socket.
			// Send what is queued first, so frames keep their order.
			r.flush()
			d.forwardBig(w, r, h, status, p, now)
			continue
		}
		d.forwardFrame(w, r, p, now, s, rxFrame{minOff: minFrameOff, mac: int(h.Mac), snap: int(h.Snaplen), length: int(h.Len),
			status: status, tci: h.Vlan_tci, tpid: vlanTPID(h, status)})
	}
}

// processBlock handles every frame of the current block of a TPACKET_V3
// ring. The kernel wrote the block's frame count and offsets; they are
// checked against the block all the same.
func (d *Dataplane) processBlock(w *Worker, r *ring, p *tableRef, now, wall int64) {
	b := r.block()
	bd := (*unix.TpacketHdrV1)(unsafe.Pointer(&b[blockStatusOff]))
	off := int(bd.Offset_to_first_pkt)
	for range int(bd.Num_pkts) {
		if off < blockStatusOff+int(unsafe.Sizeof(*bd)) || off+int(unsafe.Sizeof(unix.Tpacket3Hdr{})) > len(b) {
			break
		}
		s := b[off:]
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&s[0]))
		w.c.observeRingWait(wall - (int64(h.Sec)*1e9 + int64(h.Nsec)))
		f := rxFrame{minOff: minBlockFrameOff, mac: int(h.Mac), snap: int(h.Snaplen), length: int(h.Len),
			status: h.Status, tci: uint16(h.Hv1.Vlan_tci), tpid: etherTypeVLAN}
		if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			f.tpid = h.Hv1.Vlan_tpid
		}
		d.forwardFrame(w, r, p, now, s, f)
		if h.Next_offset == 0 {
			break
		}
		off += int(h.Next_offset)
	}
}

// rxFrame is what the kernel says about a frame it wrote into a ring slot or
// block: the frame is at mac, snap bytes of it (length on the wire), its
// virtio_net_hdr just before mac and the kernel's own header below minOff;
// status TP_STATUS_VLAN_VALID: the kernel took off a VLAN tag (tpid, tci).
type rxFrame struct {
	minOff, mac, snap, length int
	status                    uint32
	tci, tpid                 uint16
}

// forwardFrame decides frame f in s (a slot, or a block from the frame's
// header on) and queues it for transmit if it is forwarded, with the VLAN
// tag the kernel took off it put back.
func (d *Dataplane) forwardFrame(w *Worker, r *ring, p *tableRef, now int64, s []byte, f rxFrame) {
	switch {
	case f.mac+f.snap > len(s) || f.mac-sizeofVnetHdr-vlanTagLen < f.minOff || f.snap < f.length:
		w.c.received++
		w.c.reasons[DropTruncated]++
	case w.handle(s[f.mac:f.mac+f.snap], p.t, p.flows, now) == Forwarded:
		start := f.mac - sizeofVnetHdr
		if f.status&unix.TP_STATUS_VLAN_VALID != 0 {
			start = insertVLANTag(s, f.mac, f.tpid, f.tci)
		}
		if r.queue(s[start:f.mac+f.snap]) != 0 {
			w.refused(f.snap)
		}
	}
}

// forwardBig reads the frame behind a TP_STATUS_COPY slot from the socket and
// forwards it as forwardFrame does (too large for a transmit slot, as a
// rule, it is sent at once).
func (d *Dataplane) forwardBig(w *Worker, r *ring, h *unix.Tpacket2Hdr, status uint32, p *tableRef, now int64) {
	const off = vlanTagLen // room to put a VLAN tag back
	n := r.recvBig(off)
	if n < sizeofVnetHdr+1 {
		w.c.received++
		w.c.reasons[DropTruncated]++
		return
	}
	// Too large for a transmit slot too, as a rule: queue sends it at once.
	snap := n - sizeofVnetHdr
	d.forwardFrame(w, r, p, now, r.big, rxFrame{mac: off + sizeofVnetHdr, snap: snap, length: snap,
		status: status, tci: h.Vlan_tci, tpid: vlanTPID(h, status)})
}

// vlanTPID is the TPID of the tag the kernel took off a received frame.
func vlanTPID(h *unix.Tpacket2Hdr, status uint32) uint16 {
	if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
		return h.Vlan_tpid
	}
	return etherTypeVLAN
}
