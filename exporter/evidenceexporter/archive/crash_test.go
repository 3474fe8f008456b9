package archive

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const helperDirEnv = "AGENTTRAIL_EVIDENCE_HELPER_DIR"

// TestHelperWriter is not a test on its own: TestCrashMidWrite runs the test binary again with
// this test selected and helperDirEnv set, and the child appends records until it is killed.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process of TestCrashMidWrite")
	}
	a, err := Open(dir, testKey("main"), Options{SegmentMaxBytes: 512 << 10})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	for i := 0; ; i++ {
		// Large, varying records make a kill during write(2) likely enough to leave a torn line.
		size := 1000 + (i*7919)%(256<<10)
		if err := a.Append(context.Background(), []Entry{{Kind: KindStory, TraceID: traceIDFor(i), Payload: payload(i, size)}}); err != nil {
			fmt.Println("append failed:", err)
			os.Exit(3)
		}
		if i == 20 {
			fmt.Println("ready")
		}
	}
}

func TestCrashMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	var last Report
	torn := 0
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan string, 1)
		go func() {
			// Lines before "ready" (test framework output, errors) are kept for the failure.
			var seen []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					ready <- sc.Text()
					return
				}
				seen = append(seen, sc.Text())
			}
			ready <- strings.Join(seen, "\n")
		}()
		select {
		case l := <-ready:
			if l != "ready" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child did not become ready:\n%s", round, l)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child did not become ready in time", round)
		}
		time.Sleep(time.Duration(5+round*17) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		// Up to the last whole record the archive verifies, whatever the child was doing.
		rep, err := VerifyDir(dir, VerifyOptions{PublicKey: testPub("main")})
		if err != nil {
			t.Fatalf("round %d: after SIGKILL: %v", round, err)
		}
		if rep.LastSeq <= last.LastSeq {
			t.Fatalf("round %d: no progress: last seq %d, before %d", round, rep.LastSeq, last.LastSeq)
		}
		if rep.PartialTail != nil {
			torn++
			t.Logf("round %d: killed mid-write: %d bytes of a partial record after seq %d", round, rep.PartialTail.Bytes, rep.LastSeq)
		} else {
			t.Logf("round %d: killed between writes after seq %d", round, rep.LastSeq)
		}
		last = rep
	}

	if last.PartialTail == nil {
		// The kill fell between writes: tear the tail by hand so that reopening is exercised.
		openSeg := filepath.Join(dir, last.OpenSegment)
		if last.OpenSegment == "" {
			// Killed just after sealing a segment: tear the first line of the next one.
			openSeg = filepath.Join(dir, SegmentsDir, SegmentName(last.LastSeq+1))
		}
		f, _ := os.OpenFile(openSeg, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		f.WriteString(`{"seq":` + fmt.Sprint(last.LastSeq+1) + `,"time":"20`)
		f.Close()
		last = mustVerify(t, dir, VerifyOptions{})
		if last.PartialTail == nil {
			t.Fatal("torn tail not reported")
		}
	}
	t.Logf("%d of 4 kills tore a record", torn)

	a := openArchive(t, dir, testKey("main"), Options{SegmentMaxBytes: 512 << 10})
	if seq, hash := a.Head(); seq != last.LastSeq || hash != last.LastHash {
		t.Fatalf("reopened at seq %d %s, want the last whole record %d %s", seq, hash, last.LastSeq, last.LastHash)
	}
	appendStories(t, a, 0, 5, 500)
	head, _ := a.Head()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")})
	// 5 stories, plus a segment_open record if the first append had to start a new segment.
	if rep.PartialTail != nil || rep.OpenSegment != "" || rep.LastSeq != head || head < last.LastSeq+5 || head > last.LastSeq+6 {
		t.Errorf("after reopening at %d and appending 5: %+v", last.LastSeq, rep)
	}
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
