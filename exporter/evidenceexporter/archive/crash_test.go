package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const (
	helperDirEnv = "AGENTTRAIL_EVIDENCE_HELPER_DIR"
	// helperNoFsyncEnv runs the helper with fsync off: a kill -9 (unlike a power loss) must
	// not lose an acknowledged record either way.
	helperNoFsyncEnv = "AGENTTRAIL_EVIDENCE_HELPER_NO_FSYNC"
)

// crashSegmentBytes is small so that kills also land while a segment is sealed and the next
// one is started.
const crashSegmentBytes = 256 << 10

// TestHelperWriter is not a test on its own: TestCrashKill9 runs the test binary again with
// this test selected and helperDirEnv set. The child appends batches with fsync on (off in
// every third round) until it is killed, and after each Append returns it prints "ack <seq> <hash>" for every record of the
// batch: the records it was told are durable.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process of TestCrashKill9")
	}
	// Sealed segments expire quickly, so that kills also land while retention appends its
	// record and removes a segment.
	a, err := Open(dir, testKey("main"), Options{SegmentMaxBytes: crashSegmentBytes, Fsync: os.Getenv(helperNoFsyncEnv) == "",
		Retention: Retention{Name: "test", Duration: 300 * time.Millisecond}})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "ready")
	w.Flush()
	for i := 0; ; i++ {
		// Large, varying records make a kill during write(2) likely enough to leave a torn
		// line; batches of up to 3 exercise the all-or-nothing batch.
		n := 1 + i%3
		entries := make([]Entry, n)
		for j := range entries {
			entries[j] = Entry{Kind: KindStory, TraceID: traceIDFor(i), Payload: payload(i*3+j, 500+(i*7919+j*104729)%(96<<10))}
		}
		before, _ := a.Head()
		if err := a.Append(context.Background(), entries); err != nil {
			fmt.Fprintln(w, "append failed:", err)
			w.Flush()
			os.Exit(3)
		}
		// The acknowledgement is only printed after Append returned. Reading the hashes back
		// from the file would not prove anything; Head gives the last one, and the records in
		// between are checked through the chain.
		seq, hash := a.Head()
		if seq < before+uint64(n) {
			fmt.Fprintf(w, "append failed: head %d after appending %d to %d\n", seq, n, before)
			w.Flush()
			os.Exit(3)
		}
		fmt.Fprintf(w, "ack %d %s\n", seq, hash)
		w.Flush()
		if i%8 == 7 {
			if _, err := a.ApplyRetention(); err != nil {
				fmt.Fprintln(w, "retention failed:", err)
				w.Flush()
				os.Exit(3)
			}
		}
	}
}

// recordHashes returns the hash of every record in the archive, by seq, and the seq ranges of
// the segments that retention records say were removed.
func recordHashes(t *testing.T, dir string) (map[uint64]string, [][2]uint64) {
	t.Helper()
	out := map[uint64]string{}
	var removed [][2]uint64
	for _, name := range segmentNames(t, dir) {
		f, err := os.Open(filepath.Join(dir, SegmentsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		lr := newLineReader(f)
		for {
			l, ok, err := lr.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok || !l.terminated {
				break
			}
			rec, err := ParseLine(l.b)
			if err != nil {
				t.Fatalf("%s line %d: %v", name, lr.no, err)
			}
			out[rec.Seq] = rec.Hash
			if rec.Kind == KindRetention {
				var p RetentionPayload
				if err := json.Unmarshal(rec.Payload, &p); err != nil {
					t.Fatal(err)
				}
				removed = append(removed, [2]uint64{p.FirstSeq, p.LastSeq})
			}
		}
		f.Close()
	}
	return out, removed
}

// TestCrashKill9 kills a process appending to the archive at random points, many times. After
// each kill: the archive verifies, every acknowledged record is in it with the hash the writer
// was given, reopening cuts a torn tail back to the last whole record (logged, reported
// through OnRepair, kept in quarantine/) and the chain continues from there.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	rounds := 24
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	acked := map[uint64]string{} // every acknowledged seq's hash, over all rounds
	var natural, handTorn, repairs, retained int
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
		if round%3 == 2 {
			cmd.Env = append(cmd.Env, helperNoFsyncEnv+"=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		type result struct {
			acks  map[uint64]string
			other []string
		}
		done := make(chan result, 1)
		go func() {
			r := result{acks: map[uint64]string{}}
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var seq uint64
				var hash string
				switch l := sc.Text(); {
				case l == "ready":
					ready <- true
				case strings.HasPrefix(l, "ack "):
					if _, err := fmt.Sscanf(l, "ack %d %s", &seq, &hash); err == nil {
						r.acks[seq] = hash
					} else {
						r.other = append(r.other, l)
					}
				default:
					r.other = append(r.other, l)
				}
			}
			done <- r
		}()
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child did not become ready in time: %v", round, (<-done).other)
		}
		// At a random point: while opening the archive, mid-write, mid-fsync, while sealing.
		time.Sleep(time.Duration(rng.Int63n(int64(120 * time.Millisecond))))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		res := <-done
		cmd.Wait()
		for _, l := range res.other {
			if strings.Contains(l, "failed") {
				t.Fatalf("round %d: child: %s", round, l)
			}
		}
		for seq, h := range res.acks {
			acked[seq] = h
		}

		rep, err := VerifyDir(dir, VerifyOptions{PublicKey: testPub("main")})
		if err != nil {
			t.Fatalf("round %d: after SIGKILL the archive does not verify: %v", round, err)
		}
		have, removed := recordHashes(t, dir)
		for seq, h := range acked {
			if _, ok := have[seq]; !ok && slices.ContainsFunc(removed, func(r [2]uint64) bool { return r[0] <= seq && seq <= r[1] }) {
				delete(acked, seq) // removed by retention, as a retention record in the chain says
				retained++
				continue
			}
			if have[seq] != h {
				t.Fatalf("round %d: acknowledged record seq %d lost (archive holds %q, writer was told %s); last seq %d",
					round, seq, have[seq], h, rep.LastSeq)
			}
		}
		if rep.PartialTail != nil {
			natural++
		} else if round%2 == 1 {
			// The kill fell between writes: tear the tail by hand (alternately a partial line
			// and a whole line whose hash does not verify, as a power loss can leave), so that
			// the repair below runs in most rounds.
			tearTail(t, dir, rep, round%4 == 1)
			handTorn++
		}
		torn := tailBytes(t, dir, rep)

		core, logs := observer.New(zap.WarnLevel)
		var got []Repair
		a, err := Open(dir, testKey("main"), Options{SegmentMaxBytes: crashSegmentBytes, Fsync: true,
			Logger: zap.New(core), OnRepair: func(r Repair) { got = append(got, r) }})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		if seq, hash := a.Head(); seq != rep.LastSeq || hash != rep.LastHash {
			t.Fatalf("round %d: reopened at seq %d %s, want the last whole record %d %s", round, seq, hash, rep.LastSeq, rep.LastHash)
		}
		a.abandon() // as if the collector died again, before its next write
		switch {
		case torn == 0 && len(got) != 0:
			t.Fatalf("round %d: repair without a torn tail: %+v", round, got)
		case torn > 0:
			repairs++
			if len(got) != 1 || got[0].Bytes != torn || got[0].Quarantine == "" {
				t.Fatalf("round %d: %d torn bytes, repairs reported %+v", round, torn, got)
			}
			if q, err := os.Stat(got[0].Quarantine); err != nil || q.Size() != torn {
				t.Fatalf("round %d: quarantined copy %v %v, want %d bytes", round, q, err, torn)
			}
			if logs.FilterMessageSnippet("Truncated a partial record").Len() != 1 {
				t.Fatalf("round %d: repair not logged: %v", round, logs.All())
			}
		}
		after := mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")})
		if after.PartialTail != nil || after.LastSeq != rep.LastSeq || after.LastHash != rep.LastHash {
			t.Fatalf("round %d: after the repair: %+v, want last seq %d and no partial tail", round, after, rep.LastSeq)
		}
		t.Logf("round %d: %d acks, last seq %d, %d torn bytes cut (%d segments, %d removed by retention, %d pending removal)",
			round, len(res.acks), rep.LastSeq, torn, rep.Segments, len(rep.RemovedSegments), len(rep.PendingRemovals))
	}
	t.Logf("%d rounds: %d kills tore a record, %d tails torn by hand, %d repairs, %d acknowledged records kept, %d removed by retention",
		rounds, natural, handTorn, repairs, len(acked), retained)
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged in any round")
	}

	// The chain continues after all this, and seals.
	a := openArchive(t, dir, testKey("main"), Options{SegmentMaxBytes: crashSegmentBytes})
	head, _ := a.Head()
	appendStories(t, a, 0, 5, 500)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")})
	if rep.OpenSegment != "" || rep.LastSeq < head+5 || rep.LastSeq > head+6 {
		t.Errorf("after appending 5 at %d and closing: %+v", head, rep)
	}
}

// tearTail appends to the open segment (or starts one) what a crash mid-write could leave:
// half of a record line, or a whole line whose hash does not verify.
func tearTail(t *testing.T, dir string, rep Report, wholeLine bool) {
	t.Helper()
	openSeg := filepath.Join(dir, rep.OpenSegment)
	if rep.OpenSegment == "" {
		// Killed just after sealing a segment: tear the first line of the next one.
		openSeg = filepath.Join(dir, SegmentsDir, SegmentName(rep.LastSeq+1))
	}
	rec := Record{Seq: rep.LastSeq + 1, Time: "2026-01-02T03:04:05Z", Kind: KindStory, Payload: []byte(`{"torn":true}`),
		PayloadSHA256: payloadDigest([]byte(`{"torn":true}`)), Prev: rep.LastHash}
	h := rec.Header()
	rec.Hash = h.ComputeHash()
	line := rec.AppendLine(nil)
	if wholeLine {
		line[len(line)-3] ^= 1 // the hash's last digit
	} else {
		line = line[:len(line)/2]
	}
	f, err := os.OpenFile(openSeg, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(line); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// tailBytes returns how many bytes follow the last whole record that rep names.
func tailBytes(t *testing.T, dir string, rep Report) int64 {
	t.Helper()
	segs := segmentNames(t, dir)
	if len(segs) == 0 {
		return 0
	}
	last := segs[len(segs)-1]
	if _, err := os.Stat(filepath.Join(dir, SegmentsDir, ManifestName(mustSeq(t, last)))); err == nil {
		return 0
	}
	f, err := os.Open(filepath.Join(dir, SegmentsDir, last))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	scan, err := scanSegment(f, fi.Size(), last, mustSeq(t, last))
	if err != nil {
		t.Fatal(err)
	}
	if scan.count > 0 && scan.last.Seq != rep.LastSeq {
		t.Fatalf("open segment ends at seq %d, verify says %d", scan.last.Seq, rep.LastSeq)
	}
	return fi.Size() - scan.goodEnd
}

func mustSeq(t *testing.T, segment string) uint64 {
	t.Helper()
	seq, ok := parseSeqName(strings.TrimSuffix(segment, ".jsonl"))
	if !ok {
		t.Fatalf("bad segment name %s", segment)
	}
	return seq
}

// faultyDisk makes segment files fail like a full disk: writes past the budget are cut short
// with ENOSPC, and truncate and fsync can be made to fail.
type faultyDisk struct {
	mu           sync.Mutex
	budget       int64 // bytes that may still be written; < 0 is unlimited
	failTruncate bool
	failSync     bool
}

func (d *faultyDisk) set(budget int64, failTruncate, failSync bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.budget, d.failTruncate, d.failSync = budget, failTruncate, failSync
}

func (d *faultyDisk) open(path string, create bool) (segmentFile, error) {
	f, err := openOSFile(path, create)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: f.(*os.File), disk: d}, nil
}

type faultyFile struct {
	*os.File
	disk *faultyDisk
}

func (f *faultyFile) Write(p []byte) (int, error) {
	f.disk.mu.Lock()
	defer f.disk.mu.Unlock()
	if f.disk.budget < 0 || int64(len(p)) <= f.disk.budget {
		if f.disk.budget >= 0 {
			f.disk.budget -= int64(len(p))
		}
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:f.disk.budget])
	f.disk.budget = 0
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *faultyFile) Truncate(size int64) error {
	f.disk.mu.Lock()
	defer f.disk.mu.Unlock()
	if f.disk.failTruncate {
		return &os.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Truncate(size)
}

func (f *faultyFile) Sync() error {
	f.disk.mu.Lock()
	defer f.disk.mu.Unlock()
	if f.disk.failSync {
		return &os.PathError{Op: "fsync", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Sync()
}

func TestFullDisk(t *testing.T) {
	tests := []struct {
		name         string
		budget       int64
		failTruncate bool
		failSync     bool
		batch        int
		newSegment   bool // the failing append has to start a new segment
		wantErr      error
	}{
		{name: "record partly written", budget: 100, batch: 1, wantErr: syscall.ENOSPC},
		{name: "second record of a batch fails", budget: 700, batch: 3, wantErr: syscall.ENOSPC},
		{name: "nothing can be written", budget: 0, batch: 1, wantErr: syscall.ENOSPC},
		{name: "first record of a new segment fails", budget: 50, batch: 1, newSegment: true, wantErr: syscall.ENOSPC},
		{name: "truncating the partial write fails too", budget: 100, failTruncate: true, batch: 1, wantErr: syscall.ENOSPC},
		{name: "fsync fails", budget: -1, failSync: true, batch: 2, wantErr: syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := &faultyDisk{budget: -1}
			a := openArchive(t, dir, testKey("main"), Options{Fsync: true, SegmentMaxBytes: 1 << 20, openFile: disk.open})
			defer a.Close()
			appendStories(t, a, 0, 5, 500)
			if tt.newSegment {
				if err := a.Rotate(); err != nil {
					t.Fatal(err)
				}
			}
			seqBefore, hashBefore := a.Head()
			segs := segmentNames(t, dir)
			sizeBefore := fileSize(t, dir, segs[len(segs)-1])

			disk.set(tt.budget, tt.failTruncate, tt.failSync)
			entries := make([]Entry, tt.batch)
			for i := range entries {
				entries[i] = Entry{Kind: KindStory, TraceID: traceIDFor(i), Payload: payload(100+i, 500)}
			}
			err := a.Append(context.Background(), entries)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Append: got %v, want %v", err, tt.wantErr)
			}
			if seq, hash := a.Head(); seq != seqBefore || hash != hashBefore {
				t.Errorf("head moved to %d after a failed append (was %d)", seq, seqBefore)
			}
			rep := mustVerify(t, dir, VerifyOptions{})
			if !tt.failTruncate {
				if got := segmentNames(t, dir); len(got) != len(segs) {
					t.Errorf("segments %v after failure, want %v", got, segs)
				}
				if got := fileSize(t, dir, segs[len(segs)-1]); got != sizeBefore {
					t.Errorf("segment is %d bytes after failure, want %d (truncated back)", got, sizeBefore)
				}
				if rep.PartialTail != nil {
					t.Errorf("partial tail left behind: %+v", rep.PartialTail)
				}
			} else if rep.PartialTail == nil {
				t.Errorf("truncate failed, so the partial write should still be there")
			}

			disk.set(-1, false, false)
			appendStories(t, a, 200, 2, 500)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			rep = mustVerify(t, dir, VerifyOptions{})
			wantLast := seqBefore + 2
			if tt.newSegment {
				wantLast++ // the new segment's segment_open record
			}
			if rep.LastSeq != wantLast || rep.PartialTail != nil {
				t.Errorf("after recovery: last seq %d partial %+v, want last seq %d", rep.LastSeq, rep.PartialTail, wantLast)
			}
		})
	}
}

func fileSize(t *testing.T, dir, seg string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, SegmentsDir, seg))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestOversizedLines: a "record" longer than any record can be (here 65 MiB of a sparse file,
// standing for a line of gigabytes) is rejected without being read into memory, by verify and
// by Open, whether it ends in a newline or not; Open refuses to cut it off as crash damage (and
// to copy gigabytes into quarantine/).
func TestOversizedLines(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 130 MiB of sparse files")
	}
	for _, tc := range []struct {
		name       string
		terminated bool
		verifyErr  string
	}{
		{"unterminated tail", false, "partial line longer than a record can be"},
		{"complete line", true, "record longer than a record can be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := openArchive(t, dir, testKey("main"), Options{})
			appendStories(t, a, 0, 3, 200)
			a.abandon()
			seg := filepath.Join(dir, SegmentsDir, SegmentName(1))
			fi, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			// A hole of MaxRecordBytes+1 MiB after the good records reads as zero bytes.
			if err := os.Truncate(seg, fi.Size()+MaxRecordBytes+1<<20); err != nil {
				t.Fatal(err)
			}
			if tc.terminated {
				f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString("\n")
				f.Close()
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			_, err = VerifyDir(dir, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(ve.Reason, tc.verifyErr) || ve.Line != 5 {
				t.Fatalf("VerifyDir: %v, want line 5: %s", err, tc.verifyErr)
			}
			runtime.ReadMemStats(&ms)
			if alloc := ms.TotalAlloc - before; alloc > 2*MaxRecordBytes+8<<20 {
				t.Errorf("verify allocated %d MiB for one line", alloc>>20)
			}
			_, err = Open(dir, testKey("main"), Options{})
			if err == nil || !strings.Contains(err.Error(), "line 5: line longer than a record can be") {
				t.Fatalf("Open: %v, want a refusal", err)
			}
			if got, _ := os.Stat(seg); got.Size() < fi.Size()+MaxRecordBytes {
				t.Errorf("Open cut the segment to %d bytes", got.Size())
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestLineReaderBound reads a 1 GiB "line" (as a record claiming gigabytes would be) and then
// a short one: the reader skips the long line holding at most MaxRecordBytes of it.
func TestLineReaderBound(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 1 GiB")
	}
	const huge = 1 << 30
	lr := newLineReader(io.MultiReader(io.LimitReader(zeros{}, huge), strings.NewReader("\n{}\n")))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	l, ok, err := lr.next()
	if err != nil || !ok || !l.long || !l.terminated || l.b != nil || lr.off != huge+1 {
		t.Fatalf("long line: %+v ok %v err %v at %d", l, ok, err, lr.off)
	}
	runtime.ReadMemStats(&ms)
	if alloc := ms.TotalAlloc - before; alloc > 2*MaxRecordBytes+8<<20 {
		t.Errorf("allocated %d MiB for a line of %d MiB", alloc>>20, huge>>20)
	}
	l, ok, err = lr.next()
	if err != nil || !ok || l.long || string(l.b) != "{}" || lr.no != 2 {
		t.Fatalf("next line: %+v %q ok %v err %v", l, l.b, ok, err)
	}
}

// TestRepairOnFullDisk starts on a torn tail when the disk is full (a crash while the disk
// filled up is likely): the copy to quarantine/ fails and is logged, the repair still happens,
// and appending continues once there is space.
func TestRepairOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system to fill needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	a := openArchive(t, dir, testKey("main"), Options{Fsync: true})
	appendStories(t, a, 0, 3, 500)
	a.abandon()
	rep := mustVerify(t, dir, VerifyOptions{})
	tearTail(t, dir, rep, false)

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	core, logs := observer.New(zap.WarnLevel)
	var got []Repair
	a, err = Open(dir, testKey("main"), Options{Fsync: true, Logger: zap.New(core), OnRepair: func(r Repair) { got = append(got, r) }})
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	defer a.Close()
	if len(got) != 1 || got[0].Quarantine != "" || got[0].Kind != RepairPartialLine {
		t.Fatalf("repairs %+v, want one partial_line without a quarantined copy", got)
	}
	if logs.FilterMessage("Could not keep a copy of the truncated bytes").Len() != 1 {
		t.Errorf("the lost copy is not logged: %v", logs.All())
	}
	if after := mustVerify(t, dir, VerifyOptions{}); after.PartialTail != nil || after.LastSeq != rep.LastSeq {
		t.Fatalf("after the repair: %+v", after)
	}
	if err := a.Append(context.Background(), []Entry{{Kind: KindStory, Payload: payload(9, 2000)}}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	appendStories(t, a, 10, 2, 500)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if after := mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")}); after.LastSeq != rep.LastSeq+2 || after.OpenSegment != "" {
		t.Fatalf("after space returned: %+v", after)
	}
}

// TestOpenRefusesBeforeCutting: an open segment that does not continue the sealed one before
// it is not crash damage, so Open refuses without cutting its torn tail (or anything else).
func TestOpenRefusesBeforeCutting(t *testing.T) {
	dir := t.TempDir()
	a := openArchive(t, dir, testKey("main"), Options{})
	appendStories(t, a, 0, 2, 200)
	if err := a.Rotate(); err != nil {
		t.Fatal(err)
	}
	appendStories(t, a, 2, 2, 200)
	a.abandon()
	// Rechain the open segment from another start, so that it is whole on its own and only its
	// link to the sealed segment is wrong.
	segs := segmentNames(t, dir)
	open := segs[len(segs)-1]
	lines := readLines(t, dir, open)
	prev := strings.Repeat("0", 64)
	for i, l := range lines {
		rec := mustParse(t, l)
		rec.Prev = prev
		h := rec.Header()
		rec.Hash = h.ComputeHash()
		prev = rec.Hash
		lines[i] = bytes.TrimSuffix(rec.AppendLine(nil), []byte("\n"))
	}
	writeLines(t, dir, open, lines)
	f, err := os.OpenFile(filepath.Join(dir, SegmentsDir, open), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":99,"time":"20`)
	f.Close()
	before := fileSize(t, dir, open)

	var repairs int
	_, err = Open(dir, testKey("main"), Options{OnRepair: func(Repair) { repairs++ }})
	if err == nil || !strings.Contains(err.Error(), "does not continue the chain") {
		t.Fatalf("Open: %v, want a refusal", err)
	}
	if got := fileSize(t, dir, open); got != before || repairs != 0 {
		t.Errorf("Open refused but cut the segment to %d bytes (was %d), %d repairs", got, before, repairs)
	}
	if _, err := os.Stat(filepath.Join(dir, "quarantine")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("quarantine/ written by a refused Open: %v", err)
	}
}
