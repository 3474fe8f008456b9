package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKey returns a deterministic Ed25519 key derived from name.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("agenttrail test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func testPub(name string) ed25519.PublicKey {
	return testKey(name).Public().(ed25519.PublicKey)
}

// fakeClock is an injectable clock that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func openArchive(t *testing.T, dir string, key ed25519.PrivateKey, opts Options) *Archive {
	t.Helper()
	a, err := Open(dir, key, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return a
}

// abandon releases the archive's file without sealing the open segment, as a crash would.
func (a *Archive) abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur != nil {
		_ = a.cur.file.Close()
		a.cur = nil
	}
	a.closed = true
}

// payload returns a JSON object of about size bytes that names i.
func payload(i, size int) []byte {
	pad := max(size-40, 0)
	return []byte(fmt.Sprintf(`{"story":%d,"pad":"%s"}`, i, strings.Repeat("abcdefgh", pad/8+1)[:pad]))
}

func traceIDFor(i int) string { return fmt.Sprintf("%032x", i+1) }

// appendStories appends n records, one Append each, numbered from start.
func appendStories(t *testing.T, a *Archive, start, n, size int) {
	t.Helper()
	for i := start; i < start+n; i++ {
		if err := a.Append(context.Background(), []Entry{{Kind: KindStory, TraceID: traceIDFor(i % 5), Payload: payload(i, size)}}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func mustVerify(t *testing.T, dir string, opts VerifyOptions) Report {
	t.Helper()
	rep, err := VerifyDir(dir, opts)
	if err != nil {
		t.Fatalf("VerifyDir(%s): %v", dir, err)
	}
	return rep
}

// copyDir copies an archive directory to a fresh temporary one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// segmentNames lists the segment files of an archive in order.
func segmentNames(t *testing.T, dir string) []string {
	t.Helper()
	segs, _, err := listSegments(filepath.Join(dir, SegmentsDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range segs {
		if s.hasFile {
			out = append(out, s.name)
		}
	}
	return out
}

// readLines returns a segment file's lines without their newlines.
func readLines(t *testing.T, dir, seg string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, SegmentsDir, seg))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	return lines
}

func writeLines(t *testing.T, dir, seg string, lines [][]byte) {
	t.Helper()
	data := append(bytes.Join(lines, []byte("\n")), '\n')
	if err := os.WriteFile(filepath.Join(dir, SegmentsDir, seg), data, 0o640); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, line []byte) Record {
	t.Helper()
	r, err := ParseLine(line)
	if err != nil {
		t.Fatalf("ParseLine: %v", err)
	}
	return r
}

func readManifestFile(t *testing.T, dir, seg string) Manifest {
	t.Helper()
	seq, _ := parseSeqName(strings.TrimSuffix(seg, ".jsonl"))
	data, err := os.ReadFile(filepath.Join(dir, SegmentsDir, ManifestName(seq)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeManifestFile(t *testing.T, dir string, m Manifest) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, SegmentsDir, ManifestName(m.FirstSeq)), m.Encode(), 0o640); err != nil {
		t.Fatal(err)
	}
}
