// Package findingsconnector implements the AgentTrail "findings" connector (traces → logs):
// every "finding" span event that the attackstory processor put on a story becomes one log
// record whose body is the finding's OCSF Detection Finding JSON, with the span's trace and
// span ids, a severity mapped from the OCSF severity_id and the span's resource. This is how
// findings reach any logs pipeline (Splunk HEC, Sentinel, OTLP, files...).
//
// metadata.yaml describes the component; mdatagen is not run in this repository, so the
// values it would generate (Type, ScopeName, stability) are declared in factory.go.
package findingsconnector // import "github.com/agenttrail/agenttrail/connector/findingsconnector"
