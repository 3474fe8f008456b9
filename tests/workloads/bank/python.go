package bank

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The Python agent: tests/workloads/python-agent/customer_agent.py, the same customer-service
// agent as customer-agent (same chat API, flags, tools, model requests and answers), run by
// Debian's CPython. StartPython runs it as
//
//	/usr/bin/python3.11 -B -u -E -s <source>/tests/workloads/python-agent/customer_agent.py -listen ... -ready-file ...
//
// so its process name is "python3.11" and Env.AgentExe is PythonInterpreter. The script loads
// itself as the module "customer_agent" (not __main__), so its functions appear in Python
// stacks as PythonAgentFunctions.
const (
	// PythonInterpreter is Debian's python3.11 (package python3.11), not a pyenv or venv one.
	PythonInterpreter = "/usr/bin/python3.11"
	// PythonProcessName is the agent's comm, by which a collector selects it.
	PythonProcessName = "python3.11"
	// PythonAgentProgram names the Python agent in Env.Logs, its ready file and errors.
	PythonAgentProgram = "python-agent"
	// PythonAgentModule is the module of the agent's functions in Python stacks.
	PythonAgentModule = "customer_agent"
	// PythonAgentScript is the agent's file in PythonAgentDir.
	PythonAgentScript = "customer_agent.py"
)

// PythonAgentFunctions are the agent's functions as module:qualname, the form a collector's
// Python function patterns take, mapped to their parameters (self first).
var PythonAgentFunctions = map[string][]string{
	"customer_agent:Agent.handle_prompt":        {"self", "prompt"},
	"customer_agent:Agent.execute_tool":         {"self", "call"},
	"customer_agent:ModelClient.complete":       {"self", "messages"},
	"customer_agent:Tools.accounts_summary":     {"self", "customer_id"},
	"customer_agent:Tools.recent_transactions":  {"self", "customer_id"},
	"customer_agent:Tools.transfer_low_value":   {"self", "from_id", "to_id", "cents"},
	"customer_agent:Tools.export_customer_data": {"self", "query", "destination"},
	"customer_agent:Tools.system_diagnostics":   {"self", "check"},
}

// pythonFlags come before the script: -B writes no __pycache__ into the source tree, -u keeps
// the log unbuffered, -E and -s keep PYTHON* variables and user site-packages out.
var pythonFlags = []string{"-B", "-u", "-E", "-s"}

// pythonCheck fails unless the interpreter is 3.11 with the standard library the agent uses
// (Debian's python3.11-minimal alone lacks http.server, urllib and csv).
const pythonCheck = "import sys, ssl, csv, json, http.server, urllib.request, importlib.util, unittest; " +
	"sys.exit(0 if sys.version_info[:2] == (3, 11) else 'not Python 3.11: ' + sys.version)"

var (
	pythonMu sync.Mutex
	pythonOK bool
)

// EnsurePython returns PythonInterpreter once it runs with the standard library the agent
// needs. When it is missing or incomplete and this process is root, it installs Debian's
// python3.11 with apt-get (after an apt-get update if the first attempt fails); otherwise the
// error says what to install.
func EnsurePython() (string, error) {
	pythonMu.Lock()
	defer pythonMu.Unlock()
	if pythonOK {
		return PythonInterpreter, nil
	}
	err := checkPython()
	if err == nil {
		pythonOK = true
		return PythonInterpreter, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w; not root, so not installing it: run `apt-get install -y python3.11` as root", err)
	}
	if _, lerr := exec.LookPath("apt-get"); lerr != nil {
		return "", fmt.Errorf("%w; and there is no apt-get to install Debian's python3.11 with", err)
	}
	if ierr := aptInstall("python3.11"); ierr != nil {
		return "", fmt.Errorf("%w; installing it failed: %w", err, ierr)
	}
	if err := checkPython(); err != nil {
		return "", fmt.Errorf("after apt-get install python3.11: %w", err)
	}
	pythonOK = true
	return PythonInterpreter, nil
}

func checkPython() error {
	if _, err := os.Stat(PythonInterpreter); err != nil {
		return fmt.Errorf("python3.11 is not installed (%w)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, PythonInterpreter, "-E", "-s", "-c", pythonCheck).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s cannot run the agent (%v): %s", PythonInterpreter, err, bytes.TrimSpace(out))
	}
	return nil
}

// aptInstall installs Debian packages, updating the package lists when the first try fails.
func aptInstall(pkgs ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	apt := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
		return nil
	}
	install := append([]string{"install", "-y", "-q"}, pkgs...)
	if err := apt(install...); err == nil {
		return nil
	}
	if err := apt("update", "-q"); err != nil {
		return err
	}
	return apt(install...)
}

func tail(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// PythonAgentDir is the folder of customer_agent.py and its unit tests, found next to this
// package's source or, when that is not where it was compiled, from the working directory.
func PythonAgentDir() (string, error) {
	var candidates []string
	if src := sourceDir(); src != "" {
		candidates = append(candidates, filepath.Join(src, "..", "python-agent"))
	}
	candidates = append(candidates, filepath.Join("tests", "workloads", "python-agent"),
		filepath.Join("..", "python-agent"), "python-agent")
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, PythonAgentScript)); err == nil {
			return filepath.Abs(dir)
		}
	}
	return "", fmt.Errorf("cannot find tests/workloads/python-agent/%s (looked in %s)", PythonAgentScript, strings.Join(candidates, ", "))
}

// StartPython is Start with the Python agent in place of customer-agent: it writes the customer
// database and starts bin.Sink, bin.Model and the Python agent (bin.Agent is not used), each
// once the previous one listens. It calls EnsurePython first. In the Env, AgentPID is the
// interpreter's process, AgentExe is PythonInterpreter and the agent's log is
// Logs[PythonAgentProgram]; everything else is as Start leaves it.
func StartPython(ctx context.Context, bin Binaries, opts Options) (*Env, error) {
	interpreter, err := EnsurePython()
	if err != nil {
		return nil, fmt.Errorf("bank.StartPython: %w", err)
	}
	agentDir, err := PythonAgentDir()
	if err != nil {
		return nil, fmt.Errorf("bank.StartPython: %w", err)
	}
	// run appends "-ready-file <file>"; the agent takes Go-style single-dash flags too.
	args := append(append([]string{}, pythonFlags...), filepath.Join(agentDir, PythonAgentScript))
	return start(ctx, "bank.StartPython", bin, opts, agentCommand{program: PythonAgentProgram, exe: interpreter, args: args})
}
