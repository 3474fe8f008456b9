// Package storyjoinprocessor joins, at the gateway, the server-side story of a connection (what
// a service on another node did after it accepted the connection of an agent) to the client-side
// span that opened or used that connection, so the remote work becomes a child of the agent's
// tool span: one trace across nodes. The join key is what the kernel saw on each side (the
// connection's addresses and ports, recorded by the eBPF receiver), never a header: AgentTrail
// does not change traffic.
//
// mdatagen at the collector version this distribution builds with is not available, so
// internal/metadata, the package it would generate from metadata.yaml, is written by hand and
// held to metadata.yaml by component_test.go.
package storyjoinprocessor
