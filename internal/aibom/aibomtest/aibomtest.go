// Package aibomtest holds the fixture of the AI-BOM tests (internal/aibom, its connector and
// the CLI's aibom command): the fixture stories, read from OTLP JSON files, and an evidence
// archive that holds them.
package aibomtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/testutil"
)

// FixtureDir is internal/aibom's fixture: the stories of a bank's Go, Python and Node agents.
func FixtureDir(t testing.TB) string {
	t.Helper()
	return testutil.RepoPath(t, "internal/aibom/testdata/stories")
}

// Stories reads every story of dir (OTLP JSON files, *.json, in name order); none is an error.
func Stories(t testing.TB, dir string) []ptrace.Traces {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no stories in %s", dir)
	}
	var u ptrace.JSONUnmarshaler
	out := make([]ptrace.Traces, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		td, err := u.UnmarshalTraces(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, td)
	}
	return out
}

// WriteArchive appends the stories to a new evidence archive, signed with a fresh key, with a
// finding record after each (not a story: an inventory must pass over it), seals it and returns
// its directory.
func WriteArchive(t testing.TB, stories []ptrace.Traces) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	arc, err := archive.Open(dir, key, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var m ptrace.JSONMarshaler
	for _, td := range stories {
		payload, err := m.MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		tid := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID()
		if err := arc.Append(context.Background(), []archive.Entry{{Kind: archive.KindStory, TraceID: fmt.Sprintf("%x", tid[:]), Payload: payload}}); err != nil {
			t.Fatal(err)
		}
		if err := arc.Append(context.Background(), []archive.Entry{{Kind: archive.KindFinding, Payload: []byte(`{"class_uid":2004}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := arc.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := arc.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}
