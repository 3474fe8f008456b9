package main

// Section 2c continued (-only llmsdk): the LLM client throughput of a Node client (the pinned npm
// openai SDK, Node's own OpenSSL) and of a Python asyncio client (aiohttp, concurrent requests
// over asyncio's SSL transport), receiver off and on, beside the Go and Python rows of `llm`.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver"
)

const (
	systemNode   = "/usr/bin/node"
	nodeSDKDir   = "receiver/ebpfreceiver/testdata/nodeagent"
	nodeScript   = "tests/bench/nodeclient/llmclient.mjs"
	asyncScript  = "tests/bench/pytarget/asyncclient.py"
	asyncClients = 8 // concurrent asyncio tasks (and keep-alive connections)
)

func (b *bench) llmSDKThroughput() {
	model, err := b.startMockModel()
	if err != nil {
		b.skip(secLLM, "LLM client throughput (Node, Python asyncio)", "tests/workloads/mock-model", err.Error())
		return
	}
	defer model.stop()
	n := b.opt.llmRequests
	var clients []llmClient
	byPID := func(name string) func(int) ebpfreceiver.TargetConfig {
		// By pid, not executable: every node and python3.11 on the machine would be traced.
		return func(pid int) ebpfreceiver.TargetConfig { return ebpfreceiver.TargetConfig{Name: name, PID: pid} }
	}
	nodeName := "Node openai SDK client (npm openai 7.55.0, Node's OpenSSL, HTTP/1.1 keep-alive): chat completions per second, receiver off and on"
	switch _, err := os.Stat(filepath.Join(nodeSDKDir, "node_modules", "openai")); {
	case err != nil:
		b.skip(secLLM, nodeName, "node "+nodeScript, "the pinned SDK is not installed (npm ci --prefix "+nodeSDKDir+", as make test does)")
	default:
		if _, err := os.Stat(systemNode); err != nil {
			b.skip(secLLM, nodeName, "node "+nodeScript, systemNode+" is not installed")
			break
		}
		base := strings.TrimSuffix(model.url, "/chat/completions")
		clients = append(clients, llmClient{
			name: nodeName,
			command: "NODE_EXTRA_CA_CERTS=CA_FILE node " + nodeScript + " " + nodeSDKDir + " MODEL_BASE_URL model-x ('bench N': N client.chat.completions.create calls, one after the other)" +
				"; on: target pid of the client (OpenSSL probes on the node executable's own OpenSSL)",
			// env execs node: the pid the receiver targets is node's.
			args:  []string{"/usr/bin/env", "NODE_EXTRA_CA_CERTS=" + model.ca, systemNode, nodeScript, nodeSDKDir, base, "model-x"},
			watch: []string{systemNode}, n: n, target: byPID("bench-nodeclient"),
		})
	}
	asyncName := "Python asyncio client (aiohttp, " + strconv.Itoa(asyncClients) + " concurrent tasks; asyncio SSL transport: OpenSSL SSL_write_ex / SSL_read_ex over memory BIOs): chat completions per second, receiver off and on"
	switch {
	case !fileExists(python311):
		b.skip(secLLM, asyncName, "python3.11 "+asyncScript, python311+" is not installed (apt-get install python3.11)")
	case runQuiet(python311, "-c", "import aiohttp") != nil:
		b.skip(secLLM, asyncName, "python3.11 "+asyncScript, "aiohttp is not installed for "+python311+" (apt-get install python3-aiohttp)")
	default:
		clients = append(clients, llmClient{
			name: asyncName,
			command: "python3.11 " + asyncScript + " MODEL_URL CA_FILE model-x " + strconv.Itoa(asyncClients) +
				" ('bench N': N chat-completion requests through one aiohttp ClientSession, " + strconv.Itoa(asyncClients) + " tasks at a time on one event loop)" +
				"; on: target pid of the client (OpenSSL probes on libssl.so.3; Python support: audit USDT probe, Python stacks)",
			args:  []string{python311, "-B", "-E", "-s", asyncScript, model.url, model.ca, "model-x", strconv.Itoa(asyncClients)},
			watch: append([]string{python311}, pythonSSLLibraries()...), n: n, target: byPID("bench-pyasync"),
		})
		// The same client with its request coroutine configured: one span per call, ended by
		// python_gen_dealloc, a uprobe on CPython's gen_dealloc attached to the client's pid.
		// It runs at every free of a generator or coroutine of the process; the kernel keeps
		// only the configured coroutine's.
		clients = append(clients, llmClient{
			name: "Python asyncio client as above, its request coroutine configured (python_functions: asyncclient:*.ask): chat completions per second, receiver off and on",
			command: "python3.11 " + asyncScript + " MODEL_URL CA_FILE model-x " + strconv.Itoa(asyncClients) +
				"; on: target pid of the client with python_functions [asyncclient:*.ask] (a coroutine: one span per request, ended at its gen_dealloc)",
			args:  []string{python311, "-B", "-E", "-s", asyncScript, model.url, model.ca, "model-x", strconv.Itoa(asyncClients)},
			watch: append([]string{python311}, pythonSSLLibraries()...), n: n,
			target: func(pid int) ebpfreceiver.TargetConfig {
				return ebpfreceiver.TargetConfig{Name: "bench-pyasync-coro", PID: pid,
					PythonFunctions: []ebpfreceiver.PythonFunctionConfig{{Pattern: "asyncclient:*.ask"}}}
			},
			probe: &probeRow{prog: "python_gen_dealloc", name: "per probe: python_gen_dealloc — CPython's gen_dealloc in the asyncio client (configured coroutine)",
				what: "a hit is any generator, coroutine or async generator the client frees (aiohttp's and asyncio's included); the kernel keeps the configured coroutine's (one record per request). Without it: a coroutine's span is one run between awaits, several per request"},
		})
	}
	b.llmMeasure(clients)
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

func runQuiet(name string, args ...string) error { _, err := runCmd(name, args...); return err }
