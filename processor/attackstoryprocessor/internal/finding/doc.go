// Package finding turns the hits of a story into a finding: its title, severity, rule and
// ATLAS ids, the story's narrative (one line, decisive steps kept, repetitive ones folded) and
// the OCSF 1.1 Detection Finding (built section by section: header, finding info, resource,
// evidences with observables, unmapped).
package finding
