// Package rules judges a story: the built-in rules, one file each behind the Rule interface
// (tool_outside_profile.go, sensitive_read_then_egress.go, ...), the custom CEL rules, and the
// Context they read (the story's facts, the workload's policy and profile, the mode, the
// kernel's decisions). Context.Evaluate returns the hits a finding is made of.
package rules
