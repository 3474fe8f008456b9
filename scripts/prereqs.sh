#!/usr/bin/env bash
# Checks what `make demo`, `make test` and `make generate` need, installs what can be installed
# (Debian packages), and stops with one clear line when something cannot be had.
# Usage: scripts/prereqs.sh [kernel] [clang] [modules] [test-packages]
set -u
fail() { echo "agenttrail: $*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || fail "this step loads eBPF programs and needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN): run it as root"
}

apt_install() {
	local missing=()
	for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	need_root
	echo "agenttrail: installing Debian packages: ${missing[*]}"
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/tmp/agenttrail-apt.log 2>&1; then
		fail "could not install ${missing[*]} with apt-get (see /tmp/agenttrail-apt.log)"
	fi
}

for what in "$@"; do
	case "$what" in
	kernel)
		need_root
		[ -r /sys/kernel/btf/vmlinux ] || fail "the kernel exposes no BTF (/sys/kernel/btf/vmlinux): AgentTrail's CO-RE programs need a kernel built with CONFIG_DEBUG_INFO_BTF=y"
		;;
	clang)
		command -v clang >/dev/null && command -v llvm-strip >/dev/null && [ -r /usr/include/bpf/bpf_helpers.h ] ||
			apt_install clang llvm libbpf-dev
		;;
	modules)
		command -v go >/dev/null || fail "Go is not installed (Go 1.26 is needed): see https://go.dev/doc/install"
		if ! go mod download >/tmp/agenttrail-modules.log 2>&1; then
			fail "cannot download Go modules (GOPROXY=$(go env GOPROXY)); is the module proxy reachable? (see /tmp/agenttrail-modules.log)"
		fi
		;;
	test-packages)
		# gcc builds the native test programs, clang the ones whose argument locations elfinfo
		# reads from a second compiler's DWARF, with <sys/sdt.h> (systemtap-sdt-dev) the USDT
		# probe test program; python3.11 is Debian's CPython with USDT probes; chromium renders
		# the evidence report in the browser check (tests/browser); python3-aiohttp is the
		# asyncio client of make bench's llmsdk section; python3-httpx (with python3-h2, its HTTP/2)
		# the sync and asyncio client of the receiver's httpx test; etcd-server the etcd of
		# tests/kubeapi's kube-apiserver. Without them those tests skip, so they are installed
		# here rather than left to chance.
		apt_install gcc clang systemtap-sdt-dev python3.11 python3-aiohttp python3-httpx python3-h2 chromium etcd-server
		for h in /usr/include/x86_64-linux-gnu/sys/sdt.h /usr/include/sys/sdt.h; do
			[ -r "$h" ] && break
			[ "$h" = /usr/include/sys/sdt.h ] && fail "systemtap-sdt-dev is installed but <sys/sdt.h> is missing"
		done
		command -v clang >/dev/null || fail "clang is installed but not on PATH"
		command -v node >/dev/null && command -v npm >/dev/null ||
			fail "node and npm (node >= 20) are needed for the browser check in tests/browser and the receiver's Node agent test"
		if ! npm ci --prefix tests/browser --no-audit --no-fund >/tmp/agenttrail-npm.log 2>&1; then
			fail "npm ci in tests/browser failed (is the npm registry reachable? see /tmp/agenttrail-npm.log)"
		fi
		# The receiver's Node agent test: the official openai package, pinned by its lockfile.
		if ! npm ci --prefix receiver/ebpfreceiver/testdata/nodeagent --no-audit --no-fund >/tmp/agenttrail-npm.log 2>&1; then
			fail "npm ci in receiver/ebpfreceiver/testdata/nodeagent failed (is the npm registry reachable? see /tmp/agenttrail-npm.log)"
		fi
		# The receiver's Node agent-SDK test: @openai/agents and the Vercel AI SDK, pinned by its lockfile.
		if ! npm ci --prefix receiver/ebpfreceiver/testdata/nodeagents --no-audit --no-fund >/tmp/agenttrail-npm.log 2>&1; then
			fail "npm ci in receiver/ebpfreceiver/testdata/nodeagents failed (is the npm registry reachable? see /tmp/agenttrail-npm.log)"
		fi
		# The MCP tests: the MCP TypeScript SDK and reference servers, pinned by their lockfile.
		if ! npm ci --prefix receiver/ebpfreceiver/internal/mcp/testdata/nodeclient --no-audit --no-fund >/tmp/agenttrail-npm.log 2>&1; then
			fail "npm ci in receiver/ebpfreceiver/internal/mcp/testdata/nodeclient failed (is the npm registry reachable? see /tmp/agenttrail-npm.log)"
		fi
		# The AI-BOM tests validate with the CycloneDX project's own validator, pinned by its lockfile.
		if ! npm ci --prefix internal/aibom/testdata/cyclonedx --no-audit --no-fund >/tmp/agenttrail-npm.log 2>&1; then
			fail "npm ci in internal/aibom/testdata/cyclonedx failed (is the npm registry reachable? see /tmp/agenttrail-npm.log)"
		fi
		# Bun (static BoringSSL), Deno and the Codex CLI (rustls), pinned by their lockfile: the
		# receiver's runtime tests run their x86-64 builds straight from the platform packages,
		# so no install script runs.
		if ! npm ci --prefix receiver/ebpfreceiver/testdata/runtimes --ignore-scripts --no-audit --no-fund >/tmp/agenttrail-npm.log 2>&1; then
			fail "npm ci in receiver/ebpfreceiver/testdata/runtimes failed (is the npm registry reachable? see /tmp/agenttrail-npm.log)"
		fi
		;;
	*) fail "prereqs.sh: unknown check '$what'" ;;
	esac
done
