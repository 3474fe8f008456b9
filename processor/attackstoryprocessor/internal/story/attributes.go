package story

// Attributes the eBPF receiver (and the k8s attribution processor) set, read by this processor.
const (
	AttrServiceName       = "service.name"
	AttrProcessPID        = "process.pid"
	AttrProcessExecutable = "process.executable.path"
	attrProcessCommand    = "process.command_line"
	AttrContainerID       = "container.id"
	AttrHostName          = "host.name"
	AttrK8sNodeName       = "k8s.node.name"
	AttrK8sNamespace      = "k8s.namespace.name"
	AttrK8sPod            = "k8s.pod.name"
	AttrK8sDeployment     = "k8s.deployment.name"
	AttrK8sStatefulSet    = "k8s.statefulset.name"
	AttrK8sDaemonSet      = "k8s.daemonset.name"
	AttrK8sContainer      = "k8s.container.name"
	AttrK8sServiceAccount = "k8s.pod.service_account.name"

	// attrProcessEvent "start" marks the eBPF receiver's span process.start: a target's process
	// is traced from now on (not a story).
	attrProcessEvent = "agenttrail.process.event"

	AttrRole             = "agenttrail.role"
	attrSyscall          = "agenttrail.syscall"
	attrSyscallResult    = "agenttrail.syscall.result"
	AttrOpenFlags        = "agenttrail.open.flags"
	attrArgPrefix        = "agenttrail.arg."
	AttrCodeFunction     = "code.function.name"
	AttrGenAIOperation   = "gen_ai.operation.name"
	AttrGenAIToolName    = "gen_ai.tool.name"
	attrGenAIModel       = "gen_ai.request.model"
	attrGenAIInput       = "gen_ai.input.messages"
	attrGenAIPrompt      = "gen_ai.prompt"
	AttrPeerAddress      = "network.peer.address"
	AttrPeerPort         = "network.peer.port"
	attrServerAddress    = "server.address"
	attrPeerName         = "network.peer.name"
	AttrFilePath         = "file.path"
	attrErrorType        = "error.type"
	attrBytesSent        = "agenttrail.net.bytes_sent"
	attrHTTPRequestBody  = "http.request.body.size"
	attrHTTPRequestTotal = "http.request.size"
	// the receiver's socket I/O aggregates ("send {peer}")
	AttrEgressBytes     = "agenttrail.egress.bytes"
	AttrEgressCalls     = "agenttrail.egress.calls"
	AttrSocketConnected = "agenttrail.socket.connected"
	AttrConnectionAge   = "agenttrail.connection.age_ms"
	AttrDNSName         = "dns.question.name"
	AttrDNSNames        = "agenttrail.dns.question.names"
)

// Attributes this processor sets.
const (
	AttrStitched         = "agenttrail.stitched"
	AttrIncomplete       = "agenttrail.story.incomplete"
	AttrIncompleteReason = "agenttrail.story.incomplete_reason"

	AttrFindingRuleIDs    = "agenttrail.finding.rule_ids"
	AttrFindingSeverity   = "agenttrail.finding.severity"
	AttrFindingSeverityID = "agenttrail.finding.severity_id"
	AttrFindingAtlasIDs   = "agenttrail.finding.atlas_ids"
	AttrFindingUID        = "agenttrail.finding.uid"
	AttrFindingTitle      = "agenttrail.finding.title"
	AttrFindingMode       = "agenttrail.finding.mode"
	AttrFindingNarrative  = "agenttrail.finding.narrative"
	AttrFindingOCSF       = "agenttrail.finding.ocsf"
	// AttrFindingTier: the tier (config key tier) of the collector that made the finding; the
	// findings connector of a later tier emits only its own (an event without it is "agent").
	AttrFindingTier = "agenttrail.finding.tier"
	// AttrFindingSupersedes: the uids of the findings another tier (a node's agent) had put on
	// spans of the story before this processor judged it whole (the gateway, across nodes).
	AttrFindingSupersedes = "agenttrail.finding.supersedes"
	// AttrFindingSupersedesOmitted counts the uids beyond MaxSuperseded.
	AttrFindingSupersedesOmitted = "agenttrail.finding.supersedes_omitted"

	// FindingEventName is the name of the span event that carries a finding.
	FindingEventName = "finding"
)
