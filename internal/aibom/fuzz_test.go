package aibom

import (
	"bytes"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// FuzzPackagesInText: any text (a stack trace, a path a process opened) is scanned without a
// panic, and every package found is on the lists with a bounded name.
func FuzzPackagesInText(f *testing.F) {
	for _, s := range []string{
		"/usr/lib/python3/dist-packages/openai/_client.py",
		"/v/site-packages/langchain_core-0.3.21.dist-info/METADATA",
		"/v/site-packages/google/genai/x.py",
		"file:///app/node_modules/@anthropic-ai/sdk/index.mjs",
		"/a/node_modules/langchain/node_modules/openai/x.js",
		"/node_modules/@",
		"/site-packages/",
		"/site-packages/-1.dist-info",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range packagesInText(s) {
			if p.Name == "" || len(p.Name) > len(s) {
				t.Fatalf("package %+v from %q", p, s)
			}
			switch p.Ecosystem {
			case "pypi":
				if _, ok := pythonDistKind(p.Name); !ok {
					t.Fatalf("%q is not on the list", p.Name)
				}
			case "npm":
				if nodeKind(p.Name) == "" {
					t.Fatalf("%q is not on the list", p.Name)
				}
			default:
				t.Fatalf("ecosystem %q", p.Ecosystem)
			}
		}
	})
}

// FuzzInventory: any OTLP JSON traces (a story record's payload) go through the inventory and
// come out as a BOM that encodes, with no entry over the bounds.
func FuzzInventory(f *testing.F) {
	var m ptrace.JSONMarshaler
	for _, td := range fixtureStories() {
		b, _ := m.MarshalTraces(td)
		f.Add(b)
	}
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"connect","kind":3,"attributes":[{"key":"network.peer.address","value":{"stringValue":"::1"}},{"key":"network.peer.port","value":{"intValue":"-1"}}]}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var u ptrace.JSONUnmarshaler
		td, err := u.UnmarshalTraces(data)
		if err != nil {
			return
		}
		inv := New(Options{MaxWorkloads: 4, MaxEntries: 4})
		inv.AddTraces(td, SourceSpans)
		inv.AddTraces(td, SourceSpans)
		for _, w := range inv.Workloads() {
			if len(w.Models) > 4 || len(w.Tools) > 4 || len(w.Egress) > 4 || len(w.Packages) > 4 || len(w.Endpoints) > 4 {
				t.Fatalf("over the bounds: %+v", w)
			}
		}
		var buf bytes.Buffer
		if err := Encode(&buf, BOM(inv.Workloads(), Meta{Dropped: inv.Dropped})); err != nil {
			t.Fatal(err)
		}
	})
}
