package main

// Section 3: probe hits per request of the demo agent. The receiver runs in this process with
// the ebpf receiver configuration of distributions/agenttrail/config.yaml (its ${env:...}
// placeholders at their defaults); the kernel's BPF run statistics count every run of its
// programs, its self-telemetry counts ring-buffer records, and a counting consumer counts the
// spans and syscall events it emits, across a number of benign chat requests.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

const distConfig = "distributions/agenttrail/config.yaml"

var envPlaceholder = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// distributionReceiver is receivers::ebpf of the distribution's agent configuration, its
// ${env:...} placeholders at their defaults.
func distributionReceiver() (map[string]any, error) {
	raw, err := os.ReadFile(distConfig)
	if err != nil {
		return nil, err
	}
	text := envPlaceholder.ReplaceAllString(string(raw), "$2")
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, err
	}
	recvs, _ := doc["receivers"].(map[string]any)
	section, _ := recvs["ebpf"].(map[string]any)
	if section == nil {
		return nil, errors.New(distConfig + " has no receivers::ebpf")
	}
	return section, nil
}

// pinTargets makes the targets of a receivers::ebpf section select the one process pid instead
// of every process of their name: this machine may run other engineers' customer-agents.
func pinTargets(section map[string]any, pid int) {
	targets, _ := section["targets"].([]any)
	for _, t := range targets {
		if m, ok := t.(map[string]any); ok {
			delete(m, "process_name")
			delete(m, "executable")
			delete(m, "container_id")
			m["pid"] = pid
		}
	}
}

// pinnedTargetsYAML is a collector override that replaces receivers::ebpf::targets with the
// distribution's, pinned to pid.
func pinnedTargetsYAML(pid int) (string, error) {
	section, err := distributionReceiver()
	if err != nil {
		return "", err
	}
	pinTargets(section, pid)
	out, err := yaml.Marshal(map[string]any{"receivers": map[string]any{"ebpf": map[string]any{"targets": section["targets"]}}})
	return string(out), err
}

// distributionReceiverConfig is receivers::ebpf of the distribution's agent configuration over
// the receiver's defaults, as the collector would build it with no AGENTTRAIL_* variables set,
// its targets pinned to pid.
func distributionReceiverConfig(pid int) (*ebpfreceiver.Config, error) {
	section, err := distributionReceiver()
	if err != nil {
		return nil, err
	}
	pinTargets(section, pid)
	cfg := ebpfreceiver.NewFactory().CreateDefaultConfig().(*ebpfreceiver.Config)
	if err := confmap.NewFromStringMap(section).Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// syscallNames are the receiver's syscall spans and events.
var syscallNames = map[string]bool{"connect": true, "accept": true, "execve": true, "openat": true, "sendto": true}

// kindCounter counts the spans and syscall events the receiver emits.
type kindCounter struct {
	mu                   sync.Mutex
	spans, syscallEvents int64
	byName               map[string]int64
}

func (c *kindCounter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (c *kindCounter) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				s := ss.At(k)
				c.spans++
				c.byName[s.Name()]++
				if syscallNames[s.Name()] {
					c.syscallEvents++
				}
				for e := 0; e < s.Events().Len(); e++ {
					if syscallNames[s.Events().At(e).Name()] {
						c.syscallEvents++
					}
				}
			}
		}
	}
	return nil
}

func (c *kindCounter) snapshot() (spans, syscalls int64, byName map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byName = map[string]int64{}
	for k, v := range c.byName {
		byName[k] = v
	}
	return c.spans, c.syscallEvents, byName
}

// bpfProg is one kernel program of the receiver, with its run statistics.
type bpfProg struct {
	name string
	typ  ebpf.ProgramType
	prog *ebpf.Program
}

type progStat struct{ runs, ns uint64 }

func maxProgramID() ebpf.ProgramID {
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return id
		}
		id = next
	}
}

// programsAfter returns the uprobe and tracepoint programs loaded with an id above after.
func programsAfter(after ebpf.ProgramID) []bpfProg {
	var out []bpfProg
	id := after
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return out
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		// The syscall programs are per-syscall tracepoints on syscall_attach's default path.
		if err != nil || (info.Type != ebpf.Kprobe && info.Type != ebpf.RawTracepoint && info.Type != ebpf.TracePoint) {
			p.Close()
			continue
		}
		out = append(out, bpfProg{name: info.Name, typ: info.Type, prog: p})
	}
}

func statsOf(progs []bpfProg) []progStat {
	out := make([]progStat, len(progs))
	for i, p := range progs {
		if s, err := p.prog.Stats(); err == nil {
			out[i] = progStat{runs: s.RunCount, ns: uint64(s.Runtime)}
		}
	}
	return out
}

func (b *bench) probeHits() {
	const name = "uprobe hits per benign chat request (function entries + returns, goroutine creations, Go TLS calls)"
	command := fmt.Sprintf("bank Go agent, ebpf receiver in process with receivers::ebpf of %s (targets pinned to the agent's pid); %d benign /chat requests (%q, %q alternating); BPF run statistics (BPF_ENABLE_STATS)",
		distConfig, b.opt.hitRequests, benignMessages[0], benignMessages[1])
	rig, err := b.rig()
	if err != nil {
		b.skip(secHits, name, command, "bank demo: "+err.Error())
		return
	}
	cfg, err := distributionReceiverConfig(rig.env.AgentPID)
	if err != nil {
		b.skip(secHits, name, command, "receiver configuration: "+err.Error())
		return
	}
	before := maxProgramID()
	counter := &kindCounter{byName: map[string]int64{}}
	p, err := startReceiver(cfg, counter)
	if err != nil {
		b.skip(secHits, name, command, "receiver: "+err.Error())
		return
	}
	defer p.stop()
	progs := programsAfter(before)
	defer func() {
		for _, pr := range progs {
			pr.prog.Close()
		}
	}()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.skip(secHits, name, command, "BPF run statistics: "+err.Error())
		return
	}
	defer stats.Close()

	ctx, cancel := timeout(2 * time.Minute)
	defer cancel()
	for i := 0; i < 4; i++ { // warm up: connections, symbol caches
		if err := rig.benign(ctx, i); err != nil {
			b.skip(secHits, name, command, "warm-up request: "+err.Error())
			return
		}
	}
	time.Sleep(3 * cfg.FlushInterval)
	// The OpenSSL probes are on the library file: they fire in every process that uses it. When
	// the agent does not map libssl, their runs are other processes' and are left out.
	_, sslErr := mappedLibrary(rig.env.AgentPID, "libssl.so")
	w := &hitWindow{progs: progs, p: p, counter: counter, flush: cfg.FlushInterval, agentUsesSSL: sslErr == nil}
	benign, err := w.measure(b.opt.hitRequests, func(i int) error { return rig.benign(ctx, i) })
	if err != nil {
		b.skip(secHits, name, command, "request: "+err.Error())
		return
	}
	b.hitsPerRequest = benign.hits
	b.bpfNsPerRequest = benign.uprobeNs
	if benign.records > 0 {
		b.spansPerEvent = benign.spans / benign.records
	}
	note := ""
	if benign.otherSSL > 0 {
		note = fmt.Sprintf("; not counted: %.0f runs of the OpenSSL probes in other processes (the agent does not map libssl)", benign.otherSSL)
	}
	b.add(result{section: secHits, name: name, command: command,
		value: fmt.Sprintf("%.1f (%s); in-BPF time %.1f µs per request%s", benign.hits, benign.perProg, benign.uprobeNs/1000, note),
		ratio: "-", target: "-", verdict: "counted"})
	b.add(result{section: secHits, name: "syscall events per benign request (connect, accept, openat, execve, sendto recorded; the client and the model client keep their connections)", command: "the same run: spans and span events by name at the consumer",
		value: fmt.Sprintf("%.1f", benign.syscalls), ratio: "-", target: "-", verdict: "counted"})
	b.add(result{section: secHits, name: "ring-buffer records per benign request", command: "the same run: agenttrail.ebpf.events.read",
		value: fmt.Sprintf("%.1f (→ %.1f spans per request: %s)", benign.records, benign.spans, benign.spanNames), ratio: "-", target: "-", verdict: "counted"})
	b.add(result{section: secHits, name: "socket I/O records per benign request (sends and receives of the agent on its sockets, sockets.enabled) and the `send`/`receive` spans they became",
		command: "the same run: agenttrail.ebpf.sockets.records; spans named send/receive {peer} at the consumer",
		value:   fmt.Sprintf("%.1f records → %.1f spans", benign.sockRecords, benign.sendSpans), ratio: "-", target: "-", verdict: "counted"})
	for _, ph := range benign.progs {
		trap := "trap floor not measured in this run (section overhead)"
		if b.uprobeFloorNs > 0 {
			trap = fmt.Sprintf("trap floor %.1f × %.2f µs = %.0f µs per request", ph.hits, b.uprobeFloorNs/1000, ph.hits*b.uprobeFloorNs/1000)
		}
		loss := probeLoss[ph.name]
		if loss == "" {
			loss = "(no description)"
		}
		b.add(result{section: secHits, name: "per probe: " + ph.name + " — " + loss,
			command: "the same run: the program's BPF run statistics ÷ requests",
			value:   fmt.Sprintf("%.1f hits per benign request, %.0f ns in BPF per hit; %s", ph.hits, ph.nsPerHit, trap), ratio: "-", target: "-", verdict: "counted"})
	}
	if b.uprobeFloorNs > 0 {
		b.add(result{section: secHits, name: "trap floor per benign request: uprobe hits × bare uprobe hit", command: "hits above × the probe floor of this run",
			value: fmt.Sprintf("%.1f × %.2f µs = %.0f µs", benign.hits, b.uprobeFloorNs/1000, benign.hits*b.uprobeFloorNs/1000), ratio: "-", target: "-", verdict: "computed"})
	} else {
		b.skip(secHits, "trap floor per benign request", "hits × floor", "the probe floor was not measured in this run (section overhead)")
	}

	// The attack for comparison: a tool that reads the customer file and POSTs it to the exfil
	// sink on a new connection.
	attacks := max(3, b.opt.hitRequests/6)
	attack, err := w.measure(attacks, func(int) error {
		_, err := rig.chat(ctx, bank.AttackMessageTo(rig.env.UploadURL))
		return err
	})
	if err != nil {
		b.skip(secHits, "per attack request", command, err.Error())
		return
	}
	b.add(result{section: secHits, name: "per attack request (prompt injection → customer-data-export: reads the database, POSTs it to the exfil sink)",
		command: fmt.Sprintf("the same receiver; %d requests with bank.AttackMessageTo", attacks),
		value: fmt.Sprintf("%.1f uprobe hits (%s), %.1f syscall events, %.1f records → %.1f spans (%s)",
			attack.hits, attack.perProg, attack.syscalls, attack.records, attack.spans, attack.spanNames), ratio: "-", target: "-", verdict: "counted"})
}

// hitWindow counts what the receiver's programs did over a number of requests.
type hitWindow struct {
	progs        []bpfProg
	p            *inproc
	counter      *kindCounter
	flush        time.Duration
	agentUsesSSL bool
}

type hitCounts struct {
	hits, uprobeNs, otherSSL, records, spans, syscalls float64 // per request
	sockRecords, sendSpans                             float64 // socket I/O records and `send` spans per request
	perProg, spanNames                                 string
	progs                                              []progHits // the uprobe programs that ran, by name
}

// progHits is one uprobe program's runs per request and in-BPF time per run.
type progHits struct {
	name           string
	hits, nsPerHit float64
}

// probeLoss says, per uprobe program, where it sits and what the receiver would lose without
// it: the argument for each hit a request pays (issue #22).
var probeLoss = map[string]string{
	"func_entry":          "entry of a configured function (after its stack bound check). Without it: no span for the function, so no prompt/inference/tool role, arguments or parent for the work under it",
	"func_return":         "each RET of a configured function (one hit per call). Without it: a call ends only when a caller returns, its goroutine is reused or the process exits: no duration, and the goroutine's later work lands under it",
	"go_newproc1_ret":     "runtime.newproc1's RETs, one hit per goroutine started (the creator read as g0.m.curg). Without it: work a goroutine does for its creator (net/http's dialer, a tool's own goroutine) is a trace of its own, and a reused g's open calls are not closed",
	"go_newproc1":         "runtime.newproc1's entry, for a program without DWARF (saves the creator for go_newproc1_return). Without it: as go_newproc1_ret",
	"go_newproc1_return":  "runtime.newproc1's RETs, for a program without DWARF. Without it: as go_newproc1_ret",
	"go_tls_write":        "crypto/tls.(*Conn).Write at entry. Without it: no request plaintext: the inference span (model, prompt, tool results) and HTTP/MCP spans over TLS are gone",
	"go_tls_read":         "crypto/tls.(*Conn).Read at entry, only where Read does not keep c and b in its ABI spill slots (saves them for go_tls_read_ret). Without it: as go_tls_read_ret",
	"go_tls_read_ret":     "crypto/tls.(*Conn).Read's RETs. Without it: no response: no output tokens, finish reason or the model's tool calls, which the story needs",
	"go_tls_read_spilled": "crypto/tls.(*Conn).Read's RETs alone, c and b read from their ABI spill slots (one hit per Read instead of an entry and a RET; a Read in flight at attach time is seen too). Without it: no response: no output tokens, finish reason or the model's tool calls, which the story needs",
	"go_tls_close":        "crypto/tls.(*Conn).Close. Without it: a connection's state lives until its process exits or 2 minutes idle (not per request)",
	"ssl_entry":           "OpenSSL SSL_read/SSL_write entry. Without it: no plaintext of OpenSSL clients",
	"ssl_return":          "OpenSSL SSL_read/SSL_write return. Without it: as ssl_entry",
	"ssl_free":            "OpenSSL SSL_free. Without it: a connection's state lives until its process exits",
	"python_audit":        "CPython's audit USDT. Without it: no Python audit events or stacks",
}

func (w *hitWindow) measure(n int, request func(i int) error) (hitCounts, error) {
	s0 := statsOf(w.progs)
	rec0 := w.p.counter("agenttrail.ebpf.events.read")
	sock0 := w.p.counter("agenttrail.ebpf.sockets.records")
	spans0, sys0, names0 := w.counter.snapshot()
	for i := 0; i < n; i++ {
		if err := request(i); err != nil {
			return hitCounts{}, err
		}
	}
	time.Sleep(3 * w.flush)
	s1 := statsOf(w.progs)
	rec1 := w.p.counter("agenttrail.ebpf.events.read")
	sock1 := w.p.counter("agenttrail.ebpf.sockets.records")
	spans1, sys1, names1 := w.counter.snapshot()
	k := float64(n)
	var c hitCounts
	perProg := map[string]float64{}
	perNs := map[string]float64{} // in-BPF ns over the window
	for i, pr := range w.progs {
		runs := float64(s1[i].runs - s0[i].runs)
		if !w.agentUsesSSL && strings.HasPrefix(pr.name, "ssl_") {
			c.otherSSL += runs
			continue
		}
		if pr.typ == ebpf.Kprobe {
			c.hits += runs / k
			c.uprobeNs += float64(s1[i].ns-s0[i].ns) / k
			if runs > 0 {
				perProg[pr.name] += runs / k
				perNs[pr.name] += float64(s1[i].ns - s0[i].ns)
			}
		}
	}
	for name, v := range perProg {
		c.progs = append(c.progs, progHits{name: name, hits: v, nsPerHit: perNs[name] / (v * k)})
	}
	sort.Slice(c.progs, func(i, j int) bool { return c.progs[i].name < c.progs[j].name })
	var parts []string
	for name, v := range perProg {
		parts = append(parts, fmt.Sprintf("%s %.1f", name, v))
	}
	sort.Strings(parts)
	c.perProg = strings.Join(parts, ", ")
	c.records = float64(rec1-rec0) / k
	c.spans = float64(spans1-spans0) / k
	c.syscalls = float64(sys1-sys0) / k
	c.sockRecords = float64(sock1-sock0) / k
	var names []string
	for name, v := range names1 {
		if d := float64(v-names0[name]) / k; d > 0 {
			names = append(names, fmt.Sprintf("%s %.1f", name, d))
			if strings.HasPrefix(name, "send ") || strings.HasPrefix(name, "receive ") {
				c.sendSpans += d
			}
		}
	}
	sort.Strings(names)
	c.spanNames = strings.Join(names, ", ")
	return c, nil
}
