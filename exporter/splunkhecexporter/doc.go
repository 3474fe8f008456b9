// Package splunkhecexporter implements the AgentTrail "splunk_hec" exporter: it sends traces
// (one HEC event per span) and logs (one HEC event per log record, e.g. an OCSF security
// finding) to a Splunk HTTP Event Collector, with gzip, size-bounded batches, exporterhelper
// queueing and retries, and optional indexer acknowledgement for at-least-once delivery.
//
// The configuration keys and the event JSON follow the contrib splunkhecexporter so that
// configurations and Splunk searches carry over; see README.md for the differences.
//
// metadata.yaml describes the component; mdatagen is not served at the collector version this
// module pins, so internal/metadata, the package it would generate, is written by hand and
// held to metadata.yaml by its test and by component_test.go.
package splunkhecexporter // import "github.com/agenttrail/agenttrail/exporter/splunkhecexporter"
