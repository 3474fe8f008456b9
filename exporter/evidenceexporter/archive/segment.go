package archive

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// SegmentsDir is the folder of segment files and manifests inside an archive directory.
const SegmentsDir = "segments"

// segEntry is one segment as found on disk: its file, its manifest, or both.
type segEntry struct {
	firstSeq    uint64
	name        string // SegmentName(firstSeq)
	hasFile     bool
	hasManifest bool
}

// listSegments returns the segments in seq order and the names of files that are neither
// segments nor manifests (temporary files, which start with a dot, are not reported).
func listSegments(segDir string) ([]segEntry, []string, error) {
	des, err := os.ReadDir(segDir)
	if err != nil {
		return nil, nil, err
	}
	bySeq := map[uint64]*segEntry{}
	var unknown []string
	get := func(seq uint64) *segEntry {
		e := bySeq[seq]
		if e == nil {
			e = &segEntry{firstSeq: seq, name: SegmentName(seq)}
			bySeq[seq] = e
		}
		return e
	}
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		switch {
		case strings.HasSuffix(n, ".manifest.json"):
			if seq, ok := parseSeqName(strings.TrimSuffix(n, ".manifest.json")); ok && ManifestName(seq) == n && de.Type().IsRegular() {
				get(seq).hasManifest = true
				continue
			}
		case strings.HasSuffix(n, ".jsonl"):
			if seq, ok := parseSeqName(strings.TrimSuffix(n, ".jsonl")); ok && SegmentName(seq) == n && de.Type().IsRegular() {
				get(seq).hasFile = true
				continue
			}
		}
		unknown = append(unknown, n)
	}
	out := make([]segEntry, 0, len(bySeq))
	for _, e := range bySeq {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].firstSeq < out[j].firstSeq })
	return out, unknown, nil
}

func parseSeqName(s string) (uint64, bool) {
	if len(s) < 10 {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// seqMismatch describes a record whose seq is not the expected one.
func seqMismatch(expected, got uint64) string {
	if got > expected {
		return fmt.Sprintf("sequence gap: expected %d got %d", expected, got)
	}
	return fmt.Sprintf("sequence out of order: expected %d got %d", expected, got)
}

// checkSegmentOpen checks the first record of a segment.
func checkSegmentOpen(rec *Record, name string, firstSeq uint64) string {
	if rec.Seq != firstSeq {
		return fmt.Sprintf("first record seq %d does not match the segment name", rec.Seq)
	}
	if rec.Kind != KindSegmentOpen {
		return "segment does not start with a segment_open record"
	}
	var p segmentOpenPayload
	if err := json.Unmarshal(rec.Payload, &p); err != nil || p.Segment != name {
		return "segment_open record does not name this segment"
	}
	return ""
}

// checkInSegment checks rec, found at lineNo (1-based) of segment name, against the previous
// record of the same segment (nil for line 1). It returns "" when the record fits.
func checkInSegment(rec *Record, lineNo int, prev *Header, name string, firstSeq uint64) string {
	if lineNo == 1 {
		return checkSegmentOpen(rec, name, firstSeq)
	}
	if rec.Seq != prev.Seq+1 {
		return seqMismatch(prev.Seq+1, rec.Seq)
	}
	if rec.Prev != prev.Hash {
		return "prev link broken"
	}
	if rec.Kind == KindSegmentOpen {
		return "segment_open record inside a segment"
	}
	return ""
}

// segmentScan is the result of checking one segment's content on its own.
type segmentScan struct {
	goodEnd    int64 // offset just after the last good record
	count      uint64
	first      Header
	last       Header
	tailReason string // why the bytes after goodEnd were rejected
}

// corruptionError is a bad record followed by more data: not something a crash leaves behind.
type corruptionError struct {
	line   int
	seq    uint64
	reason string
}

func (e *corruptionError) Error() string {
	if e.seq > 0 {
		return fmt.Sprintf("record seq %d (line %d): %s, and more data follows it", e.seq, e.line, e.reason)
	}
	return fmt.Sprintf("line %d: %s, and more data follows it", e.line, e.reason)
}

// scanSegmentData checks a segment's records in order. A bad last line (no trailing newline,
// unparsable, wrong hash or not linked) ends the good part and is reported in tailReason; a bad
// line that is followed by more data is a corruptionError.
func scanSegmentData(data []byte, name string, firstSeq uint64) (segmentScan, error) {
	var s segmentScan
	var prev *Header
	off := 0
	for lineNo := 1; off < len(data); lineNo++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			s.tailReason = "partial line (no trailing newline)"
			break
		}
		var seq uint64
		reason := ""
		rec, err := ParseLine(data[off : off+i])
		if err != nil {
			var le *LineError
			if errors.As(err, &le) {
				seq = le.Seq
			}
			reason = err.Error()
		} else {
			seq = rec.Seq
			reason = checkInSegment(&rec, lineNo, prev, name, firstSeq)
		}
		if reason != "" {
			if off+i+1 < len(data) {
				return s, &corruptionError{line: lineNo, seq: seq, reason: reason}
			}
			s.tailReason = reason
			break
		}
		h := rec.Header()
		if s.count == 0 {
			s.first = h
		}
		s.last = h
		prev = &s.last
		s.count++
		off += i + 1
		s.goodEnd = int64(off)
	}
	return s, nil
}

// lineReader yields the lines of a segment file with their numbers and termination.
type lineReader struct {
	r    *bufio.Reader
	no   int
	off  int64
	done bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 1<<20)}
}

// next returns the next line without its newline; ok is false at the end of the data.
func (lr *lineReader) next() (line []byte, off int64, terminated bool, ok bool, err error) {
	if lr.done {
		return nil, 0, false, false, nil
	}
	b, err := lr.r.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, false, false, err
	}
	if len(b) == 0 {
		lr.done = true
		return nil, 0, false, false, nil
	}
	lr.no++
	off = lr.off
	lr.off += int64(len(b))
	if b[len(b)-1] == '\n' {
		return b[:len(b)-1], off, true, true, nil
	}
	lr.done = true
	return b, off, false, true, nil
}

// syncDir makes directory entry changes (create, rename, remove) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems cannot fsync a directory; their entries are durable anyway or never.
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

// writeFileAtomic writes data to dir/name through a synced temporary file and a rename, so a
// crash leaves either no file or the whole file.
func writeFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// removeTempFiles deletes leftovers of interrupted writeFileAtomic calls.
func removeTempFiles(segDir string) {
	des, err := os.ReadDir(segDir)
	if err != nil {
		return
	}
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp") {
			os.Remove(filepath.Join(segDir, n))
		}
	}
}
