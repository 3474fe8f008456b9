package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildArchive writes 40 stories across many small segments and leaves the last segment open.
func buildArchive(t *testing.T) (dir string, segs []string) {
	t.Helper()
	dir = t.TempDir()
	clock := newFakeClock()
	a := openArchive(t, dir, testKey("main"), Options{SegmentMaxBytes: 2048, Now: clock.Now})
	for i := 0; i < 40; i++ {
		clock.Advance(time.Second)
		appendStories(t, a, i, 1, 300)
	}
	clock.Advance(time.Second)
	appendStories(t, a, 40, 1, 50)
	a.abandon()
	segs = segmentNames(t, dir)
	if len(segs) < 5 {
		t.Fatalf("want at least 5 segments, got %d", len(segs))
	}
	if n := len(readLines(t, dir, segs[2])); n < 4 {
		t.Fatalf("want at least 4 records in %s, got %d", segs[2], n)
	}
	return dir, segs
}

func TestAppendAcrossSegmentsVerifies(t *testing.T) {
	dir, segs := buildArchive(t)
	rep := mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")})
	// 41 stories plus one segment_open record per segment.
	if want := uint64(41 + len(segs)); rep.Records != want || rep.FirstSeq != 1 || rep.LastSeq != want {
		t.Errorf("records %d seq %d..%d, want %d records 1..%d", rep.Records, rep.FirstSeq, rep.LastSeq, want, want)
	}
	if rep.Segments != len(segs) || rep.ClosedSegments != len(segs)-1 {
		t.Errorf("segments %d closed %d, want %d and %d", rep.Segments, rep.ClosedSegments, len(segs), len(segs)-1)
	}
	if want := filepath.Join(SegmentsDir, segs[len(segs)-1]); rep.OpenSegment != want {
		t.Errorf("open segment %q, want %q", rep.OpenSegment, want)
	}
	if rep.PartialTail != nil || len(rep.Warnings) != 0 {
		t.Errorf("unexpected partial tail %+v or warnings %v", rep.PartialTail, rep.Warnings)
	}
	// Segment names are the seq of their first record, and every segment starts with a
	// segment_open record chained from the previous segment's last record.
	var prevHash string
	for i, s := range segs {
		lines := readLines(t, dir, s)
		first := mustParse(t, lines[0])
		if SegmentName(first.Seq) != s || first.Kind != KindSegmentOpen || first.Prev != prevHash {
			t.Fatalf("segment %d (%s) starts with seq %d kind %s prev %q; previous hash %q", i, s, first.Seq, first.Kind, first.Prev, prevHash)
		}
		prevHash = mustParse(t, lines[len(lines)-1]).Hash
	}
}

func TestReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	key := testKey("main")
	for round := 0; round < 3; round++ {
		a := openArchive(t, dir, key, Options{SegmentMaxBytes: 4096})
		appendStories(t, a, round*10, 10, 200)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	rep := mustVerify(t, dir, VerifyOptions{})
	if rep.OpenSegment != "" || rep.Segments != rep.ClosedSegments {
		t.Errorf("after Close every segment must be sealed: %+v", rep)
	}
	if rep.LastSeq != rep.Records || len(rep.PublicKeys) != 1 {
		t.Errorf("report %+v", rep)
	}
}

func TestTamperDetection(t *testing.T) {
	base, segs := buildArchive(t)
	seg := segs[2] // a sealed segment in the middle
	lines := readLines(t, base, seg)
	rec := func(i int) Record { return mustParse(t, lines[i-1]) }
	segPath := filepath.Join(SegmentsDir, seg)
	manifestPath := filepath.Join(SegmentsDir, strings.TrimSuffix(seg, ".jsonl")+".manifest.json")
	next := mustParse(t, readLines(t, base, segs[3])[0])
	openSeg := segs[len(segs)-1]
	openLines := readLines(t, base, openSeg)
	otherKey := testKey("attacker")

	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		pin    bool
		want   string
	}{
		{
			name: "modify a byte in a payload",
			tamper: func(t *testing.T, dir string) {
				l := append([][]byte(nil), lines...)
				l[2] = bytes.Replace(l[2], []byte("abcdefgh"), []byte("abcdefgX"), 1)
				writeLines(t, dir, seg, l)
			},
			want: fmt.Sprintf("%s record seq %d (line 3): hash mismatch", segPath, rec(3).Seq),
		},
		{
			name: "remove a record line",
			tamper: func(t *testing.T, dir string) {
				l := append(append([][]byte(nil), lines[:2]...), lines[3:]...)
				writeLines(t, dir, seg, l)
			},
			want: fmt.Sprintf("%s record seq %d (line 3): sequence gap: expected %d got %d", segPath, rec(4).Seq, rec(3).Seq, rec(4).Seq),
		},
		{
			name: "swap two lines",
			tamper: func(t *testing.T, dir string) {
				l := append([][]byte(nil), lines...)
				l[2], l[3] = l[3], l[2]
				writeLines(t, dir, seg, l)
			},
			want: fmt.Sprintf("%s record seq %d (line 3): sequence gap: expected %d got %d", segPath, rec(4).Seq, rec(3).Seq, rec(4).Seq),
		},
		{
			name: "insert a forged line with a self-consistent hash",
			tamper: func(t *testing.T, dir string) {
				forged := rec(3)
				forged.Payload = []byte(`{"story":"forged"}`)
				forged.PayloadSHA256 = payloadDigest(forged.Payload)
				sum := sha256.Sum256([]byte("not the previous record"))
				forged.Prev = hex.EncodeToString(sum[:])
				h := forged.Header()
				forged.Hash = h.ComputeHash()
				line := bytes.TrimSuffix(forged.AppendLine(nil), []byte("\n"))
				l := append(append(append([][]byte(nil), lines[:2]...), line), lines[2:]...)
				writeLines(t, dir, seg, l)
			},
			want: fmt.Sprintf("%s record seq %d (line 3): prev link broken", segPath, rec(3).Seq),
		},
		{
			name: "delete a whole sealed segment without a retention record",
			tamper: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, segPath))
				os.Remove(filepath.Join(dir, manifestPath))
			},
			want: fmt.Sprintf("%s record seq %d (line 1): sequence gap: expected %d got %d (segments missing without a retention record that accounts for them)",
				filepath.Join(SegmentsDir, segs[3]), next.Seq, rec(1).Seq, next.Seq),
		},
		{
			name: "delete the first segment without a retention record",
			tamper: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, SegmentsDir, segs[0]))
				os.Remove(filepath.Join(dir, SegmentsDir, ManifestName(1)))
			},
			want: fmt.Sprintf("%s record seq %d (line 1): sequence gap: expected 1 got %d", filepath.Join(SegmentsDir, segs[1]),
				mustParse(t, readLines(t, base, segs[1])[0]).Seq, mustParse(t, readLines(t, base, segs[1])[0]).Seq),
		},
		{
			name: "edit a manifest",
			tamper: func(t *testing.T, dir string) {
				m := readManifestFile(t, dir, seg)
				m.RecordCount++
				writeManifestFile(t, dir, m)
			},
			want: manifestPath + ": manifest signature invalid",
		},
		{
			name: "re-sign a manifest with another key while the key is pinned",
			tamper: func(t *testing.T, dir string) {
				m := readManifestFile(t, dir, seg)
				m.Sign(otherKey)
				writeManifestFile(t, dir, m)
			},
			pin:  true,
			want: manifestPath + ": manifest public key " + hex.EncodeToString(testPub("attacker")) + " is not the pinned key",
		},
		{
			name: "remove the manifest of a sealed segment",
			tamper: func(t *testing.T, dir string) {
				os.Remove(filepath.Join(dir, manifestPath))
			},
			want: segPath + ": segment has no manifest but is not the last segment",
		},
		{
			name: "drop the last record of a sealed segment",
			tamper: func(t *testing.T, dir string) {
				writeLines(t, dir, seg, lines[:len(lines)-1])
			},
			want: fmt.Sprintf("%s: manifest record_count %d does not match the segment (%d)", manifestPath, len(lines), len(lines)-1),
		},
		{
			name: "whitespace added to a record",
			tamper: func(t *testing.T, dir string) {
				l := append([][]byte(nil), lines...)
				l[1] = bytes.Replace(l[1], []byte(`,"prev"`), []byte(`, "prev"`), 1)
				writeLines(t, dir, seg, l)
			},
			want: fmt.Sprintf("%s record seq %d (line 2): non-canonical encoding", segPath, rec(2).Seq),
		},
		{
			name: "partial line in a sealed segment",
			tamper: func(t *testing.T, dir string) {
				f, _ := os.OpenFile(filepath.Join(dir, segPath), os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(`{"seq":`)
				f.Close()
			},
			want: fmt.Sprintf("%s line %d: partial line (no trailing newline) in a sealed segment", segPath, len(lines)+1),
		},
		{
			name: "modify a record in the open segment",
			tamper: func(t *testing.T, dir string) {
				l := append([][]byte(nil), openLines...)
				last := len(l) - 1
				l[last] = bytes.Replace(l[last], []byte("abcdefgh"), []byte("abcdefgX"), 1)
				writeLines(t, dir, openSeg, l)
			},
			want: fmt.Sprintf("%s record seq %d (line %d): hash mismatch", filepath.Join(SegmentsDir, openSeg),
				mustParse(t, openLines[len(openLines)-1]).Seq, len(openLines)),
		},
		{
			name: "the first bad record is named when later ones are bad too",
			tamper: func(t *testing.T, dir string) {
				l := append([][]byte(nil), lines...)
				l[1] = bytes.Replace(l[1], []byte("abcdefgh"), []byte("abcdefgX"), 1)
				l[3] = bytes.Replace(l[3], []byte("abcdefgh"), []byte("abcdefgX"), 1)
				writeLines(t, dir, seg, l)
				os.Remove(filepath.Join(dir, SegmentsDir, segs[4]))
			},
			want: fmt.Sprintf("%s record seq %d (line 2): hash mismatch", segPath, rec(2).Seq),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tt.tamper(t, dir)
			var opts VerifyOptions
			if tt.pin {
				opts.PublicKey = testPub("main")
			}
			_, err := VerifyDir(dir, opts)
			var verr *VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("want a *VerifyError, got %v", err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
		})
	}

	t.Run("re-signed manifest without pinning shows two keys", func(t *testing.T) {
		dir := copyDir(t, base)
		m := readManifestFile(t, dir, seg)
		m.Sign(otherKey)
		writeManifestFile(t, dir, m)
		rep := mustVerify(t, dir, VerifyOptions{})
		if len(rep.PublicKeys) != 2 {
			t.Errorf("want both keys reported, got %v", rep.PublicKeys)
		}
	})
	t.Run("partial line in the open segment is tolerated and reported", func(t *testing.T) {
		dir := copyDir(t, base)
		f, _ := os.OpenFile(filepath.Join(dir, SegmentsDir, openSeg), os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString(`{"seq":99,"time":"2026`)
		f.Close()
		rep := mustVerify(t, dir, VerifyOptions{})
		if rep.PartialTail == nil || rep.PartialTail.Bytes != int64(len(`{"seq":99,"time":"2026`)) || rep.LastSeq != uint64(41+len(segs)) {
			t.Errorf("partial tail %+v, last seq %d", rep.PartialTail, rep.LastSeq)
		}
	})
}

func TestOpenRepairsTail(t *testing.T) {
	tests := []struct {
		name     string
		tail     func(lastLine []byte) []byte // bytes appended to the open segment
		wantCut  int
		wantNext uint64
	}{
		{name: "partial line", tail: func([]byte) []byte { return []byte(`{"seq":13,"ti`) }, wantCut: 13, wantNext: 13},
		{name: "complete line with a bad hash", tail: func(last []byte) []byte {
			l := bytes.Replace(last, []byte(`"seq":12`), []byte(`"seq":13`), 1)
			return append(l, '\n')
		}, wantCut: -1, wantNext: 13},
		{name: "nothing to repair", tail: func([]byte) []byte { return nil }, wantCut: 0, wantNext: 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey("main")
			a := openArchive(t, dir, key, Options{})
			appendStories(t, a, 0, 11, 100)
			a.abandon()
			seg := SegmentName(1)
			lines := readLines(t, dir, seg)
			tail := tt.tail(lines[len(lines)-1])
			f, _ := os.OpenFile(filepath.Join(dir, SegmentsDir, seg), os.O_WRONLY|os.O_APPEND, 0)
			f.Write(tail)
			f.Close()
			before, _ := os.Stat(filepath.Join(dir, SegmentsDir, seg))

			a = openArchive(t, dir, key, Options{})
			after, _ := os.Stat(filepath.Join(dir, SegmentsDir, seg))
			cut := int(before.Size() - after.Size())
			if want := tt.wantCut; want >= 0 && cut != want || want < 0 && cut != len(tail) {
				t.Errorf("cut %d bytes, want %d", cut, len(tail))
			}
			if seq, _ := a.Head(); seq+1 != tt.wantNext {
				t.Errorf("next seq %d, want %d", seq+1, tt.wantNext)
			}
			q, _ := os.ReadDir(filepath.Join(dir, "quarantine"))
			if (cut > 0) != (len(q) == 1) {
				t.Errorf("quarantine holds %d files after cutting %d bytes", len(q), cut)
			}
			appendStories(t, a, 100, 3, 100)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, dir, VerifyOptions{})
			if rep.LastSeq != 15 || rep.PartialTail != nil {
				t.Errorf("after repair and 3 more records: last seq %d partial %+v", rep.LastSeq, rep.PartialTail)
			}
		})
	}
}

func TestOpenRefusesCorruptionBeforeTheTail(t *testing.T) {
	dir := t.TempDir()
	key := testKey("main")
	a := openArchive(t, dir, key, Options{})
	appendStories(t, a, 0, 5, 100)
	a.abandon()
	seg := SegmentName(1)
	lines := readLines(t, dir, seg)
	lines[2] = bytes.Replace(lines[2], []byte("abcdefgh"), []byte("abcdefgX"), 1)
	writeLines(t, dir, seg, lines)
	if _, err := Open(dir, key, Options{}); err == nil || !strings.Contains(err.Error(), "refusing to continue the chain") {
		t.Fatalf("want Open to refuse a segment corrupted before its tail, got %v", err)
	}
}

func TestOpenRemovesEmptyOpenSegment(t *testing.T) {
	dir := t.TempDir()
	key := testKey("main")
	a := openArchive(t, dir, key, Options{})
	appendStories(t, a, 0, 3, 100)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash right after creating the next segment leaves it empty or with a partial first line.
	os.WriteFile(filepath.Join(dir, SegmentsDir, SegmentName(5)), []byte(`{"seq":5,"ti`), 0o640)
	a = openArchive(t, dir, key, Options{})
	if _, err := os.Stat(filepath.Join(dir, SegmentsDir, SegmentName(5))); !os.IsNotExist(err) {
		t.Errorf("empty open segment still there: %v", err)
	}
	appendStories(t, a, 3, 2, 100)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir, VerifyOptions{}); rep.LastSeq != 7 || rep.Segments != 2 {
		t.Errorf("report %+v", rep)
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir, testKey("main"), Options{SegmentMaxBytes: 8192})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				entries := []Entry{
					{Kind: KindStory, TraceID: traceIDFor(g), Payload: payload(i, 200)},
					{Kind: KindFinding, TraceID: traceIDFor(g), Payload: []byte(`{"finding":true}`)},
				}
				if err := a.Append(context.Background(), entries); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{})
	if want := uint64(8*25*2) + uint64(rep.Segments); rep.Records != want {
		t.Errorf("records %d, want %d (400 entries + one segment_open per segment)", rep.Records, want)
	}
}

func TestAppendRejectsInvalidEntries(t *testing.T) {
	a := openArchive(t, t.TempDir(), testKey("main"), Options{})
	defer a.Close()
	tests := []struct {
		name  string
		entry Entry
	}{
		{"internal kind", Entry{Kind: KindRetention, Payload: []byte(`{}`)}},
		{"unknown kind", Entry{Kind: "note", Payload: []byte(`{}`)}},
		{"upper-case trace id", Entry{Kind: KindStory, TraceID: strings.Repeat("AB", 16), Payload: []byte(`{}`)}},
		{"payload not JSON", Entry{Kind: KindStory, Payload: []byte(`{`)}},
		{"payload not an object", Entry{Kind: KindStory, Payload: []byte(`[1]`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := a.Append(context.Background(), []Entry{tt.entry}); !errors.Is(err, ErrInvalidEntry) {
				t.Errorf("want ErrInvalidEntry, got %v", err)
			}
		})
	}
}

func TestRecordCanonicalEncoding(t *testing.T) {
	r := Record{Seq: 7, Time: "2026-01-02T03:04:05.5Z", Kind: KindStory, TraceID: traceIDFor(1), Payload: []byte(`{"a":"<b>"}`), Prev: strings.Repeat("ab", 32)}
	r.PayloadSHA256 = payloadDigest(r.Payload)
	h := r.Header()
	r.Hash = h.ComputeHash()
	wantHeader := `{"seq":7,"time":"2026-01-02T03:04:05.5Z","kind":"story","trace_id":"` + traceIDFor(1) +
		`","payload_sha256":"` + r.PayloadSHA256 + `","prev":"` + strings.Repeat("ab", 32) + `"}`
	if got := string(h.CanonicalHeaderBytes()); got != wantHeader {
		t.Errorf("canonical header\n got %s\nwant %s", got, wantHeader)
	}
	sum := sha256.Sum256([]byte(wantHeader))
	if r.Hash != hex.EncodeToString(sum[:]) {
		t.Error("hash is not sha256 of the canonical header")
	}
	line := r.AppendLine(nil)
	wantLine := `{"seq":7,"time":"2026-01-02T03:04:05.5Z","kind":"story","trace_id":"` + traceIDFor(1) +
		`","payload":{"a":"<b>"},"prev":"` + strings.Repeat("ab", 32) + `","hash":"` + r.Hash + "\"}\n"
	if string(line) != wantLine {
		t.Errorf("line\n got %s\nwant %s", line, wantLine)
	}
	if _, err := ParseLine(line[:len(line)-1]); err != nil {
		t.Errorf("ParseLine of a canonical line: %v", err)
	}
}
