// Package ebpfreceiver records function calls, syscalls and call stacks of running Go and native
// programs with eBPF (uprobes and raw tracepoints) and emits them as OpenTelemetry spans: one
// span per call of a configured function with its exact parent, syscalls as child spans or
// events of the function that caused them, and one trace per outermost call. In CPython 3.11
// processes it takes Python stacks (at audit events, syscalls and TLS calls), records audit
// events and reconstructs the spans of configured Python functions from those stacks; in any
// traced process it reads the plaintext of TLS calls (OpenSSL, Go crypto/tls) and turns LLM API
// calls found in it into inference spans.
//
// mdatagen at the collector version this distribution builds with is not available, so
// metadata.yaml is kept by hand and nothing is generated from it.
package ebpfreceiver
