package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func otlpStory(t *testing.T, traceID string, spanName string) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	var id pcommon.TraceID
	copy(id[:], mustHex(t, traceID))
	span.SetTraceID(id)
	span.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	span.SetName(spanName)
	var m ptrace.JSONMarshaler
	b, err := m.MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	var b [16]byte
	for i := range b {
		var v byte
		for _, c := range []byte(s[2*i : 2*i+2]) {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			default:
				v = v<<4 | (c - 'a' + 10)
			}
		}
		b[i] = v
	}
	return b[:]
}

// buildExportArchive holds two traces; trace A has stories in two segments and one finding.
func buildExportArchive(t *testing.T, seal bool) (dir, traceA string) {
	t.Helper()
	dir = t.TempDir()
	traceA, traceB := strings.Repeat("a1", 16), strings.Repeat("b2", 16)
	a := openArchive(t, dir, testKey("main"), Options{})
	appendOne := func(kind, id string, p []byte) {
		t.Helper()
		if err := a.Append(context.Background(), []Entry{{Kind: kind, TraceID: id, Payload: p}}); err != nil {
			t.Fatal(err)
		}
	}
	appendOne(KindStory, traceA, otlpStory(t, traceA, "invoke_agent"))
	appendOne(KindStory, traceB, otlpStory(t, traceB, "other"))
	if err := a.Rotate(); err != nil {
		t.Fatal(err)
	}
	appendOne(KindStory, traceA, otlpStory(t, traceA, "execute_tool"))
	appendOne(KindFinding, traceA, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"{\"class_uid\":2004}"}}]}]}]}`))
	appendOne(KindStory, traceB, otlpStory(t, traceB, "other2"))
	if seal {
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		a.abandon()
	}
	return dir, traceA
}

func TestExportAndVerifyBundle(t *testing.T) {
	dir, traceA := buildExportArchive(t, true)
	out := filepath.Join(t.TempDir(), "bundle")
	rep, err := ExportTrace(dir, strings.ToUpper(traceA), out, ExportOptions{PublicKey: testPub("main")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stories != 2 || rep.Findings != 1 || len(rep.Segments) != 2 || len(rep.Unsigned) != 0 {
		t.Errorf("export report %+v", rep)
	}
	brep, err := VerifyBundle(out, BundleOptions{PublicKey: testPub("main")})
	if err != nil {
		t.Fatalf("VerifyBundle: %v", err)
	}
	if brep.TraceID != traceA || brep.Stories != 2 || brep.Findings != 1 {
		t.Errorf("bundle report %+v", brep)
	}
	story, _ := os.ReadFile(filepath.Join(out, BundleStoryFile))
	var um ptrace.JSONUnmarshaler
	td, err := um.UnmarshalTraces(story)
	if err != nil || td.SpanCount() != 2 {
		t.Fatalf("story.json: %d spans, %v", td.SpanCount(), err)
	}
	proof, _ := os.ReadFile(filepath.Join(out, BundleProofFile))
	if bytes.Contains(proof, []byte("other2")) || bytes.Contains(proof, []byte(`"other"`)) {
		t.Error("proof.json discloses another trace's payload")
	}

	edit := func(name string, f func([]byte) []byte) func(*testing.T, string) {
		return func(t *testing.T, bundle string) {
			p := filepath.Join(bundle, name)
			data, _ := os.ReadFile(p)
			changed := f(data)
			if bytes.Equal(changed, data) {
				t.Fatal("tamper changed nothing")
			}
			os.WriteFile(p, changed, 0o640)
		}
	}
	editProof := func(f func(*Proof)) func(*testing.T, string) {
		return func(t *testing.T, bundle string) {
			p := filepath.Join(bundle, BundleProofFile)
			var pr Proof
			data, _ := os.ReadFile(p)
			if err := json.Unmarshal(data, &pr); err != nil {
				t.Fatal(err)
			}
			f(&pr)
			changed, _ := json.Marshal(pr)
			if sameJSON(changed, data) {
				t.Fatal("tamper changed nothing")
			}
			data = changed
			os.WriteFile(p, data, 0o640)
		}
	}
	tests := []struct {
		name   string
		tamper func(*testing.T, string)
		opts   BundleOptions
		want   string
	}{
		{"span renamed in story.json", edit(BundleStoryFile, func(b []byte) []byte {
			return bytes.Replace(b, []byte("execute_tool"), []byte("harmless_op"), 1)
		}), BundleOptions{}, "story.json does not match"},
		{"finding removed from findings.json", edit(BundleFindingsFile, func([]byte) []byte { return []byte("[]\n") }),
			BundleOptions{}, "findings.json does not match"},
		{"record line edited", editProof(func(p *Proof) {
			p.Records[0].Line = strings.Replace(p.Records[0].Line, "invoke_agent", "invoke_other", 1)
		}), BundleOptions{}, "hash mismatch"},
		{"record left out of the bundle", editProof(func(p *Proof) { p.Records = p.Records[1:] }),
			BundleOptions{}, "is in the chain but not in the bundle"},
		{"chain header edited", editProof(func(p *Proof) { p.Segments[0].Chain[1].TraceID = strings.Repeat("c3", 16) }),
			BundleOptions{}, "hash mismatch"},
		{"chain cut short", editProof(func(p *Proof) { p.Segments[1].Chain = p.Segments[1].Chain[:1] }),
			BundleOptions{}, "chain does not end at the manifest's last record"},
		{"manifest edited", editProof(func(p *Proof) {
			m, err := ParseManifest(p.Segments[0].Manifest)
			if err != nil {
				t.Fatal(err)
			}
			m.RecordCount++
			p.Segments[0].Manifest = m.Encode()
		}), BundleOptions{}, "manifest signature invalid"},
		{"other key pinned", func(*testing.T, string) {}, BundleOptions{PublicKey: testPub("attacker")}, "is not the pinned key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := copyDir(t, out)
			tt.tamper(t, bundle)
			if _, err := VerifyBundle(bundle, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestExportErrors(t *testing.T) {
	dir, traceA := buildExportArchive(t, true)
	tampered := copyDir(t, dir)
	lines := readLines(t, tampered, SegmentName(1))
	lines[1] = bytes.Replace(lines[1], []byte("invoke_agent"), []byte("invoke_other"), 1)
	writeLines(t, tampered, SegmentName(1), lines)
	tests := []struct {
		name, dir, trace, want string
	}{
		{"unknown trace id", dir, strings.Repeat("d4", 16), "not found"},
		{"malformed trace id", dir, "xyz", "malformed trace id"},
		{"all-zero trace id", dir, strings.Repeat("0", 32), "malformed trace id"},
		{"archive does not verify", tampered, traceA, "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bundle")
			if _, err := ExportTrace(tt.dir, tt.trace, out, ExportOptions{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Error("a failed export left a bundle behind")
			}
		})
	}
}

func TestExportFromOpenSegment(t *testing.T) {
	dir, traceA := buildExportArchive(t, false)
	out := t.TempDir()
	rep, err := ExportTrace(dir, traceA, out, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unsigned) != 1 {
		t.Fatalf("unsigned %v", rep.Unsigned)
	}
	if _, err := VerifyBundle(out, BundleOptions{}); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("an unsigned segment must fail by default, got %v", err)
	}
	if _, err := VerifyBundle(out, BundleOptions{AllowUnsigned: true}); err != nil {
		t.Errorf("with AllowUnsigned: %v", err)
	}
}
