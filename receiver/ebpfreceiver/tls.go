package ebpfreceiver

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/agenttrail/agenttrail/internal/redact"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/llm"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/symbolize"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tlsident"
)

// tlsSupport attaches the TLS plaintext probes and turns what they capture into spans: LLM API
// calls become inference spans, other HTTP/1.1 requests client spans, connections that are not
// HTTP/1.1 one span saying so. Reader goroutine only.
type tlsSupport struct {
	cfg      *Config
	kernel   *probes.Set
	logger   *zap.Logger
	tel      *telemetry
	redactor *redact.Redactor
	problems *attachProblems
	tracker  *llm.Tracker
	attached map[string]bool // OpenSSL libraries and programs tried, by "dev:inode": whether their probes are attached
	goFiles  map[string]bool // Go programs tried, by "dev:inode": whether crypto/tls is probed
	// embedded: executables looked at for OpenSSL exported from the program itself (Node,
	// Electron), by "dev:inode": whether it was found and probed.
	embedded map[string]embeddedResult
	// static: executables that export no OpenSSL, looked at for a TLS library linked in
	// statically (Bun's BoringSSL, rustls), by "dev:inode" (at most maxStatic).
	static   map[string]staticResult
	libNames map[string]bool // base names of the configured libraries
	// unseenReads: Go reads that were in flight when the probes were attached, by goroutine,
	// until the goroutine's next read names the connection they belong to.
	unseenReads map[goroutineKey]unseenRead
	lastStats   llm.Stats // the tracker's counters as last reported
}

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

// tlsMeta is what the receiver knew when a TLS call happened.
type tlsMeta struct {
	parent spans.Parent
	hdr    spans.Header
	stack  []spans.Frame
	source uint8
}

func newTLS(cfg *Config, kernel *probes.Set, logger *zap.Logger, tel *telemetry, red *redact.Redactor) *tlsSupport {
	t := &tlsSupport{
		cfg: cfg, kernel: kernel, logger: logger, tel: tel, redactor: red,
		tracker:     llm.NewTracker(llm.Options{MaxBuffer: cfg.TLS.MaxConnectionBuffer, MaxTotalBuffer: cfg.TLS.MaxTotalBuffer}),
		attached:    map[string]bool{},
		embedded:    map[string]embeddedResult{},
		static:      map[string]staticResult{},
		goFiles:     map[string]bool{},
		libNames:    map[string]bool{},
		unseenReads: map[goroutineKey]unseenRead{},
	}
	for _, l := range cfg.TLS.Libraries {
		t.libNames[filepath.Base(l)] = true
	}
	return t
}

// attachLibraries probes the configured libraries as this host sees them.
func (t *tlsSupport) attachLibraries() {
	for _, lib := range t.cfg.TLS.Libraries {
		path, err := findLibrary(lib)
		if err != nil {
			t.logger.Info("TLS library not found on this host; it is probed where traced processes map it", zap.String("library", lib))
			continue
		}
		t.attachOpenSSL(path)
	}
}

func fileKey(path string) (string, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", false
	}
	k := inodeKey(st)
	return fmt.Sprintf("%d:%d", k.Dev, k.Ino), true
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
func (t *tlsSupport) attachOpenSSL(path string) bool {
	key, ok := fileKey(path)
	if !ok {
		return false
	}
	if probed, tried := t.attached[key]; tried {
		return probed
	}
	t.attached[key] = false
	ex, err := link.OpenExecutable(path)
	if err != nil {
		t.warn("cannot open the TLS library", path, err)
		return false
	}
	n := 0
	for _, f := range sslFunctions {
		l, err := ex.Uprobe(f.symbol, t.kernel.SSLEntry(), &link.UprobeOptions{Cookie: f.cookie})
		if err != nil {
			continue // OpenSSL before 1.1.1 has no _ex forms
		}
		r, err := ex.Uretprobe(f.symbol, t.kernel.SSLReturn(), &link.UprobeOptions{Cookie: f.cookie})
		if err != nil {
			_ = l.Close()
			t.warn("cannot attach the return probe of "+f.symbol, path, err)
			continue
		}
		t.kernel.AddLink(l)
		t.kernel.AddLink(r)
		n++
	}
	if n == 0 {
		t.warn("no SSL_write/SSL_read in the TLS library", path, nil)
		return false
	}
	t.attached[key] = true
	// SSL_free ends the connection: what it had pending comes out now, and the next connection
	// allocated at the same address starts afresh (not as the freed one's continuation).
	if l, err := ex.Uprobe("SSL_free", t.kernel.SSLFree(), nil); err != nil {
		t.warn("cannot probe SSL_free: a connection ends only when its process exits or after 2 minutes idle", path, err)
	} else {
		t.kernel.AddLink(l)
	}
	t.logger.Debug("TLS library probed", zap.String("library", path), zap.Int("functions", n))
	return true
}

// attachEmbeddedOpenSSL probes OpenSSL linked into an executable that exports it, as Node and
// Electron do (their addons link against the program's own SSL_* symbols): the same probes as a
// tls.libraries library, without configuration, wherever the program is installed. It reports
// whether the executable's OpenSSL is probed, and why not when it has one or could not be read;
// a program without OpenSSL is neither.
func (t *tlsSupport) attachEmbeddedOpenSSL(path string) (bool, error) {
	key, ok := fileKey(path)
	if !ok {
		return false, nil
	}
	if r, tried := t.embedded[key]; tried {
		return r.probed, r.err
	}
	var r embeddedResult
	found, err := exportsOpenSSL(path)
	switch {
	case err != nil:
		r.err = fmt.Errorf("cannot read the program's dynamic symbols for OpenSSL: %w", err)
	case found:
		if r.probed = t.attachOpenSSL(path); !r.probed {
			r.err = errors.New("the program exports OpenSSL, which could not be probed")
		}
	}
	t.embedded[key] = r
	return r.probed, r.err
}

type embeddedResult struct {
	probed bool
	err    error
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

// maxStatic bounds the programs remembered in tlsSupport.static: a host that runs more distinct
// programs reads a program's strings again after the map starts over.
const maxStatic = 4096

// attachStatic looks for a TLS library linked into the program at path without exported
// symbols, and probes a known build's SSL_write and SSL_read (tlsident: Bun 1.4.4's BoringSSL),
// once per file. Any other build, and rustls, is not probed: the result names it.
func (t *tlsSupport) attachStatic(path string) staticResult {
	key, ok := fileKey(path)
	if !ok {
		return staticResult{}
	}
	if r, tried := t.static[key]; tried {
		return r
	}
	if len(t.static) >= maxStatic {
		clear(t.static)
	}
	r := t.identifyStatic(path)
	t.static[key] = r
	return r
}

func (t *tlsSupport) identifyStatic(path string) staticResult {
	f, err := os.Open(path)
	if err != nil {
		return staticResult{err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return staticResult{err: err}
	}
	id, err := tlsident.Identify(f, st.Size())
	if err != nil {
		return staticResult{err: fmt.Errorf("cannot read the program for a static TLS library: %w", err)}
	}
	r := staticResult{libraries: id.Libraries, describe: id.Describe(), refused: id.Refused}
	if id.Probe == nil {
		return r
	}
	if err := t.attachAt(path, id.Probe); err != nil {
		t.warn("cannot probe "+id.Probe.Build+"'s SSL_write/SSL_read", path, err)
		r.err = fmt.Errorf("%s: its SSL_write/SSL_read could not be probed: %w", id.Probe.Build, err)
		return r
	}
	r.probed = id.Probe.Build
	t.logger.Debug("static TLS library probed", zap.String("program", path), zap.String("build", id.Probe.Build))
	return r
}

// attachAt probes SSL_read and SSL_write (OpenSSL's ABI, BoringSSL's too) at the file offsets
// a known build's table gives: the same programs as a library's, reads first (see
// sslFunctions). A connection of such a build ends at its process's exit or after 2 minutes
// idle: its SSL_free is not located.
func (t *tlsSupport) attachAt(path string, p *tlsident.Probe) error {
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
		l, err := ex.Uprobe(f.name, t.kernel.SSLEntry(), opts)
		if err != nil {
			closeLinks(links)
			return fmt.Errorf("%s: %w", f.name, err)
		}
		links = append(links, l)
		r, err := ex.Uretprobe(f.name, t.kernel.SSLReturn(), opts)
		if err != nil {
			closeLinks(links)
			return fmt.Errorf("%s return: %w", f.name, err)
		}
		links = append(links, r)
	}
	for _, l := range links {
		t.kernel.AddLink(l)
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
// metric's tls attribute (tlsClass) keeps them and drops the versions.
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

// exportsOpenSSL says whether the ELF file at path defines SSL_read and SSL_write in its dynamic
// symbol table: OpenSSL (or a fork with its ABI) that uprobes on those names read.
func exportsOpenSSL(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return exportsOpenSSLFrom(f)
}

// exportsOpenSSLFrom reads an ELF file chosen by a traced process: hostile. The symbol table is
// bounded before it is read and debug/elf's panics are recovered.
func exportsOpenSSLFrom(r io.ReaderAt) (bool, error) {
	read, write := false, false
	err := elfinfo.Guard(func() error {
		f, err := elf.NewFile(r)
		if err != nil {
			return err
		}
		if err := elfinfo.CheckSymbols(f, elf.SHT_DYNSYM); err != nil {
			return err
		}
		syms, err := f.DynamicSymbols()
		if err != nil {
			return nil // no dynamic symbols: a static program
		}
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Value == 0 {
				continue // imported (a program linked against libssl), not defined here
			}
			switch s.Name {
			case "SSL_read":
				read = true
			case "SSL_write":
				write = true
			}
		}
		return nil
	})
	return read && write && err == nil, err
}

func (t *tlsSupport) warn(msg, path string, err error) {
	t.tel.attachFailures.Add(ctxBackground, 1)
	fields := []zap.Field{zap.String("path", path)}
	what := "TLS (" + path + "): " + msg
	if err != nil {
		fields = append(fields, zap.Error(err))
		what += ": " + err.Error()
	}
	t.logger.Warn(msg, fields...)
	t.problems.add(0, what)
}

// attachGo probes crypto/tls.(*Conn).Write at entry, (*Conn).Read at entry and every RET, and
// (*Conn).Close at entry, once per file; it reports whether Write and Read are probed.
func (t *tlsSupport) attachGo(path string) bool {
	key, ok := fileKey(path)
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
	if err1 != nil || err2 != nil || err3 != nil {
		t.warn("cannot locate crypto/tls in the Go program", path, fmt.Errorf("%v %v %v", err1, err2, err3))
		return false
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		t.warn("cannot open the Go program", path, err)
		return false
	}
	// Reads first (see sslFunctions): a captured request's response must be captured too.
	links, err := attachProbes(path, read.Name, roff, 0, true, rets, t.kernel.GoTLSRead(), t.kernel.GoTLSReadRet())
	if err != nil {
		t.warn("cannot probe crypto/tls.(*Conn).Read", path, err)
		return false
	}
	for _, l := range links {
		t.kernel.AddLink(l)
	}
	wl, err := ex.Uprobe(write.Name, t.kernel.GoTLSWrite(), &link.UprobeOptions{Address: woff})
	if err != nil {
		t.warn("cannot probe crypto/tls.(*Conn).Write", path, err)
		return false
	}
	t.kernel.AddLink(wl)
	t.goFiles[key] = true
	if cl, err := bin.Function("crypto/tls.(*Conn).Close"); err == nil {
		coff, err := bin.FileOffset(cl.Address)
		if err == nil {
			var l link.Link
			if l, err = ex.Uprobe(cl.Name, t.kernel.GoTLSClose(), &link.UprobeOptions{Address: coff}); err == nil {
				t.kernel.AddLink(l)
			}
		}
		if err != nil {
			t.warn("cannot probe crypto/tls.(*Conn).Close: a connection ends only when its process exits or after 2 minutes idle", path, err)
		}
	}
	return true
}

// setupProcess probes what a traced process uses for TLS: its Go program's crypto/tls, the
// OpenSSL its program exports (Node), and configured OpenSSL libraries it maps from files this
// host did not probe (a container's). It says how the process's TLS plaintext is read
// (agenttrail.capture.tls: "go", "openssl", "openssl (<program>)", several, or "none") and what
// TLS library it maps that is not read.
func (t *tlsSupport) setupProcess(info procInfo, isGo bool) (capture string, missing []string) {
	var found []string
	if isGo && t.cfg.TLS.Go && info.exeFile != "" && t.attachGo(info.exeFile) {
		found = append(found, "go")
	}
	var static staticResult
	if !isGo && info.exeFile != "" {
		probed, err := t.attachEmbeddedOpenSSL(info.exeFile)
		switch {
		case probed:
			found = append(found, "openssl ("+info.exe+")")
		case err != nil:
			missing = append(missing, "tls: "+info.exe+": "+shortError(err))
		default:
			// No exported OpenSSL: maybe one linked in statically without names (Bun,
			// Deno, Rust programs).
			static = t.attachStatic(info.exeFile)
			switch {
			case static.probed != "":
				found = append(found, "boringssl ("+info.exe+", "+static.probed+")")
			case static.err != nil:
				missing = append(missing, "tls: "+info.exe+": "+shortError(static.err))
			case len(static.libraries) > 0:
				why := "TLS library not supported: " + static.describe
				if static.refused != "" {
					why += "; " + static.refused
				}
				missing = append(missing, "tls: "+shortError(errors.New(why)))
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
	maps, _, err := symbolize.ReadMaps(filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(info.pid), 10), "maps"))
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
		if f[5] == info.exe && len(found) > 0 && found[len(found)-1] == "openssl ("+info.exe+")" {
			continue // the program's own OpenSSL, probed above (or configured in tls.libraries as well)
		}
		base := filepath.Base(f[5])
		switch {
		case t.libNames[base]:
			if t.attachOpenSSL(filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(info.pid), 10), "root", f[5])) {
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

// tlsClass is a capture.tls value without the program paths it names, for metric attributes:
// "openssl (/usr/bin/node)" counts as "openssl".
func tlsClass(capture string) string {
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
		return captureNone
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

// onTLS feeds one TLS call's plaintext to the connection tracker.
func (r *ebpfReceiver) onTLS(h spans.Header, rec []byte) string {
	if r.tls == nil {
		return "tls_disabled"
	}
	e := as[probes.TLSEvent](rec)
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
	r.attacher.tlsSeen(h.PID, e.Source)
	if e.Direction == probes.TLSClose {
		for _, ex := range r.tls.tracker.Close(llm.Key{PID: h.PID, Conn: e.Conn}) {
			r.emitExchange(ex)
		}
		return ""
	}
	if e.Source == probes.TLSGo && e.Direction == probes.TLSRead {
		lost, unseen := r.tls.goRead(h, e)
		for _, ex := range lost {
			r.emitExchange(ex)
		}
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
	meta := &tlsMeta{hdr: h, source: e.Source}
	if r.python != nil {
		name := ""
		if t := r.attacher.traced[h.PID]; t != nil {
			name = t.cfg.Name
		}
		if st := r.python.take(h, name); st != nil {
			r.builder.ObserveStack(h, st.funcs, st.truncated)
			meta.stack = st.frames
		}
	}
	if e.Source == probes.TLSGo {
		meta.parent = r.builder.ParentForHandoff(h, spans.RoleInference)
	} else {
		meta.parent = r.builder.ParentOf(h)
	}
	dir := llm.Write
	if e.Direction == probes.TLSRead {
		dir = llm.Read
	}
	for _, ex := range r.tls.tracker.DataTail(llm.Key{PID: h.PID, Conn: e.Conn}, dir, data, tail, int(e.Len), h.Time, meta) {
		r.emitExchange(ex)
	}
	return ""
}

// goRead keeps a Go read that was in flight at attach time (unseen: it carries no data) until
// the same goroutine reads again: Go's HTTP client reads each connection from one goroutine, so
// that next read names the connection, which is told that a response went by unseen (lost: the
// request it answered, without a response).
func (t *tlsSupport) goRead(h spans.Header, e *probes.TLSEvent) (lost []llm.Exchange, unseen bool) {
	k := goroutineKey{pid: h.PID, g: h.Routine}
	if e.Flags&probes.TLSUnseen != 0 {
		reason := "tls_read_in_flight"
		if _, known := t.unseenReads[k]; !known && len(t.unseenReads) >= maxUnseenReads {
			reason = "tls_read_in_flight_untracked" // its connection may pair a response wrongly
		} else {
			t.unseenReads[k] = unseenRead{bytes: int(e.Len), at: h.Time}
		}
		t.tel.calls.Add(ctxBackground, 1, metric.WithAttributes(attribute.String("reason", reason)))
		return nil, true
	}
	if u, ok := t.unseenReads[k]; ok {
		delete(t.unseenReads, k)
		lost = t.tracker.LostRead(llm.Key{PID: h.PID, Conn: e.Conn}, u.bytes, u.at)
	}
	return lost, false
}

// tlsHousekeeping completes responses read until close, forgets idle connections and reports
// what the tracker's bounds cut.
func (r *ebpfReceiver) tlsHousekeeping(now time.Time) {
	if r.tls == nil {
		return
	}
	for _, ex := range r.tls.tracker.Flush(now, 2*time.Second) {
		r.emitExchange(ex)
	}
	for _, ex := range r.tls.tracker.Expire(now) {
		r.emitExchange(ex)
	}
	st := r.tls.tracker.Stats()
	r.telemetry.recordTLS(ctxBackground, r.tls.lastStats, st)
	r.tls.lastStats = st
}

func (r *ebpfReceiver) tlsProcessGone(pid uint32) {
	if r.tls == nil {
		return
	}
	for _, ex := range r.tls.tracker.CloseProcess(pid) {
		r.emitExchange(ex)
	}
	for k := range r.tls.unseenReads {
		if k.pid == pid {
			delete(r.tls.unseenReads, k)
		}
	}
}

func sourceName(s uint8) string {
	if s == probes.TLSGo {
		return "go"
	}
	return "openssl"
}

// emitExchange turns one reassembled exchange into a span under the call that made it.
func (r *ebpfReceiver) emitExchange(ex llm.Exchange) {
	if ex.Unparsed != "" {
		meta, _ := ex.Meta.(*tlsMeta)
		if meta == nil {
			return
		}
		r.builder.AddSpan(meta.parent, spans.SpanData{
			Name: "tls", Kind: ptrace.SpanKindClient, Start: meta.hdr.Time, End: meta.hdr.Time, TID: meta.hdr.TID,
			Attributes: func(m pcommon.Map) {
				m.PutStr("agenttrail.tls.library", sourceName(meta.source))
				m.PutStr("agenttrail.tls.unparsed", ex.Unparsed)
				m.PutInt("agenttrail.tls.bytes_written", ex.BytesWritten)
				m.PutInt("agenttrail.tls.bytes_read", ex.BytesRead)
				m.PutInt("thread.id", int64(meta.hdr.TID))
				putStack(m, meta.stack)
			},
		})
		return
	}
	if ex.Request == nil {
		return // a response whose request was not seen (attached mid-connection)
	}
	meta, _ := ex.Request.Meta.(*tlsMeta)
	if meta == nil {
		return
	}
	end := ex.Request.End
	if ex.Response != nil {
		end = ex.Response.End
	}
	if inf, ok := llm.Parse(ex); ok {
		r.builder.AddSpan(meta.parent, r.inferenceSpan(inf, meta, end))
		return
	}
	req, resp := ex.Request, ex.Response
	d := spans.SpanData{
		Name: req.Method, Kind: ptrace.SpanKindClient, Start: meta.hdr.Time, End: end, TID: meta.hdr.TID,
		Attributes: func(m pcommon.Map) {
			m.PutStr("http.request.method", req.Method)
			if v := llm.ProtocolVersion(req.Proto); v != "" {
				m.PutStr("network.protocol.version", v)
			}
			target, _ := r.redactor.String(req.Target)
			m.PutStr("url.path", target)
			putServer(m, req.Header.Get("Host"))
			m.PutInt("http.request.body.size", req.WireSize)
			if resp != nil {
				m.PutInt("http.response.status_code", int64(resp.Status))
				m.PutInt("http.response.body.size", resp.WireSize)
			}
			m.PutStr("agenttrail.tls.library", sourceName(meta.source))
			m.PutInt("thread.id", int64(meta.hdr.TID))
			putStack(m, meta.stack)
		},
	}
	if resp != nil && resp.Status >= 400 {
		d.Error = "HTTP " + strconv.Itoa(resp.Status)
	}
	r.builder.AddSpan(meta.parent, d)
}

func putStack(m pcommon.Map, frames []spans.Frame) {
	if len(frames) > 0 {
		m.PutStr("code.stacktrace", spans.FormatStack(frames))
	}
}

func putServer(m pcommon.Map, host string) {
	if host == "" {
		return
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		m.PutStr("server.address", h)
		if port, err := strconv.Atoi(p); err == nil {
			m.PutInt("server.port", int64(port))
		}
		return
	}
	m.PutStr("server.address", host)
}

// maxMessageContent bounds gen_ai.input.messages / gen_ai.output.messages.
const maxMessageContent = 64 << 10

func (r *ebpfReceiver) inferenceSpan(inf *llm.Inference, meta *tlsMeta, end time.Time) spans.SpanData {
	name := "chat"
	if inf.RequestModel != "" {
		name = "chat " + inf.RequestModel
	}
	d := spans.SpanData{Name: name, Kind: ptrace.SpanKindClient, Start: meta.hdr.Time, End: end, TID: meta.hdr.TID}
	switch {
	case inf.Status >= 400:
		d.Error = fmt.Sprintf("the model API answered HTTP %d", inf.Status)
	case inf.ErrorType != "":
		d.Error = "the model API answered an error: " + inf.ErrorType
	}
	content := r.cfg.TLS.CaptureMessageContent
	d.Attributes = func(m pcommon.Map) {
		m.PutStr("gen_ai.operation.name", "chat")
		m.PutStr("gen_ai.provider.name", inf.Provider)
		m.PutStr("agenttrail.role", string(spans.RoleInference))
		m.PutStr("agenttrail.llm.api", inf.API)
		if inf.RequestModel != "" {
			m.PutStr("gen_ai.request.model", inf.RequestModel)
		}
		if inf.ResponseModel != "" {
			m.PutStr("gen_ai.response.model", inf.ResponseModel)
		}
		if inf.ResponseID != "" {
			m.PutStr("gen_ai.response.id", inf.ResponseID)
		}
		if inf.HasInputTokens {
			m.PutInt("gen_ai.usage.input_tokens", inf.InputTokens)
		}
		if inf.HasOutputTokens {
			m.PutInt("gen_ai.usage.output_tokens", inf.OutputTokens)
		}
		if len(inf.FinishReasons) > 0 {
			putStrings(m, "gen_ai.response.finish_reasons", inf.FinishReasons)
		}
		if len(inf.ToolCalls) > 0 {
			names := make([]string, len(inf.ToolCalls))
			ids := make([]string, len(inf.ToolCalls))
			for i, tc := range inf.ToolCalls {
				names[i], ids[i] = tc.Name, tc.ID
			}
			putStrings(m, "agenttrail.tool_calls.names", names)
			putStrings(m, "agenttrail.tool_calls.ids", ids)
		}
		if inf.Stream {
			m.PutBool("agenttrail.llm.stream", true)
		}
		m.PutStr("http.request.method", inf.Method)
		if inf.ProtocolVersion != "" {
			m.PutStr("network.protocol.version", inf.ProtocolVersion)
		}
		path, _ := r.redactor.String(inf.Path)
		m.PutStr("url.path", path)
		putServer(m, inf.Host)
		if inf.Status != 0 {
			m.PutInt("http.response.status_code", int64(inf.Status))
		}
		switch {
		case inf.ErrorType != "":
			m.PutStr("error.type", inf.ErrorType)
		case inf.Status >= 400:
			m.PutStr("error.type", strconv.Itoa(inf.Status))
		}
		m.PutInt("http.request.body.size", inf.RequestBodySize)
		m.PutInt("http.response.body.size", inf.ResponseBodySize)
		if inf.RequestProblem != "" {
			m.PutStr("agenttrail.llm.request.unparsed", inf.RequestProblem)
		}
		if inf.ResponseProblem != "" {
			m.PutStr("agenttrail.llm.response.unparsed", inf.ResponseProblem)
		}
		m.PutStr("agenttrail.tls.library", sourceName(meta.source))
		m.PutInt("thread.id", int64(meta.hdr.TID))
		putStack(m, meta.stack)
		if content {
			r.putContent(m, "gen_ai.input.messages", inf.InputMessages)
			r.putContent(m, "gen_ai.output.messages", inf.OutputMessages)
		}
	}
	d.Events = func(evs ptrace.SpanEventSlice) {
		for _, tc := range inf.ToolCalls {
			ev := evs.AppendEmpty()
			ev.SetName("gen_ai.tool.call")
			ev.SetTimestamp(pcommon.NewTimestampFromTime(end))
			ev.Attributes().PutStr("gen_ai.tool.name", tc.Name)
			ev.Attributes().PutStr("gen_ai.tool.call.id", tc.ID)
		}
	}
	return d
}

// putContent exports message content through the redaction policy, bounded.
func (r *ebpfReceiver) putContent(m pcommon.Map, key, raw string) {
	if raw == "" {
		return
	}
	truncated := false
	if len(raw) > maxMessageContent {
		raw, truncated = raw[:maxMessageContent], true
	}
	v, counts, _ := r.redactor.Value(redact.PolicyRedacted, []byte(raw), truncated)
	m.PutStr(key, v)
	if n := counts.Total(); n > 0 {
		m.PutInt(key+".redactions", int64(n))
	}
}

func putStrings(m pcommon.Map, key string, vals []string) {
	s := m.PutEmptySlice(key)
	for _, v := range vals {
		s.AppendEmpty().SetStr(v)
	}
}
