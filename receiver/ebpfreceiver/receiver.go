package ebpfreceiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/functions"
)

type ebpfReceiver struct {
	cfg    *Config
	set    receiver.Settings
	logger *zap.Logger
	next   consumer.Traces

	kernel     *probes.Set
	reader     *ringbuf.Reader
	waiter     *ringWaiter
	symbolizer *symbolize.Symbolizer
	redactor   *redact.Redactor
	telemetry  *telemetry
	health     *health

	// Owned by the reader goroutine after Start.
	builder      *spans.Builder
	registry     *registry
	tracers      []tracer.Tracer
	functions    *functions.Tracer
	clock        monoClock
	lastCounters spans.Counters
	decoder      *decoder
	panics       *panicGuard
	// drops reads the kernel's drop counters by reason; lastRingDrops is the ring buffer's as
	// last checked.
	drops         func() (map[string]uint64, error)
	lastRingDrops uint64

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

func newReceiver(set receiver.Settings, cfg *Config, next consumer.Traces) *ebpfReceiver {
	return &ebpfReceiver{cfg: cfg, set: set, logger: set.Logger, next: next, panics: newPanicGuard()}
}

// Start loads the kernel programs, attaches the configured targets' functions, marks the
// matching running processes as traced and starts reading events.
func (r *ebpfReceiver) Start(_ context.Context, host component.Host) error {
	tel, err := newTelemetry(r.set.TelemetrySettings)
	if err != nil {
		return err
	}
	r.telemetry = tel
	r.health = newHealth(host)
	if os.Geteuid() != 0 {
		r.logger.Warn("not running as root: loading eBPF programs needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN")
	}
	kernel, err := probes.Load(probes.Options{
		RingBufferBytes: uint32(r.cfg.RingBufferSize),
		SyscallMask:     r.cfg.syscallMask(),
		CaptureStacks:   r.cfg.CallStacks,
		Python:          r.cfg.Python.Enabled && r.cfg.Python.Audit,
		PythonStacks:    r.cfg.Python.Enabled,
		// Only reconstructed spans need samples between a thread's requests.
		PythonWaitSamples: r.cfg.hasPythonFunctions(),
		TLS:               r.cfg.TLS.Enabled,
		TLSCaptureBytes:   uint32(r.cfg.TLS.CaptureBytes),
		Sockets:           r.cfg.socketOptions(),
		SyscallAttach:     r.cfg.SyscallAttach,
	})
	if err != nil {
		return fmt.Errorf("ebpf receiver: %w", err)
	}
	r.kernel = kernel
	r.logSyscallHooks(kernel.SyscallHooks())
	r.telemetry.observeDrops(kernel)
	r.telemetry.observeSyscallHooks(kernel.SyscallHooks())
	r.drops = kernel.Drops
	if d, err := kernel.Drops(); err == nil {
		r.lastRingDrops = d[dropRingBufferFull]
	}
	reader, err := ringbuf.NewReader(kernel.Events())
	if err != nil {
		_ = kernel.Close()
		return fmt.Errorf("ebpf receiver: open ring buffer: %w", err)
	}
	r.reader = reader
	waiter, err := newRingWaiter(kernel.Events())
	if err != nil {
		_ = reader.Close()
		_ = kernel.Close()
		return fmt.Errorf("ebpf receiver: %w", err)
	}
	r.waiter = waiter
	r.symbolizer = symbolize.New(symbolize.Options{ProcRoot: r.cfg.ProcRoot})
	r.telemetry.observeSymbolizer(r.symbolizer)
	r.redactor = redact.New()
	r.builder = spans.NewBuilder(spans.Options{MaxOpenSpans: r.cfg.MaxOpenSpans, SocketWindow: r.cfg.Sockets.AggregateInterval,
		ConnectsTraced: r.cfg.syscallMask()&probes.SyscallBits["connect"] != 0 && r.cfg.syscallMask()&probes.SyscallBits["accept"] != 0})
	r.clock = newMonoClock()
	if err := r.wire(kernel, newAttachProblems(r.health)); err != nil {
		_ = waiter.close()
		_ = reader.Close()
		_ = kernel.Close()
		r.waiter, r.reader, r.kernel = nil, nil, nil
		return fmt.Errorf("ebpf receiver: %w", err)
	}

	err = r.registry.startKubernetes(host, r.waiter.wake)
	if err == nil {
		err = r.registry.startDiscovery(host)
	}
	if err != nil {
		for _, tr := range r.tracers {
			_ = tr.Close()
		}
		_ = waiter.close()
		_ = reader.Close()
		_ = kernel.Close()
		r.waiter, r.reader, r.kernel, r.tracers = nil, nil, nil, nil
		return fmt.Errorf("ebpf receiver: %w", err)
	}
	r.registry.attachTargets()
	r.logger.Info("ebpf receiver started",
		zap.Int("targets", len(r.cfg.Targets)),
		zap.Int("probes", r.functions.ProbeCount()),
		zap.Int("traced_processes", r.registry.tracedCount()),
		zap.Strings("syscalls", r.cfg.Syscalls))

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.readLoop(ctx)
	}()
	return nil
}

// logSyscallHooks says at start which path the syscall programs took (see the README's
// "Cost to untraced processes"): a fallback to the raw tracepoints is a warning, since every
// syscall on the node then pays for the hook.
func (r *ebpfReceiver) logSyscallHooks(h probes.SyscallHooks) {
	fields := []zap.Field{zap.String("syscall_attach", r.cfg.SyscallAttach), zap.String("path", h.Path), zap.Int("hooks", h.Hooks)}
	if h.MountedTracefs {
		fields = append(fields, zap.Bool("mounted_tracefs", true))
	}
	if h.Fallback == "" {
		r.logger.Info("syscall programs attached", fields...)
		return
	}
	fields = append(fields, zap.String("fallback", h.Fallback), zap.String("error", h.Detail))
	r.logger.Warn("syscall programs on the raw tracepoints: every syscall of every process on the node runs them", fields...)
}

// Shutdown stops reading, closes what is still open with an error status saying why, sends the
// last spans and detaches every kernel program. Safe to call twice, and without Start.
func (r *ebpfReceiver) Shutdown(ctx context.Context) error {
	var err error
	r.stopOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		if r.waiter != nil {
			// The read loop wakes, hands out what the kernel already wrote (records
			// submitted without a wakeup included) and ends.
			err = errors.Join(err, r.waiter.close())
		}
		r.wg.Wait()
		if r.registry != nil {
			r.registry.closeKubernetes()
		}
		if r.reader != nil {
			err = errors.Join(err, r.reader.Close())
		}
		for _, tr := range r.tracers {
			// What is still open (exchanges waiting for their end) is emitted as it is.
			err = errors.Join(err, tr.Close())
		}
		if r.builder != nil {
			r.builder.Abandon(r.clock.wall(r.clock.now()), "collector shut down before the call returned")
			r.flush(ctx)
		}
		if r.kernel != nil {
			err = errors.Join(err, r.kernel.Close())
		}
		if r.symbolizer != nil {
			err = errors.Join(err, r.symbolizer.Close())
		}
	})
	return err
}

// readLoop is the only goroutine that touches the builder, the registry and the tracers after
// Start. Busy,
// it reads every record there at each flush interval, and at once when the kernel wakes it (an
// exec, fork or exit, or wakeup_bytes waiting). After a flush interval without records and with
// nothing to flush it waits idle: the next record wakes it, so an idle collector does not poll.
// A read woken from idle that left nothing in flight (idleAgain) waits idle again at once.
func (r *ebpfReceiver) readLoop(ctx context.Context) {
	var rec ringbuf.Record
	wakes := newReaderWakes(r.telemetry.meter, r.logger)
	lastFlush := time.Now()
	quiet := false // the last flush interval read no record, or only a lone one (idleAgain)
	read := 0
	for {
		woke := false
		if quiet && r.builder.PendingSpans() == 0 {
			r.waitIdle()
			lastFlush = time.Time{} // read, then flush (housekeeping) at once
			woke = true
		} else {
			r.waiter.wait(lastFlush.Add(r.cfg.FlushInterval))
		}
		n, ok := r.drain(ctx, &rec)
		if !ok || ctx.Err() != nil {
			return
		}
		wakes.add(ctx, woke)
		read += n
		if !time.Now().Before(lastFlush.Add(r.cfg.FlushInterval)) {
			r.flush(ctx)
			r.checkHealth(read)
			quiet, read = read == 0 || (woke && r.idleAgain(read)), 0
			lastFlush = time.Now()
		}
	}
}

// idleHousekeeping bounds an idle wait while a tracer's state waits for time to pass (TLS
// responses read until the connection closes, Python spans ended by span_idle_timeout).
const idleHousekeeping = time.Second

// waitIdle sleeps until a record arrives (the programs wake the reader at the next record once
// told it is idle), or until housekeeping is due, or Shutdown.
func (r *ebpfReceiver) waitIdle() {
	if err := r.kernel.SetReaderIdle(true); err != nil {
		return // the flush interval's polling goes on
	}
	var deadline time.Time // none
	// A ring buffer that lost records is healthy again after a check without new losses.
	if r.tracersWaiting() || r.health.active(problemRingBuffer) || r.registry.kubernetesWaiting() || r.registry.discovery != nil {
		deadline = time.Now().Add(idleHousekeeping)
	}
	// A record written before the flag was set did not wake anyone: do not wait for it.
	if r.reader.AvailableBytes() == 0 {
		r.waiter.wait(deadline)
	}
	_ = r.kernel.SetReaderIdle(false)
}

// drain handles the records waiting in the ring buffer and says how many; false when the
// reader is closed.
func (r *ebpfReceiver) drain(ctx context.Context, rec *ringbuf.Record) (int, bool) {
	r.reader.SetDeadline(time.Now()) // do not block: the waiter did
	n := int64(0)
	var lag uint64 // the longest a record of this read waited in the ring buffer, ns
	defer func() {
		r.telemetry.eventsRead.Add(ctx, n)
		if n > 0 {
			r.telemetry.readerLag.Record(ctx, float64(lag)/1e9)
		}
	}()
	for {
		err := r.reader.ReadInto(rec)
		switch {
		case err == nil:
			n++
			lag = max(lag, recordLag(r.clock.now(), rec.RawSample))
			r.handle(rec.RawSample)
			if r.builder.PendingSpans() >= maxBatchSpans {
				r.flush(ctx)
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return int(n), true
		case errors.Is(err, ringbuf.ErrClosed):
			return int(n), false
		default:
			r.logger.Error("reading the eBPF ring buffer failed; events are lost until it recovers", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
			return int(n), true
		}
	}
}

// maxBatchSpans bounds one ConsumeTraces call.
const maxBatchSpans = 4096

func (r *ebpfReceiver) flush(ctx context.Context) {
	now := r.clock.wall(r.clock.now())
	for _, tr := range r.tracers {
		tr.Housekeeping(now)
	}
	r.registry.rescanKubernetes(now)
	r.registry.scanDiscovery(now)
	counters := r.builder.Counters()
	r.telemetry.recordBuilder(ctx, r.lastCounters, counters)
	r.lastCounters = counters
	if r.builder.PendingSpans() == 0 {
		return
	}
	td := r.builder.Flush()
	r.registry.filterDiscovered(td, now)
	n := td.SpanCount()
	if n == 0 {
		return // all on probation (discovery)
	}
	if err := r.next.ConsumeTraces(ctx, td); err != nil {
		r.telemetry.spansRefused.Add(ctx, int64(n))
		r.logger.Warn("the next component refused spans; they are dropped", zap.Int("spans", n), zap.Error(err))
		return
	}
	r.telemetry.spansEmitted.Add(ctx, int64(n))
}

func (r *ebpfReceiver) tracersWaiting() bool {
	for _, tr := range r.tracers {
		if tr.Waiting() {
			return true
		}
	}
	return false
}

// monoClock converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
type monoClock struct {
	offset int64 // wall - monotonic, ns
}

func newMonoClock() monoClock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return monoClock{offset: time.Now().UnixNano() - ts.Nano()}
}

func (c monoClock) now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func (c monoClock) wall(mono uint64) time.Time {
	return time.Unix(0, int64(mono)+c.offset)
}
