package ebpfreceiver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The runtimes' x86-64 builds, from the platform packages npm installs in testdata/runtimes
// (pinned by its package-lock.json; scripts/prereqs.sh test-packages installs them, or
// requireRuntime does).
const (
	bunBinary   = "@oven/bun-linux-x64/bin/bun"
	denoBinary  = "@deno/linux-x64-glibc/deno"
	codexBinary = "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
)

var (
	runtimesOnce sync.Once
	runtimesErr  error
)

func requireRuntime(t *testing.T, rel string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "runtimes"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node_modules", rel)
	runtimesOnce.Do(func() {
		if _, err := os.Stat(path); err == nil {
			return
		}
		out, err := exec.Command("npm", "ci", "--prefix", dir, "--ignore-scripts", "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			runtimesErr = fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
		}
	})
	if runtimesErr != nil {
		t.Fatal(runtimesErr)
	}
	return path
}

// startReceiverTelemetry is startReceiver with the receiver's metrics kept.
func startReceiverTelemetry(t *testing.T, cfg *Config) (*consumertest.TracesSink, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	sink := new(consumertest.TracesSink)
	set := receivertest.NewNopSettings(componentType)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	r, err := NewFactory().CreateTraces(context.Background(), set, withSyscallAttach(cfg), sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return sink, tel
}

// captureProcesses sums agenttrail.ebpf.capture.processes by its tls attribute.
func captureProcesses(t *testing.T, tel *componenttest.Telemetry) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	m, err := tel.GetMetric("agenttrail.ebpf.capture.processes")
	if err != nil {
		return got
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value(attribute.Key("tls"))
		got[v.AsString()] += dp.Value
	}
	return got
}

// TestBunOpenAI: the Node agent's script (the official openai and @anthropic-ai/sdk packages)
// run by Bun 1.4.4, whose BoringSSL is linked in and stripped of its names: the receiver finds
// its SSL_write and SSL_read by the known build's table (tlsident) and reads chat completions
// and Anthropic messages, plain and streamed, as with Node.
func TestBunOpenAI(t *testing.T) {
	requireKernel(t)
	script := requireNodeAgent(t)
	bun := requireRuntime(t, bunBinary)
	model := startMockModel(t)
	sdkURL, sdkCA := startSDKModel(t)
	mockCA, err := os.ReadFile(model.ca)
	if err != nil {
		t.Fatal(err)
	}
	cas := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(cas, append(append(mockCA, '\n'), sdkCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_EXTRA_CA_CERTS", cas)
	sink, tel := startReceiverTelemetry(t, testConfig(TargetConfig{Name: "bun-agent", Executable: bun}))
	p := startProgram(t, bun, script, "model-x")
	p.waitLine(t, "ready")
	p.do(t, "chat "+strings.TrimSuffix(model.url, "/chat/completions"), "ok chat")
	p.do(t, "stream "+sdkURL+"/v1", "ok stream")
	p.do(t, "messages "+sdkURL, "ok messages tool_use")
	p.do(t, "messages-stream "+sdkURL, "ok messages-stream")
	pid := p.cmd.Process.Pid
	c := waitSpans(t, sink, func(c collected) bool { return len(c.ofPID(pid).where("chat model-x", fromTLS)) == 4 })
	c = c.ofPID(pid)
	want := map[string]string{
		"openai false":    "", // the mock model's usage, whatever it counts
		"openai true":     "17/5 <missing>",
		"anthropic false": "29/11 get_balance",
		"anthropic true":  "23/9 <missing>",
	}
	wantCapture := "boringssl (" + bun + ", Bun 1.4.4 linux-x64)"
	seen := map[string]int{}
	for i, s := range c.spans {
		if s.Name() != "chat model-x" || !fromTLS(s) {
			continue
		}
		key := attr(s, "gen_ai.provider.name") + " " + strconv.FormatBool(attr(s, "agenttrail.llm.stream") == "true")
		seen[key]++
		recordSpan(t, matrixRow{"Bun 1.4.4, npm openai 7.55.0 and @anthropic-ai/sdk 1.10.0", sdkAPI(key), "HTTPS, HTTP/1.1", "BoringSSL (static, known build)"}, s)
		if got, _ := c.res[i].Attributes().Get("agenttrail.capture.tls"); got.AsString() != wantCapture {
			t.Errorf("%s: agenttrail.capture.tls %q, want %q", key, got.AsString(), wantCapture)
		}
		if attr(s, "gen_ai.request.model") != "model-x" || attr(s, "gen_ai.response.model") != "model-x" || attr(s, "network.protocol.version") != "1.1" {
			t.Errorf("%s: request model %s response model %s protocol %s", key,
				attr(s, "gen_ai.request.model"), attr(s, "gen_ai.response.model"), attr(s, "network.protocol.version"))
		}
		got := attr(s, "gen_ai.usage.input_tokens") + "/" + attr(s, "gen_ai.usage.output_tokens") + " " + strings.Join(strSlice(s, "agenttrail.tool_calls.names"), ",")
		if strings.HasSuffix(got, " ") {
			got += "<missing>"
		}
		if w, ok := want[key]; !ok || got != w && (w != "" || strings.Contains(got, "<missing>/") || strings.Contains(got, "/<missing>")) {
			t.Errorf("%s: tokens and tool calls %q, want %q", key, got, w)
		}
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s: %d inference spans, want 1 (all: %v)", key, seen[key], seen)
		}
	}
	if n := captureProcesses(t, tel)["boringssl"]; n < 1 {
		t.Errorf("agenttrail.ebpf.capture.processes{tls=boringssl} %d: %v", n, captureProcesses(t, tel))
	}
}

// TestRustlsNotSupported: Deno (the same agent script) and the OpenAI Codex CLI carry rustls,
// linked in and stripped: its plaintext is not read, and the receiver says so instead of
// staying silent: agenttrail.capture.tls "not supported: rustls (static, <version>)", the
// reason in agenttrail.capture.missing, and the process counted with that tls class. Their
// calls reach the model (connect spans), but make no inference span.
func TestRustlsNotSupported(t *testing.T) {
	requireKernel(t)
	script := requireNodeAgent(t)
	deno := requireRuntime(t, denoBinary)
	codex := requireRuntime(t, codexBinary)
	model := startMockModel(t)
	base := strings.TrimSuffix(model.url, "/chat/completions")
	sink, tel := startReceiverTelemetry(t, testConfig(
		TargetConfig{Name: "deno-agent", Executable: deno}, TargetConfig{Name: "codex", Executable: codex}))

	t.Setenv("DENO_CERT", model.ca)
	t.Setenv("DENO_DIR", t.TempDir())
	d := startProgram(t, deno, "run", "--allow-all", script, "model-x")
	d.waitLine(t, "ready")
	d.do(t, "chat "+base, "ok chat")

	// codex exec against the mock (which has no Responses API: the call fails, after its
	// connection was made).
	home := t.TempDir()
	cx := exec.Command(codex, "exec", "--skip-git-repo-check", "-m", "model-x",
		"-c", `model_providers.mock={name="mock",base_url="`+base+`",wire_api="responses",env_key="OPENAI_API_KEY"}`,
		"-c", "model_provider=mock", "What is the balance of C1001?")
	cx.Env = append(os.Environ(), "CODEX_HOME="+home, "OPENAI_API_KEY=sk-test", "SSL_CERT_FILE="+model.ca)
	cx.Dir = home
	if err := cx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cx.Process.Kill(); _ = cx.Wait() })

	dpid, cpid := d.cmd.Process.Pid, cx.Process.Pid
	connected := func(c collected, pid int) bool { return len(c.ofPID(pid).named("connect")) > 0 }
	c := waitSpans(t, sink, func(c collected) bool { return connected(c, dpid) && connected(c, cpid) })
	for _, tc := range []struct {
		name    string
		pid     int
		version string
		missing string
		row     matrixRow
	}{
		{"deno", dpid, "0.23.40", "tls: TLS library not supported: rustls 0.23.40 (static)",
			matrixRow{"Deno 2.9.6, npm openai 7.55.0", "OpenAI chat completions", "HTTPS", "rustls (static)"}},
		{"codex", cpid, "0.23.46", "tls: TLS library not supported: rustls 0.23.46 (static), OpenSSL 3.6.4 (static)",
			matrixRow{"OpenAI Codex CLI 0.169.0 (Rust)", "OpenAI Responses", "HTTPS", "rustls (static)"}},
	} {
		got := processCapture(t, c, tc.pid)
		wantTLS := "not supported: rustls (static, " + tc.version + ")"
		if tc.name == "codex" {
			wantTLS += ", OpenSSL (static, 3.6.4)"
		}
		if got["tls"] != wantTLS || got["incomplete"] != "true" || !strings.Contains(got["missing"], tc.missing) {
			t.Errorf("%s: capture %v", tc.name, got)
		}
		if n := len(c.ofPID(tc.pid).where("chat model-x", fromTLS)); n != 0 {
			t.Errorf("%s: %d inference spans from rustls", tc.name, n)
		}
		recordCell(t, tc.row, "not read; the process says agenttrail.capture.tls = `"+got["tls"]+"`")
	}
	counts := captureProcesses(t, tel)
	if counts["not supported: rustls"] < 1 || counts["not supported: rustls, OpenSSL"] < 1 {
		t.Errorf("agenttrail.ebpf.capture.processes by tls: %v", counts)
	}
}
