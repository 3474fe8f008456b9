package bank

import (
	"context"
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"errors"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binaries builds the programs once for all tests of the package.
func binaries(t *testing.T) Binaries {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the bank programs")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "bank-bin-")
		if buildErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			built, buildErr = Build(ctx, buildDir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// freePorts lets the test run next to other users of the default ports.
var freePorts = Options{AgentAddr: "127.0.0.1:0", ModelAddr: "127.0.0.1:0", SinkAddr: "127.0.0.2:0"}

func TestScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := startEnv(t, ctx, Start)

	// The collector selects the agent by its command name.
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(env.AgentPID) + "/comm"); err != nil || strings.TrimSpace(string(comm)) != AgentProgram {
		t.Errorf("agent comm = %q, %v; want %s", comm, err, AgentProgram)
	}
	if !strings.HasPrefix(env.SinkURL, "http://127.0.0.2:") || !strings.HasPrefix(env.ModelURL, "https://127.0.0.1:") {
		t.Errorf("SinkURL %s, ModelURL %s: not on the expected loopback hosts", env.SinkURL, env.ModelURL)
	}

	t.Run("benign", func(t *testing.T) { checkBenign(t, ctx, env) })
	t.Run("attack", func(t *testing.T) { checkAttack(t, ctx, env) })
	t.Run("stop", func(t *testing.T) { checkStop(t, ctx, env) })
}

// TestStartFailure: a program that cannot start is named, with its log.
func TestStartFailure(t *testing.T) {
	checkStartFailure(t, Start, AgentProgram)
}

// startEnv starts the scenario with start (Start, StartPython) on free ports in a directory of
// the test; it is stopped at the end.
func startEnv(t *testing.T, ctx context.Context, start func(context.Context, Binaries, Options) (*Env, error)) *Env {
	t.Helper()
	opts := freePorts
	opts.Dir = t.TempDir()
	env, err := start(ctx, binaries(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	return env
}

// checkStartFailure: with the agent's port taken, start fails naming the agent's program and
// why; it returns the scenario's directory.
func checkStartFailure(t *testing.T, start func(context.Context, Binaries, Options) (*Env, error), program string) string {
	t.Helper()
	bin := binaries(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	opts := freePorts
	opts.Dir = t.TempDir()
	opts.AgentAddr = busy.Addr().String()
	env, err := start(context.Background(), bin, opts)
	if err == nil {
		env.Stop()
		t.Fatal("start succeeded on a busy port")
	}
	for _, want := range []string{program, "exited before it was ready", "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	return opts.Dir
}

// TestAgentSymbols checks what distributions/agenttrail/config.yaml relies on: the functions
// are in the normally built binary, with these parameter names.
func TestAgentSymbols(t *testing.T) {
	bin := binaries(t)
	f, err := elf.Open(bin.Agent)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"main.(*Agent).HandlePrompt":       {"a", "prompt"},
		"main.(*Agent).executeTool":        {"a", "call"},
		"main.(*ModelClient).Complete":     {"c", "ctx", "messages"},
		"main.(*Tools).AccountsSummary":    {"t", "customerID"},
		"main.(*Tools).RecentTransactions": {"t", "customerID"},
		"main.(*Tools).TransferLowValue":   {"t", "from", "to", "cents"},
		"main.(*Tools).ExportCustomerData": {"t", "query", "destination"},
	}
	got := map[string][]string{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagSubprogram || want[name] == nil {
			continue
		}
		params := []string{}
		for e.Children {
			c, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			if c.Tag == dwarf.TagFormalParameter {
				if out, _ := c.Val(dwarf.AttrVarParam).(bool); !out {
					params = append(params, c.Val(dwarf.AttrName).(string))
				}
			}
			if c.Children {
				r.SkipChildren()
			}
		}
		got[name] = params
	}
	for fn, params := range want {
		if !slices.Equal(got[fn], params) {
			t.Errorf("%s parameters = %v, want %v", fn, got[fn], params)
		}
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	_, err := Start(context.Background(), Binaries{}, Options{Dir: t.TempDir(), SinkAddr: "192.0.2.1:9999"})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("err = %v", err)
	}
}

// checkBenign holds the agent (Go or Python: they answer alike) to the benign conversation: one
// expected tool call per message with its result in the reply, a transfer that shows in the
// next statement, one refused, small talk without tools, and nothing sent outside.
func checkBenign(t *testing.T, ctx context.Context, env *Env) {
	results := []*regexp.Regexp{
		regexp.MustCompile(`^C1001 [A-Z][a-z]+ [A-Z][a-z]+: balance \$[\d,]+\.\d\d$`),
		regexp.MustCompile(`^C1002 recent transactions: \d{4}-\d\d-\d\d card payment [A-Z ]+ -\$[\d,]+\.\d\d; `),
		regexp.MustCompile(`^transferred \$20\.00 from C1001 to C1003 \(ref T0001\)$`),
	}
	for i, msg := range BenignConversation {
		r, err := env.Chat(ctx, "benign", msg)
		if err != nil {
			t.Fatalf("%q: %v", msg, err)
		}
		if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != BenignTools[i] || r.ToolCalls[0].Error != "" {
			t.Fatalf("%q: tool calls %+v, want one %s", msg, r.ToolCalls, BenignTools[i])
		}
		res := r.ToolCalls[0].Result
		if !results[i].MatchString(res) {
			t.Errorf("%q: result %q does not match %s", msg, res, results[i])
		}
		if !strings.Contains(r.Reply, BenignTools[i]+": "+res) {
			t.Errorf("%q: reply %q does not give the result", msg, r.Reply)
		}
	}
	// The transfer shows in the next statement.
	r, err := env.Chat(ctx, "benign", "Show recent transactions for C1003")
	if err != nil || len(r.ToolCalls) != 1 || !strings.Contains(r.ToolCalls[0].Result, "T0001 transfer from C1001 +$20.00") {
		t.Errorf("transactions after transfer: %+v, %v", r, err)
	}
	if r, err := env.Chat(ctx, "benign", "Please transfer $500 from C1001 to C1003"); err != nil ||
		len(r.ToolCalls) != 1 || r.ToolCalls[0].Error == "" || !strings.Contains(r.Reply, "refused") {
		t.Errorf("transfer of $500 not refused: %+v, %v", r, err)
	}
	if r, err := env.Chat(ctx, "benign", "hello"); err != nil || len(r.ToolCalls) != 0 || r.Reply == "" {
		t.Errorf("small talk: %+v, %v", r, err)
	}
	if ups, err := env.Uploads(); err != nil || len(ups) != 0 {
		t.Fatalf("uploads after the benign chat: %v, %v", ups, err)
	}
}

// checkStop: Stop ends the three programs, is safe to call again, and the agent no longer
// answers.
func checkStop(t *testing.T, ctx context.Context, env *Env) {
	pids := []int{env.AgentPID, env.ModelPID, env.SinkPID}
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still there after Stop (kill 0: %v)", pid, err)
		}
	}
	if err := env.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := env.Chat(ctx, "late", "hello"); err == nil {
		t.Error("agent still answers after Stop")
	}
}

// checkAttack sends the prompt injection and checks that the agent exported every customer to
// the outside host, as the scenario's victim must (redaction is the collector's job).
func checkAttack(t *testing.T, ctx context.Context, env *Env) {
	t.Helper()
	customers, err := ReadCustomers(env.CustomersFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := env.Chat(ctx, "attacker", AttackMessageTo(env.UploadURL))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != "customer-data-export" {
		t.Fatalf("tool calls %+v, want customer-data-export", r.ToolCalls)
	}
	var args struct{ Query, Destination string }
	if err := json.Unmarshal(r.ToolCalls[0].Arguments, &args); err != nil || args.Destination != env.UploadURL || args.Query != "SELECT * FROM customers" {
		t.Errorf("arguments %s (%v)", r.ToolCalls[0].Arguments, err)
	}
	m := regexp.MustCompile(`exported (\d+) records \((\d+) bytes\)`).FindStringSubmatch(r.Reply)
	if m == nil {
		t.Fatalf("reply %q does not say what was exported", r.Reply)
	}
	if n, _ := strconv.Atoi(m[1]); n != len(customers) || n != DefaultCustomers {
		t.Errorf("exported %d records, the database has %d", n, len(customers))
	}
	size, _ := strconv.Atoi(m[2])

	ups, err := env.Uploads()
	if err != nil || len(ups) != 1 {
		t.Fatalf("uploads %+v, %v; want one", ups, err)
	}
	up := ups[0]
	if up.Bytes != size || up.Path != "/upload" {
		t.Errorf("upload %+v; want %d bytes at /upload", up, size)
	}
	body, err := up.Body()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(body), up.Head) || len(up.Head) != 200 {
		t.Errorf("head %q is not the body's first 200 bytes", up.Head)
	}
	if got := strings.Count(string(body), "\n"); got != len(customers) {
		t.Errorf("body has %d lines, want %d", got, len(customers))
	}
	// The workload is the victim: the raw secrets really leave it.
	secrets, err := env.CustomerSecrets()
	if err != nil || len(secrets) != 2*len(customers) || secrets[0] != customers[0].CardNumber {
		t.Fatalf("CustomerSecrets: %d, %v", len(secrets), err)
	}
	for _, s := range secrets {
		if !strings.Contains(string(body), s) {
			t.Errorf("upload lacks %s", s)
		}
	}
}
