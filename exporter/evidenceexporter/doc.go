// Package evidenceexporter writes stories (traces, one record per trace id per batch) and
// findings (log records) to an append-only, hash-chained archive on local disk whose closed
// segments are sealed by Ed25519-signed manifests. See README.md for the format and for
// `agenttrail evidence verify`.
//
// There is no `//go:generate mdatagen metadata.yaml` line: mdatagen cannot be had at the
// collector version this module pins, so internal/metadata is written by hand and held to
// metadata.yaml by its test and by component_test.go.
package evidenceexporter // import "github.com/agenttrail/agenttrail/exporter/evidenceexporter"
