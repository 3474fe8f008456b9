// Package sentinelexporter implements the AgentTrail "sentinel" exporter: it sends security
// findings (logs signal: one row per log record, the OCSF Detection Finding in the body
// flattened into columns) and spans (traces signal: one row per span) to Microsoft Sentinel
// through the Azure Monitor Logs Ingestion API, with Microsoft's Go SDK (azlogs and azidentity).
//
// Rows are JSON objects whose keys are the columns of two custom tables, AgentTrailFindings_CL
// and AgentTrailSpans_CL; distributions/agenttrail/sentinel ships their schemas (tables.json),
// the data collection rule (dcr.json) and the deployment steps. Requests carry gzip-compressed
// JSON arrays of at most max_batch_bytes uncompressed; retries and throttling go through
// exporterhelper's queue and retry settings. See README.md.
//
// metadata.yaml describes the component; mdatagen is not served at the collector version this
// module pins, so internal/metadata, the package it would generate, is written by hand and
// held to metadata.yaml by its test and by component_test.go.
package sentinelexporter // import "github.com/agenttrail/agenttrail/exporter/sentinelexporter"
