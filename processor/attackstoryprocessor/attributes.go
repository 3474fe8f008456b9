package attackstoryprocessor

import "context"

// bgctx is the context of self-telemetry measurements.
var bgctx = context.Background()

// Attributes the eBPF receiver (and the k8s attribution processor) set, read by this processor.
const (
	attrServiceName       = "service.name"
	attrProcessPID        = "process.pid"
	attrProcessExecutable = "process.executable.path"
	attrProcessCommand    = "process.command_line"
	attrContainerID       = "container.id"
	attrHostName          = "host.name"
	attrK8sNodeName       = "k8s.node.name"
	attrK8sNamespace      = "k8s.namespace.name"
	attrK8sPod            = "k8s.pod.name"
	attrK8sDeployment     = "k8s.deployment.name"
	attrK8sStatefulSet    = "k8s.statefulset.name"
	attrK8sDaemonSet      = "k8s.daemonset.name"
	attrK8sContainer      = "k8s.container.name"
	attrK8sServiceAccount = "k8s.pod.service_account.name"

	// attrProcessEvent "start" marks the eBPF receiver's span process.start: a target's process
	// is traced from now on (not a story).
	attrProcessEvent = "agenttrail.process.event"

	attrRole             = "agenttrail.role"
	attrSyscall          = "agenttrail.syscall"
	attrSyscallResult    = "agenttrail.syscall.result"
	attrOpenFlags        = "agenttrail.open.flags"
	attrArgPrefix        = "agenttrail.arg."
	attrCodeFunction     = "code.function.name"
	attrGenAIOperation   = "gen_ai.operation.name"
	attrGenAIToolName    = "gen_ai.tool.name"
	attrGenAIModel       = "gen_ai.request.model"
	attrGenAIInput       = "gen_ai.input.messages"
	attrGenAIPrompt      = "gen_ai.prompt"
	attrPeerAddress      = "network.peer.address"
	attrPeerPort         = "network.peer.port"
	attrServerAddress    = "server.address"
	attrPeerName         = "network.peer.name"
	attrFilePath         = "file.path"
	attrErrorType        = "error.type"
	attrBytesSent        = "agenttrail.net.bytes_sent"
	attrHTTPRequestBody  = "http.request.body.size"
	attrHTTPRequestTotal = "http.request.size"
)

// Attributes this processor sets.
const (
	attrStitched         = "agenttrail.stitched"
	attrIncomplete       = "agenttrail.story.incomplete"
	attrIncompleteReason = "agenttrail.story.incomplete_reason"

	attrFindingRuleIDs    = "agenttrail.finding.rule_ids"
	attrFindingSeverity   = "agenttrail.finding.severity"
	attrFindingSeverityID = "agenttrail.finding.severity_id"
	attrFindingAtlasIDs   = "agenttrail.finding.atlas_ids"
	attrFindingUID        = "agenttrail.finding.uid"
	attrFindingTitle      = "agenttrail.finding.title"
	attrFindingMode       = "agenttrail.finding.mode"
	attrFindingNarrative  = "agenttrail.finding.narrative"
	attrFindingOCSF       = "agenttrail.finding.ocsf"

	// findingEventName is the name of the span event that carries a finding.
	findingEventName = "finding"
)
