// Package profile is the behavioural profile of a workload: what its stories did while it was
// learned (tools, functions, executables, files, destinations, flows of sensitive data and
// their volumes), the YAML file it is kept in, the store that loads, saves and reloads those
// files, the workload identity a profile belongs to, and the profile files' API of the
// `agenttrail profile` commands (read, review, promote, dry-run what enforcing would block).
//
// It is not internal: the agenttrail CLI (cmd/agenttrail) imports it, and Go allows an
// internal package only to the tree of its parent.
package profile
