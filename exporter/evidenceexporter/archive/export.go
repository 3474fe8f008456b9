package archive

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// MaxBundleFileBytes bounds each file of a bundle that VerifyBundle reads: a bundle comes from
// elsewhere, and a file of any size must not exhaust the verifier.
const MaxBundleFileBytes = 1 << 30

// Bundle file names.
const (
	BundleStoryFile    = "story.json"
	BundleFindingsFile = "findings.json"
	BundleProofFile    = "proof.json"
	ProofFormat        = "agenttrail.evidence.proof.v1"
)

// Proof is the content of proof.json. For every included record it holds the full record line;
// for every segment holding included records it holds the headers (records without payload) of
// the chain from the first included record to the segment's last record, and the segment's
// signed manifest, whose last_hash and signature seal the end of that chain.
type Proof struct {
	Format   string         `json:"format"`
	TraceID  string         `json:"trace_id"`
	Segments []ProofSegment `json:"segments"`
	Records  []ProofRecord  `json:"records"`
}

// ProofSegment is the part of one segment a proof needs.
type ProofSegment struct {
	Segment string `json:"segment"`
	// Manifest is the signed manifest, or null when the segment was still open at export.
	Manifest json.RawMessage `json:"manifest"`
	Chain    []Header        `json:"chain"`
}

// ProofRecord is one included record.
type ProofRecord struct {
	Segment string `json:"segment"`
	Seq     uint64 `json:"seq"`
	Line    string `json:"line"`
}

// ExportOptions configure ExportTrace.
type ExportOptions struct {
	// PublicKey pins the signing key for the verification that precedes the export.
	PublicKey ed25519.PublicKey
}

// ExportReport summarises an export.
type ExportReport struct {
	TraceID  string
	Stories  int
	Findings int
	Segments []string
	// Unsigned lists segments that were still open: their records are chained but not yet
	// under a signature.
	Unsigned []string
}

// ExportTrace verifies the archive in dir and writes to outDir a bundle for one trace id:
// story.json (OTLP JSON of all its spans, merged), findings.json (array of its finding
// payloads) and proof.json (see Proof), and report.html, their human-readable rendering
// (unsigned; see renderReport).
func ExportTrace(dir, traceID, outDir string, opts ExportOptions) (ExportReport, error) {
	id, err := NormalizeTraceID(traceID)
	if err != nil {
		return ExportReport{}, err
	}
	if _, err := VerifyDir(dir, VerifyOptions{PublicKey: opts.PublicKey}); err != nil {
		return ExportReport{}, fmt.Errorf("archive %s does not verify, not exporting: %w", dir, err)
	}
	segDir := filepath.Join(dir, SegmentsDir)
	segs, _, err := listSegments(segDir)
	if err != nil {
		return ExportReport{}, err
	}
	proof := Proof{Format: ProofFormat, TraceID: id, Segments: []ProofSegment{}, Records: []ProofRecord{}}
	rep := ExportReport{TraceID: id}
	var stories []json.RawMessage
	findings := []json.RawMessage{}
	for _, s := range segs {
		if !s.hasFile {
			continue
		}
		headers, firstMatch, err := func() ([]Header, int, error) {
			f, err := os.Open(filepath.Join(segDir, s.name))
			if err != nil {
				return nil, -1, err
			}
			defer f.Close()
			var headers []Header
			firstMatch := -1
			lr := newLineReader(f)
			for {
				l, ok, err := lr.next()
				if err != nil {
					return nil, -1, err
				}
				if !ok || !l.terminated {
					break // a partial tail of the open segment, tolerated by VerifyDir
				}
				if l.long {
					return nil, -1, fmt.Errorf("%s line %d: record longer than %d bytes", s.name, lr.no, MaxRecordBytes)
				}
				line := l.b
				rec, err := ParseLine(line)
				if err != nil {
					return nil, -1, fmt.Errorf("%s: %w", s.name, err)
				}
				headers = append(headers, rec.Header())
				if rec.TraceID != id || (rec.Kind != KindStory && rec.Kind != KindFinding) {
					continue
				}
				if firstMatch < 0 {
					firstMatch = len(headers) - 1
				}
				proof.Records = append(proof.Records, ProofRecord{Segment: s.name, Seq: rec.Seq, Line: string(line)})
				if rec.Kind == KindStory {
					stories = append(stories, rec.Payload)
					rep.Stories++
				} else {
					findings = append(findings, rec.Payload)
					rep.Findings++
				}
			}
			return headers, firstMatch, nil
		}()
		if err != nil {
			return rep, err
		}
		if firstMatch < 0 {
			continue
		}
		ps := ProofSegment{Segment: s.name, Manifest: json.RawMessage("null"), Chain: headers[firstMatch:]}
		if s.hasManifest {
			raw, err := readFileLimited(filepath.Join(segDir, ManifestName(s.firstSeq)), maxManifestBytes)
			if err != nil {
				return rep, err
			}
			ps.Manifest = bytes.TrimSpace(raw)
		} else {
			rep.Unsigned = append(rep.Unsigned, s.name)
		}
		proof.Segments = append(proof.Segments, ps)
		rep.Segments = append(rep.Segments, s.name)
	}
	if len(proof.Records) == 0 {
		return rep, fmt.Errorf("trace id %s not found in archive %s", id, dir)
	}
	compactStory, err := mergeStories(stories)
	if err != nil {
		return rep, err
	}
	var story bytes.Buffer
	if err := json.Indent(&story, compactStory, "", "  "); err != nil {
		return rep, err
	}
	fj, err := json.MarshalIndent(findings, "", "  ")
	if err != nil {
		return rep, err
	}
	pj, err := json.MarshalIndent(proof, "", "  ")
	if err != nil {
		return rep, err
	}
	report, err := renderReport(stories, findings, &proof)
	if err != nil {
		return rep, err
	}
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return rep, err
	}
	for name, content := range map[string][]byte{BundleStoryFile: story.Bytes(), BundleFindingsFile: fj, BundleProofFile: pj} {
		if err := os.WriteFile(filepath.Join(outDir, name), append(content, '\n'), 0o640); err != nil {
			return rep, err
		}
	}
	if err := os.WriteFile(filepath.Join(outDir, BundleReportFile), report, 0o640); err != nil {
		return rep, err
	}
	return rep, nil
}

// mergeStories merges OTLP JSON trace payloads into one OTLP JSON document.
func mergeStories(payloads []json.RawMessage) ([]byte, error) {
	merged := ptrace.NewTraces()
	var um ptrace.JSONUnmarshaler
	for _, p := range payloads {
		td, err := um.UnmarshalTraces(p)
		if err != nil {
			return nil, fmt.Errorf("story payload is not OTLP JSON: %w", err)
		}
		td.ResourceSpans().MoveAndAppendTo(merged.ResourceSpans())
	}
	var m ptrace.JSONMarshaler
	return m.MarshalTraces(merged)
}

// BundleOptions configure VerifyBundle.
type BundleOptions struct {
	// PublicKey pins the key every manifest in the proof must be signed with.
	PublicKey ed25519.PublicKey
	// AllowUnsigned accepts records of segments that were still open at export, whose chain
	// is checked but ends without a signature.
	AllowUnsigned bool
}

// BundleReport summarises a verified bundle.
type BundleReport struct {
	TraceID    string
	Stories    int
	Findings   int
	Segments   []string
	PublicKeys []string
	Unsigned   []string
	// Report is "matches" when report.html is exactly the rendering of the verified records,
	// "absent" when the bundle has none (it is not part of the signed data).
	Report string
}

// VerifyBundle checks a bundle written by ExportTrace without the archive: each record line's
// hash, its presence in its segment's chain, that chain's links up to the manifest's
// last_hash, the manifest signature (and pinned key), that the chain holds no record of the
// trace that the bundle left out, that story.json and findings.json are exactly what the
// records contain, and, if the bundle holds report.html, that it is exactly what this version
// renders from those records (the report is not signed: it is checked so that a doctored
// rendering cannot pass for the evidence).
func VerifyBundle(bundleDir string, opts BundleOptions) (BundleReport, error) {
	return verifyBundleFS(os.DirFS(bundleDir), opts)
}

// verifyBundleFS is VerifyBundle over the bundle directory fsys.
func verifyBundleFS(fsys fs.FS, opts BundleOptions) (BundleReport, error) {
	var rep BundleReport
	raw, err := readFSLimited(fsys, BundleProofFile, MaxBundleFileBytes)
	if err != nil {
		return rep, err
	}
	var proof Proof
	if err := strictUnmarshal(raw, &proof); err != nil {
		return rep, fmt.Errorf("proof.json: malformed: %w", err)
	}
	if proof.Format != ProofFormat {
		return rep, fmt.Errorf("proof.json: unsupported format %q", proof.Format)
	}
	id, err := NormalizeTraceID(proof.TraceID)
	if err != nil || id != proof.TraceID {
		return rep, fmt.Errorf("proof.json: malformed trace_id %q", proof.TraceID)
	}
	rep.TraceID = id
	pinned := ""
	if opts.PublicKey != nil {
		pinned = hex.EncodeToString(opts.PublicKey)
	}
	keys := map[string]bool{}
	chains := map[string]map[uint64]Header{}
	for _, ps := range proof.Segments {
		chain, err := verifyProofSegment(ps, pinned, opts.AllowUnsigned, keys)
		if err != nil {
			return rep, fmt.Errorf("proof.json: segment %s: %w", ps.Segment, err)
		}
		if chains[ps.Segment] != nil {
			return rep, fmt.Errorf("proof.json: segment %s listed twice", ps.Segment)
		}
		chains[ps.Segment] = chain
		rep.Segments = append(rep.Segments, ps.Segment)
		if len(ps.Manifest) == 0 || string(ps.Manifest) == "null" {
			rep.Unsigned = append(rep.Unsigned, ps.Segment)
		}
	}
	included := map[uint64]bool{}
	records := append([]ProofRecord(nil), proof.Records...)
	sort.Slice(records, func(i, j int) bool { return records[i].Seq < records[j].Seq })
	var stories []json.RawMessage
	findings := []json.RawMessage{}
	for _, pr := range records {
		rec, err := ParseLine([]byte(pr.Line))
		if err != nil {
			return rep, fmt.Errorf("proof.json: record seq %d: %w", pr.Seq, err)
		}
		switch {
		case rec.Seq != pr.Seq:
			return rep, fmt.Errorf("proof.json: record seq %d: line holds seq %d", pr.Seq, rec.Seq)
		case rec.TraceID != id || (rec.Kind != KindStory && rec.Kind != KindFinding):
			return rep, fmt.Errorf("proof.json: record seq %d: not a story or finding of trace %s", pr.Seq, id)
		case included[rec.Seq]:
			return rep, fmt.Errorf("proof.json: record seq %d listed twice", pr.Seq)
		}
		chain := chains[pr.Segment]
		if h, ok := chain[rec.Seq]; !ok || h != rec.Header() {
			return rep, fmt.Errorf("proof.json: record seq %d: not in the chain of segment %s", pr.Seq, pr.Segment)
		}
		included[rec.Seq] = true
		if rec.Kind == KindStory {
			stories = append(stories, rec.Payload)
			rep.Stories++
		} else {
			findings = append(findings, rec.Payload)
			rep.Findings++
		}
	}
	if len(records) == 0 {
		return rep, errors.New("proof.json: no records")
	}
	for seg, chain := range chains {
		for seq, h := range chain {
			if h.TraceID == id && (h.Kind == KindStory || h.Kind == KindFinding) && !included[seq] {
				return rep, fmt.Errorf("proof.json: segment %s: record seq %d of the trace is in the chain but not in the bundle", seg, seq)
			}
		}
	}
	story, err := mergeStories(stories)
	if err != nil {
		return rep, err
	}
	fj, err := json.Marshal(findings)
	if err != nil {
		return rep, err
	}
	for name, want := range map[string][]byte{BundleStoryFile: story, BundleFindingsFile: fj} {
		got, err := readFSLimited(fsys, name, MaxBundleFileBytes)
		if err != nil {
			return rep, err
		}
		if !sameJSON(got, want) {
			return rep, fmt.Errorf("%s does not match the records in proof.json", name)
		}
	}
	for k := range keys {
		rep.PublicKeys = append(rep.PublicKeys, k)
	}
	sort.Strings(rep.PublicKeys)
	if rep.Report, err = checkReport(fsys, stories, findings, &proof); err != nil {
		return rep, err
	}
	return rep, nil
}

// verifyProofSegment checks one segment's chain and manifest and returns the chain by seq.
func verifyProofSegment(ps ProofSegment, pinned string, allowUnsigned bool, keys map[string]bool) (map[uint64]Header, error) {
	firstSeq, ok := parseSeqName(trimSuffix(ps.Segment, ".jsonl"))
	if !ok || SegmentName(firstSeq) != ps.Segment {
		return nil, errors.New("malformed segment name")
	}
	if len(ps.Chain) == 0 {
		return nil, errors.New("empty chain")
	}
	byseq := make(map[uint64]Header, len(ps.Chain))
	for i := range ps.Chain {
		h := ps.Chain[i]
		if err := h.Validate(); err != nil {
			return nil, fmt.Errorf("chain seq %d: %w", h.Seq, err)
		}
		if h.ComputeHash() != h.Hash {
			return nil, fmt.Errorf("chain seq %d: hash mismatch", h.Seq)
		}
		if i > 0 {
			p := ps.Chain[i-1]
			if h.Seq != p.Seq+1 {
				return nil, fmt.Errorf("chain seq %d: %s", h.Seq, seqMismatch(p.Seq+1, h.Seq))
			}
			if h.Prev != p.Hash {
				return nil, fmt.Errorf("chain seq %d: prev link broken", h.Seq)
			}
		}
		if h.Seq < firstSeq || (h.Kind == KindSegmentOpen) != (h.Seq == firstSeq) {
			return nil, fmt.Errorf("chain seq %d: does not belong to this segment", h.Seq)
		}
		byseq[h.Seq] = h
	}
	if len(ps.Manifest) == 0 || string(ps.Manifest) == "null" {
		if !allowUnsigned {
			return nil, errors.New("segment was open at export: its records are chained but not signed (re-export once it is sealed, or allow unsigned)")
		}
		return byseq, nil
	}
	m, err := ParseManifest(ps.Manifest)
	if err != nil {
		return nil, err
	}
	if m.Segment != ps.Segment {
		return nil, errors.New("manifest belongs to another segment")
	}
	if pinned != "" && m.PublicKey != pinned {
		return nil, fmt.Errorf("manifest public key %s is not the pinned key %s", m.PublicKey, pinned)
	}
	if err := m.VerifySignature(); err != nil {
		return nil, err
	}
	last := ps.Chain[len(ps.Chain)-1]
	if last.Seq != m.LastSeq || last.Hash != m.LastHash {
		return nil, errors.New("chain does not end at the manifest's last record")
	}
	if ps.Chain[0].Seq < m.FirstSeq {
		return nil, errors.New("chain starts before the manifest's first record")
	}
	keys[m.PublicKey] = true
	return byseq, nil
}

func trimSuffix(s, suffix string) string {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)]
	}
	return ""
}

// sameJSON compares two JSON documents by value, so a re-indented file still matches.
func sameJSON(a, b []byte) bool {
	var va, vb any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
