package attackstoryprocessor

import "github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"

// The profile files' API lives in the profile package (the agenttrail CLI imports it). These
// names remain for code written against the processor package; use the profile package.

// ProfileFile is profile.File.
//
// Deprecated: use profile.File.
type ProfileFile = profile.File

// ReadProfileDir is profile.ReadDir.
//
// Deprecated: use profile.ReadDir.
func ReadProfileDir(dir string) ([]*ProfileFile, []error) { return profile.ReadDir(dir) }

// ReadProfileFile is profile.ReadFile.
//
// Deprecated: use profile.ReadFile.
func ReadProfileFile(path string) (*ProfileFile, error) { return profile.ReadFile(path) }
