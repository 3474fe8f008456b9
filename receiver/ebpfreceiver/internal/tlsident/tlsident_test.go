package tlsident

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// craft builds a small x86-64 ELF program without section headers: a read-only segment (the
// headers, a GNU build-ID note and rodata) and an executable one (code), as a linker lays out
// a stripped program. It returns the file and the virtual address of code[0] and rodata[0].
func craft(id []byte, rodata, code []byte) (file []byte, codeAddr, rodataAddr uint64) {
	const (
		base    = 0x400000
		ehsize  = 64
		phsize  = 56
		nphdr   = 3
		noteOff = ehsize + nphdr*phsize
	)
	var note bytes.Buffer
	if id != nil {
		_ = binary.Write(&note, binary.LittleEndian, []uint32{4, uint32(len(id)), 3})
		note.WriteString("GNU\x00")
		note.Write(id)
		for note.Len()%4 != 0 {
			note.WriteByte(0)
		}
	}
	rodataOff := uint64(noteOff + note.Len())
	codeOff := (rodataOff + uint64(len(rodata)) + 0xfff) &^ 0xfff
	out := make([]byte, codeOff+uint64(len(code)))
	copy(out[noteOff:], note.Bytes())
	copy(out[rodataOff:], rodata)
	copy(out[codeOff:], code)
	le := binary.LittleEndian
	copy(out, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[24:], base+codeOff) // entry
	le.PutUint64(out[32:], ehsize)       // phoff
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[54:], phsize)
	le.PutUint16(out[56:], nphdr)
	le.PutUint16(out[58:], 64) // shentsize
	ph := func(i int, typ elf.ProgType, flags elf.ProgFlag, off, size uint64) {
		p := out[ehsize+i*phsize:]
		le.PutUint32(p[0:], uint32(typ))
		le.PutUint32(p[4:], uint32(flags))
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], base+off)
		le.PutUint64(p[24:], base+off)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
		le.PutUint64(p[48:], 0x1000)
	}
	ph(0, elf.PT_LOAD, elf.PF_R, 0, rodataOff+uint64(len(rodata)))
	ph(1, elf.PT_LOAD, elf.PF_R|elf.PF_X, codeOff, uint64(len(code)))
	ph(2, elf.PT_NOTE, elf.PF_R, noteOff, uint64(note.Len()))
	return out, base + codeOff, base + rodataOff
}

// errorCall is the code BoringSSL's OPENSSL_PUT_ERROR(SSL, reason) compiles to in Bun,
// preceded by a function's prologue.
func errorCall(file uint64, reason, line uint32) []byte {
	b := []byte{0x55, 0x48, 0x89, 0xe5, 0x41, 0x57, 0x48, 0x83, 0xbf, 0x98, 0, 0, 0, 0, 0x74, 0x2e}
	b = append(b, 0xb9)
	b = binary.LittleEndian.AppendUint32(b, uint32(file))
	b = append(b, 0xbf, 0x10, 0, 0, 0, 0x31, 0xf6, 0xba)
	b = binary.LittleEndian.AppendUint32(b, reason)
	b = append(b, 0x41, 0xb8)
	b = binary.LittleEndian.AppendUint32(b, line)
	b = append(b, 0xe8, 0, 0, 0, 0)
	for len(b) < fingerprintWindow {
		b = append(b, 0xcc)
	}
	return b
}

// boringProgram: a stripped program with BoringSSL's ssl_lib.cc path, Bun's banner and two
// functions raising the QUIC error, at lines 955 (write) and 933 (read) unless told otherwise.
func boringProgram(id []byte, writeLine uint32) (file []byte, table []knownBuild) {
	rodata := []byte("xx\x00../../vendor/boringssl/ssl/ssl_lib.cc\x00Bun v1.4.4 (Linux x64)\x00")
	// The path's address is known once the layout is: craft twice.
	_, codeAddr, rodataAddr := craft(id, rodata, make([]byte, 2*fingerprintWindow))
	path := rodataAddr + 3
	code := append(errorCall(path, 66, writeLine), errorCall(path, 66, 933)...)
	file, codeAddr2, _ := craft(id, rodata, code)
	if codeAddr2 != codeAddr {
		panic("layout moved")
	}
	table = []knownBuild{{
		buildID: hex.EncodeToString(id), name: "Bun 1.4.4 test",
		write: fingerprint{addr: codeAddr, reason: 66, line: 955},
		read:  fingerprint{addr: codeAddr + fingerprintWindow, reason: 66, line: 933},
	}}
	return file, table
}

func identifyWith(t *testing.T, file []byte, table []knownBuild) Result {
	t.Helper()
	r := bytes.NewReader(file)
	res, err := identify(r, int64(len(file)), table)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestIdentifyKnownBuild(t *testing.T) {
	id := bytes.Repeat([]byte{0xab}, 20)
	file, table := boringProgram(id, 955)
	res := identifyWith(t, file, table)
	if res.Probe == nil {
		t.Fatalf("not probed: %+v", res)
	}
	// The offsets are file offsets of the two functions (the code segment's file offset is
	// its address minus the base).
	if res.Probe.Write != table[0].write.addr-0x400000 || res.Probe.Read != table[0].read.addr-0x400000 {
		t.Errorf("probe %+v, table %+v", res.Probe, table[0])
	}
	if got := res.Describe(); got != "BoringSSL (static, Bun 1.4.4)" {
		t.Errorf("Describe %q", got)
	}
	// The production table does not know this build: refused, saying so.
	res = identifyWith(t, file, knownBuilds)
	if res.Probe != nil || !strings.Contains(res.Refused, "Bun 1.4.4 is not a known build (build ID abab") {
		t.Errorf("unknown build: probe %+v refused %q", res.Probe, res.Refused)
	}
}

// TestIdentifyFingerprintMismatch: a program with a known build ID whose code is not what the
// table recorded (another line, a forged build ID) is refused, never probed.
func TestIdentifyFingerprintMismatch(t *testing.T) {
	id := bytes.Repeat([]byte{0xcd}, 20)
	file, table := boringProgram(id, 956)
	res := identifyWith(t, file, table)
	if res.Probe != nil || !strings.Contains(res.Refused, "SSL_write does not match the known build (error 66 at line 956, want 66 at line 955)") {
		t.Errorf("probe %+v refused %q", res.Probe, res.Refused)
	}
	// The file pointer must name ssl_lib.cc.
	file, table = boringProgram(id, 955)
	i := bytes.Index(file, []byte("ssl_lib.cc"))
	copy(file[i:], "ssl_xyz.cc")
	file = append(file, []byte("boringssl/ssl/ssl_lib.cc\x00")...) // still BoringSSL elsewhere
	res = identifyWith(t, file, table)
	if res.Probe != nil {
		t.Errorf("a fingerprint naming another file was accepted: %+v", res.Probe)
	}
	// Without a build ID nothing is looked up.
	file, table = boringProgram(nil, 955)
	table[0].buildID = ""
	if res := identifyWith(t, file, table); res.Probe != nil || !strings.Contains(res.Refused, "no build ID") {
		t.Errorf("no build ID: probe %+v refused %q", res.Probe, res.Refused)
	}
}

func TestIdentifyLibraries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rodata string
		want   []Library
		desc   string
	}{
		{"rustls", "\x00/home/runner/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rustls-0.23.40/src/vecbuf.rs\x00", []Library{{Rustls, "0.23.40"}}, "rustls 0.23.40 (static)"},
		{"tokio-rustls only", "\x00/src/tokio-rustls-0.26.0/src/lib.rs\x00", nil, ""},
		{"rustls without version", "\x00/rustls-main/src/lib.rs\x00", nil, ""},
		{"openssl", "\x00OpenSSL 3.6.4 25 Aug 2026\x00", []Library{{OpenSSL, "3.6.4"}}, "OpenSSL 3.6.4 (static)"},
		{"openssl mention", "\x00OpenSSL 3.0\x00OpenSSL is great\x00", nil, ""},
		{"boringssl without bun", "\x00../third_party/boringssl/ssl/ssl_lib.cc\x00", []Library{{Name: BoringSSL}}, "BoringSSL (static)"},
		{"boringssl in JS only", "\x00openssl_is_boringssl:true\x00", nil, ""},
		{"both", "/rustls-0.23.46/src/a.rs\x00OpenSSL 3.6.4 1 Jul 2026\x00", []Library{{Rustls, "0.23.46"}, {OpenSSL, "3.6.4"}}, "rustls 0.23.46 (static), OpenSSL 3.6.4 (static)"},
		{"nothing", "hello\x00", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, _, _ := craft([]byte{1, 2, 3, 4}, []byte(tc.rodata), []byte{0xc3})
			res := identifyWith(t, file, knownBuilds)
			if !reflect.DeepEqual(res.Libraries, tc.want) || res.Describe() != tc.desc {
				t.Errorf("libraries %v (%q), want %v (%q)", res.Libraries, res.Describe(), tc.want, tc.desc)
			}
		})
	}
}

// TestIdentifySplitChunk: a marker split between two read chunks is found.
func TestIdentifySplitChunk(t *testing.T) {
	rodata := make([]byte, chunk+100)
	copy(rodata[chunk-10:], "/rustls-0.23.40/src/lib.rs")
	file, _, _ := craft(nil, rodata, []byte{0xc3})
	res := identifyWith(t, file, knownBuilds)
	if len(res.Libraries) != 1 || res.Libraries[0].Version != "0.23.40" {
		t.Errorf("libraries %v", res.Libraries)
	}
}

func TestVersion(t *testing.T) {
	for in, want := range map[string]string{
		"0.23.40/src/": "0.23.40", "1.4.4 (Linux": "", "10/src/": "", ".1.2/src/": "", "1..2/src/": "", "1.2./src/": "",
		"1.2/src": "", strings.Repeat("1.", 20) + "1/src/": "",
	} {
		end := "/src/"
		if got, ok := version([]byte(in), end); got != want || ok != (want != "") {
			t.Errorf("version(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if got, ok := version([]byte("1.4.4 (Linux x64)"), " ("); !ok || got != "1.4.4" {
		t.Errorf("bun banner: %q %v", got, ok)
	}
}

func TestGNUBuildID(t *testing.T) {
	le := binary.LittleEndian
	note := func(namesz, descsz, typ uint32, name string, desc []byte) []byte {
		b := le.AppendUint32(nil, namesz)
		b = le.AppendUint32(b, descsz)
		b = le.AppendUint32(b, typ)
		b = append(b, name...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	id := []byte{0xde, 0xad, 0xbe, 0xef}
	good := note(4, 4, 3, "GNU\x00", id)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"alone", good, "deadbeef"},
		{"after another note", append(note(3, 5, 1, "Go\x00", []byte("abcde")), good...), "deadbeef"},
		{"wrong type", note(4, 4, 4, "GNU\x00", id), ""},
		{"desc past the end", note(4, 400, 3, "GNU\x00", id), ""},
		{"name past the end", note(4000, 4, 3, "GNU\x00", id), ""},
		{"huge sizes", note(0xffffffff, 0xffffffff, 3, "GNU\x00", id), ""},
		{"short", good[:10], ""},
	} {
		if got := gnuBuildID(tc.data); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// runtimeBinary is a runtime installed by scripts/prereqs.sh test-packages from
// receiver/ebpfreceiver/testdata/runtimes (npm, pinned by its lockfile).
func runtimeBinary(t *testing.T, rel string) *os.File {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the runtimes' x86-64 builds are pinned")
	}
	path := filepath.Join("..", "..", "testdata", "runtimes", "node_modules", rel)
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("%s is not installed (scripts/prereqs.sh test-packages installs it): %v", rel, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// TestKnownBuilds: the real programs, as npm installs them. Bun 1.4.4's SSL_write and SSL_read
// are found by the table and pass their fingerprints; Deno and codex are named by their rustls
// (and codex's vendored OpenSSL), not probed.
func TestKnownBuilds(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		desc string
		want *Probe
	}{
		{"@oven/bun-linux-x64/bin/bun", "BoringSSL (static, Bun 1.4.4)", &Probe{Build: "Bun 1.4.4 linux-x64", Write: 0x28fd5c0 - 0x208000, Read: 0x28673b0 - 0x208000}},
		{"@deno/linux-x64-glibc/deno", "rustls 0.23.40 (static)", nil},
		{"@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex", "rustls 0.23.46 (static), OpenSSL 3.6.4 (static)", nil},
	} {
		t.Run(filepath.Base(tc.rel), func(t *testing.T) {
			f := runtimeBinary(t, tc.rel)
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			res, err := Identify(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if res.Describe() != tc.desc || !reflect.DeepEqual(res.Probe, tc.want) || res.Refused != "" {
				t.Errorf("%q probe %+v refused %q; want %q probe %+v", res.Describe(), res.Probe, res.Refused, tc.desc, tc.want)
			}
		})
	}
}

// FuzzIdentify: any file a traced process runs goes through Identify without a panic, a hang
// or a read outside it.
func FuzzIdentify(f *testing.F) {
	elfinfo.StrictPanics(true) // our own panics are raised, not recovered as a malformed file
	file, table := boringProgram(bytes.Repeat([]byte{0xab}, 20), 955)
	f.Add(file)
	rust, _, _ := craft([]byte{1}, []byte("/rustls-0.23.40/src/a.rs\x00OpenSSL 3.6.4 1 Jul 2026\x00"), []byte{0xc3})
	f.Add(rust)
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = identify(bytes.NewReader(data), int64(len(data)), table)
	})
}
