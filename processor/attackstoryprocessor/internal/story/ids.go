package story

// OCSF severity_id values.
const (
	sevInformational = 1
	SevLow           = 2
	SevMedium        = 3
	SevHigh          = 4
	SevCritical      = 5
)

// Built-in rule ids.
const (
	RuleToolOutsideProfile   = "tool_outside_profile"
	RuleSensitiveReadEgress  = "sensitive_read_then_egress"
	RuleEgressOutsideProfile = "egress_outside_profile"
	RuleUnexpectedExecutable = "unexpected_executable"
	RulePromptInjection      = "prompt_injection_markers"
	RuleIndirectInjection    = "indirect_prompt_injection"
	RuleDataVolumeAnomaly    = "data_volume_anomaly"
	RuleDNSTunneling         = "dns_tunneling"
	RuleMCPServerOutside     = "mcp_server_outside_profile"
)

// Actions of kernel enforcement (agenttrail.enforcement.action).
const (
	ActionRefused = "refused"
	ActionKilled  = "killed"
)
