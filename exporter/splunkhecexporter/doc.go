// Package splunkhecexporter implements the AgentTrail "splunk_hec" exporter: it sends traces
// (one HEC event per span) and logs (one HEC event per log record, e.g. an OCSF security
// finding) to a Splunk HTTP Event Collector, with gzip, size-bounded batches, exporterhelper
// queueing and retries, and optional indexer acknowledgement for at-least-once delivery.
//
// The configuration keys and the event JSON follow the contrib splunkhecexporter so that
// configurations and Splunk searches carry over; see README.md for the differences.
//
// metadata.yaml describes the component; mdatagen is not run in this repository, so the
// values it would generate (Type, ScopeName, stability levels) are declared in factory.go.
package splunkhecexporter // import "github.com/agenttrail/agenttrail/exporter/splunkhecexporter"
