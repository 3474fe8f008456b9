package profile

import (
	"fmt"
	"time"
)

// Mode is what the processor does with the stories of a workload.
type Mode string

// Modes. Declared permission boundaries (allowed_tools, allowed_destinations) apply in all of them.
const (
	// ModeObserve learns the workload's profile; no profile-deviation findings.
	ModeObserve Mode = "observe"
	// ModeAlert emits findings for every rule that matches.
	ModeAlert Mode = "alert"
	// ModeEnforce is alert plus kernel enforcement of the complete profile (see enforcement.go).
	ModeEnforce Mode = "enforce"
)

func (m Mode) Alerting() bool { return m == ModeAlert || m == ModeEnforce }

func ValidMode(m Mode, allowEmpty bool) error {
	switch m {
	case ModeObserve, ModeAlert, ModeEnforce:
		return nil
	case "":
		if allowEmpty {
			return nil
		}
	}
	return fmt.Errorf("%q is not one of observe, alert, enforce", string(m))
}

// LearningConfig is the learning window of the behavioural profiles.
type LearningConfig struct {
	// MinStories is the number of stories a profile learns before it can be complete.
	MinStories int `mapstructure:"min_stories"`
	// MinDuration is how long after its first story a profile can be complete.
	MinDuration time.Duration `mapstructure:"min_duration"`
	// ContinueAfterComplete keeps learning after the profile is complete (each change then
	// increments its version).
	ContinueAfterComplete bool `mapstructure:"continue_after_complete"`
	// MaxEntries bounds each list of a profile (tools, files, destinations, ...).
	MaxEntries int `mapstructure:"max_entries"`
	// EntryPoints are span names or code.function.name values of roots that make a story
	// learnable, besides prompt spans and configured functions.
	EntryPoints []string `mapstructure:"entry_points"`
}
