// Package tlsident tells which TLS library a program carries inside its own executable when it
// exports none (no SSL_read/SSL_write in its dynamic symbols), and, for a build it knows, where
// that library's SSL_write and SSL_read are.
//
// Runtimes that agents run on link their TLS statically and strip it: Bun carries BoringSSL,
// Deno and Rust programs (the @openai/codex CLI) rustls, some Rust programs a vendored OpenSSL.
// Their functions have no names left, so a uprobe by name cannot find them. Two questions are
// answered separately:
//
//   - What is in there (Identify): from the strings the compiler leaves in the read-only data,
//     which are part of the program's behaviour and do not move between releases: the source
//     path BoringSSL's error macro records ("…/boringssl/ssl/ssl_lib.cc"), the crate path a
//     Rust panic location records ("…/rustls-0.23.40/src/…"), OpenSSL's version text ("OpenSSL
//     3.6.4 25 Aug 2026"), Bun's banner ("Bun v1.4.4 (Linux x64)"). This never guesses where a
//     function is; it names the library so that a user is told it is not read.
//   - Where SSL_write and SSL_read are (Known): only for builds in a table, keyed by the GNU
//     build ID, each entry derived from the real binary and checked again at run time by a
//     fingerprint (below). Any other build, a newer Bun included, is refused: a uprobe at a
//     wrong address in a stripped program would corrupt it, and a guess that reads the wrong
//     bytes would be worse than saying nothing is read.
//
// The fingerprint of a BoringSSL function is the first error it can raise: BoringSSL's
// OPENSSL_PUT_ERROR passes the library, the reason code, __FILE__ and __LINE__ to
// ERR_put_error, so both SSL_write and SSL_read (SSL_peek inlined) begin with a check whose
// failure loads "…/ssl/ssl_lib.cc", ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED (66) and the line of
// that check into the argument registers. A table entry records the reason and line; at run
// time the instruction bytes at the entry's offset must load exactly those, with the file
// pointer pointing at that path in the same binary. How an entry was found, for adding the next
// build: the calls of ERR_put_error that load the ssl_lib.cc path are listed (mov ecx, imm32 of
// the path in a non-PIE Bun), their reason and line read, and the lines matched with
// BoringSSL's ssl_lib.cc (SSL_write: the QUIC check, then SSL_R_UNINITIALIZED,
// SSL_R_SSL_HANDSHAKE_FAILURE and SSL_R_BAD_LENGTH; SSL_peek: the QUIC check); the function
// start is the instruction after the int3 padding before it, and the callers confirm it (Bun's
// uSockets calls SSL_read with a 512 KiB buffer). TestKnownBuilds checks every entry against
// the real binary installed by scripts/prereqs.sh, and the kernel test TestBunOpenAI reads
// real calls through it.
package tlsident

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// Library is a TLS library found inside a program.
type Library struct {
	Name    string // "BoringSSL", "rustls", "OpenSSL"
	Version string // as the program records it ("0.23.40"); "" when it does not
}

func (l Library) String() string {
	if l.Version == "" {
		return l.Name
	}
	return l.Name + " " + l.Version
}

// Result is what Identify found in one program.
type Result struct {
	// Libraries are the statically linked TLS libraries found, each once, in a fixed order
	// (BoringSSL, rustls, OpenSSL).
	Libraries []Library
	// Runtime names the program when it says what it is ("Bun 1.4.4"); "" otherwise.
	Runtime string
	// Probe is where to probe a known build; nil for any other.
	Probe *Probe
	// Refused says why a program with BoringSSL was not probed ("not a known build"): the
	// only library with an OpenSSL-compatible SSL_write/SSL_read that a table could name.
	Refused string
}

// Probe locates OpenSSL-compatible functions in a known build.
type Probe struct {
	Build string // "Bun 1.4.4 linux-x64"
	// Write and Read are the file offsets of SSL_write(SSL *, const void *, int) and
	// SSL_read(SSL *, void *, int): what a uprobe is attached at.
	Write, Read uint64
}

// Describe is the library part of agenttrail.capture.tls: "BoringSSL (static, Bun 1.4.4)",
// "rustls 0.23.40 (static)", several joined by ", ".
func (r Result) Describe() string {
	parts := make([]string, 0, len(r.Libraries))
	for _, l := range r.Libraries {
		s := l.String() + " (static"
		if l.Name == BoringSSL && r.Runtime != "" {
			s += ", " + r.Runtime
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, ", ")
}

// Library names.
const (
	BoringSSL = "BoringSSL"
	Rustls    = "rustls"
	OpenSSL   = "OpenSSL"
)

// knownBuild is one table entry: a build whose SSL_write and SSL_read were located and
// verified (see the package comment).
type knownBuild struct {
	buildID string // GNU build ID, hex
	name    string
	write   fingerprint
	read    fingerprint
}

// fingerprint: the function's virtual address and the first BoringSSL error it raises.
type fingerprint struct {
	addr   uint64
	reason uint32 // ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED = 66
	line   uint32 // ssl_lib.cc line of the check
}

// knownBuilds: every build whose functions are probed. Bun from npm ("bun" 1.4.4 installs
// @oven/bun-linux-x64 1.4.4; non-PIE, BoringSSL from oven-sh's fork, stripped of its names).
var knownBuilds = []knownBuild{
	{
		buildID: "588d7307f333293c728b74df19b7323c20736899",
		name:    "Bun 1.4.4 linux-x64",
		write:   fingerprint{addr: 0x28fd5c0, reason: 66, line: 955},
		read:    fingerprint{addr: 0x28673b0, reason: 66, line: 933},
	},
}

// Bounds: a traced process chooses its executable, so its sections are hostile.
const (
	// maxScan bounds the read-only data searched for library strings (Bun's .rodata is 22
	// MiB, Deno's 25 MiB, codex's 13 MiB).
	maxScan = elfinfo.MaxSectionSize
	// chunk is read at a time; overlap keeps a string split between two chunks whole.
	chunk   = 4 << 20
	overlap = 256
	// fingerprintWindow: bytes after a function's entry searched for its first error call.
	fingerprintWindow = 128
	maxVersion        = 24
	maxPath           = 512
)

// Identify reads the ELF program r (size bytes) for statically linked TLS libraries. A program
// with none returns an empty Result; an error means the file could not be read as an ELF
// program (it is malformed, or a bound was exceeded).
func Identify(r io.ReaderAt, size int64) (Result, error) {
	return identify(r, size, knownBuilds)
}

func identify(r io.ReaderAt, size int64, table []knownBuild) (Result, error) {
	var res Result
	err := elfinfo.Guard(func() error {
		f, err := elf.NewFile(r)
		if err != nil {
			return err
		}
		if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
			return nil // the probes are x86-64 only; nothing to say about other programs
		}
		found, err := scan(f, r, size)
		if err != nil {
			return err
		}
		res = found.result()
		if found.boringssl {
			res.Probe, res.Refused = known(table, f, r, size, buildID(f), res.Runtime)
		}
		return nil
	})
	return res, err
}

// found collects the markers of one program.
type found struct {
	boringssl   bool
	rustls      string // version, "" when not found
	rustlsSeen  bool
	openssl     string
	opensslSeen bool
	bun         string
	bunSeen     bool
}

func (m found) result() Result {
	var res Result
	if m.boringssl {
		res.Libraries = append(res.Libraries, Library{Name: BoringSSL})
		if m.bunSeen {
			res.Runtime = "Bun " + m.bun
		}
	}
	if m.rustlsSeen {
		res.Libraries = append(res.Libraries, Library{Name: Rustls, Version: m.rustls})
	}
	if m.opensslSeen {
		res.Libraries = append(res.Libraries, Library{Name: OpenSSL, Version: m.openssl})
	}
	return res
}

// readOnly lists the file ranges to search: the allocated, non-writable, non-executable
// PROGBITS sections (.rodata and its kin), or without section headers the read-only PT_LOAD
// segments that are not executable.
func readOnly(f *elf.File, size int64) [][2]uint64 {
	var out [][2]uint64
	for _, s := range f.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_ALLOC != 0 && s.Flags&(elf.SHF_WRITE|elf.SHF_EXECINSTR) == 0 &&
			s.Flags&elf.SHF_COMPRESSED == 0 && strings.HasPrefix(s.Name, ".rodata") {
			out = append(out, [2]uint64{s.Offset, s.Size})
		}
	}
	if len(out) == 0 {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&(elf.PF_W|elf.PF_X) == 0 {
				out = append(out, [2]uint64{p.Off, p.Filesz})
			}
		}
	}
	// Within the file and within maxScan in all.
	var total uint64
	kept := out[:0]
	for _, rg := range out {
		if rg[0] >= uint64(size) {
			continue
		}
		if rg[1] > uint64(size)-rg[0] {
			rg[1] = uint64(size) - rg[0]
		}
		if total+rg[1] > maxScan {
			rg[1] = maxScan - total
		}
		if rg[1] == 0 {
			continue
		}
		total += rg[1]
		kept = append(kept, rg)
	}
	return kept
}

var (
	markBoringSSL = []byte("boringssl/ssl/ssl_lib.cc\x00")
	markRustls    = []byte("/rustls-")
	markOpenSSL   = []byte("OpenSSL ")
	markBun       = []byte("Bun v")
)

// scan searches the read-only data for the libraries' strings.
func scan(f *elf.File, r io.ReaderAt, size int64) (found, error) {
	var m found
	var buf []byte
	for _, rg := range readOnly(f, size) {
		if want := min(rg[1], chunk+overlap); uint64(len(buf)) < want {
			buf = make([]byte, want) // a small program is not given 4 MiB
		}
		for off := uint64(0); off < rg[1]; off += chunk {
			n := rg[1] - off
			if n > chunk+overlap {
				n = chunk + overlap
			}
			b := buf[:n]
			if _, err := r.ReadAt(b, int64(rg[0]+off)); err != nil && !errors.Is(err, io.EOF) {
				return m, fmt.Errorf("tlsident: read at %#x: %w", rg[0]+off, err)
			}
			m.search(b)
		}
	}
	return m, nil
}

func (m *found) search(b []byte) {
	if !m.boringssl && bytes.Contains(b, markBoringSSL) {
		m.boringssl = true
	}
	if !m.rustlsSeen {
		// A panic location in the crate itself: "…/rustls-0.23.40/src/…" (not tokio-rustls-…,
		// whose name does not start after the "/").
		forEach(b, markRustls, func(rest []byte) bool {
			if v, ok := version(rest, "/src/"); ok {
				m.rustls, m.rustlsSeen = v, true
				return false
			}
			return true
		})
	}
	if !m.opensslSeen {
		// OPENSSL_VERSION_TEXT: "OpenSSL 3.6.4 25 Aug 2026" (a day of the month follows).
		forEach(b, markOpenSSL, func(rest []byte) bool {
			if v, ok := version(rest, " "); ok && len(rest) > len(v)+1 && isDigit(rest[len(v)+1]) {
				m.openssl, m.opensslSeen = v, true
				return false
			}
			return true
		})
	}
	if !m.bunSeen {
		forEach(b, markBun, func(rest []byte) bool {
			if v, ok := version(rest, " ("); ok {
				m.bun, m.bunSeen = v, true
				return false
			}
			return true
		})
	}
}

// forEach calls fn with what follows each occurrence of mark in b until fn returns false.
func forEach(b, mark []byte, fn func(rest []byte) bool) {
	for {
		i := bytes.Index(b, mark)
		if i < 0 {
			return
		}
		b = b[i+len(mark):]
		if !fn(b) {
			return
		}
	}
}

// version reads a dotted version of digits (at least "N.N", at most maxVersion bytes) at the
// start of b, which must be followed by end.
func version(b []byte, end string) (string, bool) {
	n, dots := 0, 0
	for n < len(b) && n < maxVersion && (isDigit(b[n]) || b[n] == '.' && n > 0 && b[n-1] != '.') {
		if b[n] == '.' {
			dots++
		}
		n++
	}
	if dots == 0 || n == 0 || b[n-1] == '.' || !bytes.HasPrefix(b[n:], []byte(end)) {
		return "", false
	}
	return string(b[:n]), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// buildID is the GNU build ID of f in hex, "" without one.
func buildID(f *elf.File) string {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE || s.Size > elfinfo.MaxNoteSize {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		if id := gnuBuildID(data); id != "" {
			return id
		}
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > elfinfo.MaxNoteSize {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			continue
		}
		if id := gnuBuildID(data); id != "" {
			return id
		}
	}
	return ""
}

// gnuBuildID finds an NT_GNU_BUILD_ID note (4-byte aligned, as linkers write it) in data.
func gnuBuildID(data []byte) string {
	for len(data) >= 12 {
		namesz := uint64(binary.LittleEndian.Uint32(data[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(data[4:]))
		typ := binary.LittleEndian.Uint32(data[8:])
		rest := data[12:]
		nameEnd := (namesz + 3) &^ 3
		if namesz > uint64(len(rest)) || nameEnd > uint64(len(rest)) {
			return ""
		}
		descEnd := (descsz + 3) &^ 3
		if descsz > uint64(len(rest))-nameEnd {
			return ""
		}
		if typ == 3 && namesz == 4 && string(rest[:4]) == "GNU\x00" && descsz > 0 {
			return hex.EncodeToString(rest[nameEnd : nameEnd+descsz])
		}
		if descEnd > uint64(len(rest))-nameEnd {
			return ""
		}
		data = rest[nameEnd+descEnd:]
	}
	return ""
}

// known returns where to probe the build with id, after checking both functions' fingerprints
// in the file; or why not.
func known(table []knownBuild, f *elf.File, r io.ReaderAt, size int64, id, runtime string) (*Probe, string) {
	what := cmpOr(runtime, "this program")
	if id == "" {
		return nil, what + " has no build ID"
	}
	for _, k := range table {
		if k.buildID != id {
			continue
		}
		w, err := check(f, r, size, k.write)
		if err != nil {
			return nil, k.name + ": SSL_write does not match the known build (" + err.Error() + ")"
		}
		rd, err := check(f, r, size, k.read)
		if err != nil {
			return nil, k.name + ": SSL_read does not match the known build (" + err.Error() + ")"
		}
		return &Probe{Build: k.name, Write: w, Read: rd}, ""
	}
	return nil, what + " is not a known build (build ID " + id + ")"
}

// check reads the code at fp.addr and finds its first call of ERR_put_error: the instructions
// BoringSSL's compiled OPENSSL_PUT_ERROR(SSL, reason) loads its arguments with, in this order:
//
//	mov ecx, <file>     b9 imm32
//	mov edi, 16         bf 10 00 00 00   (ERR_LIB_SSL)
//	xor esi, esi        31 f6
//	mov edx, <reason>   ba imm32
//	mov r8d, <line>     41 b8 imm32
//
// The reason and line must be the entry's and <file> must point at a path ending in
// "boringssl/ssl/ssl_lib.cc". It returns the function's file offset.
func check(f *elf.File, r io.ReaderAt, size int64, fp fingerprint) (uint64, error) {
	off, ok := fileOffset(f, fp.addr, fingerprintWindow)
	if !ok || off+fingerprintWindow > uint64(size) {
		return 0, errors.New("the address is not in the file")
	}
	code := make([]byte, fingerprintWindow)
	if _, err := r.ReadAt(code, int64(off)); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	i := bytes.Index(code, []byte{0xbf, 0x10, 0, 0, 0, 0x31, 0xf6, 0xba})
	if i < 5 || code[i-5] != 0xb9 || i+8+4+6 > len(code) || code[i+12] != 0x41 || code[i+13] != 0xb8 {
		return 0, errors.New("no BoringSSL error call at its start")
	}
	file := uint64(binary.LittleEndian.Uint32(code[i-4:]))
	reason := binary.LittleEndian.Uint32(code[i+8:])
	line := binary.LittleEndian.Uint32(code[i+14:])
	if reason != fp.reason || line != fp.line {
		return 0, fmt.Errorf("error %d at line %d, want %d at line %d", reason, line, fp.reason, fp.line)
	}
	poff, ok := fileOffset(f, file, 1)
	if !ok {
		return 0, errors.New("its error's file name is not in the file")
	}
	path := make([]byte, maxPath)
	n, err := r.ReadAt(path, int64(poff))
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read the file name: %w", err)
	}
	path = path[:n]
	if j := bytes.IndexByte(path, 0); j >= 0 {
		path = path[:j+1]
	}
	if !bytes.HasSuffix(path, markBoringSSL) {
		return 0, errors.New("its error's file is not BoringSSL's ssl_lib.cc")
	}
	return off, nil
}

// fileOffset maps the virtual address addr (n bytes from it) to the file through the PT_LOAD
// segment holding it.
func fileOffset(f *elf.File, addr, n uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr-p.Vaddr < p.Filesz && n <= p.Filesz-(addr-p.Vaddr) {
			return addr - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
