package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// VerifyOptions configure VerifyDir.
type VerifyOptions struct {
	// PublicKey, when set, pins the signing key: every manifest must carry and be signed by it.
	// Otherwise each manifest is checked against the key it names, and Report.PublicKeys lists
	// the keys seen so that they can be compared with the published one.
	PublicKey ed25519.PublicKey
}

// PartialTail describes bytes after the last complete record of the open segment.
type PartialTail struct {
	Segment string // relative path, e.g. segments/0000000001.jsonl
	Offset  int64  // where the partial data starts
	Bytes   int64
	Reason  string
}

// Report summarises a verified archive.
type Report struct {
	Segments       int    // segment files present
	ClosedSegments int    // of which sealed by a manifest
	OpenSegment    string // relative path of the unsealed last segment, or ""
	Records        uint64
	FirstSeq       uint64
	LastSeq        uint64
	LastHash       string
	// RetentionRecords counts retention records in the chain; RemovedSegments lists the
	// missing segments they account for; PendingRemovals lists segments that a retention
	// record names but that are still present (a removal that was interrupted).
	RetentionRecords int
	RemovedSegments  []string
	PendingRemovals  []string
	PublicKeys       []string
	PartialTail      *PartialTail
	Warnings         []string
}

// VerifyError names the first bad record or file.
type VerifyError struct {
	File   string // relative to the archive directory, e.g. segments/0000000001.jsonl
	Seq    uint64 // 0 when unknown
	Line   int    // 0 for a problem of the file as a whole
	Reason string
}

func (e *VerifyError) Error() string {
	switch {
	case e.Line > 0 && e.Seq > 0:
		return fmt.Sprintf("%s record seq %d (line %d): %s", e.File, e.Seq, e.Line, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Reason)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
}

type claim struct {
	RetentionPayload
	recordSeq uint64
}

type pendingGap struct {
	from, to uint64 // missing seqs
	prevHash string // hash of the record before the gap ("" at the start of the archive)
	nextPrev string // prev of the record after the gap
	err      *VerifyError
}

type verifier struct {
	opts    VerifyOptions
	pinned  string
	rep     Report
	expSeq  uint64
	expPrev string
	fail    *VerifyError // first definite failure; after it only retention records are collected
	gaps    []pendingGap
	claims  []claim
	keys    map[string]bool
	present map[string]bool
}

// VerifyDir checks the archive in dir: every record's hash and canonical encoding, the prev
// links and sequence numbers across all segments, every closed segment's manifest (signature,
// optionally pinned key, file digest and size, counts, first and last record) and that every
// missing segment is accounted for by a later retention record. A partial last line is
// tolerated, and reported, only in the open segment. The error is a *VerifyError naming the
// first bad record or file, or an I/O error.
func VerifyDir(dir string, opts VerifyOptions) (Report, error) {
	return verifyFS(os.DirFS(dir), opts)
}

// verifyFS is VerifyDir over the archive directory fsys.
func verifyFS(fsys fs.FS, opts VerifyOptions) (Report, error) {
	segDir := SegmentsDir
	segs, unknown, err := listSegmentsFS(fsys, segDir)
	if err != nil {
		return Report{}, err
	}
	v := &verifier{opts: opts, expSeq: 1, keys: map[string]bool{}, present: map[string]bool{}}
	if opts.PublicKey != nil {
		v.pinned = hex.EncodeToString(opts.PublicKey)
	}
	for _, n := range unknown {
		v.rep.Warnings = append(v.rep.Warnings, "ignored unexpected file "+filepath.Join(SegmentsDir, n))
	}
	lastWithFile := -1
	for i, s := range segs {
		if s.hasFile {
			lastWithFile = i
			v.present[s.name] = true
		}
	}
	for i, s := range segs {
		if !s.hasFile {
			if v.fail == nil {
				v.rep.Warnings = append(v.rep.Warnings, "manifest without segment file: "+filepath.Join(SegmentsDir, ManifestName(s.firstSeq)))
			}
			continue
		}
		if err := v.segment(fsys, segDir, s, i == lastWithFile && i == len(segs)-1 && !s.hasManifest); err != nil {
			return v.rep, err
		}
	}

	for _, c := range v.claims {
		if v.present[c.Segment] {
			v.rep.PendingRemovals = append(v.rep.PendingRemovals, filepath.Join(SegmentsDir, c.Segment))
		}
	}
	for _, g := range v.gaps {
		names, ok := v.resolveGap(g)
		if !ok {
			return v.rep, g.err
		}
		v.rep.RemovedSegments = append(v.rep.RemovedSegments, names...)
	}
	if v.fail != nil {
		return v.rep, v.fail
	}
	sort.Strings(v.rep.RemovedSegments)
	for k := range v.keys {
		v.rep.PublicKeys = append(v.rep.PublicKeys, k)
	}
	sort.Strings(v.rep.PublicKeys)
	return v.rep, nil
}

func (v *verifier) failf(file string, seq uint64, line int, format string, args ...any) {
	if v.fail == nil {
		v.fail = &VerifyError{File: file, Seq: seq, Line: line, Reason: fmt.Sprintf(format, args...)}
	}
}

// segment checks one segment file and its manifest. isOpen marks the last segment when it
// has no manifest.
func (v *verifier) segment(fsys fs.FS, segDir string, s segEntry, isOpen bool) error {
	rel := filepath.Join(SegmentsDir, s.name)
	f, err := fsys.Open(path.Join(segDir, s.name))
	if err != nil {
		if isOpen && errors.Is(err, fs.ErrNotExist) {
			// A live archive removes an open segment whose first write failed (a full disk,
			// for one); listed a moment ago, gone now, it held nothing that was acknowledged.
			v.rep.Warnings = append(v.rep.Warnings, "open segment removed while verifying (a failed first write rolled back): "+rel)
			return nil
		}
		return err
	}
	defer f.Close()
	digest := sha256.New()
	lr := newLineReader(io.TeeReader(f, digest))
	var count uint64
	var first, last Header
	for {
		l, ok, err := lr.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		line, off, terminated := l.b, l.off, l.terminated
		if v.fail != nil {
			v.collectClaim(line, terminated)
			continue
		}
		if !terminated {
			if isOpen && !l.long {
				v.rep.PartialTail = &PartialTail{Segment: rel, Offset: off, Bytes: int64(len(line)), Reason: "partial line (no trailing newline)"}
				break
			}
			if l.long {
				v.failf(rel, 0, lr.no, "partial line longer than a record can be (%d bytes)", MaxRecordBytes)
			} else {
				v.failf(rel, 0, lr.no, "partial line (no trailing newline) in a sealed segment")
			}
			continue
		}
		if l.long {
			v.failf(rel, 0, lr.no, "record longer than a record can be (%d bytes)", MaxRecordBytes)
			continue
		}
		rec, err := ParseLine(line)
		if err != nil {
			var le *LineError
			seq := uint64(0)
			if errors.As(err, &le) {
				seq = le.Seq
			}
			v.failf(rel, seq, lr.no, "%s", err.Error())
			continue
		}
		if reason := v.link(&rec, lr.no, s, rel); reason != "" {
			v.failf(rel, rec.Seq, lr.no, "%s", reason)
			continue
		}
		if rec.Kind == KindRetention {
			var p RetentionPayload
			if err := strictUnmarshal(rec.Payload, &p); err != nil {
				v.failf(rel, rec.Seq, lr.no, "malformed retention payload: %v", err)
				continue
			}
			v.claims = append(v.claims, claim{RetentionPayload: p, recordSeq: rec.Seq})
			v.rep.RetentionRecords++
		}
		h := rec.Header()
		if count == 0 {
			first = h
		}
		last = h
		count++
		v.rep.Records++
		if v.rep.FirstSeq == 0 {
			v.rep.FirstSeq = rec.Seq
		}
		v.rep.LastSeq, v.rep.LastHash = rec.Seq, rec.Hash
	}
	if v.fail != nil {
		return nil
	}
	v.rep.Segments++
	if isOpen {
		v.rep.OpenSegment = rel
		return nil
	}
	if !s.hasManifest {
		v.failf(rel, 0, 0, "segment has no manifest but is not the last segment")
		return nil
	}
	v.rep.ClosedSegments++
	mrel := filepath.Join(SegmentsDir, ManifestName(s.firstSeq))
	raw, err := readFSLimited(fsys, path.Join(segDir, ManifestName(s.firstSeq)), maxManifestBytes)
	if err != nil {
		v.failf(mrel, 0, 0, "%v", err)
		return nil
	}
	m, err := ParseManifest(raw)
	if err != nil {
		v.failf(mrel, 0, 0, "%v", err)
		return nil
	}
	if v.pinned != "" && m.PublicKey != v.pinned {
		v.failf(mrel, 0, 0, "manifest public key %s is not the pinned key %s", m.PublicKey, v.pinned)
		return nil
	}
	if err := m.VerifySignature(); err != nil {
		v.failf(mrel, 0, 0, "%v", err)
		return nil
	}
	v.keys[m.PublicKey] = true
	size := uint64(lr.off)
	sum := hex.EncodeToString(digest.Sum(nil))
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"segment", m.Segment, s.name},
		{"record_count", m.RecordCount, count},
		{"first_seq", m.FirstSeq, first.Seq},
		{"last_seq", m.LastSeq, last.Seq},
		{"first_prev", m.FirstPrev, first.Prev},
		{"last_hash", m.LastHash, last.Hash},
		{"file_size", m.FileSize, size},
		{"file_sha256", m.FileSHA256, sum},
	} {
		if c.got != c.want {
			v.failf(mrel, 0, 0, "manifest %s %v does not match the segment (%v)", c.field, c.got, c.want)
			return nil
		}
	}
	return nil
}

// link checks rec against the chain so far and advances it. It returns "" when rec fits.
func (v *verifier) link(rec *Record, lineNo int, s segEntry, rel string) string {
	if lineNo == 1 {
		if reason := checkSegmentOpen(rec, s.name, s.firstSeq); reason != "" {
			return reason
		}
		if rec.Seq > v.expSeq {
			// Whole segments are missing; a later retention record may account for them.
			v.gaps = append(v.gaps, pendingGap{
				from: v.expSeq, to: rec.Seq - 1, prevHash: v.expPrev, nextPrev: rec.Prev,
				err: &VerifyError{File: rel, Seq: rec.Seq, Line: lineNo, Reason: seqMismatch(v.expSeq, rec.Seq) +
					" (segments missing without a retention record that accounts for them)"},
			})
			v.expSeq, v.expPrev = rec.Seq+1, rec.Hash
			return ""
		}
	}
	if rec.Seq != v.expSeq {
		return seqMismatch(v.expSeq, rec.Seq)
	}
	if rec.Prev != v.expPrev {
		return "prev link broken"
	}
	if lineNo > 1 && rec.Kind == KindSegmentOpen {
		return "segment_open record inside a segment"
	}
	v.expSeq, v.expPrev = rec.Seq+1, rec.Hash
	return ""
}

// collectClaim keeps retention records seen after the first failure, so that a gap before the
// failure can still be told apart from a legitimate removal.
func (v *verifier) collectClaim(line []byte, terminated bool) {
	if !terminated || !bytes.Contains(line, []byte(`"kind":"retention"`)) {
		return
	}
	rec, err := ParseLine(line)
	if err != nil || rec.Kind != KindRetention {
		return
	}
	var p RetentionPayload
	if strictUnmarshal(rec.Payload, &p) == nil {
		v.claims = append(v.claims, claim{RetentionPayload: p, recordSeq: rec.Seq})
	}
}

// resolveGap reports whether retention records written after the gap account for exactly the
// missing seqs: walking back from the record after the gap, each claimed segment must end
// where the next one starts (seq and hash) until the start of the gap. At the start of the
// archive the walk may stop early, because the retention records of even older removals were
// themselves in segments that retention removed later.
func (v *verifier) resolveGap(g pendingGap) ([]string, bool) {
	find := func(lastSeq uint64, lastHash string) *claim {
		for i := range v.claims {
			c := &v.claims[i]
			if c.LastSeq == lastSeq && c.LastHash == lastHash && c.recordSeq > g.to &&
				c.FirstSeq <= c.LastSeq && c.Segment == SegmentName(c.FirstSeq) {
				return c
			}
		}
		return nil
	}
	var names []string
	for c := find(g.to, g.nextPrev); c != nil; {
		if c.FirstSeq < g.from {
			return nil, false
		}
		names = append(names, filepath.Join(SegmentsDir, c.Segment))
		if c.FirstSeq == g.from {
			return names, c.FirstPrev == g.prevHash
		}
		next := find(c.FirstSeq-1, c.FirstPrev)
		if next == nil {
			return names, g.from == 1
		}
		c = next
	}
	return nil, false
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
