// Package policy is the resolved configuration of each workload: its mode, declared boundaries
// (allowed tools and destinations), sensitive paths, volume limits and allowed flows, and the
// lookup of a story's workload entry by its resource.
package policy
