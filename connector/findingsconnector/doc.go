// Package findingsconnector implements the AgentTrail "findings" connector (traces → logs):
// every "finding" span event that the attackstory processor put on a story becomes one log
// record whose body is the finding's OCSF Detection Finding JSON, with the span's trace and
// span ids, a severity mapped from the OCSF severity_id and the span's resource. This is how
// findings reach any logs pipeline (Splunk HEC, Sentinel, OTLP, files...).
//
// metadata.yaml describes the component; mdatagen is not served at the collector version this
// module pins, so internal/metadata, the package it would generate, is written by hand and
// held to metadata.yaml by its test and by component_test.go.
package findingsconnector // import "github.com/agenttrail/agenttrail/connector/findingsconnector"
