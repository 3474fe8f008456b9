// Package tls is the tracer of TLS plaintext: it probes OpenSSL's SSL_read/SSL_write (in
// configured libraries, in the libraries traced processes map, and in programs that export
// OpenSSL, such as Node) and Go's crypto/tls, feeds what traced processes send and receive to
// the HTTP connection tracker (internal/llm) and hands the exchanges it reassembles to
// httpspans: LLM API calls become inference spans, other HTTP requests client spans.
package tls

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tlsident"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/httpspans"
)

// Config configures the TLS plaintext probes (the receiver's `tls` key).
type Config struct {
	Enabled bool `mapstructure:"enabled"`
	// Libraries: OpenSSL libraries (file names looked up in the usual folders and in traced
	// processes' mappings, or absolute paths) whose SSL_write/SSL_read are probed.
	Libraries []string `mapstructure:"libraries"`
	// Go probes crypto/tls.(*Conn).Write/Read in traced Go programs.
	Go bool `mapstructure:"go"`
	// CaptureBytes bounds the plaintext read per TLS call.
	CaptureBytes int `mapstructure:"capture_bytes"`
	// CaptureMessageContent exports the (redacted) messages sent to and received from models.
	CaptureMessageContent bool `mapstructure:"capture_message_content"`
	// MaxConnectionBuffer bounds the bytes buffered per connection and direction.
	MaxConnectionBuffer int `mapstructure:"max_connection_buffer"`
	// MaxTotalBuffer bounds the message bytes held across all connections.
	MaxTotalBuffer int `mapstructure:"max_total_buffer"`
}

// Tracer attaches the TLS plaintext probes and turns what they capture into spans. Reader
// goroutine (and Start) only.
type Tracer struct {
	env     tracer.Env
	cfg     Config
	emitter *httpspans.Emitter
	tracker *llm.Tracker
	limited metric.Int64Counter // what the tracker's bounds cut, by reason
	// programs: what each program or library file read holds for TLS (its OpenSSL functions,
	// a static TLS library), by fileID, at most maxPrograms (programsRead counts).
	programs     *programCache
	programsRead metric.Int64Counter
	// attached: OpenSSL libraries and programs tried, by "dev:inode" (uprobes are per inode):
	// whether their probes are attached. A later process of the same file is covered already.
	attached map[string]bool
	// staticProbes: programs of a known static build (Bun's BoringSSL) tried, by "dev:inode":
	// why their probes could not be attached, nil when they are.
	staticProbes map[string]error
	goFiles      map[string]bool // Go programs tried, by "dev:inode": whether crypto/tls is probed
	libNames     map[string]bool // base names of the configured libraries
	// unseenReads: Go reads that were in flight when the probes were attached, by goroutine,
	// until the goroutine's next read names the connection they belong to.
	unseenReads map[goroutineKey]unseenRead
	lastStats   llm.Stats // the tracker's counters as last reported
}

var _ tracer.Tracer = (*Tracer)(nil)

type goroutineKey struct {
	pid uint32
	g   uint64
}

type unseenRead struct {
	bytes int
	at    time.Time
}

// maxUnseenReads bounds unseenReads: one per connection a Go program had open at attach time.
const maxUnseenReads = 4096

// New returns the TLS tracer.
func New(env tracer.Env, cfg Config) (*Tracer, error) {
	limited, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.tls.limited",
		metric.WithDescription("TLS traffic cut or given up by the receiver's memory bounds, by reason."), metric.WithUnit("{event}"))
	if err != nil {
		return nil, err
	}
	programsRead, err := env.Telemetry.Meter.Int64Counter("agenttrail.ebpf.tls.programs",
		metric.WithDescription("Program and library files set up for TLS: read for their TLS functions, answered from memory, or forgotten at the bound, by result."),
		metric.WithUnit("{file}"))
	if err != nil {
		return nil, err
	}
	t := &Tracer{
		env: env, cfg: cfg, limited: limited, programsRead: programsRead,
		emitter:      &httpspans.Emitter{Builder: env.Builder, Redactor: env.Redactor, CaptureContent: cfg.CaptureMessageContent},
		tracker:      llm.NewTracker(llm.Options{MaxBuffer: cfg.MaxConnectionBuffer, MaxTotalBuffer: cfg.MaxTotalBuffer}),
		programs:     newProgramCache(maxPrograms),
		attached:     map[string]bool{},
		staticProbes: map[string]error{},
		goFiles:      map[string]bool{},
		libNames:     map[string]bool{},
		unseenReads:  map[goroutineKey]unseenRead{},
	}
	for _, l := range cfg.Libraries {
		t.libNames[filepath.Base(l)] = true
	}
	return t, nil
}

var (
	headTLS = int(unsafe.Offsetof(probes.TLSEvent{}.Data))
	sizeTLS = tracer.SizeOf[probes.TLSEvent]()
)

func (t *Tracer) Name() string { return "tls" }

// Kinds: TLS records are sent only as far as their data was captured.
func (t *Tracer) Kinds() []tracer.Kind {
	return []tracer.Kind{{Kind: probes.KindTLSData, Name: "tls_data", Min: headTLS, Full: sizeTLS, Handle: t.onData}}
}

// Start probes the configured libraries as this host sees them.
func (t *Tracer) Start() {
	for _, lib := range t.cfg.Libraries {
		path, err := tracer.FindLibrary(lib)
		if err != nil {
			t.env.Logger.Info("TLS library not found on this host; it is probed where traced processes map it", zap.String("library", lib))
			continue
		}
		t.attachOpenSSL(path)
	}
}

// AttachBinary probes an executable target's crypto/tls (Go) or its own OpenSSL (Node) before
// any of its processes starts, so that they are seen from their first call. A process's
// program is set up in SetupProcess.
func (t *Tracer) AttachBinary(b tracer.Binary) error {
	if b.PID != 0 {
		return nil
	}
	if t.cfg.Go {
		t.attachGo(b.Path)
	}
	if f, err := openFile(b.Path); err == nil {
		_, _ = t.attachEmbeddedOpenSSL(f, t.program(f)) // Node: its own OpenSSL; a problem is told per process
		_ = f.Close()
	}
	return nil
}

func (t *Tracer) countProgram(result string) {
	t.programsRead.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// Waiting: responses read until their connection closes, and idle connections, end with time.
func (t *Tracer) Waiting() bool { return t.tracker.Connections() > 0 }

// Housekeeping completes responses read until close, forgets idle connections and reports
// what the tracker's bounds cut.
func (t *Tracer) Housekeeping(now time.Time) {
	t.env.Builder.ExpireInferred(now) // the inferred tool spans' time bound, sockets tracer or not
	t.emit(t.tracker.Flush(now, 2*time.Second))
	t.emit(t.tracker.Expire(now))
	st := t.tracker.Stats()
	t.recordStats(t.lastStats, st)
	t.lastStats = st
}

// Close sends the exchanges still waiting for their end as they are.
func (t *Tracer) Close() error {
	t.emit(t.tracker.Expire(time.Now().Add(1000 * time.Hour)))
	return nil
}

// ProcessGone ends the process's connections and forgets its in-flight Go reads.
func (t *Tracer) ProcessGone(pid uint32) {
	t.emit(t.tracker.CloseProcess(pid))
	for k := range t.unseenReads {
		if k.pid == pid {
			delete(t.unseenReads, k)
		}
	}
}

// Intercept offers each exchange to f before it is made a span (httpspans.Emitter.Intercept):
// MCP over HTTPS becomes MCP spans.
func (t *Tracer) Intercept(f func(llm.Exchange, *httpspans.Meta) bool) { t.emitter.Intercept = f }

// RecordToolCalls has the tracer's inference spans note the model's tool calls in tc, for the
// MCP spans of tracers/plaintext to carry the model's tool-call id.
func (t *Tracer) RecordToolCalls(tc *httpspans.ToolCalls) { t.emitter.ToolCalls = tc }

func (t *Tracer) emit(exs []llm.Exchange) {
	for _, ex := range exs {
		t.emitter.Emit(ex)
	}
}

// recordStats adds what the tracker's bounds cut since the last report.
func (t *Tracer) recordStats(before, after llm.Stats) {
	add := func(reason string, b, a uint64) {
		if a > b {
			t.limited.Add(tracer.Ctx, int64(a-b), metric.WithAttributes(attribute.String("reason", reason)))
		}
	}
	add("connection_limit", before.ConnectionsEvicted, after.ConnectionsEvicted)
	add("total_buffer", before.BodiesCut, after.BodiesCut)
	add("pending_requests", before.RequestsGivenUp, after.RequestsGivenUp)
	add("total_buffer", before.ConnectionsCut, after.ConnectionsCut)
	add("connection_buffer", before.BodiesOverBuffer, after.BodiesOverBuffer)
	add("decompressed_size", before.DecodedCut, after.DecodedCut)
	add("header_size", before.HeadersCut, after.HeadersCut)
	add("http2_streams", before.StreamsGivenUp, after.StreamsGivenUp)
}

// sslFunctions lists the reads first: they are attached in this order, and a request whose
// write was captured must not have its response read by a probe not yet attached, or every later
// response on the connection would be paired with the request before its own.
var sslFunctions = []struct {
	symbol string
	cookie uint64
}{
	{"SSL_read", probes.SSLCookieRead},
	{"SSL_read_ex", probes.SSLCookieRead | probes.SSLCookieEx},
	{"SSL_write", 0},
	{"SSL_write_ex", probes.SSLCookieEx},
}

// attachOpenSSL probes SSL_write/SSL_read (and the _ex forms, where the library has them),
// once per file; it reports whether they are probed.
func (t *Tracer) attachOpenSSL(path string) bool {
	f, err := openFile(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if probed, tried := t.attached[f.id.key()]; tried {
		return probed // a program's OpenSSL, or the same library mapped by another process
	}
	return t.attachSSL(f, t.program(f))
}

// attachSSL attaches the OpenSSL probes at the offsets p's dynamic symbols gave, once per
// inode. By offset, not by name: cilium/ebpf would read the file's whole symbol tables again.
func (t *Tracer) attachSSL(f *file, p *program) bool {
	key, path := f.id.key(), f.path
	if probed, tried := t.attached[key]; tried {
		return probed
	}
	t.attached[key] = false
	if p.sslErr != nil {
		t.warn("cannot read the TLS library's dynamic symbols", path, p.sslErr)
		return false
	}
	if !p.ssl.exports() {
		t.warn("no SSL_write/SSL_read in the TLS library", path, nil)
		return false
	}
	ex, err := link.OpenExecutable(f.attachPath())
	if err != nil {
		t.warn("cannot open the TLS library", path, err)
		return false
	}
	k := t.env.Kernel
	n := 0
	for _, fn := range sslFunctions {
		off, ok := p.ssl[fn.symbol]
		if !ok {
			continue // OpenSSL before 1.1.1 has no _ex forms
		}
		opts := &link.UprobeOptions{Address: off, Cookie: fn.cookie}
		l, err := ex.Uprobe(fn.symbol, k.SSLEntry(), opts)
		if err != nil {
			t.warn("cannot attach the probe of "+fn.symbol, path, err)
			continue
		}
		r, err := ex.Uretprobe(fn.symbol, k.SSLReturn(), opts)
		if err != nil {
			_ = l.Close()
			t.warn("cannot attach the return probe of "+fn.symbol, path, err)
			continue
		}
		k.AddLink(l)
		k.AddLink(r)
		n++
	}
	if n == 0 {
		return false
	}
	t.attached[key] = true
	// SSL_free ends the connection: what it had pending comes out now, and the next connection
	// allocated at the same address starts afresh (not as the freed one's continuation).
	const noFree = "cannot probe SSL_free: a connection ends only when its process exits or after 2 minutes idle"
	if off, ok := p.ssl["SSL_free"]; !ok {
		t.warn(noFree, path, errors.New("not defined"))
	} else if l, err := ex.Uprobe("SSL_free", k.SSLFree(), &link.UprobeOptions{Address: off}); err != nil {
		t.warn(noFree, path, err)
	} else {
		k.AddLink(l)
	}
	t.env.Logger.Debug("TLS library probed", zap.String("library", path), zap.Int("functions", n))
	return true
}

// attachEmbeddedOpenSSL probes OpenSSL linked into an executable that exports it, as Node and
// Electron do (their addons link against the program's own SSL_* symbols): the same probes as a
// tls.libraries library, without configuration, wherever the program is installed. It reports
// whether the executable's OpenSSL is probed, and why not when it has one or could not be read;
// a program without OpenSSL is neither.
func (t *Tracer) attachEmbeddedOpenSSL(f *file, p *program) (bool, error) {
	switch {
	case p.sslErr != nil:
		return false, fmt.Errorf("cannot read the program's dynamic symbols for OpenSSL: %w", p.sslErr)
	case !p.ssl.exports():
		return false, nil
	case !t.attachSSL(f, p):
		return false, errors.New("the program exports OpenSSL, which could not be probed")
	}
	return true, nil
}

// staticResult: what a program that exports no OpenSSL carries (tlsident): a known build probed
// (probed, with its name), TLS libraries that are not read (unsupported), or the file could not
// be read (err).
type staticResult struct {
	probed    string // the build probed ("Bun 1.4.4 linux-x64"), "" when none
	libraries []tlsident.Library
	describe  string // "rustls 0.23.40 (static)"
	refused   string // why a BoringSSL was not probed
	err       error
}

// attachStatic looks for a TLS library linked into the program at path without exported
// symbols (read once per program), and probes a known build's SSL_write and SSL_read
// (tlsident: Bun 1.4.4's BoringSSL), once per inode. Any other build, and rustls, is not
// probed: the result names it.
func (t *Tracer) attachStatic(f *file, p *program) staticResult {
	res, err := t.staticOf(f, p)
	if err != nil {
		return staticResult{err: err}
	}
	r := staticResult{libraries: res.Libraries, describe: res.Describe(), refused: res.Refused}
	if res.Probe == nil {
		return r
	}
	key := f.id.key()
	err, tried := t.staticProbes[key]
	if !tried {
		if err = t.attachAt(f.attachPath(), res.Probe); err != nil {
			t.warn("cannot probe "+res.Probe.Build+"'s SSL_write/SSL_read", f.path, err)
		} else {
			t.env.Logger.Debug("static TLS library probed", zap.String("program", f.path), zap.String("build", res.Probe.Build))
		}
		t.staticProbes[key] = err
	}
	if err != nil {
		r.err = fmt.Errorf("%s: its SSL_write/SSL_read could not be probed: %w", res.Probe.Build, err)
		return r
	}
	r.probed = res.Probe.Build
	return r
}

// attachAt probes SSL_read and SSL_write (OpenSSL's ABI, BoringSSL's too) at the file offsets
// a known build's table gives: the same programs as a library's, reads first (see
// sslFunctions). A connection of such a build ends at its process's exit or after 2 minutes
// idle: its SSL_free is not located.
func (t *Tracer) attachAt(path string, p *tlsident.Probe) error {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return err
	}
	var links []link.Link
	for _, f := range []struct {
		name   string
		off    uint64
		cookie uint64
	}{{"SSL_read", p.Read, probes.SSLCookieRead}, {"SSL_write", p.Write, 0}} {
		opts := &link.UprobeOptions{Address: f.off, Cookie: f.cookie}
		l, err := ex.Uprobe(f.name, t.env.Kernel.SSLEntry(), opts)
		if err != nil {
			closeLinks(links)
			return fmt.Errorf("%s: %w", f.name, err)
		}
		links = append(links, l)
		r, err := ex.Uretprobe(f.name, t.env.Kernel.SSLReturn(), opts)
		if err != nil {
			closeLinks(links)
			return fmt.Errorf("%s return: %w", f.name, err)
		}
		links = append(links, r)
	}
	for _, l := range links {
		t.env.Kernel.AddLink(l)
	}
	return nil
}

func closeLinks(links []link.Link) {
	for _, l := range links {
		_ = l.Close()
	}
}

// unsupportedCapture is agenttrail.capture.tls for a program whose TLS libraries are all
// unsupported: "not supported: rustls (static, 0.23.40)", the library names first so that the
// metric's tls attribute (Class) keeps them and drops the versions.
func unsupportedCapture(libs []tlsident.Library) string {
	parts := make([]string, 0, len(libs))
	for _, l := range libs {
		p := l.Name + " (static"
		if l.Version != "" {
			p += ", " + l.Version
		}
		parts = append(parts, p+")")
	}
	return "not supported: " + strings.Join(parts, ", ")
}

// ExportsOpenSSL says whether the ELF file at path defines SSL_read and SSL_write in its dynamic
// symbol table: OpenSSL (or a fork with its ABI) that uprobes on those names read.
func ExportsOpenSSL(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return exportsOpenSSLFrom(f)
}

// exportsOpenSSLFrom reads an ELF file chosen by a traced process: hostile (opensslOffsets).
func exportsOpenSSLFrom(r io.ReaderAt) (bool, error) {
	offs, err := opensslOffsets(r)
	return err == nil && offs.exports(), err
}

func (t *Tracer) warn(msg, path string, err error) {
	t.env.Telemetry.AttachFailures.Add(tracer.Ctx, 1)
	fields := []zap.Field{zap.String("path", path)}
	what := "TLS (" + path + "): " + msg
	if err != nil {
		fields = append(fields, zap.Error(err))
		what += ": " + err.Error()
	}
	t.env.Logger.Warn(msg, fields...)
	t.env.Problems.Add(0, what)
}

// attachGo probes crypto/tls.(*Conn).Write at entry, (*Conn).Read at entry and every RET, and
// (*Conn).Close at entry, once per file; it reports whether Write and Read are probed.
func (t *Tracer) attachGo(path string) bool {
	key, ok := tracer.FileKey(path)
	if !ok {
		return false
	}
	// Not t.attached: a program looked at for Go first may export OpenSSL (Node).
	if probed, tried := t.goFiles[key]; tried {
		return probed
	}
	t.goFiles[key] = false
	bin, err := elfinfo.Open(path)
	if err != nil {
		return false
	}
	defer bin.Close()
	if !bin.IsGo {
		return false
	}
	write, err := bin.Function("crypto/tls.(*Conn).Write")
	if err != nil {
		return false // the program does not use crypto/tls
	}
	read, err := bin.Function("crypto/tls.(*Conn).Read")
	if err != nil {
		return false
	}
	woff, err1 := bin.FileOffset(write.Address)
	roff, err2 := bin.FileOffset(read.Address)
	rets, err3 := bin.ReturnOffsets(read)
	// Write's plaintext is sent at entry: the probe goes after the stack bound check, or a call
	// that grows its stack (runtime.morestack restarts it from the first instruction) would send
	// the request's bytes twice. Read's and Close's entry probes only refire harmlessly.
	wentry, err4 := bin.EntryOffset(write)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		t.warn("cannot locate crypto/tls in the Go program", path, errors.Join(err1, err2, err3, err4))
		return false
	}
	woff += wentry
	ex, err := link.OpenExecutable(path)
	if err != nil {
		t.warn("cannot open the Go program", path, err)
		return false
	}
	k := t.env.Kernel
	// Reads first (see sslFunctions): a captured request's response must be captured too.
	// Where Read keeps c and b in their spill slots from its prologue on, its RETs alone read
	// them: one uprobe hit per Read, not two (a hit's trap is most of a probe's cost).
	var links []link.Link
	if spilled, _ := bin.SpillsArgsAtEntry(read, 2); spilled {
		links, err = attachRets(ex, read.Name, roff, rets, k.GoTLSReadSpilled())
	} else {
		links, err = tracer.AttachProbes(path, read.Name, roff, 0, true, rets, k.GoTLSRead(), k.GoTLSReadRet())
	}
	if err != nil {
		t.warn("cannot probe crypto/tls.(*Conn).Read", path, err)
		return false
	}
	for _, l := range links {
		k.AddLink(l)
	}
	wl, err := ex.Uprobe(write.Name, k.GoTLSWrite(), &link.UprobeOptions{Address: woff})
	if err != nil {
		t.warn("cannot probe crypto/tls.(*Conn).Write", path, err)
		return false
	}
	k.AddLink(wl)
	t.goFiles[key] = true
	if cl, err := bin.Function("crypto/tls.(*Conn).Close"); err == nil {
		coff, err := bin.FileOffset(cl.Address)
		if err == nil {
			var l link.Link
			if l, err = ex.Uprobe(cl.Name, k.GoTLSClose(), &link.UprobeOptions{Address: coff}); err == nil {
				k.AddLink(l)
			}
		}
		if err != nil {
			t.warn("cannot probe crypto/tls.(*Conn).Close: a connection ends only when its process exits or after 2 minutes idle", path, err)
		}
	}
	return true
}

// attachRets attaches prog at each of rets (offsets from offset) of symbol; all or none.
func attachRets(ex *link.Executable, symbol string, offset uint64, rets []uint64, prog *ebpf.Program) ([]link.Link, error) {
	var links []link.Link
	for _, off := range rets {
		l, err := ex.Uprobe(symbol, prog, &link.UprobeOptions{Address: offset, Offset: off})
		if err != nil {
			for _, l := range links {
				_ = l.Close()
			}
			return nil, fmt.Errorf("attach return probe at +%#x: %w", off, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// SetupProcess probes what a traced process uses for TLS: its Go program's crypto/tls, the
// OpenSSL its program exports (Node), and configured OpenSSL libraries it maps from files this
// host did not probe (a container's). It says how the process's TLS plaintext is read
// (agenttrail.capture.tls: "go", "openssl", "openssl (<program>)", several, or "none") and what
// TLS library it maps that is not read.
func (t *Tracer) SetupProcess(p *tracer.Process) {
	capture, missing := t.setupProcess(p.ProcInfo, p.IsGo)
	if c := p.Capture; c != nil {
		c.TLS = capture
		c.Missing = append(c.Missing, missing...)
	}
}

func (t *Tracer) setupProcess(info tracer.ProcInfo, isGo bool) (capture string, missing []string) {
	var found []string
	if isGo && t.cfg.Go && info.ExeFile != "" && t.attachGo(info.ExeFile) {
		found = append(found, "go")
	}
	var static staticResult
	var exe *file
	var prog *program
	if !isGo && info.ExeFile != "" {
		var err error
		if exe, err = openFile(info.ExeFile); err == nil {
			defer exe.Close()
			// Another program than the one the receiver read the process as: it exec'd since
			// (a forked shell's child becoming node), and its exec's set-up follows.
			if info.Inode == (probes.InodeKey{}) || exe.id.inode == info.Inode {
				prog = t.program(exe)
			}
		}
	}
	if prog != nil {
		probed, err := t.attachEmbeddedOpenSSL(exe, prog)
		switch {
		case probed:
			found = append(found, "openssl ("+info.Exe+")")
		case err != nil:
			missing = append(missing, "tls: "+info.Exe+": "+tracer.ShortError(err))
		default:
			// No exported OpenSSL: maybe one linked in statically without names (Bun,
			// Deno, Rust programs).
			static = t.attachStatic(exe, prog)
			switch {
			case static.probed != "":
				found = append(found, "boringssl ("+info.Exe+", "+static.probed+")")
			case static.err != nil:
				missing = append(missing, "tls: "+info.Exe+": "+tracer.ShortError(static.err))
			case len(static.libraries) > 0:
				why := "TLS library not supported: " + static.describe
				if static.refused != "" {
					why += "; " + static.refused
				}
				missing = append(missing, "tls: "+tracer.ShortError(errors.New(why)))
			}
		}
	}
	// withStatic: a program whose only TLS libraries are linked in and not read says so.
	withStatic := func(found []string) string {
		if len(found) == 0 && static.probed == "" && len(static.libraries) > 0 {
			return unsupportedCapture(static.libraries)
		}
		return captureOf(found)
	}
	pidDir := filepath.Join(t.env.ProcRoot, strconv.FormatUint(uint64(info.PID), 10))
	maps, _, err := symbolize.ReadMaps(filepath.Join(pidDir, "maps"))
	if err != nil {
		return withStatic(found), missing
	}
	openssl := false
	seen := map[string]bool{}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || seen[f[5]] {
			continue
		}
		seen[f[5]] = true
		if f[5] == info.Exe && len(found) > 0 && found[len(found)-1] == "openssl ("+info.Exe+")" {
			continue // the program's own OpenSSL, probed above (or configured in tls.libraries as well)
		}
		base := filepath.Base(f[5])
		switch {
		case t.libNames[base]:
			if t.attachOpenSSL(filepath.Join(pidDir, "root", f[5])) {
				openssl = true
			} else if len(missing) < maxCaptureMissing {
				missing = append(missing, "tls: "+f[5]+" could not be probed")
			}
		case isTLSLibrary(base) && len(missing) < maxCaptureMissing:
			missing = append(missing, "tls: "+f[5]+" is mapped but not in tls.libraries")
		}
	}
	if openssl {
		found = append(found, "openssl")
	}
	return withStatic(found), missing
}

// maxCaptureMissing bounds the TLS entries of agenttrail.capture.missing.
const maxCaptureMissing = 8

// Class is a capture.tls value without the program paths it names, for metric attributes:
// "openssl (/usr/bin/node)" counts as "openssl".
func Class(capture string) string {
	var b strings.Builder
	for {
		i := strings.Index(capture, " (")
		if i < 0 {
			break
		}
		b.WriteString(capture[:i])
		// A path may hold "," and ")": the group ends at the first ")," or else at the last ")".
		j := strings.LastIndex(capture[i:], ")")
		if k := strings.Index(capture[i:], "),"); k >= 0 {
			j = k
		}
		if j < 0 {
			return b.String()
		}
		capture = capture[i+j+1:]
	}
	b.WriteString(capture)
	return b.String()
}

func captureOf(found []string) string {
	if len(found) == 0 {
		return tracer.CaptureNone
	}
	return strings.Join(found, ",")
}

// isTLSLibrary: TLS libraries whose plaintext the receiver could read if configured (OpenSSL's
// libssl under another name or version) or cannot read at all (GnuTLS, NSS, BoringSSL).
func isTLSLibrary(base string) bool {
	for _, p := range []string{"libssl.so", "libssl3.so", "libgnutls.so", "libnss3.so", "libboringssl"} {
		if strings.HasPrefix(base, p) {
			return true
		}
	}
	return false
}

// onData feeds one TLS call's plaintext to the connection tracker.
func (t *Tracer) onData(h spans.Header, rec []byte) string {
	e := tracer.As[probes.TLSEvent](rec)
	switch {
	case e.Source != probes.TLSOpenSSL && e.Source != probes.TLSGo:
		return "tls_source"
	case e.Direction != probes.TLSWrite && e.Direction != probes.TLSRead && e.Direction != probes.TLSClose:
		return "tls_direction"
	case e.Captured > e.Len || int(e.Captured) > len(rec)-headTLS:
		return "tls_length" // more captured than the call moved, or than the record holds
	case e.Flags&probes.TLSTail != 0 && (e.Tail > e.Captured || e.Direction != probes.TLSWrite):
		return "tls_length" // a tail longer than what was captured, or on a read
	}
	t.seen(h.PID, e.Source)
	if e.Direction == probes.TLSClose {
		t.emit(t.tracker.Close(llm.Key{PID: h.PID, Conn: e.Conn}))
		return ""
	}
	if e.Source == probes.TLSGo && e.Direction == probes.TLSRead {
		lost, unseen := t.goRead(h, e)
		t.emit(lost)
		if unseen {
			return ""
		}
	}
	n := min(int(e.Captured), len(rec)-headTLS, len(e.Data))
	data := e.Data[:n]
	// A write longer than tls.capture_bytes: its first bytes, then its last (the tracker
	// accounts for the bytes between).
	var tail []byte
	if e.Flags&probes.TLSTail != 0 {
		data, tail = data[:n-int(e.Tail)], data[n-int(e.Tail):]
	}
	meta := &httpspans.Meta{Hdr: h, TLSLibrary: sourceName(e.Source)}
	if t.env.Stacks != nil {
		meta.Stack = t.env.Stacks.Take(h)
	}
	if e.Direction == probes.TLSWrite {
		t.env.Builder.ModelRequest(h, e.Conn) // the next model call ends its inferred tool spans first
	}
	if e.Source == probes.TLSGo {
		meta.Parent = t.env.Builder.ParentForHandoff(h, spans.RoleInference)
	} else {
		meta.Parent = t.env.Builder.ParentOf(h)
	}
	dir := llm.Write
	if e.Direction == probes.TLSRead {
		dir = llm.Read
	}
	t.emit(t.tracker.DataTail(llm.Key{PID: h.PID, Conn: e.Conn}, dir, data, tail, int(e.Len), h.Time, meta))
	return ""
}

// seen notes that TLS plaintext of a process was read although none of its libraries was found
// when it was set up (a library it loaded later, such as Python's ssl module's libssl).
func (t *Tracer) seen(pid uint32, source uint8) {
	if t.env.Processes == nil {
		return
	}
	if p := t.env.Processes.Process(pid); p != nil && p.Capture != nil && p.Capture.TLS == tracer.CaptureNone {
		p.Capture.TLS = sourceName(source)
	}
}

// goRead keeps a Go read that was in flight at attach time (unseen: it carries no data) until
// the same goroutine reads again: Go's HTTP client reads each connection from one goroutine, so
// that next read names the connection, which is told that a response went by unseen (lost: the
// request it answered, without a response).
func (t *Tracer) goRead(h spans.Header, e *probes.TLSEvent) (lost []llm.Exchange, unseen bool) {
	k := goroutineKey{pid: h.PID, g: h.Routine}
	if e.Flags&probes.TLSUnseen != 0 {
		reason := "tls_read_in_flight"
		if _, known := t.unseenReads[k]; !known && len(t.unseenReads) >= maxUnseenReads {
			reason = "tls_read_in_flight_untracked" // its connection may pair a response wrongly
		} else {
			t.unseenReads[k] = unseenRead{bytes: int(e.Len), at: h.Time}
		}
		t.env.Telemetry.Calls.Add(tracer.Ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
		return nil, true
	}
	if u, ok := t.unseenReads[k]; ok {
		delete(t.unseenReads, k)
		lost = t.tracker.LostRead(llm.Key{PID: h.PID, Conn: e.Conn}, u.bytes, u.at)
	}
	return lost, false
}

func sourceName(s uint8) string {
	if s == probes.TLSGo {
		return "go"
	}
	return "openssl"
}
