// Package ebpfreceiver records function calls, syscalls and call stacks of running Go and native
// programs with eBPF (uprobes and raw tracepoints) and emits them as OpenTelemetry spans: one
// span per call of a configured function with its exact parent, syscalls as child spans or
// events of the function that caused them, and one trace per outermost call.
//
// mdatagen at the collector version this distribution builds with is not available, so
// metadata.yaml is kept by hand and nothing is generated from it.
package ebpfreceiver
