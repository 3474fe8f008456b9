package archive

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "", want: 0},
		{in: "pci_dss", want: 365 * 24 * time.Hour},
		{in: "nydfs_500", want: (5*365 + 2) * 24 * time.Hour},
		{in: "sox", want: (7*365 + 2) * 24 * time.Hour},
		{in: "720h", want: 720 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "forever", wantErr: true},
		{in: "0s", wantErr: true},
		{in: "-1h", wantErr: true},
		{in: "PCI_DSS", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRetention(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && r.Duration != tt.want {
				t.Errorf("duration %v, want %v", r.Duration, tt.want)
			}
		})
	}
}

func TestRetentionRemovesExactlyExpiredSegments(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	const keep = 24 * time.Hour
	a := openArchive(t, dir, testKey("main"), Options{
		Retention:     Retention{Name: "test_policy", Duration: keep},
		Now:           clock.Now,
		SegmentMaxAge: 10000 * time.Hour,
	})
	defer a.Close()
	seal := func() time.Time {
		t.Helper()
		clock.Advance(time.Hour)
		if err := a.Rotate(); err != nil {
			t.Fatal(err)
		}
		return clock.Now()
	}
	appendStories(t, a, 0, 3, 100)
	closedA := seal()
	appendStories(t, a, 3, 3, 100)
	closedB := seal()
	appendStories(t, a, 6, 3, 100) // segment C stays open
	segA, segB, segC := SegmentName(1), SegmentName(5), SegmentName(9)
	if got := segmentNames(t, dir); !slices.Equal(got, []string{segA, segB, segC}) {
		t.Fatalf("segments %v", got)
	}
	backup := copyDir(t, dir)

	steps := []struct {
		name        string
		at          time.Time
		wantRemoved []string
		wantPresent []string
	}{
		{"nothing is expired yet", closedA.Add(time.Hour), nil, []string{segA, segB, segC}},
		{"A exactly at its expiry is kept", closedA.Add(keep), nil, []string{segA, segB, segC}},
		{"A one nanosecond after its expiry is removed", closedA.Add(keep + 1), []string{segA}, []string{segB, segC}},
		{"B one nanosecond before its expiry is kept", closedB.Add(keep - 1), nil, []string{segB, segC}},
		{"B after its expiry is removed", closedB.Add(keep + time.Minute), []string{segB}, []string{segC}},
		{"the open segment is never removed", closedB.Add(1000 * keep), nil, []string{segC}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Set(st.at)
			removed, err := a.ApplyRetention()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, st.wantRemoved) {
				t.Errorf("removed %v, want %v", removed, st.wantRemoved)
			}
			if got := segmentNames(t, dir); !slices.Equal(got, st.wantPresent) {
				t.Errorf("present %v, want %v", got, st.wantPresent)
			}
			if _, err := os.Stat(filepath.Join(dir, SegmentsDir, ManifestName(1))); len(st.wantPresent) < 3 && !os.IsNotExist(err) {
				t.Errorf("manifest of a removed segment is still there")
			}
			mustVerify(t, dir, VerifyOptions{PublicKey: testPub("main")})
		})
	}

	rep := mustVerify(t, dir, VerifyOptions{})
	wantRemoved := []string{filepath.Join(SegmentsDir, segA), filepath.Join(SegmentsDir, segB)}
	if rep.RetentionRecords != 2 || !slices.Equal(rep.RemovedSegments, wantRemoved) {
		t.Errorf("retention records %d removed %v, want 2 and %v", rep.RetentionRecords, rep.RemovedSegments, wantRemoved)
	}
	lines := readLines(t, dir, segC)
	last := mustParse(t, lines[len(lines)-1])
	var p RetentionPayload
	if err := json.Unmarshal(last.Payload, &p); err != nil {
		t.Fatal(err)
	}
	mB := readManifestFile(t, backup, segB)
	if last.Kind != KindRetention || p.Segment != segB || p.FirstSeq != mB.FirstSeq || p.LastSeq != mB.LastSeq ||
		p.LastHash != mB.LastHash || p.FirstPrev != mB.FirstPrev || p.Policy != "test_policy" || p.ManifestSHA256 == "" {
		t.Errorf("retention record %+v does not account for %+v", p, mB)
	}

	t.Run("a removal whose own retention record was removed later still verifies", func(t *testing.T) {
		clock.Advance(time.Hour)
		if err := a.Rotate(); err != nil { // seal C, which holds the records of A and B
			t.Fatal(err)
		}
		clock.Advance(keep + time.Hour)
		removed, err := a.ApplyRetention()
		if err != nil || !slices.Equal(removed, []string{segC}) {
			t.Fatalf("removed %v, %v", removed, err)
		}
		rep := mustVerify(t, dir, VerifyOptions{})
		if rep.OpenSegment == "" || rep.Segments != 1 || rep.RetentionRecords != 1 {
			t.Errorf("report %+v", rep)
		}
	})
}

func TestRetentionInterruptedRemoval(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	a := openArchive(t, dir, testKey("main"), Options{Retention: Retention{Name: "1h", Duration: time.Hour}, Now: clock.Now})
	defer a.Close()
	appendStories(t, a, 0, 3, 100)
	if err := a.Rotate(); err != nil {
		t.Fatal(err)
	}
	appendStories(t, a, 3, 1, 100)
	backup := copyDir(t, dir)
	clock.Advance(2 * time.Hour)
	if _, err := a.ApplyRetention(); err != nil {
		t.Fatal(err)
	}
	// A crash after the retention record but before the files were removed leaves them.
	for _, n := range []string{SegmentName(1), ManifestName(1)} {
		data, _ := os.ReadFile(filepath.Join(backup, SegmentsDir, n))
		os.WriteFile(filepath.Join(dir, SegmentsDir, n), data, 0o640)
	}
	rep := mustVerify(t, dir, VerifyOptions{})
	if !slices.Equal(rep.PendingRemovals, []string{filepath.Join(SegmentsDir, SegmentName(1))}) {
		t.Errorf("pending removals %v", rep.PendingRemovals)
	}
	removed, err := a.ApplyRetention()
	if err != nil || len(removed) != 1 {
		t.Fatalf("second removal: %v %v", removed, err)
	}
	rep = mustVerify(t, dir, VerifyOptions{})
	if len(rep.PendingRemovals) != 0 || rep.RetentionRecords != 2 || len(rep.RemovedSegments) != 1 {
		t.Errorf("report %+v", rep)
	}
	// A manifest left without its segment (crash between the two removals) is only a warning.
	os.WriteFile(filepath.Join(dir, SegmentsDir, ManifestName(1)), []byte("{}"), 0o640)
	if rep := mustVerify(t, dir, VerifyOptions{}); len(rep.Warnings) != 1 {
		t.Errorf("warnings %v", rep.Warnings)
	}
}

func TestRetentionForgedClaimIsRejected(t *testing.T) {
	// A retention record can only account for what its segment really ended with: deleting a
	// segment and the one that holds its retention record is caught.
	dir := t.TempDir()
	clock := newFakeClock()
	a := openArchive(t, dir, testKey("main"), Options{Retention: Retention{Name: "1h", Duration: time.Hour}, Now: clock.Now})
	appendStories(t, a, 0, 3, 100)
	a.Rotate()
	appendStories(t, a, 3, 3, 100)
	a.Rotate()
	clock.Advance(2 * time.Hour)
	appendStories(t, a, 6, 1, 100)
	removed, err := a.ApplyRetention()
	if err != nil || len(removed) != 2 {
		t.Fatalf("removed %v %v", removed, err)
	}
	appendStories(t, a, 7, 1, 100)
	a.Rotate()
	appendStories(t, a, 8, 3, 100)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir, VerifyOptions{})
	segs := segmentNames(t, dir)
	// Remove the segment that holds the retention records (it is not expired).
	os.Remove(filepath.Join(dir, SegmentsDir, segs[0]))
	os.Remove(filepath.Join(dir, SegmentsDir, ManifestName(9)))
	want := filepath.Join(SegmentsDir, segs[1]) + " record seq 14 (line 1): sequence gap: expected 1 got 14"
	if _, err := VerifyDir(dir, VerifyOptions{}); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}
