# AgentTrail: `make demo` builds the collector and runs it; `make test` runs every test.
# Every target that needs something checks for it first and says in one line what is missing.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
OCB_VERSION := v0.165.0
OCB := $(BIN)/ocb
COLLECTOR := $(CURDIR)/_build/otelcol-agenttrail
PREREQS := $(CURDIR)/scripts/prereqs.sh
GOTEST_FLAGS ?= -count=1 -timeout 40m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(OCB):
	@$(PREREQS) modules
	@mkdir -p $(BIN)
	@GOBIN=$(BIN) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION) >/tmp/agenttrail-ocb.log 2>&1 || \
		{ echo "agenttrail: could not install ocb $(OCB_VERSION) (see /tmp/agenttrail-ocb.log)" >&2; exit 1; }
	@mv $(BIN)/builder $(OCB)

JAEGER := $(CURDIR)/tests/tools/bin/jaeger

$(JAEGER): tests/tools/go.mod
	@echo "building Jaeger (tests/tools, its own module) for the demo and the end-to-end tests"
	@cd tests/tools && $(GO) build -o bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger >/tmp/agenttrail-jaeger.log 2>&1 || \
		{ echo "agenttrail: could not build Jaeger (see /tmp/agenttrail-jaeger.log)" >&2; exit 1; }

# kube-apiserver for tests/kubeapi, from the Go module proxy (k8s.io/kubernetes with its staging
# modules, tests/kubeapi/tools/go.mod): rebuilt only when that module changes (several minutes
# on 2 cores the first time).
KUBE_APISERVER := $(BIN)/kube-apiserver

$(KUBE_APISERVER): tests/kubeapi/tools/go.mod tests/kubeapi/tools/go.sum
	@echo "building kube-apiserver (tests/kubeapi/tools, its own module) for tests/kubeapi"
	@cd tests/kubeapi/tools && $(GO) build -o $(KUBE_APISERVER) k8s.io/kubernetes/cmd/kube-apiserver >/tmp/agenttrail-kube-apiserver.log 2>&1 || \
		{ echo "agenttrail: could not build kube-apiserver (see /tmp/agenttrail-kube-apiserver.log)" >&2; exit 1; }

.PHONY: kube-apiserver
kube-apiserver: $(KUBE_APISERVER) ## Build kube-apiserver for tests/kubeapi (from tests/kubeapi/tools/go.mod; make test does)

.PHONY: tools
tools: $(JAEGER) ## Build the test tools (Jaeger, from tests/tools/go.mod)

.PHONY: generate
generate: ## Regenerate the eBPF objects and Go bindings (bpf2go; installs clang if missing)
	@$(PREREQS) clang modules
	$(GO) generate ./...

.PHONY: vmlinux
vmlinux: ## Regenerate bpf/headers/vmlinux.h from this machine's kernel BTF (rarely needed: CO-RE)
	@$(PREREQS) clang
	@command -v bpftool >/dev/null || { echo "agenttrail: bpftool is missing: apt-get install bpftool" >&2; exit 1; }
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/headers/vmlinux.h

.PHONY: build
build: $(OCB) ## Build the collector distribution with ocb into _build/
	@$(PREREQS) modules
	$(OCB) --config builder-config.yaml >/tmp/agenttrail-build.log 2>&1 || { tail -n 30 /tmp/agenttrail-build.log; echo "agenttrail: ocb build failed (full log: /tmp/agenttrail-build.log)" >&2; exit 1; }
	$(GO) build -o $(BIN)/agenttrail ./cmd/agenttrail
	@echo "built $(COLLECTOR) and $(BIN)/agenttrail"

.PHONY: test
test: ## Run every test, kernel tests included (needs root; installs test packages)
	@$(PREREQS) kernel modules test-packages
	@$(MAKE) --no-print-directory build tools kube-apiserver
	$(COLLECTOR) validate --config=distributions/agenttrail/config.yaml
	$(COLLECTOR) validate --config=distributions/agenttrail/gateway.yaml
	$(GO) test $(GOTEST_FLAGS) $$($(GO) list ./... | grep -v -e /tests/e2e -e /tests/enforce -e /tests/outage -e /tests/detect -e /tests/crossnode -e /tests/kubeapi)
	@# The whole-collector scenarios each run the built collector against the kernel and fixed
	@# ports (Jaeger): one package at a time, after the rest, so they do not trace each other.
	@# tests/kubeapi (etcd and kube-apiserver) runs there too: its CPU would upset the timing
	@# of the kernel tests.
	$(GO) test $(GOTEST_FLAGS) -p 1 ./tests/e2e/... ./tests/enforce/... ./tests/outage/... ./tests/detect/... ./tests/crossnode/... ./tests/kubeapi/...

# Packages whose tests load eBPF programs or run the whole collector are left out of the race
# run: their kernel and timing tests run in `make test`; everything else runs with -race too.
RACE_EXCLUDE := -e /tests/ -e /receiver/ebpfreceiver$$ -e /internal/probes$$ -e /internal/enforce$$

.PHONY: race
race: ## Run the tests of every package that needs no kernel with the race detector
	@$(PREREQS) modules
	$(GO) test -race $(GOTEST_FLAGS) $$($(GO) list ./... | grep -v $(RACE_EXCLUDE))

.PHONY: bench-smoke
bench-smoke: ## Run every Go benchmark once (-benchtime 1x): they still build and run (CI runs it; make bench measures)
	@$(PREREQS) modules
	$(GO) test -run '^$$' -bench . -benchtime 1x $(GOTEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 5s; FUZZ_ONLY=FuzzName for one)
	@$(PREREQS) modules
	@$(CURDIR)/scripts/fuzz.sh

.PHONY: detect
detect: ## Run the detection corpus through the built collector and write DETECTION.md (needs root)
	@$(PREREQS) kernel modules test-packages
	@$(MAKE) --no-print-directory build
	$(GO) test -count=1 -v -timeout 30m -run TestDetect ./tests/detect/ -args -detect.full -detect.report=$(CURDIR)/DETECTION.md

.PHONY: demo
demo: ## Build the collector and run the demo on this machine (needs root)
	@$(PREREQS) kernel modules test-packages
	@$(MAKE) --no-print-directory build tools
	@$(CURDIR)/tests/demo/run.sh $(COLLECTOR)

.PHONY: bench
bench: ## Run the benchmarks (~15 min on 2 cores, root) and write BENCHMARKS.md
	@$(PREREQS) kernel modules test-packages
	@$(CURDIR)/tests/bench/run.sh $(BENCH_FLAGS)

.PHONY: soak
soak: ## SIGKILL the collector 150 times during SIEM outages; assert no acknowledged span is lost (~10 min)
	@$(PREREQS) modules
	@$(MAKE) --no-print-directory build
	@$(CURDIR)/tests/outage/soak.sh

GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

$(GOLANGCI_LINT):
	@$(PREREQS) modules
	@mkdir -p $(BIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) through the Go module proxy (once; a few minutes)"
	@GOBIN=$(BIN) GOFLAGS=-mod=mod $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) >/tmp/agenttrail-golangci-lint.log 2>&1 || \
		{ echo "agenttrail: could not install golangci-lint $(GOLANGCI_LINT_VERSION) (see /tmp/agenttrail-golangci-lint.log)" >&2; exit 1; }
	@mv $(BIN)/golangci-lint $(GOLANGCI_LINT)

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint with .golangci.yml: govet, ineffassign, misspell, unused, gofmt, goimports
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

.PHONY: clean
clean: ## Remove build outputs
	rm -rf _build bin .demo .bench
