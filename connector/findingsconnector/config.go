package findingsconnector

// Config of the findings connector: it has no settings (an empty config is valid).
type Config struct {
	// prevent unkeyed literal initialization
	_ struct{}
}

// Validate accepts every configuration.
func (*Config) Validate() error { return nil }
