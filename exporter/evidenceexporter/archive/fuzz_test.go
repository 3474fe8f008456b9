package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// Everything these targets read is foreign input: a segment file or manifest that someone with
// access to the disk may have written, a bundle that an auditor received. None of it may panic,
// hang or exhaust the reader, and what verifies must be consistent with what was written.

// fuzzArchive writes a small archive (a sealed segment with stories and a finding, then an open
// one) on a fixed clock and returns its directory.
func fuzzArchive(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	clock := newFakeClock()
	a, err := Open(dir, testKey("main"), Options{Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	traceA, traceB := strings.Repeat("a1", 16), strings.Repeat("b2", 16)
	story := func(id, name string) []byte {
		return []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"agent"}}]},` +
			`"scopeSpans":[{"spans":[{"traceId":"` + id + `","spanId":"0102030405060708","name":"` + name + `"}]}]}]}`)
	}
	batches := [][]Entry{
		{{Kind: KindStory, TraceID: traceA, Payload: story(traceA, "invoke_agent")}},
		{{Kind: KindStory, TraceID: traceB, Payload: story(traceB, "other")}, {Kind: KindFinding, TraceID: traceA,
			Payload: []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"{\"class_uid\":2004}"}}]}]}]}`)}},
	}
	for i, b := range batches {
		clock.Advance(time.Second)
		if err := a.Append(context.Background(), b); err != nil {
			tb.Fatal(err)
		}
		if i == 0 {
			if err := a.Rotate(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := a.Rotate(); err != nil {
		tb.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := a.Append(context.Background(), []Entry{{Kind: KindStory, TraceID: traceA, Payload: story(traceA, "execute_tool")}}); err != nil {
		tb.Fatal(err)
	}
	a.abandon()
	return dir
}

func readSeed(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func FuzzParseLine(f *testing.F) {
	dir := fuzzArchive(f)
	for _, seg := range []string{SegmentName(1), SegmentName(3)} {
		for _, l := range bytes.Split(readSeed(f, filepath.Join(dir, SegmentsDir, seg)), []byte{'\n'}) {
			f.Add(l)
		}
	}
	f.Add([]byte(`{"seq":1,"time":"2026-01-02T03:04:05Z","kind":"story","trace_id":"","payload":{},"prev":"","hash":""}`))
	f.Add([]byte(`{"seq":18446744073709551615,"time":"","kind":"","trace_id":"","payload":{"a":[1,{}]},"prev":"","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := ParseLine(line)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *LineError", err)
			}
			return
		}
		// A line that parses is canonical: writing the record again gives the same bytes, and
		// its hash is the hash of its header.
		if got := rec.AppendLine(nil); !bytes.Equal(got[:len(got)-1], line) {
			t.Fatalf("accepted a line that is not canonical:\n got %q\nline %q", got, line)
		}
		h := rec.Header()
		if h.Validate() != nil || h.ComputeHash() != rec.Hash {
			t.Fatalf("accepted a record whose header does not check: %+v", h)
		}
	})
}

// FuzzSegment takes arbitrary bytes as the open segment of an archive (after a real sealed
// one): the scanner, the verifier and the crash repair of Open must agree, and a repair must
// leave an archive that verifies with the same last record.
func FuzzSegment(f *testing.F) {
	dir := fuzzArchive(f)
	fixed := map[string][]byte{}
	for _, name := range []string{SegmentName(1), ManifestName(1), SegmentName(3), ManifestName(3)} {
		fixed[name] = readSeed(f, filepath.Join(dir, SegmentsDir, name))
	}
	open := readSeed(f, filepath.Join(dir, SegmentsDir, SegmentName(6)))
	f.Add(open)
	f.Add(open[:len(open)/2])
	f.Add(append(append([]byte{}, open...), open[:len(open)-5]...))
	f.Add(bytes.Replace(open, []byte(`"seq":7`), []byte(`"seq":8`), 1))
	f.Add(append(append([]byte{}, open...), "\n"...))
	f.Add(bytes.Repeat([]byte("\n"), 3))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{}
		for name, b := range fixed {
			fsys[SegmentsDir+"/"+name] = &fstest.MapFile{Data: b, Mode: 0o640}
		}
		fsys[SegmentsDir+"/"+SegmentName(6)] = &fstest.MapFile{Data: data, Mode: 0o640}
		scan, scanErr := scanSegment(bytes.NewReader(data), int64(len(data)), SegmentName(6), 6)
		if scanErr == nil && (scan.goodEnd > int64(len(data)) || (scan.goodEnd < int64(len(data))) != (scan.tailKind != "")) {
			t.Fatalf("scan: good end %d of %d bytes, tail %q", scan.goodEnd, len(data), scan.tailKind)
		}
		before, verr := verifyFS(fsys, VerifyOptions{PublicKey: testPub("main")})
		if verr == nil && scanErr != nil {
			t.Fatalf("verifies, but the scanner rejects it: %v", scanErr)
		}
		if scanErr != nil {
			return // Open refuses what the scanner rejects (the same function)
		}
		// Open works on real files: only for segments that are whole or repairable, which are
		// the ones whose repair there is to check.
		d := t.TempDir()
		for name, file := range fsys {
			p := filepath.Join(d, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, file.Data, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		a, err := Open(d, testKey("main"), Options{noRepairSync: true})
		if err != nil {
			if verr == nil {
				t.Fatalf("verifies, but Open refuses it: %v", err)
			}
			return
		}
		a.abandon()
		after, err := VerifyDir(d, VerifyOptions{PublicKey: testPub("main")})
		// Whatever Open accepted and repaired verifies afterwards. (Open does not parse
		// retention payloads; verify does, so a well-chained record with a malformed one is
		// left to verify.)
		if err != nil && !strings.Contains(err.Error(), "retention payload") {
			t.Fatalf("Open accepted the segment, but afterwards it does not verify: %v (before: %v)", err, verr)
		}
		if verr != nil || err != nil {
			return
		}
		if after.PartialTail != nil || after.LastSeq != before.LastSeq || after.LastHash != before.LastHash {
			t.Fatalf("Open's repair changed the archive: before %+v after %+v", before, after)
		}
	})
}

// FuzzSealedSegment mutates a real sealed segment and its manifest together: the verifier must
// not panic, and whatever verifies against the pinned key must be the original segment with
// the original manifest (the signature covers the segment's digest).
func FuzzSealedSegment(f *testing.F) {
	dir := fuzzArchive(f)
	first := readSeed(f, filepath.Join(dir, SegmentsDir, SegmentName(1)))
	firstMan := readSeed(f, filepath.Join(dir, SegmentsDir, ManifestName(1)))
	seg := readSeed(f, filepath.Join(dir, SegmentsDir, SegmentName(3)))
	man := readSeed(f, filepath.Join(dir, SegmentsDir, ManifestName(3)))
	orig, err := ParseManifest(man)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg, man)
	f.Add(seg[:len(seg)-1], man)
	f.Add(seg, bytes.Replace(man, []byte(`"record_count":3`), []byte(`"record_count":4`), 1))
	f.Add(seg, []byte(`{}`))
	f.Fuzz(func(t *testing.T, segment, manifest []byte) {
		fsys := fstest.MapFS{}
		files := map[string][]byte{SegmentName(1): first, ManifestName(1): firstMan, SegmentName(3): segment, ManifestName(3): manifest}
		for name, b := range files {
			fsys[SegmentsDir+"/"+name] = &fstest.MapFile{Data: b, Mode: 0o640}
		}
		if _, err := verifyFS(fsys, VerifyOptions{PublicKey: testPub("main")}); err == nil {
			m, perr := ParseManifest(manifest)
			if !bytes.Equal(segment, seg) || perr != nil || m != orig {
				t.Fatalf("a changed sealed segment verifies against the pinned key")
			}
		}
		if m, err := ParseManifest(manifest); err == nil {
			_ = m.VerifySignature()
			_ = m.Encode()
		}
	})
}

// FuzzVerifyBundle takes arbitrary proof.json, story.json and findings.json (seeded with a real
// bundle of a sealed and an open segment).
func FuzzVerifyBundle(f *testing.F) {
	dir := fuzzArchive(f)
	// Seal the open segment, so that the whole bundle is signed.
	a, err := Open(dir, testKey("main"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := a.Close(); err != nil {
		f.Fatal(err)
	}
	lines := map[string]bool{}
	for _, seg := range []string{SegmentName(1), SegmentName(3), SegmentName(6)} {
		for _, l := range bytes.Split(readSeed(f, filepath.Join(dir, SegmentsDir, seg)), []byte{'\n'}) {
			lines[string(l)] = true
		}
	}
	out := filepath.Join(f.TempDir(), "bundle")
	if _, err := ExportTrace(dir, strings.Repeat("a1", 16), out, ExportOptions{PublicKey: testPub("main")}); err != nil {
		f.Fatal(err)
	}
	if _, err := VerifyBundle(out, BundleOptions{PublicKey: testPub("main")}); err != nil {
		f.Fatalf("the seed bundle does not verify: %v", err)
	}
	proof := readSeed(f, filepath.Join(out, BundleProofFile))
	story := readSeed(f, filepath.Join(out, BundleStoryFile))
	findings := readSeed(f, filepath.Join(out, BundleFindingsFile))
	f.Add(proof, story, findings)
	f.Add(bytes.Replace(proof, []byte(`"manifest": {`), []byte(`"manifest": null, "x": {`), 1), story, findings)
	f.Add([]byte(`{"format":"agenttrail.evidence.proof.v1","trace_id":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","segments":[{"segment":"0000000001.jsonl","manifest":null,"chain":[]}],"records":[]}`), story, findings)
	f.Fuzz(func(t *testing.T, proofJSON, storyJSON, findingsJSON []byte) {
		fsys := fstest.MapFS{
			BundleProofFile:    &fstest.MapFile{Data: proofJSON},
			BundleStoryFile:    &fstest.MapFile{Data: storyJSON},
			BundleFindingsFile: &fstest.MapFile{Data: findingsJSON},
		}
		if _, err := verifyBundleFS(fsys, BundleOptions{PublicKey: testPub("main"), AllowUnsigned: true}); err != nil {
			return
		}
		// Signed and pinned, a bundle verifies only with records the archive holds: nothing
		// can be forged past the manifest signatures.
		rep, err := verifyBundleFS(fsys, BundleOptions{PublicKey: testPub("main")})
		if err != nil {
			return
		}
		var p Proof
		if err := json.Unmarshal(proofJSON, &p); err != nil {
			t.Fatalf("verified proof does not decode: %v", err)
		}
		if rep.Stories+rep.Findings == 0 || len(p.Records) != rep.Stories+rep.Findings {
			t.Fatalf("verified %+v from %d records", rep, len(p.Records))
		}
		for _, r := range p.Records {
			if !lines[r.Line] {
				t.Fatalf("a signed bundle verifies with a record the archive does not hold: %s", r.Line)
			}
		}
	})
}

// FuzzRenderReport renders arbitrary story and finding payloads: their span names and
// attributes come from traced processes, so the report must take anything.
func FuzzRenderReport(f *testing.F) {
	stories, finding := attackStory(f, true)
	f.Add(stories[0], finding)
	f.Add(stories[1], []byte(`{}`))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","spanId":"0102030405060708","parentSpanId":"0102030405060708","name":"loop","startTimeUnixNano":"18446744073709551615","endTimeUnixNano":"1"}]}]}]}`),
		[]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"{\"class_uid\":2004,\"severity_id\":99,\"finding_info\":{\"attacks\":[{}]}}"}}]}]}]}`))
	f.Fuzz(func(t *testing.T, story, finding []byte) {
		if !json.Valid(story) || !json.Valid(finding) {
			return // the archive only holds JSON objects
		}
		proof := &Proof{Format: ProofFormat, TraceID: attackTraceID}
		out, err := renderReport([]json.RawMessage{story}, []json.RawMessage{finding}, proof)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(out, []byte("<!DOCTYPE html>")) || bytes.Contains(out, []byte("<script")) {
			t.Fatalf("report is not a script-free HTML page: %.200q", out)
		}
	})
}

// FuzzParseKeys parses arbitrary bytes as a signing key file and as a public key file (both
// name files that an operator or an auditor was handed).
func FuzzParseKeys(f *testing.F) {
	key := testKey("main")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	f.Add(PublicKeyPEM(testPub("main")))
	f.Add([]byte(hex.EncodeToString(testPub("main")) + "\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParseSigningKey(data); err == nil && len(k) != ed25519.PrivateKeySize {
			t.Fatalf("accepted a signing key of %d bytes", len(k))
		}
		p := filepath.Join(t.TempDir(), "key.pub")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if k, err := ParsePublicKey(p); err == nil && len(k) != ed25519.PublicKeySize {
			t.Fatalf("accepted a public key of %d bytes", len(k))
		}
	})
}
