// Package match holds the two matchers of the story processor's configuration and profiles:
// path patterns (sensitive_paths, a profile's files, allowed_flows data) and destinations
// (allowed_destinations, allowed_flows, a profile's destinations).
package match
