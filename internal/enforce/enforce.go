package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Destination is an allowed egress destination: an address prefix and a port (0: any port).
type Destination struct {
	Prefix netip.Prefix
	Port   uint16
}

// Policy is what one enforced workload may do.
type Policy struct {
	Workload            string        // name used in decisions and errors
	Cgroup              string        // the workload's cgroup v2 directory (a pod, or a service)
	AllowedDestinations []Destination // everything else is refused
	AllowedExecutables  []string      // absolute paths; nil means exec is not enforced
	EnforceExec         bool
	ProfileVersion      int
}

// Kind of an enforced decision.
type Kind string

const (
	KindConnect Kind = "connect"
	KindSendmsg Kind = "sendmsg"
	KindExec    Kind = "exec"
)

// Decision is one denied attempt.
type Decision struct {
	Time           time.Time
	Workload       string
	ProfileVersion int
	Kind           Kind
	PID, TID       uint32
	PPID           uint32 // exec: the parent of the killed process (the agent that forked it), else 0
	CgroupID       uint64
	Destination    netip.AddrPort // connect, sendmsg
	Protocol       string         // tcp, udp
	Executable     string         // exec: the refused path; the process was killed
}

// Enforcer holds the kernel programs of every enforced workload.
type Enforcer struct {
	mu        sync.Mutex
	spec      *ebpf.CollectionSpec
	decisions *ebpf.Map
	reader    *ringbuf.Reader
	workloads map[string]*attached
	byID      map[uint32]*attached // the workload_id each instance puts in its decisions
	names     map[uint32]Policy    // workload and profile version of every id ever applied
	nextID    uint32
	out       chan Decision
	done      chan struct{}
	closing   chan struct{} // closed by Close: the reader stops waiting for a consumer
	offset    int64         // wall - monotonic ns
	closed    bool
}

type attached struct {
	policy Policy
	objs   enforceObjects
	links  []link.Link
	id     uint32
}

// New loads nothing yet: it checks the object and creates the shared decision ring buffer.
// Decisions arrive on the returned channel until Close.
func New() (*Enforcer, error) {
	spec, err := loadEnforce()
	if err != nil {
		return nil, fmt.Errorf("enforce: parse programs: %w", err)
	}
	decisions, err := ebpf.NewMap(spec.Maps["decisions"])
	if err != nil {
		return nil, fmt.Errorf("enforce: create decision ring buffer: %w", err)
	}
	reader, err := ringbuf.NewReader(decisions)
	if err != nil {
		decisions.Close()
		return nil, fmt.Errorf("enforce: read decisions: %w", err)
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	e := &Enforcer{
		spec: spec, decisions: decisions, reader: reader,
		workloads: map[string]*attached{}, byID: map[uint32]*attached{}, names: map[uint32]Policy{},
		out: make(chan Decision, 256), done: make(chan struct{}), closing: make(chan struct{}),
		offset: time.Now().UnixNano() - ts.Nano(),
	}
	go e.read()
	return e, nil
}

// Decisions delivers every denial; it is closed by Close.
func (e *Enforcer) Decisions() <-chan Decision { return e.out }

// Apply enforces p: it loads a fresh instance of the programs with p's allow lists and attaches
// it to p.Cgroup. Applying a workload again replaces its programs (the new ones are attached
// before the old ones are removed, so there is no gap). On error nothing of p stays attached.
func (e *Enforcer) Apply(p Policy) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("enforce: closed")
	}
	a, err := e.load(p)
	if err != nil {
		return fmt.Errorf("enforce %s: %w", p.Workload, err)
	}
	if old := e.workloads[p.Workload]; old != nil {
		old.close()
		delete(e.byID, old.id)
	}
	e.workloads[p.Workload] = a
	e.byID[a.id] = a
	e.names[a.id] = Policy{Workload: p.Workload, ProfileVersion: p.ProfileVersion}
	return nil
}

func (e *Enforcer) load(p Policy) (a *attached, err error) {
	cg, err := os.Open(p.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	defer cg.Close()
	spec := e.spec.Copy()
	exec := uint8(0)
	if p.EnforceExec {
		exec = 1
	}
	if err := spec.Variables["enforce_exec"].Set(exec); err != nil {
		return nil, err
	}
	e.nextID++
	if err := spec.Variables["workload_id"].Set(e.nextID); err != nil {
		return nil, err
	}
	a = &attached{policy: p, id: e.nextID}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"decisions": e.decisions}}
	if err := spec.LoadAndAssign(&a.objs, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load programs: %+v", ve)
		}
		return nil, fmt.Errorf("load programs: %w", err)
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := fillAllowed(&a.objs, p); err != nil {
		return nil, err
	}
	if err := a.objs.WorkloadCgroup.Put(uint32(0), uint32(cg.Fd())); err != nil {
		return nil, fmt.Errorf("set workload cgroup: %w", err)
	}
	for _, c := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{a.objs.Connect4, ebpf.AttachCGroupInet4Connect},
		{a.objs.Connect6, ebpf.AttachCGroupInet6Connect},
		{a.objs.Sendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{a.objs.Sendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: p.Cgroup, Attach: c.typ, Program: c.prog})
		if err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", c.typ, p.Cgroup, err)
		}
		a.links = append(a.links, l)
	}
	if p.EnforceExec {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: a.objs.ExecGuard})
		if err != nil {
			return nil, fmt.Errorf("attach exec guard: %w", err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

func fillAllowed(objs *enforceObjects, p Policy) error {
	for _, d := range p.AllowedDestinations {
		port := htons(d.Port)
		bits := d.Prefix.Bits()
		addr := d.Prefix.Masked().Addr()
		if addr.Is4() || addr.Is4In6() {
			k := enforceDest4Key{Prefixlen: uint32(32 + bits), Port: port, Addr: addr.Unmap().As4()}
			if addr.Is4In6() {
				k.Prefixlen = uint32(32 + bits - 96)
			}
			if err := objs.Allowed4.Put(k, uint8(1)); err != nil {
				return fmt.Errorf("allow %v: %w", d, err)
			}
			// The same destination reached through an AF_INET6 socket (::ffff:a.b.c.d).
			mapped := enforceDest6Key{Prefixlen: k.Prefixlen + 96, Port: port, Addr: netip.AddrFrom4(k.Addr).As16()}
			if err := objs.Allowed6.Put(mapped, uint8(1)); err != nil {
				return fmt.Errorf("allow %v: %w", d, err)
			}
			continue
		}
		k := enforceDest6Key{Prefixlen: uint32(32 + bits), Port: port, Addr: addr.As16()}
		if err := objs.Allowed6.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("allow %v: %w", d, err)
		}
	}
	for _, path := range p.AllowedExecutables {
		var k enforcePathKey
		if len(path) >= len(k.Path) {
			return fmt.Errorf("allowed executable path longer than %d bytes: %s", len(k.Path)-1, path)
		}
		copy(k.Path[:], path)
		if err := objs.AllowedExecs.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("allow executable %s: %w", path, err)
		}
	}
	return nil
}

// htons returns the port as the kernel stores it (network byte order) read as a host integer.
func htons(p uint16) uint16 { return p<<8 | p>>8 }

func (a *attached) close() {
	for _, l := range a.links {
		_ = l.Close()
	}
	a.links = nil
	_ = a.objs.Close()
}

// Remove detaches the workload's programs; a workload that is not enforced is not an error.
func (e *Enforcer) Remove(workload string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.workloads[workload]; a != nil {
		a.close()
		delete(e.workloads, workload)
		delete(e.byID, a.id)
	}
}

// Enforced lists the workloads with programs attached.
func (e *Enforcer) Enforced() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.workloads))
	for w := range e.workloads {
		out = append(out, w)
	}
	return out
}

// Close detaches everything and stops the decision stream. Safe to call twice.
func (e *Enforcer) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.closing)
	for w, a := range e.workloads {
		a.close()
		delete(e.workloads, w)
	}
	e.mu.Unlock()
	err := e.reader.Close()
	<-e.done
	return errors.Join(err, e.decisions.Close())
}

func (e *Enforcer) read() {
	defer close(e.done)
	defer close(e.out)
	var rec ringbuf.Record
	for {
		if err := e.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			continue
		}
		if len(rec.RawSample) < int(unsafe.Sizeof(enforceDecision{})) {
			continue
		}
		raw := (*enforceDecision)(unsafe.Pointer(&rec.RawSample[0]))
		select {
		case e.out <- e.decode(raw):
		case <-e.closing:
			return
		}
	}
}

func (e *Enforcer) decode(raw *enforceDecision) Decision {
	d := Decision{Time: time.Unix(0, int64(raw.TsNs)+e.offset), PID: raw.Tgid, TID: raw.Tid, PPID: raw.Ppid, CgroupID: raw.CgroupId}
	switch enforceDecisionKind(raw.Kind) {
	case enforceDecisionKindDECISION_CONNECT:
		d.Kind = KindConnect
	case enforceDecisionKindDECISION_SENDMSG:
		d.Kind = KindSendmsg
	case enforceDecisionKindDECISION_EXEC:
		d.Kind = KindExec
		d.Executable = string(raw.Path[:min(int(raw.PathLen), len(raw.Path))])
	}
	switch raw.Family {
	case unix.AF_INET:
		d.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw.Addr[:4])), raw.Port)
	case unix.AF_INET6:
		d.Destination = netip.AddrPortFrom(netip.AddrFrom16(raw.Addr).Unmap(), raw.Port)
	}
	switch raw.Protocol {
	case unix.IPPROTO_TCP:
		d.Protocol = "tcp"
	case unix.IPPROTO_UDP:
		d.Protocol = "udp"
	}
	e.mu.Lock()
	if p, ok := e.names[raw.Workload]; ok {
		// also for a decision read after its workload was removed or replaced
		d.Workload, d.ProfileVersion = p.Workload, p.ProfileVersion
	}
	e.mu.Unlock()
	return d
}
