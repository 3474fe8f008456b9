package ebpfreceiver

import (
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/functions"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/plaintext"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/python"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/syscalls"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/tls"
)

// wire builds the registry of traced processes, the tracers the config enables and the decoder's
// table from their record kinds. kernel is nil in tests without the kernel. The builder,
// symbolizer, redactor, telemetry, health and clock are set before.
func (r *ebpfReceiver) wire(kernel *probes.Set, problems *attachProblems) error {
	r.registry = newRegistry(r.cfg, kernel, r.logger, r.telemetry, r.builder, r.symbolizer, r.redactor, problems)
	env := tracer.Env{
		Logger: tracerLogger(r.logger, problems), Kernel: kernel, Builder: r.builder, Symbolizer: r.symbolizer, Redactor: r.redactor,
		Telemetry: r.telemetry.forTracers(), Problems: problems, Processes: r.registry, ProcRoot: r.cfg.ProcRoot,
	}
	tracers, err := r.newTracers(env)
	if err != nil {
		return err
	}
	kinds := r.lifecycleKinds()
	for _, tr := range tracers {
		kinds = append(kinds, tr.Kinds()...)
	}
	if r.decoder, err = newDecoder(kinds...); err != nil {
		return err
	}
	r.tracers, r.registry.tracers = tracers, tracers
	return nil
}

// newTracers builds the probe families. Their order is the order in which each sets up a
// process (and lists what it could not instrument in agenttrail.capture.missing) and does its
// housekeeping. A new family is one package under internal/tracers and one line here.
func (r *ebpfReceiver) newTracers(env tracer.Env) ([]tracer.Tracer, error) {
	var py *python.Tracer
	if r.cfg.Python.Enabled {
		var err error
		if py, err = python.New(env, r.cfg.Python, r.cfg.Targets); err != nil {
			return nil, err
		}
		env.Stacks = py // the other tracers' records carry the Python stack sent before them
	}
	r.functions = functions.New(env)
	sc, err := syscalls.New(env, r.cfg.Syscalls, r.cfg.ContentSampling)
	if err != nil {
		return nil, err
	}
	tracers := []tracer.Tracer{sc}
	var tlsTracer *tls.Tracer
	if r.cfg.TLS.Enabled {
		t, err := tls.New(env, r.cfg.TLS)
		if err != nil {
			return nil, err
		}
		tracers = append(tracers, t)
		tlsTracer = t
	}
	tracers = append(tracers, r.functions)
	if py != nil {
		tracers = append(tracers, py)
	}
	if r.cfg.Sockets.Enabled {
		st, err := sockets.New(env, r.cfg.Sockets)
		if err != nil {
			return nil, err
		}
		if r.cfg.Sockets.CaptureBytes > 0 {
			// The sockets tracer's payload consumers (MCP over stdio) come before it: they
			// emit what is pending before its aggregates at shutdown.
			pc, err := plaintext.New(env, plaintext.Options{CaptureMessageContent: r.cfg.TLS.CaptureMessageContent})
			if err != nil {
				return nil, err
			}
			st.AddConsumer(pc)
			if tlsTracer != nil {
				tlsTracer.Intercept(pc.MCPExchange)       // MCP over HTTPS: the same MCP spans
				tlsTracer.RecordToolCalls(pc.ToolCalls()) // the model's tool-call ids for MCP spans
			}
			tracers = append(tracers, payloadTracer{name: "plaintext", consumer: pc})
		}
		tracers = append(tracers, st)
	}
	return tracers, nil
}

// payloadConsumer is a consumer of the sockets tracer's plaintext payloads with state of its
// own that ends with processes and time.
type payloadConsumer interface {
	ProcessGone(pid uint32)
	Housekeeping(now time.Time)
	Waiting() bool
	Close() error
}

// payloadTracer runs a payload consumer as a tracer: it has no records or probes of its own,
// the sockets tracer hands it its payloads.
type payloadTracer struct {
	name     string
	consumer payloadConsumer
}

var _ tracer.Tracer = payloadTracer{}

func (p payloadTracer) Name() string                     { return p.name }
func (p payloadTracer) Kinds() []tracer.Kind             { return nil }
func (p payloadTracer) Start()                           {}
func (p payloadTracer) AttachBinary(tracer.Binary) error { return nil }
func (p payloadTracer) SetupProcess(*tracer.Process)     {}
func (p payloadTracer) ProcessGone(pid uint32)           { p.consumer.ProcessGone(pid) }
func (p payloadTracer) Housekeeping(now time.Time)       { p.consumer.Housekeeping(now) }
func (p payloadTracer) Waiting() bool                    { return p.consumer.Waiting() }
func (p payloadTracer) Close() error                     { return p.consumer.Close() }
