// Package aibomconnector implements the AgentTrail "aibom" connector (traces → logs): it keeps
// the runtime AI inventory of the spans that pass (internal/aibom: per workload the models,
// model APIs, tools, MCP servers, AI SDKs and frameworks, egress destinations and identity) and
// emits one log record with the workload's CycloneDX 1.6 AI-BOM when it changes, at most once
// per min_interval per workload. `agenttrail aibom` writes the same document from the evidence
// archive.
//
// metadata.yaml describes the component; mdatagen is not served at the collector version this
// module pins, so internal/metadata, the package it would generate, is written by hand and held
// to metadata.yaml by its test and by component_test.go.
package aibomconnector // import "github.com/agenttrail/agenttrail/connector/aibomconnector"
