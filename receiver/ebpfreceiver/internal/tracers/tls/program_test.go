package tls

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/collector/component/componenttest"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracer"
)

// systemLibSSL is Debian's OpenSSL 3 (the default tls.libraries).
const systemLibSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"

func tinyGNU(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "elf", "libssl_tiny_gnu.so"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestOpenSSLOffsets: the offsets found through the GNU hash table are those of the whole
// dynamic symbol table, and cilium/ebpf (which reads every symbol table, as it did for a uprobe
// by name) names the function at each of them: Node's, Debian's libssl's, the tiny libraries'.
func TestOpenSSLOffsets(t *testing.T) {
	files := map[string][]byte{"libssl_tiny.so (sysv hash)": tinySSL(t), "libssl_tiny_gnu.so": tinyGNU(t)}
	for _, path := range []string{systemNode, systemLibSSL} {
		if b, err := os.ReadFile(path); err == nil {
			files[path] = b
		} else {
			t.Logf("%s: %v (not compared)", path, err)
		}
	}
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			byHash, err := offsetsOf(bytes.NewReader(b), true)
			if err != nil {
				t.Fatal(err)
			}
			all, err := offsetsOf(bytes.NewReader(b), false)
			if err != nil {
				t.Fatal(err)
			}
			if !byHash.exports() || len(byHash) != len(all) {
				t.Fatalf("by hash %v, whole table %v", byHash, all)
			}
			for sym, off := range all {
				if byHash[sym] != off {
					t.Errorf("%s: by hash %#x, whole table %#x", sym, byHash[sym], off)
				}
			}
			if !filepath.IsAbs(name) {
				return
			}
			if len(byHash) != len(sslSymbols) {
				t.Errorf("OpenSSL 3 defines all of %v; found %v", sslSymbols, byHash)
			}
			ex, err := link.OpenExecutable(name)
			if err != nil {
				t.Fatal(err)
			}
			for sym, off := range byHash {
				got, err := ex.Symbol(off)
				if err != nil || got.Offset != 0 {
					t.Errorf("%s at %#x: cilium/ebpf says %+v, %v", sym, off, got, err)
				}
			}
		})
	}
}

// TestHashLookupBounded: a chain that never ends (its end bits cleared) is refused where the
// symbol table ends (and at the latest after maxHashChain entries), not walked past it.
func TestHashLookupBounded(t *testing.T) {
	lib := tinyGNU(t)
	// .gnu.hash at 0x1c8 (readelf -S): two buckets, symoffset 1, one bloom word; a chain word
	// per symbol (SSL_read, SSL_write) after the buckets, each ending its chain.
	const hash = 0x1c8
	nbuckets, bloom := int(binary.LittleEndian.Uint32(lib[hash:])), int(binary.LittleEndian.Uint32(lib[hash+8:]))
	chain := hash + 16 + 8*bloom + 4*nbuckets
	b := bytes.Clone(lib)
	for i := range 2 {
		if b[chain+4*i]&1 == 0 {
			t.Fatalf("chain word %d does not end its chain: the layout is not the one expected", i)
		}
		b[chain+4*i] &^= 1
	}
	offs, err := offsetsOf(bytes.NewReader(b), true)
	if err == nil {
		t.Errorf("a chain running past the table: no error (%v)", offs)
	}
}

// TestProgramCache: a program is read once per fileID; the second process of the same file is
// a lookup, a file rewritten in place (same inode, new ctime) is read again, and the LRU bound
// forgets the least recently used program, counted.
func TestProgramCache(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	path := filepath.Join(t.TempDir(), "libssl_tiny_gnu.so")
	if err := os.WriteFile(path, tinyGNU(t), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := tr.program(f)
	if !first.ssl.exports() || first.sslErr != nil {
		t.Fatalf("first read: %v, %v", first.ssl, first.sslErr)
	}
	if again := tr.program(f); again != first {
		t.Error("the second process of the same file read it again")
	}
	// Rewritten in place with SSL_write renamed: the same inode, read again.
	time.Sleep(10 * time.Millisecond) // a ctime tick apart on coarse clocks
	renamed := bytes.Replace(tinyGNU(t), []byte("SSL_write\x00"), []byte("SSL_wrote\x00"), 1)
	if err := os.WriteFile(path, renamed, 0o755); err != nil {
		t.Fatal(err)
	}
	f2, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if f2.id.inode != f.id.inode || f2.id == f.id {
		t.Fatalf("rewritten in place: %+v then %+v", f.id, f2.id)
	}
	if p := tr.program(f2); p.ssl.exports() {
		t.Error("the rewritten file was answered from memory")
	}
	got := sums(t, tel, "agenttrail.ebpf.tls.programs", "result")
	if got["read"] != 2 || got["hit"] != 1 || got["evicted"] != 0 {
		t.Errorf("agenttrail.ebpf.tls.programs %v, want read 2, hit 1", got)
	}

	c := newProgramCache(2)
	ids := []fileID{{size: 1}, {size: 2}, {size: 3}}
	c.put(ids[0], &program{})
	c.put(ids[1], &program{})
	c.get(ids[0]) // ids[1] is now the least recently used
	if !c.put(ids[2], &program{}) {
		t.Error("a third program in a cache of two evicted nothing")
	}
	if _, ok := c.get(ids[1]); ok {
		t.Error("the least recently used program was kept")
	}
	if _, ok := c.get(ids[0]); !ok || c.len() != 2 {
		t.Errorf("the recently used program was forgotten (%d kept)", c.len())
	}
}

// TestSetupStaticOnce: a program that exports no OpenSSL is read for a static TLS library once;
// its next process is answered from memory.
func TestSetupStaticOnce(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for pid := uint32(1); pid <= 3; pid++ {
		capture, missing := tr.setupProcess(tracer.ProcInfo{PID: pid, Exe: self, ExeFile: self}, false)
		if capture != tracer.CaptureNone || len(missing) != 0 {
			t.Fatalf("process %d: %q %v", pid, capture, missing)
		}
	}
	if got := sums(t, tel, "agenttrail.ebpf.tls.programs", "result"); got["read"] != 1 || got["hit"] != 2 {
		t.Errorf("agenttrail.ebpf.tls.programs %v, want read 1, hit 2", got)
	}
}

// TestSetupExecdSince: a process read as one program whose /proc/<pid>/exe opens another (it
// exec'd in between: a shell's forked child becoming node) is not set up as the other one under
// the first one's name; its exec's set-up follows.
func TestSetupExecdSince(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	lib := filepath.Join(t.TempDir(), "libssl_tiny_gnu.so")
	if err := os.WriteFile(lib, tinyGNU(t), 0o755); err != nil {
		t.Fatal(err)
	}
	if capture, _ := tr.setupProcess(tracer.ProcInfo{PID: 1, Exe: "/bin/sh", ExeFile: lib, Inode: probes.InodeKey{Dev: 1, Ino: 1}}, false); capture != tracer.CaptureNone {
		t.Errorf("capture %q", capture)
	}
	if _, err := tel.GetMetric("agenttrail.ebpf.tls.programs"); err == nil {
		t.Error("the other program was read")
	}
}

// TestSetupNodeOnce (root, the kernel): the first node process costs reading node's OpenSSL
// symbols and attaching the probes; every later one (uprobes are per inode: they cover it
// already) a stat and a lookup. Before, the first took 0.3-0.9 s on the reader goroutine:
// cilium/ebpf read node's 185,000 symbols for the uprobes by name.
func TestSetupNodeOnce(t *testing.T) {
	k := loadKernel(t)
	defer k.Close()
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	tr.env.Kernel = k
	var took [3]time.Duration
	for i := range took {
		start := time.Now()
		capture, missing := tr.setupProcess(tracer.ProcInfo{PID: uint32(100 + i), Exe: systemNode, ExeFile: systemNode}, false)
		took[i] = time.Since(start)
		if capture != "openssl ("+systemNode+")" || len(missing) != 0 {
			t.Fatalf("process %d: %q %v", i, capture, missing)
		}
	}
	t.Logf("set-up of node processes: %v", took)
	if got := sums(t, tel, "agenttrail.ebpf.tls.programs", "result"); got["read"] != 1 || got["hit"] != 2 {
		t.Errorf("agenttrail.ebpf.tls.programs %v, want read 1, hit 2", got)
	}
	// Generous for a loaded 2-core machine; the cost measured was 0.3-0.9 s.
	if took[0] > 250*time.Millisecond {
		t.Errorf("the first node process took %v to set up", took[0])
	}
}

// TestAttachAfterExit (root, the kernel): a node process that exits while it is set up (node -e
// runs for 40 ms; the reader sets it up when it reads its exec) still has its file probed, and
// the next process of the file is covered. Attaching by its /proc/<pid>/exe path failed once the
// process was gone, and the failure was remembered for the inode: no node process was read.
func TestAttachAfterExit(t *testing.T) {
	k := loadKernel(t)
	defer k.Close()
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(t.Context()) }()
	tr, _ := newTracer(t, tel, registry{})
	tr.env.Kernel = k
	cmd := exec.Command(systemNode, "-e", "setTimeout(() => {}, 10000)")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f, err := openFile(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := os.Stat(f.path); err == nil {
		t.Fatalf("%s is still there", f.path)
	}
	if probed, err := tr.attachEmbeddedOpenSSL(f, tr.program(f)); !probed || err != nil {
		t.Fatalf("the exited process's node: probed %v, %v", probed, err)
	}
	if !tr.attachOpenSSL(systemNode) {
		t.Error("the next process's node is not probed")
	}
}

// loadKernel loads the TLS probes, or skips without root.
func loadKernel(t *testing.T) *probes.Set {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: attaching uprobes needs root")
	}
	if _, err := os.Stat(systemNode); err != nil {
		t.Skipf("%s is not installed", systemNode)
	}
	k, err := probes.Load(probes.Options{RingBufferBytes: 1 << 16, TLS: true, TLSCaptureBytes: 1024})
	if err != nil {
		t.Skipf("kernel test: cannot load the probes: %v", err)
	}
	return k
}

// BenchmarkProgram: reading node's OpenSSL functions (the first process of the file) and
// answering from memory (every later one).
func BenchmarkProgram(b *testing.B) {
	if _, err := os.Stat(systemNode); err != nil {
		b.Skipf("%s is not installed", systemNode)
	}
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if ok, err := ExportsOpenSSL(systemNode); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("whole_dynsym", func(b *testing.B) {
		f, err := os.Open(systemNode)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for b.Loop() {
			if o, err := offsetsOf(f, false); !o.exports() || err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		tel := componenttest.NewTelemetry()
		defer func() { _ = tel.Shutdown(b.Context()) }()
		tr, _ := newTracer(b, tel, registry{})
		for b.Loop() {
			f, err := openFile(systemNode)
			if err != nil {
				b.Fatal(err)
			}
			if p := tr.program(f); !p.ssl.exports() {
				b.Fatal("not found")
			}
			_ = f.Close()
		}
	})
}
