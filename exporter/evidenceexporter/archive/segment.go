package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
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
	return listSegmentsFS(os.DirFS(segDir), ".")
}

// listSegmentsFS is listSegments over the directory segDir of fsys.
func listSegmentsFS(fsys fs.FS, segDir string) ([]segEntry, []string, error) {
	des, err := fs.ReadDir(fsys, segDir)
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

// MaxRecordBytes bounds one record line (without its newline). Append refuses a larger
// record, and readers stop at a longer line instead of holding it in memory: segment files are
// foreign input to verify and export (and to Open, after a crash or an intruder), and a single
// "record" of gigabytes must not exhaust the process that reads it.
const MaxRecordBytes = 64 << 20

// Repair reasons: why bytes were cut off the end of the open segment.
const (
	// RepairPartialLine: the last line has no trailing newline (a write cut short by a crash).
	RepairPartialLine = "partial_line"
	// RepairInvalidRecord: the last line is complete but does not parse, its hash does not
	// verify or it does not continue the chain (a write torn by a power loss, or tampering).
	RepairInvalidRecord = "invalid_record"
)

// segmentScan is the result of checking one segment's content on its own.
type segmentScan struct {
	goodEnd    int64 // offset just after the last good record
	size       int64 // size of the file as scanned
	count      uint64
	first      Header
	last       Header
	tailKind   string // RepairPartialLine or RepairInvalidRecord when goodEnd < size
	tailReason string // why the bytes after goodEnd were rejected
	digest     hash.Hash
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

// scanSegment checks a segment's records in order, reading at most one record line into
// memory at a time. A bad last line (no trailing newline, too long, unparsable, wrong hash or
// not linked) ends the good part and is reported in tailKind and tailReason; a bad line that
// is followed by more data is a corruptionError. digest covers the bytes up to goodEnd.
func scanSegment(r io.Reader, size int64, name string, firstSeq uint64) (segmentScan, error) {
	s := segmentScan{size: size, digest: sha256.New()}
	var prev *Header
	lr := newLineReader(r)
	for {
		l, ok, err := lr.next()
		if err != nil {
			return s, err
		}
		if !ok {
			break
		}
		if l.long {
			// No record is this long, so no write of one left it: not crash damage.
			return s, &corruptionError{line: lr.no, reason: fmt.Sprintf("line longer than a record can be (%d bytes)", MaxRecordBytes)}
		}
		if !l.terminated {
			s.tailKind, s.tailReason = RepairPartialLine, "partial line (no trailing newline)"
			break
		}
		var seq uint64
		reason := ""
		if rec, err := ParseLine(l.b); err != nil {
			var le *LineError
			if errors.As(err, &le) {
				seq = le.Seq
			}
			reason = err.Error()
		} else {
			seq = rec.Seq
			if reason = checkInSegment(&rec, lr.no, prev, name, firstSeq); reason == "" {
				h := rec.Header()
				if s.count == 0 {
					s.first = h
				}
				s.last = h
				prev = &s.last
				s.count++
				s.digest.Write(l.b)
				s.digest.Write([]byte{'\n'})
				s.goodEnd = lr.off
				continue
			}
		}
		if lr.off < size {
			return s, &corruptionError{line: lr.no, seq: seq, reason: reason}
		}
		s.tailKind, s.tailReason = RepairInvalidRecord, reason
		break
	}
	if s.goodEnd < size && s.tailKind == "" {
		// The file grew or shrank while it was read: nobody else may write it.
		return s, fmt.Errorf("segment %s changed while it was read", name)
	}
	return s, nil
}

// lineReader yields the lines of a segment file with their numbers and termination, holding
// at most MaxRecordBytes of one line in memory.
type lineReader struct {
	r    *bufio.Reader
	max  int
	no   int
	off  int64
	done bool
	buf  []byte
}

// readLine is one line of a segment file.
type readLine struct {
	// b is the line without its newline; nil when long. It is only valid until the next call.
	b          []byte
	off        int64 // offset of the line's first byte
	terminated bool  // the line ends with a newline
	long       bool  // longer than the limit: b is nil and the reader has skipped the line
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: MaxRecordBytes}
}

// next returns the next line; ok is false at the end of the data.
func (lr *lineReader) next() (l readLine, ok bool, err error) {
	if lr.done {
		return l, false, nil
	}
	lr.buf = lr.buf[:0]
	var n int64
	for {
		chunk, err := lr.r.ReadSlice('\n')
		n += int64(len(chunk))
		if !l.long {
			switch need := len(lr.buf) + len(chunk); {
			case need > lr.max+1: // +1: the newline
				l.long = true
				lr.buf = lr.buf[:0]
			case need > cap(lr.buf):
				// Double, up to the limit: append's growth for large slices (1.25x) would
				// allocate five times the limit on the way to it.
				nb := make([]byte, len(lr.buf), min(max(2*cap(lr.buf), need), lr.max+1))
				copy(nb, lr.buf)
				lr.buf = append(nb, chunk...)
			default:
				lr.buf = append(lr.buf, chunk...)
			}
		}
		if err == nil {
			l.terminated = true
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		return readLine{}, false, err
	}
	if n == 0 {
		lr.done = true
		return readLine{}, false, nil
	}
	lr.no++
	l.off = lr.off
	lr.off += n
	if !l.terminated {
		lr.done = true
	}
	if !l.long {
		l.b = lr.buf
		if l.terminated {
			l.b = l.b[:len(l.b)-1]
		}
	}
	return l, true, nil
}

// readFileLimited reads a whole file that must not be larger than limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

// readFSLimited is readFileLimited in fsys.
func readFSLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, name, limit)
}

func readLimited(f io.Reader, path string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", filepath.Base(path), limit)
	}
	return data, nil
}

// syncFile makes a change of path's size (a truncation) durable.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
