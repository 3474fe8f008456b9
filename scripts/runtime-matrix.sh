#!/usr/bin/env bash
# Regenerates the runtime matrix (runtimes × APIs × transports) in receiver/ebpfreceiver/README.md
# from the kernel tests that run real agents (Node, Bun, Deno, the Codex CLI, openai-go, Python's
# standard library and httpx, Node's plain HTTP):
# each records what the receiver made of its calls, and TestRuntimeMatrix writes the table. Root.
# Without AGENTTRAIL_RUNTIME_MATRIX=write the same tests check the table instead (make test).
set -eu
cd "$(dirname "$0")/.."
scripts/prereqs.sh kernel test-packages
AGENTTRAIL_RUNTIME_MATRIX=write go test -count=1 \
	-run '^(TestNodeOpenAI|TestNodeAgentSDKs|TestBunOpenAI|TestRustlsNotSupported|TestLongConversationKeepsModel|TestH2JoinedAfterPreface|TestPythonHTTPX|TestNodePlainHTTP|TestRuntimeMatrix)$' \
	./receiver/ebpfreceiver/
git --no-pager diff --stat -- receiver/ebpfreceiver/README.md
