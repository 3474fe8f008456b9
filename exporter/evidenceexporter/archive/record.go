// Package archive implements AgentTrail's append-only, tamper-evident evidence archive: JSON
// Lines segment files whose records form one SHA-256 hash chain, closed segments sealed by an
// Ed25519-signed manifest, retention that leaves a record of every removal, and the offline
// checks (VerifyDir, ExportTrace, VerifyBundle) that auditors run with `agenttrail evidence`.
//
// The byte formats are specified in ../README.md; the functions in this file and in
// manifest.go are the reference implementation of that specification.
package archive // import "github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Record kinds.
const (
	KindStory       = "story"
	KindFinding     = "finding"
	KindSegmentOpen = "segment_open"
	KindRetention   = "retention"
)

// FormatVersion is written into every segment_open record and is the prefix of every manifest
// and proof format identifier.
const FormatVersion = "agenttrail.evidence.v1"

// Record is one line of a segment file.
type Record struct {
	Seq     uint64
	Time    string // RFC 3339 with nanoseconds, UTC, as written
	Kind    string
	TraceID string // 32 lowercase hex digits, or ""
	// Payload is the compacted JSON object stored in the line.
	Payload json.RawMessage
	// PayloadSHA256 is hex(sha256(Payload)); it is what the record hash covers, so a proof can
	// show a record's place in the chain without disclosing its payload.
	PayloadSHA256 string
	Prev          string // hash of the previous record, "" only for seq 1
	Hash          string
}

// Header is a record without its payload: everything the chain needs.
type Header struct {
	Seq           uint64 `json:"seq"`
	Time          string `json:"time"`
	Kind          string `json:"kind"`
	TraceID       string `json:"trace_id"`
	PayloadSHA256 string `json:"payload_sha256"`
	Prev          string `json:"prev"`
	Hash          string `json:"hash"`
}

// Header returns the record's header.
func (r *Record) Header() Header {
	return Header{Seq: r.Seq, Time: r.Time, Kind: r.Kind, TraceID: r.TraceID, PayloadSHA256: r.PayloadSHA256, Prev: r.Prev, Hash: r.Hash}
}

// CanonicalHeaderBytes returns the exact bytes that a record hash covers:
//
//	{"seq":<decimal>,"time":"<time>","kind":"<kind>","trace_id":"<hex or empty>","payload_sha256":"<hex>","prev":"<hex or empty>"}
//
// with no whitespace. Every string field is restricted to characters that need no JSON
// escaping (validated by Validate), so the encoding is the same in any language.
func (h *Header) CanonicalHeaderBytes() []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, h.Seq, 10)
	b = append(b, `,"time":"`...)
	b = append(b, h.Time...)
	b = append(b, `","kind":"`...)
	b = append(b, h.Kind...)
	b = append(b, `","trace_id":"`...)
	b = append(b, h.TraceID...)
	b = append(b, `","payload_sha256":"`...)
	b = append(b, h.PayloadSHA256...)
	b = append(b, `","prev":"`...)
	b = append(b, h.Prev...)
	b = append(b, `"}`...)
	return b
}

// ComputeHash returns hex(sha256(CanonicalHeaderBytes())).
func (h *Header) ComputeHash() string {
	sum := sha256.Sum256(h.CanonicalHeaderBytes())
	return hex.EncodeToString(sum[:])
}

// Validate checks the character sets and shapes of the header fields (not the hash).
func (h *Header) Validate() error {
	if h.Seq == 0 {
		return errors.New("seq must be >= 1")
	}
	if err := validateTime(h.Time); err != nil {
		return err
	}
	switch h.Kind {
	case KindStory, KindFinding, KindSegmentOpen, KindRetention:
	default:
		return fmt.Errorf("unknown kind %q", h.Kind)
	}
	if h.TraceID != "" && !isLowerHex(h.TraceID, 32) {
		return errors.New("trace_id must be 32 lowercase hex digits or empty")
	}
	if !isLowerHex(h.PayloadSHA256, 64) {
		return errors.New("payload_sha256 must be 64 lowercase hex digits")
	}
	if h.Prev != "" && !isLowerHex(h.Prev, 64) {
		return errors.New("prev must be 64 lowercase hex digits or empty")
	}
	if !isLowerHex(h.Hash, 64) {
		return errors.New("hash must be 64 lowercase hex digits")
	}
	return nil
}

// AppendLine appends the record's line (with trailing newline) to b:
//
//	{"seq":N,"time":"…","kind":"…","trace_id":"…","payload":<compacted JSON object>,"prev":"…","hash":"…"}\n
func (r *Record) AppendLine(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = append(b, r.Time...)
	b = append(b, `","kind":"`...)
	b = append(b, r.Kind...)
	b = append(b, `","trace_id":"`...)
	b = append(b, r.TraceID...)
	b = append(b, `","payload":`...)
	b = append(b, r.Payload...)
	b = append(b, `,"prev":"`...)
	b = append(b, r.Prev...)
	b = append(b, `","hash":"`...)
	b = append(b, r.Hash...)
	b = append(b, "\"}\n"...)
	return b
}

// LineError is a problem found in one record line. Seq is 0 when the line was not readable far
// enough to know it.
type LineError struct {
	Seq    uint64
	Reason string
}

func (e *LineError) Error() string { return e.Reason }

type wireRecord struct {
	Seq     *uint64         `json:"seq"`
	Time    *string         `json:"time"`
	Kind    *string         `json:"kind"`
	TraceID *string         `json:"trace_id"`
	Payload json.RawMessage `json:"payload"`
	Prev    *string         `json:"prev"`
	Hash    *string         `json:"hash"`
}

// ParseLine parses one record line (without its newline) and checks it on its own: all fields
// present and well-formed, payload a JSON object, hash equal to the recomputed hash, and the
// line byte-identical to the canonical line of the parsed record. It does not check the chain.
func ParseLine(line []byte) (Record, error) {
	if r, ok := parseCanonicalLine(line); ok {
		h := r.Header()
		if err := h.Validate(); err == nil {
			if h.ComputeHash() != r.Hash {
				return Record{}, &LineError{Seq: r.Seq, Reason: "hash mismatch"}
			}
			return r, nil
		}
	}
	// Not in canonical layout, or a field is malformed: the general decoder says exactly why.
	return parseLineSlow(line)
}

// parseCanonicalLine splits a line that has exactly the layout AppendLine writes, without a
// general JSON decoder: the fixed-position fields from the front, prev and hash (fixed
// lengths) from the back, the payload in between, which must be a valid JSON object. Lines in
// any other layout are left to parseLineSlow.
func parseCanonicalLine(line []byte) (Record, bool) {
	var r Record
	rest, ok := cutPrefix(line, `{"seq":`)
	if !ok {
		return r, false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > 20 || rest[0] == '0' {
		return r, false
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return r, false
	}
	r.Seq = seq
	rest = rest[i:]
	fields := []struct {
		prefix string
		dst    *string
	}{{`,"time":"`, &r.Time}, {`","kind":"`, &r.Kind}, {`","trace_id":"`, &r.TraceID}}
	for _, f := range fields {
		if rest, ok = cutPrefix(rest, f.prefix); !ok {
			return r, false
		}
		j := bytes.IndexByte(rest, '"')
		if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
			return r, false
		}
		*f.dst = string(rest[:j])
		rest = rest[j:]
	}
	if rest, ok = cutPrefix(rest, `","payload":`); !ok {
		return r, false
	}
	const hashTail = 10 + 64 + 2 // ","hash":"<64>"}
	switch {
	case len(rest) >= 9+hashTail && string(rest[len(rest)-9-hashTail:len(rest)-hashTail]) == `,"prev":"`:
		r.Prev = ""
		r.Payload = rest[:len(rest)-9-hashTail]
	case len(rest) >= 9+64+hashTail && string(rest[len(rest)-9-64-hashTail:len(rest)-64-hashTail]) == `,"prev":"`:
		r.Prev = string(rest[len(rest)-64-hashTail : len(rest)-hashTail])
		r.Payload = rest[:len(rest)-9-64-hashTail]
	default:
		return r, false
	}
	tail := rest[len(rest)-hashTail:]
	if string(tail[:10]) != `","hash":"` || string(tail[74:]) != `"}` {
		return r, false
	}
	r.Hash = string(tail[10:74])
	p := r.Payload
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' || !json.Valid(p) {
		return r, false
	}
	r.Payload = append(json.RawMessage(nil), p...)
	r.PayloadSHA256 = payloadDigest(r.Payload)
	return r, true
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

func parseLineSlow(line []byte) (Record, error) {
	var w wireRecord
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Record{}, &LineError{Reason: "malformed record: " + err.Error()}
	}
	if dec.More() {
		return Record{}, &LineError{Reason: "malformed record: trailing data"}
	}
	if w.Seq == nil || w.Time == nil || w.Kind == nil || w.TraceID == nil || w.Payload == nil || w.Prev == nil || w.Hash == nil {
		var seq uint64
		if w.Seq != nil {
			seq = *w.Seq
		}
		return Record{}, &LineError{Seq: seq, Reason: "malformed record: missing field"}
	}
	r := Record{Seq: *w.Seq, Time: *w.Time, Kind: *w.Kind, TraceID: *w.TraceID, Payload: w.Payload, Prev: *w.Prev, Hash: *w.Hash}
	if len(r.Payload) == 0 || r.Payload[0] != '{' {
		return Record{}, &LineError{Seq: r.Seq, Reason: "malformed record: payload is not a JSON object"}
	}
	r.PayloadSHA256 = payloadDigest(r.Payload)
	h := r.Header()
	if err := h.Validate(); err != nil {
		return Record{}, &LineError{Seq: r.Seq, Reason: "malformed record: " + err.Error()}
	}
	if h.ComputeHash() != r.Hash {
		return Record{}, &LineError{Seq: r.Seq, Reason: "hash mismatch"}
	}
	// The hash covers the payload digest of the bytes as stored, so reformatting the payload
	// changes the hash; byte identity of the whole line additionally rejects any other
	// rewriting (whitespace, key order, escapes) of the non-payload fields.
	canon := r.AppendLine(make([]byte, 0, len(line)+1))
	if !bytes.Equal(canon[:len(canon)-1], line) {
		return Record{}, &LineError{Seq: r.Seq, Reason: "non-canonical encoding"}
	}
	return r, nil
}

func payloadDigest(p []byte) string {
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:])
}

// compactObject returns the compacted form of a JSON object payload.
func compactObject(p []byte) (json.RawMessage, error) {
	var buf bytes.Buffer
	buf.Grow(len(p))
	if err := json.Compact(&buf, p); err != nil {
		return nil, fmt.Errorf("payload is not valid JSON: %w", err)
	}
	out := buf.Bytes()
	if len(out) == 0 || out[0] != '{' {
		return nil, errors.New("payload must be a JSON object")
	}
	return out, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validateTime(s string) error {
	if s == "" {
		return errors.New("time must not be empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && c != '-' && c != ':' && c != '.' && c != 'T' && c != 'Z' && c != '+' {
			return errors.New("time must be RFC 3339")
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return errors.New("time must be RFC 3339")
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// NormalizeTraceID returns the lowercase form of a 32-hex-digit trace id, or an error.
func NormalizeTraceID(s string) (string, error) {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + ('a' - 'A')
		}
	}
	id := string(b)
	if !isLowerHex(id, 32) {
		return "", fmt.Errorf("malformed trace id %q: want 32 hex digits", s)
	}
	if id == "00000000000000000000000000000000" {
		return "", fmt.Errorf("malformed trace id %q: all zeros is not a valid trace id", s)
	}
	return id, nil
}

// SegmentName returns the segment file name of the segment whose first record has seq.
func SegmentName(firstSeq uint64) string { return fmt.Sprintf("%010d.jsonl", firstSeq) }

// ManifestName returns the manifest file name of the segment whose first record has seq.
func ManifestName(firstSeq uint64) string { return fmt.Sprintf("%010d.manifest.json", firstSeq) }

// segmentOpenPayload is the payload of the record that starts every segment.
type segmentOpenPayload struct {
	Format          string `json:"format"`
	Segment         string `json:"segment"`
	PreviousSegment string `json:"previous_segment"`
}

// RetentionPayload is the payload of a retention record: the removed segment's identity as its
// manifest stated it.
type RetentionPayload struct {
	Segment        string `json:"segment"`
	FirstSeq       uint64 `json:"first_seq"`
	LastSeq        uint64 `json:"last_seq"`
	FirstPrev      string `json:"first_prev"`
	LastHash       string `json:"last_hash"`
	RecordCount    uint64 `json:"record_count"`
	ManifestSHA256 string `json:"manifest_sha256"`
	Closed         string `json:"closed"`
	Policy         string `json:"policy"`
	Retention      string `json:"retention"`
}
