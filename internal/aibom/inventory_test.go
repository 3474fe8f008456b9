package aibom

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestPackagesInText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // ecosystem/name@version root
	}{
		{"python import", "/usr/lib/python3/dist-packages/openai/_client.py", []string{"pypi/openai@ /usr/lib/python3/dist-packages"}},
		{"python module file", "/x/site-packages/tiktoken.py", []string{"pypi/tiktoken@ /x/site-packages"}},
		{"dist-info has the version", "/v/site-packages/langchain_core-0.3.21.dist-info/METADATA", []string{"pypi/langchain-core@0.3.21 /v/site-packages"}},
		{"prefix family", "/v/site-packages/langchain_openai/chat.py", []string{"pypi/langchain-openai@ /v/site-packages"}},
		{"google namespace", "/v/site-packages/google/genai/models.py", []string{"pypi/google-genai@ /v/site-packages"}},
		{"google other", "/v/site-packages/google/protobuf/x.py", nil},
		{"not AI", "/v/site-packages/numpy/__init__.py", nil},
		{"dist-info not AI", "/v/site-packages/numpy-2.0.dist-info/METADATA", nil},
		{"dist-info without version", "/v/site-packages/openai.dist-info/x", nil},
		{"stack frames", "a (/app/site-packages/anthropic/x.py:1)\nb (/app/site-packages/httpx/y.py:2)", []string{"pypi/anthropic@ /app/site-packages"}},
		{"npm", "/app/node_modules/openai/core.js", []string{"npm/openai@ /app/node_modules"}},
		{"npm scoped", "file:///app/node_modules/@anthropic-ai/sdk/index.mjs", []string{"npm/@anthropic-ai/sdk@ /app/node_modules"}},
		{"npm scope family", "/app/node_modules/@ai-sdk/openai/dist/index.js", []string{"npm/@ai-sdk/openai@ /app/node_modules"}},
		{"npm nested", "/app/node_modules/langchain/node_modules/openai/index.js", []string{"npm/langchain@ /app/node_modules", "npm/openai@ /app/node_modules/langchain/node_modules"}},
		{"npm scope without name", "/app/node_modules/@langchain", nil},
		{"npm not AI", "/app/node_modules/express/index.js", nil},
		{"marker at the start", "/site-packages/openai/x.py", []string{"pypi/openai@ /site-packages"}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range packagesInText(tt.in) {
				got = append(got, p.Ecosystem+"/"+p.Name+"@"+p.Version+" "+p.Root)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("packagesInText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestWorkloadKey: the key is the attackstory processor's profile key (README "Profiles"), so a
// workload's profile and its spans are one workload (TestProfileMergesWithSpans).
func TestWorkloadKey(t *testing.T) {
	want := []string{"customer-ai/customer-agent/agent", "customer-ai/customer-agent/agent", "advisor /usr/bin/python3.11", "wealth-ai/kyc/agent"}
	for i, td := range fixtureStories() {
		if got := WorkloadKey(td.ResourceSpans().At(0).Resource().Attributes()); got != want[i] {
			t.Errorf("story %d: key %q, want %q", i+1, got, want[i])
		}
	}
}

func TestChanged(t *testing.T) {
	inv := New(Options{})
	stories := fixtureStories()
	if got := inv.AddTraces(stories[0], SourceSpans); !reflect.DeepEqual(got, []string{"customer-ai/customer-agent/agent"}) {
		t.Errorf("first story: changed %q", got)
	}
	if got := inv.AddTraces(stories[0], SourceSpans); got != nil {
		t.Errorf("the same story again changed %q", got)
	}
	// The second story adds a tool and a destination.
	if got := inv.AddTraces(stories[1], SourceSpans); len(got) != 1 {
		t.Errorf("a new tool and destination: changed %q", got)
	}
	if got := inv.AddTraces(stories[1], SourceSpans); got != nil {
		t.Errorf("the second story again changed %q", got)
	}
	w := inv.Workload("customer-ai/customer-agent/agent")
	if w.Spans != 2*(4+5) || w.Models["openai/model-x"].Calls != 4 {
		t.Errorf("spans %d, calls %d", w.Spans, w.Models["openai/model-x"].Calls)
	}
}

func TestBounds(t *testing.T) {
	inv := New(Options{MaxWorkloads: 1, MaxEntries: 1})
	stories := fixtureStories()
	inv.AddTraces(stories[0], SourceSpans)
	inv.AddTraces(stories[1], SourceSpans) // a second tool and destination: no room
	inv.AddTraces(stories[2], SourceSpans) // a second workload: no room
	if len(inv.Workloads()) != 1 {
		t.Fatalf("%d workloads", len(inv.Workloads()))
	}
	w := inv.Workloads()[0]
	if len(w.Tools) != 1 || len(w.Egress) != 1 {
		t.Errorf("tools %d, egress %d: over the bound of 1", len(w.Tools), len(w.Egress))
	}
	if inv.Dropped[DropWorkloads] != 1 || inv.Dropped[DropEntries] == 0 {
		t.Errorf("dropped %v", inv.Dropped)
	}
	long := ptrace.NewTraces()
	rs := long.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "customer-agent")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.Attributes().PutStr("gen_ai.request.model", strings.Repeat("m", maxString+1))
	sp.Attributes().PutStr("code.stacktrace", strings.Repeat("/x/site-packages/openai/a.py\n", maxScan/20))
	inv = New(Options{})
	inv.AddTraces(long, SourceSpans)
	if inv.Dropped[DropTooLong] != 1 || inv.Dropped[DropScanLimit] != 1 {
		t.Errorf("dropped %v", inv.Dropped)
	}
	if w := inv.Workloads()[0]; len(w.Models) != 0 || w.Packages["pypi/openai"] == nil {
		t.Errorf("models %v packages %v", w.Models, w.Packages)
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.openai.com/v1/chat/completions": "https://api.openai.com",
		"http://10.0.0.1:8080?x=1":                   "http://10.0.0.1:8080",
		"https://user:secret@api.example.com/v1":     "",
		"ftp://x/y":                                  "",
		"api.openai.com/v1":                          "",
		"https:///v1":                                "",
	} {
		if got := baseURL(in); got != want {
			t.Errorf("baseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

const profileYAML = `format: agenttrail.profile/v1
workload:
  k8s.namespace.name: customer-ai
  k8s.deployment.name: customer-agent
  k8s.container.name: agent
status: complete
version: 2
stories: 40
tools: [accounts-summary, recent-transactions]
executables: [/usr/bin/curl]
files: []
destinations:
  - address: 127.0.0.1
    cidr: 127.0.0.0/24
    port: 18443
  - cidr: 10.1.0.0/16
    port: 5432
    host: ledger-db
data_volume: {connects_p95: 1, connects_max: 1, bytes_sent_p95: 1, bytes_sent_max: 1, connects_samples: [1], bytes_sent_samples: [1]}
`

func TestProfileMergesWithSpans(t *testing.T) {
	inv := New(Options{})
	key, err := inv.AddProfile([]byte(profileYAML))
	if err != nil {
		t.Fatal(err)
	}
	if key != "customer-ai/customer-agent/agent" {
		t.Fatalf("key %q", key)
	}
	inv.AddTraces(fixtureStories()[0], SourceEvidence)
	if len(inv.Workloads()) != 1 {
		t.Fatalf("the profile and the spans of one workload are %d workloads", len(inv.Workloads()))
	}
	w := inv.Workloads()[0]
	for _, tool := range []string{"/accounts-summary", "/recent-transactions"} {
		if w.Tools[tool] == nil {
			t.Errorf("tool %s missing: %v", tool, w.Tools)
		}
	}
	if w.Egress["10.1.0.0/16:5432"] == nil || w.Egress["10.1.0.0/16:5432"].Host != "ledger-db" || w.Egress["127.0.0.1:18443"] == nil {
		t.Errorf("egress %v", w.Egress)
	}
	if !w.Sources[SourceProfile] || !w.Sources[SourceEvidence] || !w.Executables["/usr/bin/curl"] || w.Identity["k8s.pod.service_account.name"] != "agent-sa" {
		t.Errorf("sources %v executables %v identity %v", w.Sources, w.Executables, w.Identity)
	}
	if _, err := inv.AddProfile([]byte("tools: {")); err == nil {
		t.Error("bad YAML accepted")
	}
}

// TestResolve reads versions from this host's files: a Go program's build info (built here, with
// an AI module replaced by a local directory, and one by another module version), a
// .dist-info folder, a package.json; what is not there is a note.
func TestResolve(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("prog/go.mod", "module example.com/agent\n\ngo 1.24\n\nrequire github.com/openai/openai-go v1.12.0\n\nreplace github.com/openai/openai-go => ../openai\n")
	write("prog/main.go", "package main\n\nimport openai \"github.com/openai/openai-go\"\n\nfunc main() { println(openai.Name) }\n")
	write("openai/go.mod", "module github.com/openai/openai-go\n\ngo 1.24\n")
	write("openai/openai.go", "package openai\n\nconst Name = \"openai\"\n")
	exe := filepath.Join(dir, "agent")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = filepath.Join(dir, "prog")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	site := filepath.Join(dir, "venv", "site-packages")
	write("venv/site-packages/langchain_core-0.3.21.dist-info/METADATA", "Name: langchain-core\n")
	write("venv/site-packages/numpy-2.0.0.dist-info/METADATA", "")
	write("app/node_modules/@anthropic-ai/sdk/package.json", `{"name":"@anthropic-ai/sdk","version":"0.39.0"}`)
	write("app/node_modules/openai/package.json", `{"name":"openai"}`)

	td := ptrace.NewTraces()
	for _, r := range []struct{ svc, exe, path string }{
		{"go-agent", exe, ""},
		{"py-agent", "/usr/bin/python3.11", site + "/langchain_core/runnables/base.py\n" + site + "/anthropic/x.py"},
		{"node-agent", "/nonexistent/node", dir + "/app/node_modules/@anthropic-ai/sdk/index.js " + dir + "/app/node_modules/openai/index.js"},
	} {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", r.svc)
		rs.Resource().Attributes().PutStr("process.executable.path", r.exe)
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.Attributes().PutStr("code.stacktrace", r.path)
	}
	inv := New(Options{})
	inv.AddTraces(td, SourceSpans)
	inv.Resolve()

	goW := inv.Workload("go-agent " + exe)
	p := goW.Packages["golang/github.com/openai/openai-go"]
	if p == nil || p.Version != "v1.12.0" || !strings.Contains(p.Evidence, "replaced by the directory ../openai") || p.Location != exe {
		t.Errorf("go package %+v", p)
	}
	if goW.Identity["agenttrail.go.main"] != "example.com/agent" || !strings.HasPrefix(goW.Identity["process.runtime.version"], "go1.") {
		t.Errorf("go identity %v", goW.Identity)
	}
	py := inv.Workload("py-agent /usr/bin/python3.11")
	if p := py.Packages["pypi/langchain-core"]; p == nil || p.Version != "0.3.21" || p.Evidence != evidenceHostDistInfo {
		t.Errorf("python package %+v", p)
	}
	if p := py.Packages["pypi/anthropic"]; p == nil || p.Version != "" {
		t.Errorf("python package without .dist-info %+v", p)
	}
	if !hasNote(py, "version of pypi anthropic not read here") {
		t.Errorf("notes %v", py.Notes)
	}
	node := inv.Workload("node-agent /nonexistent/node")
	if p := node.Packages["npm/@anthropic-ai/sdk"]; p == nil || p.Version != "0.39.0" {
		t.Errorf("npm package %+v", p)
	}
	if !hasNote(node, "version of npm openai not read here: package.json has no version") || !hasNote(node, "go build info of /nonexistent/node not read here: no such file") {
		t.Errorf("notes %v", node.Notes)
	}
}

func hasNote(w *Workload, prefix string) bool {
	for n := range w.Notes {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}
