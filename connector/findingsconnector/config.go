package findingsconnector

import (
	"fmt"
	"regexp"
)

// Config of the findings connector. An empty config is valid: every finding becomes a record.
type Config struct {
	// Tiers are the tiers (agenttrail.finding.tier, the attackstory processor's tier key) whose
	// findings become records; a finding event without the attribute is "agent". Empty: every
	// finding. A gateway lists its own tier only: the agents' findings also travel on their
	// spans, and the agents' own connectors sent them already.
	Tiers []string `mapstructure:"tiers"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// defaultTier is the tier of a finding event that names none (the attackstory processor's
// default, and every finding from before the attribute existed).
const defaultTier = "agent"

// tierPattern is the attackstory processor's: a tier is a short plain name.
var tierPattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Validate checks that each listed tier is one the attackstory processor accepts (any other
// could never match).
func (c *Config) Validate() error {
	for i, t := range c.Tiers {
		if !tierPattern.MatchString(t) {
			return fmt.Errorf(`"tiers[%d]" must be 1 to 32 of a-z, 0-9, _ and -, got %q`, i, t)
		}
	}
	return nil
}
