package bank

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// python is the interpreter, or a skip when it cannot be had.
func python(t *testing.T) string {
	t.Helper()
	interpreter, err := EnsurePython()
	if err != nil {
		t.Skipf("python3.11 cannot be had: %v", err)
	}
	return interpreter
}

// startPython starts the Python scenario on free ports in a temporary directory.
func startPython(t *testing.T, ctx context.Context) *Env {
	t.Helper()
	python(t)
	return startEnv(t, ctx, StartPython)
}

// TestPythonAgentUnit runs the agent's own unit tests (python-agent/test_customer_agent.py).
func TestPythonAgentUnit(t *testing.T) {
	interpreter := python(t)
	dir, err := PythonAgentDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, "-B", "-E", "-s", "-m", "unittest", "-v", "test_customer_agent")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python unit tests: %v\n%s", err, out)
	}
	t.Logf("%s", tail(out, 400))
}

// TestPythonAgentFunctions: PythonAgentFunctions is what the module really defines.
func TestPythonAgentFunctions(t *testing.T) {
	interpreter := python(t)
	dir, err := PythonAgentDir()
	if err != nil {
		t.Fatal(err)
	}
	const list = `import customer_agent as m, inspect, json
out = {}
for cls in (m.Agent, m.ModelClient, m.Tools):
    for name, fn in vars(cls).items():
        if inspect.isfunction(fn) and not name.startswith("_"):
            out[fn.__module__ + ":" + fn.__code__.co_qualname] = list(inspect.signature(fn).parameters)
print(json.dumps(out))`
	cmd := exec.Command(interpreter, "-B", "-E", "-s", "-c", list)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got map[string][]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for fn, params := range PythonAgentFunctions {
		if !slices.Equal(got[fn], params) {
			t.Errorf("%s parameters = %v, want %v (module has %v)", fn, got[fn], params, got)
		}
	}
}

func TestPythonScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startPython(t, ctx)

	// The collector selects the agent by its command name; the interpreter is Debian's.
	proc := "/proc/" + strconv.Itoa(env.AgentPID)
	if comm, err := os.ReadFile(proc + "/comm"); err != nil || strings.TrimSpace(string(comm)) != PythonProcessName {
		t.Errorf("agent comm = %q, %v; want %s", comm, err, PythonProcessName)
	}
	if exe, err := os.Readlink(proc + "/exe"); err != nil || exe != PythonInterpreter || env.AgentExe != PythonInterpreter {
		t.Errorf("agent exe = %q (%v), Env.AgentExe = %q; want %s", exe, err, env.AgentExe, PythonInterpreter)
	}
	if cmdline, err := os.ReadFile(proc + "/cmdline"); err != nil || !bytes.Contains(cmdline, []byte("/python-agent/"+PythonAgentScript+"\x00")) {
		t.Errorf("agent cmdline = %q, %v", cmdline, err)
	}
	if log, err := os.ReadFile(env.Logs[PythonAgentProgram]); err != nil || !bytes.Contains(log, []byte("module "+PythonAgentModule+",")) {
		t.Errorf("agent log %s does not say it runs as module %s: %q, %v", env.Logs[PythonAgentProgram], PythonAgentModule, log, err)
	}

	t.Run("benign", func(t *testing.T) { checkBenign(t, ctx, env) })
	t.Run("attack", func(t *testing.T) { checkAttack(t, ctx, env) })

	t.Run("stop", func(t *testing.T) {
		checkStop(t, ctx, env)
		// SIGTERM ended the agent itself: it logged no error and was not killed.
		if log, err := os.ReadFile(env.Logs[PythonAgentProgram]); err != nil || bytes.Contains(log, []byte("Traceback")) {
			t.Errorf("agent log: %s, %v", log, err)
		}
	})
}

// TestPythonMatchesGo sends the same requests to both agents and wants the same answers, byte
// for byte, and the same export.
func TestPythonMatchesGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	py := startPython(t, ctx)
	goEnv := startEnv(t, ctx, Start)

	chat := func(session, message string) []byte {
		b, _ := json.Marshal(map[string]string{"session": session, "message": message})
		return b
	}
	// attack stands for the prompt injection aimed at each agent's own sink.
	const attack = "ATTACK"
	requests := []string{}
	for _, msg := range append(slices.Clone(BenignConversation),
		"Show recent transactions for C1003", "Show recent transactions for C1001",
		"Please transfer $500 from C1001 to C1003", "Please transfer $5 from C1002 to C1002",
		"Please transfer $1 from C1001 to C9999", "What is the balance summary for C9999?",
		"Please transfer money", "hello") {
		requests = append(requests, string(chat("parity", msg)))
	}
	requests = append(requests, string(chat("", "What is the balance summary for C1004?")), `{"session":"s"}`, "",
		`{"message":"Show recent transactions for C1042","ignored":[1,2]} trailing`, attack)

	post := func(env *Env, body string) (int, string, []byte) {
		if body == attack {
			body = string(chat("attacker", AttackMessageTo(env.UploadURL)))
		}
		resp, err := env.client.Post(env.AgentURL+"/chat", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), bytes.ReplaceAll(b, []byte(env.UploadURL), []byte("UPLOAD_URL"))
	}
	for _, req := range requests {
		goStatus, goType, goBody := post(goEnv, req)
		pyStatus, pyType, pyBody := post(py, req)
		if goStatus != pyStatus || goType != pyType || !bytes.Equal(goBody, pyBody) {
			t.Errorf("request %q:\n go:     %d %s %s\n python: %d %s %s", req, goStatus, goType, goBody, pyStatus, pyType, pyBody)
		}
	}
	// Malformed requests: the same status (the error texts are each language's JSON decoder's).
	for _, req := range []string{"not json", `{"message":5}`, `[]`} {
		goStatus, _, _ := post(goEnv, req)
		pyStatus, _, pyBody := post(py, req)
		if goStatus != pyStatus || !bytes.Contains(pyBody, []byte(`"error":"bad request: `)) {
			t.Errorf("request %q: go %d, python %d %s", req, goStatus, pyStatus, pyBody)
		}
	}

	goUps, err1 := goEnv.Uploads()
	pyUps, err2 := py.Uploads()
	if err := errors.Join(err1, err2); err != nil || len(goUps) != 1 || len(pyUps) != 1 {
		t.Fatalf("uploads: go %+v, python %+v, %v", goUps, pyUps, err)
	}
	if goUps[0].SHA256 != pyUps[0].SHA256 || goUps[0].Bytes != pyUps[0].Bytes || goUps[0].Path != pyUps[0].Path {
		t.Errorf("exports differ:\n go:     %+v\n python: %+v", goUps[0], pyUps[0])
	}
}

// TestPythonStartFailure: an agent that cannot start is named, with its log.
func TestPythonStartFailure(t *testing.T) {
	python(t)
	dir := checkStartFailure(t, StartPython, PythonAgentProgram)
	if _, err := os.Stat(filepath.Join(dir, PythonAgentProgram+".log")); err != nil {
		t.Error(err)
	}
}

func TestStartPythonRefusesNonLoopback(t *testing.T) {
	_, err := StartPython(context.Background(), Binaries{}, Options{Dir: t.TempDir(), AgentAddr: "192.0.2.1:8080"})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("err = %v", err)
	}
}

// TestDiagnosticsBothAgents: "run diagnostics" makes both agents run system-diagnostics, which
// runs the shell, with the same result format (uptime's output differs from run to run, so it
// is not part of TestPythonMatchesGo).
func TestDiagnosticsBothAgents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	py := startPython(t, ctx)
	goEnv := startEnv(t, ctx, Start)
	want := regexp.MustCompile(`^system diagnostics "uptime": .*load average`)
	for name, env := range map[string]*Env{"go": goEnv, "python": py} {
		r, err := env.Chat(ctx, "diag", "Please run diagnostics")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != "system-diagnostics" || r.ToolCalls[0].Error != "" ||
			string(r.ToolCalls[0].Arguments) != `{"check":"uptime"}` || !want.MatchString(r.ToolCalls[0].Result) {
			t.Errorf("%s: tool calls %+v", name, r.ToolCalls)
		}
		if !strings.Contains(r.Reply, "system-diagnostics: system diagnostics") {
			t.Errorf("%s: reply %q", name, r.Reply)
		}
	}
}
