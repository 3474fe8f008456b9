// Package attackstoryprocessor implements the AgentTrail "attackstory" processor. It turns the
// spans of the eBPF receiver into stories, one per request of an AI agent (prompt → inference →
// tool calls → data access → outbound connections), learns a behavioural profile of every
// workload from the stories it observes, and judges each story against built-in rules, the
// user's CEL rules, the learned profile and the declared permission boundaries. A story that
// matches carries a finding: attributes on its root span and a "finding" span event with a
// time-ordered narrative and an OCSF 1.1 Detection Finding (JSON), which the findings
// connector turns into a log record.
//
// See README.md for the configuration, the rules, the profile file format and the limits.
//
// metadata.yaml describes the component; mdatagen is not run in this repository (it is not
// available at this collector version in the project's build), so the values it would
// generate (Type, ScopeName, TracesStability) are declared in factory.go and the
// self-telemetry listed there is created by hand in telemetry.go. Keep them in sync.
package attackstoryprocessor // import "github.com/agenttrail/agenttrail/processor/attackstoryprocessor"
